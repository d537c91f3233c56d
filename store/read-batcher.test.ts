import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VirtualClock } from '../lib/clock.ts';
import { isBallastError } from '../lib/errors.ts';
import { ReadBatcher } from './read-batcher.ts';

function setup() {
  const clock = new VirtualClock();
  const asked: string[] = [];
  let n = 0;
  let fail: Error | undefined;
  const b = new ReadBatcher({
    clock,
    timeoutMs: 1000,
    nextContext: () => `r${++n}`,
    requestReadIndex: (ctx) => {
      if (fail) throw fail;
      asked.push(ctx);
    },
  });
  return { clock, asked, b, failWith: (e: Error) => (fail = e) };
}

describe('ReadBatcher', () => {
  it('reads arriving during a round share the next one; each resolves once applied reaches its index', async () => {
    const { b, asked } = setup();
    const done: number[] = [];
    const r1 = b.wait().then(() => done.push(1));
    const r2 = b.wait().then(() => done.push(2));
    const r3 = b.wait().then(() => done.push(3));
    assert.deepEqual(asked, ['r1'], 'the first read starts a round; the others wait for the next');
    b.onReadState('r1', 10);
    b.onApplied(9);
    await Promise.resolve();
    assert.deepEqual(done, [], 'not before apply reaches 10');
    b.onApplied(10);
    await r1;
    assert.deepEqual(asked, ['r1', 'r2'], 'one round for both waiting reads');
    b.onReadState('r2', 12);
    b.onApplied(12);
    await Promise.all([r2, r3]);
    assert.deepEqual(done, [1, 2, 3]);
  });

  it('a round that gets no answer times out; the next round still goes', async () => {
    const { b, clock, asked } = setup();
    const lost = assert.rejects(b.wait(), (e: unknown) => isBallastError(e, 'STORE_ERR_TIMEOUT'));
    const next = b.wait();
    await clock.advanceAsync(1000);
    await lost;
    assert.deepEqual(asked, ['r1', 'r2']);
    b.onReadState('r2', 1);
    b.onApplied(1);
    await next;
  });

  it('fails reads at once when the core refuses (no leader), and all of them on failAll', async () => {
    const { b, failWith } = setup();
    const pending = b.wait();
    const queued = b.wait();
    b.failAll(new Error('leader lost'));
    await assert.rejects(pending, /leader lost/);
    await assert.rejects(queued, /leader lost/);
    failWith(new Error('etcdserver: no leader'));
    await assert.rejects(b.wait(), /no leader/);
  });
});
