import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VirtualClock } from '../clock.ts';
import { RateLimiter, WorkQueue } from './workqueue.ts';

describe('WorkQueue', () => {
  it('queues a key once however often it is added, in first-added order', async () => {
    const q = new WorkQueue(new VirtualClock());
    q.add('a');
    q.add('b');
    q.add('a');
    assert.equal(q.length, 2);
    assert.equal(await q.get(), 'a');
    assert.equal(await q.get(), 'b');
  });

  it('never hands a key to two workers; a key added while processed comes back after done', async () => {
    const q = new WorkQueue(new VirtualClock());
    q.add('k');
    const k = await q.get();
    q.add('k');
    assert.equal(q.length, 0, 'not queued while a worker holds it');
    let second: string | undefined;
    void q.get().then((x) => (second = x));
    await Promise.resolve();
    assert.equal(second, undefined);
    q.done(k as string);
    await Promise.resolve();
    assert.equal(second, 'k');
  });

  it('addAfter revisits later, on the clock', async () => {
    const clock = new VirtualClock();
    const q = new WorkQueue(clock);
    q.addAfter('later', 30_000);
    await clock.advanceAsync(29_999);
    assert.equal(q.length, 0);
    await clock.advanceAsync(1);
    assert.equal(q.length, 1);
  });

  it('a failing key backs off exponentially from 5 ms; forget starts it over', async () => {
    const clock = new VirtualClock();
    const q = new WorkQueue(clock);
    const delays: number[] = [];
    for (let i = 0; i < 6; i++) {
      const before = clock.now();
      q.addRateLimited('bad');
      while (q.length === 0) await clock.advanceAsync(1);
      delays.push(clock.now() - before);
      q.done((await q.get()) as string);
    }
    assert.deepEqual(delays, [5, 10, 20, 40, 80, 160]);
    assert.equal(q.retries('bad'), 6);
    q.forget('bad');
    assert.equal(q.retries('bad'), 0);
  });

  it('shutdown releases waiting workers', async () => {
    const q = new WorkQueue(new VirtualClock());
    const w = q.get();
    q.shutdown();
    assert.equal(await w, undefined);
  });
});

describe('RateLimiter', () => {
  it('caps per-item back-off at 1000 s', () => {
    const r = new RateLimiter(new VirtualClock());
    let last = 0;
    for (let i = 0; i < 40; i++) last = r.when('x');
    assert.equal(last, 1_000_000);
  });

  it('spaces many keys at 10/s after a burst of 100', () => {
    const r = new RateLimiter(new VirtualClock());
    const delays = Array.from({ length: 120 }, (_, i) => r.when(`k${i}`));
    assert.ok(
      delays.slice(0, 100).every((d) => d === 5),
      'the burst goes at the per-item delay',
    );
    assert.equal(delays[100], 100, 'then 100 ms per token');
    assert.equal(delays[119], 2000);
  });
});
