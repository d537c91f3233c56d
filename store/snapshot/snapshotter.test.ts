import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { encodeState } from '../format/state-codec.ts';
import { StateMachine } from '../state-machine.ts';
import type { Snapshot } from '../raft/types.ts';
import { Snapshotter } from './snapshotter.ts';

const dir = () => mkdtempSync(join(tmpdir(), 'ballast-snap-'));

function sample(index: number, keys = 2000): Snapshot {
  const sm = new StateMachine();
  for (let i = 0; i < keys; i++)
    sm.apply(
      { op: 'put', req: { key: `k${i}`, value: 'v'.repeat(i % 300), lease: '0', prevKv: false, ignoreValue: false, ignoreLease: false } },
      2,
      i + 1,
    );
  return { meta: { index, term: 2, conf: { voters: ['a', 'b'], learners: [] } }, data: encodeState(sm.view(), 2) };
}

describe('snapshot files written in the background (saveAsync)', () => {
  it('writes the same bytes as save(), and loadNewest reads them', async () => {
    const snap = sample(100);
    const a = dir();
    const b = dir();
    new Snapshotter(a).save(snap);
    let pauses = 0;
    const saved = await new Snapshotter(b).saveAsync(snap, { pause: async () => void pauses++, proceed: () => true });
    assert.equal(saved, true);
    const [fa] = readdirSync(a);
    assert.deepEqual(readdirSync(b), [fa]);
    assert.deepEqual(readFileSync(join(b, fa as string)), readFileSync(join(a, fa as string)));
    assert.ok(pauses >= 1);
    const back = new Snapshotter(b).loadNewest();
    assert.deepEqual(back?.meta, snap.meta);
    assert.deepEqual(Buffer.from(back?.data ?? []), Buffer.from(snap.data));
  });

  it('a save the member no longer wants (stopping, or a newer snapshot came) leaves no file and keeps the older one', async () => {
    const d = dir();
    const s = new Snapshotter(d);
    assert.equal(await s.saveAsync(sample(100, 10), { pause: async () => undefined, proceed: () => true }), true);
    assert.equal(await s.saveAsync(sample(200, 10), { pause: async () => undefined, proceed: () => false }), false);
    assert.deepEqual(readdirSync(d), ['0000000000000002-0000000000000064.snap']);
    assert.equal(s.loadNewest()?.meta.index, 100);
  });

  it("a crash's half-written temporary file is never read, and removed when the member starts", () => {
    const d = dir();
    new Snapshotter(d).save(sample(100, 10));
    writeFileSync(join(d, '0000000000000002-00000000000000c8.snap.tmp'), 'half a snapsh');
    const s = new Snapshotter(d);
    assert.deepEqual(readdirSync(d), ['0000000000000002-0000000000000064.snap']);
    assert.equal(s.loadNewest()?.meta.index, 100);
  });
});
