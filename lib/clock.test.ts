import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RealClock, VirtualClock } from './clock.ts';

describe('VirtualClock', () => {
  it('fires timers only when advanced, in due order, with now() at their due time', () => {
    const clock = new VirtualClock();
    const fired: Array<[string, number]> = [];
    clock.setTimeout(() => fired.push(['b', clock.now()]), 200);
    clock.setTimeout(() => fired.push(['a', clock.now()]), 100);
    clock.setTimeout(() => fired.push(['c', clock.now()]), 200);
    assert.deepEqual(fired, []);
    clock.advance(150);
    assert.deepEqual(fired, [['a', 100]]);
    clock.advance(50);
    assert.deepEqual(fired, [
      ['a', 100],
      ['b', 200],
      ['c', 200],
    ]);
    assert.equal(clock.now(), 200);
  });

  it('repeats intervals and stops them on cancel', () => {
    const clock = new VirtualClock();
    let n = 0;
    const t = clock.setInterval(() => n++, 10);
    clock.advance(35);
    assert.equal(n, 3);
    t.cancel();
    clock.advance(100);
    assert.equal(n, 3);
    assert.equal(clock.pending(), 0);
  });

  it('runs timers scheduled by timers within the same advance', () => {
    const clock = new VirtualClock();
    const at: number[] = [];
    clock.setTimeout(() => {
      at.push(clock.now());
      clock.setTimeout(() => at.push(clock.now()), 5);
    }, 5);
    clock.advance(10);
    assert.deepEqual(at, [5, 10]);
  });

  it('sleep resolves on advance and rejects on abort', async () => {
    const clock = new VirtualClock();
    let done = false;
    const p = clock.sleep(1000).then(() => (done = true));
    await clock.advanceAsync(999);
    assert.equal(done, false);
    await clock.advanceAsync(1);
    await p;
    assert.equal(done, true);
    const ac = new AbortController();
    const q = clock.sleep(1000, ac.signal);
    ac.abort(new Error('stopped'));
    await assert.rejects(q, /stopped/);
    assert.equal(clock.pending(), 0);
  });

  it('advanceAsync lets promise chains started by timers continue', async () => {
    const clock = new VirtualClock();
    const steps: number[] = [];
    const loop = async () => {
      for (let i = 0; i < 3; i++) {
        await clock.sleep(100);
        steps.push(clock.now());
      }
    };
    const running = loop();
    await clock.advanceAsync(300);
    await running;
    assert.deepEqual(steps, [100, 200, 300]);
  });

  it('wallNow moves with now', () => {
    const clock = new VirtualClock(0, 1_000_000);
    clock.advance(5);
    assert.equal(clock.wallNow(), 1_000_005);
  });
});

describe('RealClock', () => {
  it('is monotonic and its timers fire', async () => {
    const clock = new RealClock();
    const a = clock.now();
    await clock.sleep(5);
    assert.ok(clock.now() >= a);
  });
});
