import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VirtualClock } from '../lib/clock.ts';
import { AppliedWaiters } from './applied-waiters.ts';

describe('AppliedWaiters', () => {
  it('an index already applied resolves at once', async () => {
    const w = new AppliedWaiters(new VirtualClock());
    assert.equal(await w.wait(5, 7, 1000), true);
  });

  it('resolves each waiter once its index is applied, in any order of indexes, and cancels its timer', async () => {
    const clock = new VirtualClock();
    const w = new AppliedWaiters(clock);
    const got: string[] = [];
    const a = w.wait(10, 3, 1000).then((ok) => got.push(`10:${ok}`));
    const b = w.wait(5, 3, 1000).then((ok) => got.push(`5:${ok}`));
    w.notify(4);
    await Promise.resolve();
    assert.deepEqual(got, []);
    w.notify(7);
    await b;
    assert.deepEqual(got, ['5:true']);
    w.notify(12);
    await a;
    assert.deepEqual(got, ['5:true', '10:true']);
    assert.equal(clock.pending(), 0, 'no timer left behind');
  });

  it('a waiter whose index is not applied in time resolves false and is forgotten', async () => {
    const clock = new VirtualClock();
    const w = new AppliedWaiters(clock);
    const late = w.wait(9, 1, 500);
    clock.advance(500);
    assert.equal(await late, false);
    w.notify(9); // nothing left to resolve a second time
    assert.equal(clock.pending(), 0);
  });
});
