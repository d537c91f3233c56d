import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type ArchivedRevision,
  type Segment,
  type SegmentRef,
  archiveSpans,
  decodeSegment,
  encodeSegment,
  parseSegmentKey,
  planRestore,
  replay,
  revisionAtTime,
  segmentName,
} from './archive.ts';
import type { Event } from './mvcc/types.ts';
import { StateMachine, type StoreRequest } from './state-machine.ts';

const put = (key: string, value: string, lease = '0'): StoreRequest => ({
  op: 'put',
  req: { key, value, lease, prevKv: false, ignoreValue: false, ignoreLease: false },
});

/** What an archiver sees of a write: its events, as one archived revision. */
function archived(events: Event[], at: number): ArchivedRevision {
  const rev = (events[0] as Event).kv.modRevision;
  return {
    rev,
    at,
    changes: events.map((e) =>
      e.type === 1
        ? { t: 1 as const, k: e.kv.key }
        : { t: 0 as const, k: e.kv.key, v: e.kv.value, c: e.kv.createRevision, n: e.kv.version, l: e.kv.lease },
    ),
  };
}

/** A source cluster's state machine with a base taken at some point and every write after it archived. */
function source() {
  const sm = new StateMachine();
  sm.apply({ op: 'leaseGrant', id: '100', ttl: 30 }, 1);
  for (let i = 0; i < 20; i++) sm.apply(put(`k/${i}`, `v${i}`, i % 5 === 0 ? '100' : '0'), 1);
  const base = sm.state();
  const revisions: ArchivedRevision[] = [];
  const record = (r: StoreRequest, at: number) => {
    const res = sm.apply(r, 1);
    assert.equal(res.error, undefined, res.error?.message);
    if (res.events.length > 0) revisions.push(archived(res.events, at));
  };
  let t = 1_000;
  // Puts over existing keys, new keys on a lease granted after the base, binary bytes, a txn of
  // several keys, a delete of a range, a lease's expiry taking its keys.
  record({ op: 'leaseGrant', id: '200', ttl: 60 }, t);
  for (let i = 0; i < 30; i++) record(put(`k/${i % 25}`, `w${i}\u0000\u00ff`, i % 7 === 0 ? '200' : '0'), (t += 10));
  const req = (key: string, value: string) => ({ key, value, lease: '0', prevKv: false, ignoreValue: false, ignoreLease: false });
  record(
    {
      op: 'txn',
      req: {
        compare: [],
        success: [{ put: req('t/a', 'A') }, { put: req('t/b', 'B') }, { deleteRange: { key: 'k/3', rangeEnd: '', prevKv: false } }],
        failure: [],
      },
    },
    (t += 10),
  );
  record({ op: 'deleteRange', req: { key: 'k/1', rangeEnd: 'k/2', prevKv: false } }, (t += 10));
  record({ op: 'leaseRevoke', id: '100' }, (t += 10));
  record(put('last', 'x'), t + 10);
  return { sm, base, revisions };
}

const seg = (revisions: ArchivedRevision[], leases = [{ id: '200', ttl: 60 }]): Segment => ({ revisions, leases });
const ref = (s: Segment): SegmentRef => parseSegmentKey(`orders/${segmentName(s)}`) as SegmentRef;

