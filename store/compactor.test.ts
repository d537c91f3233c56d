import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VirtualClock } from '../lib/clock.ts';
import { Compactor, type CompactorTarget } from './compactor.ts';

function target(): CompactorTarget & { compacted: number[]; revision: number; isLeader: boolean } {
  const t = {
    isLeader: true,
    revision: 1,
    compactRevision: 0,
    compacted: [] as number[],
    async compact(rev: number) {
      t.compacted.push(rev);
      t.compactRevision = rev;
    },
  };
  return t;
}

describe('Compactor (virtual time)', () => {
  it('periodic: compacts to the revision current one retention ago', async () => {
    const clock = new VirtualClock();
    const t = target();
    const c = new Compactor('periodic', 60_000, clock, t);
    assert.equal(c.interval, 6000);
    c.start();
    for (let i = 0; i < 10; i++) {
      t.revision += 100;
      await clock.advanceAsync(6000);
    }
    assert.deepEqual(t.compacted, [1], 'after 60 s, the revision current 60 s earlier (at start)');
    t.revision += 100;
    await clock.advanceAsync(6000);
    assert.deepEqual(t.compacted, [1, 101], 'then the one seen at 6 s');
    c.stop();
  });

  it('revision: keeps the last N revisions; only the leader compacts', async () => {
    const clock = new VirtualClock();
    const t = target();
    const c = new Compactor('revision', 1000, clock, t);
    c.start();
    t.revision = 5000;
    t.isLeader = false;
    await clock.advanceAsync(5000);
    assert.deepEqual(t.compacted, []);
    t.isLeader = true;
    await clock.advanceAsync(5000);
    assert.deepEqual(t.compacted, [4000]);
    await clock.advanceAsync(5000);
    assert.deepEqual(t.compacted, [4000], 'nothing new to compact');
    c.stop();
  });
});