describe('point-in-time archive', () => {
  it('a segment round-trips (binary keys and values exactly); its name says its revisions and times; a damaged one is refused, named', () => {
    const { revisions } = source();
    const s = seg(revisions.slice(0, 10));
    const name = segmentName(s);
    assert.match(name, /^wal\/\d{16}-\d{16}-\d+-\d+\.seg$/);
    const r = ref(s);
    assert.deepEqual([r.first, r.last, r.fromMs, r.toMs], [revisions[0]?.rev, revisions[9]?.rev, revisions[0]?.at, revisions[9]?.at]);
    const buf = encodeSegment(s);
    assert.deepEqual(decodeSegment(buf, r.key), s);
    const bad = Buffer.from(buf);
    bad[bad.length - 40] = (bad[bad.length - 40] as number) ^ 1;
    assert.throws(
      () => decodeSegment(bad, r.key),
      (e: Error & { code?: string }) => e.code === 'STORE_ERR_ARCHIVE_DAMAGED' && e.message.includes(r.key) && /sha256/.test(e.message),
    );
    assert.throws(() => decodeSegment(buf.subarray(0, buf.length - 5), r.key), /STORE_ERR_ARCHIVE_DAMAGED|sha256/);
    // Under another segment's name: the revisions do not match the name.
    const other = ref(seg(revisions.slice(10, 12)));
    assert.throws(() => decodeSegment(buf, other.key), /does not hold the revisions its name says/);
  });

  it('replaying the archive onto the base reproduces the source at every revision: same keys, revisions and HashKV', () => {
    const { sm, base, revisions } = source();
    for (const upTo of [revisions[0]!.rev, revisions[17]!.rev, sm.mvcc.revision]) {
      const restored = new StateMachine();
      restored.restore(structuredClone(base));
      // Three segments, the middle two overlapping (two archivers during a rolling update).
      const segs = [seg(revisions.slice(0, 12)), seg(revisions.slice(8, 25)), seg(revisions.slice(25))];
      for (const s of segs) replay(restored, s, segmentName(s), upTo);
      assert.equal(restored.mvcc.revision, upTo);
      assert.deepEqual(restored.mvcc.hashKV(upTo), sm.mvcc.hashKV(upTo));
    }
    const restored = new StateMachine();
    restored.restore(structuredClone(base));
    replay(restored, seg(revisions), 'all', Infinity);
    assert.deepEqual(restored.state().mvcc, sm.state().mvcc);
    // The lease granted after the base exists with its keys; the revoked one has none left.
    assert.equal(restored.leases.get('200')?.ttl, 60);
    assert.deepEqual([...(restored.leases.get('200')?.keys ?? [])].sort(), [...(sm.leases.get('200')?.keys ?? [])].sort());
    assert.equal(restored.leases.get('100')?.keys.size ?? 0, 0);
  });

  it('a segment that does not continue the base (a changed record, a missing revision) is refused; nothing past it applies', () => {
    const { base, revisions } = source();
    const tampered = revisions.map((r) => ({ ...r, changes: r.changes.map((c) => ({ ...c })) }));
    (tampered[3]!.changes[0] as { n?: number }).n = 99;
    const sm = new StateMachine();
    sm.restore(structuredClone(base));
    assert.throws(
      () => replay(sm, seg(tampered), 'wal/x.seg', Infinity),
      (e: Error & { code?: string }) => e.code === 'STORE_ERR_ARCHIVE_DAMAGED' && /revision \d+ gave a different result/.test(e.message),
    );
    const gap = new StateMachine();
    gap.restore(structuredClone(base));
    assert.throws(
      () => replay(gap, seg(revisions.slice(2)), 'wal/y.seg', Infinity),
      (e: Error & { code?: string }) => e.code === 'STORE_ERR_ARCHIVE_GAP',
    );
    assert.equal(gap.mvcc.revision, base.mvcc.rev, 'nothing applied');
  });

  it('plans from the newest backup at or below the target, through contiguous segments; refuses gaps and targets past the archive, naming the window', () => {
    const r = (first: number, last: number): SegmentRef => ({
      key: `p/wal/${first}-${last}.seg`,
      first,
      last,
      fromMs: first * 10,
      toMs: last * 10,
    });
    const segments = [r(101, 150), r(151, 200), r(190, 260), r(301, 400)];
    const backups = [
      { name: 'a', revision: 100, finishedMs: 1 },
      { name: 'b', revision: 180, finishedMs: 2 },
      { name: 'c', revision: 320, finishedMs: 3 },
    ];
    const p = planRestore(backups, segments, 255);
    assert.equal(p.base, 'b');
    assert.deepEqual(
      p.segments.map((s) => s.first),
      [151, 190],
    );
    assert.deepEqual(planRestore(backups, segments, 180).segments, [], 'a backup at the target needs no segment');
    assert.equal(planRestore(backups, segments, 350).base, 'c', 'after the gap: from the backup taken since');
    assert.deepEqual(
      archiveSpans(segments).map((s) => [s.first, s.last]),
      [
        [101, 260],
        [301, 400],
      ],
    );
    assert.throws(
      () => planRestore(backups.slice(0, 2), segments, 300),
      (e: Error & { code?: string }) =>
        e.code === 'STORE_ERR_ARCHIVE_GAP' &&
        /revisions 261\.\.300 are not in the archive/.test(e.message) &&
        /101\.\.260, 301\.\.400/.test(e.message),
    );
    assert.throws(
      () => planRestore(backups, segments, 450, { revision: 400, at: 5_000 }),
      (e: Error & { code?: string }) => e.code === 'STORE_ERR_ARCHIVE_NOT_COVERED' && /archive reaches revision 400/.test(e.message),
    );
    assert.throws(
      () => planRestore(backups, segments, 50),
      (e: Error & { code?: string }) => e.code === 'STORE_ERR_ARCHIVE_NOT_COVERED' && /oldest is a at revision 100/.test(e.message),
    );
  });

  it('a time names the last revision received at or before it', () => {
    const revisions: ArchivedRevision[] = [
      { rev: 5, at: 100, changes: [] },
      { rev: 6, at: 200, changes: [] },
      { rev: 7, at: 300, changes: [] },
    ];
    assert.equal(revisionAtTime([seg(revisions)], 250), 6);
    assert.equal(revisionAtTime([seg(revisions)], 300), 7);
    assert.equal(revisionAtTime([seg(revisions)], 50), 0);
  });
});
