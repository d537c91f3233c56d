import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isBallastError } from '../../lib/errors.ts';
import { MvccStore } from './store.ts';
import { CompareResult, CompareTarget, type RangeRequest, SortOrder, SortTarget, emptyRange } from './types.ts';

const put = (s: MvccStore, key: string, value: string, o: Partial<{ prevKv: boolean; ignoreValue: boolean; lease: string }> = {}) =>
  s.put({ key, value, lease: o.lease ?? '0', prevKv: o.prevKv ?? false, ignoreValue: o.ignoreValue ?? false, ignoreLease: false });
const range = (s: MvccStore, key: string, o: Partial<RangeRequest> = {}) => s.range({ ...emptyRange, key, ...o });
const keys = (r: { kvs: Array<{ key: string }> }) => r.kvs.map((kv) => kv.key);

describe('mvcc: revisions', () => {
  it('one global revision; per key create_revision, mod_revision and version', () => {
    const s = new MvccStore();
    assert.equal(s.revision, 1);
    put(s, 'a', '1');
    put(s, 'b', '1');
    put(s, 'a', '2');
    const [a] = range(s, 'a').kvs;
    assert.deepEqual(a, { key: 'a', createRevision: 2, modRevision: 4, version: 2, value: '2', lease: '0' });
    assert.equal(s.revision, 4);
    s.deleteRange({ key: 'a', rangeEnd: '', prevKv: false });
    put(s, 'a', '3');
    assert.deepEqual(
      range(s, 'a').kvs[0],
      { key: 'a', createRevision: 6, modRevision: 6, version: 1, value: '3', lease: '0' },
      'a key recreated after delete starts over',
    );
  });

  it('a delete of nothing does not consume a revision', () => {
    const s = new MvccStore();
    put(s, 'a', '1');
    const r = s.deleteRange({ key: 'zzz', rangeEnd: '', prevKv: false });
    assert.equal(r.result.deleted, 0);
    assert.equal(s.revision, 2);
  });

  it("reads at a past revision until compacted, then fails with etcd's message", () => {
    const s = new MvccStore();
    put(s, 'k', 'v1'); // rev 2
    put(s, 'k', 'v2'); // rev 3
    s.deleteRange({ key: 'k', rangeEnd: '', prevKv: false }); // rev 4
    assert.equal(range(s, 'k', { revision: 2 }).kvs[0]?.value, 'v1');
    assert.equal(range(s, 'k', { revision: 3 }).kvs[0]?.value, 'v2');
    assert.equal(range(s, 'k').kvs.length, 0);
    s.compact(3);
    assert.equal(range(s, 'k', { revision: 3 }).kvs[0]?.value, 'v2', 'the compaction revision itself stays readable');
    assert.throws(
      () => range(s, 'k', { revision: 2 }),
      (e: unknown) =>
        isBallastError(e, 'STORE_ERR_COMPACTED') && (e as Error).message === 'etcdserver: mvcc: required revision has been compacted',
    );
    assert.throws(
      () => range(s, 'k', { revision: 99 }),
      (e: unknown) => isBallastError(e, 'STORE_ERR_FUTURE_REV'),
    );
    assert.throws(
      () => s.compact(3),
      (e: unknown) => isBallastError(e, 'STORE_ERR_COMPACTED'),
    );
  });

  it('compaction releases the history it no longer needs', () => {
    const s = new MvccStore();
    for (let i = 0; i < 100; i++) put(s, 'k', 'x'.repeat(100));
    for (let i = 0; i < 10; i++) put(s, `d${i}`, 'y');
    s.deleteRange({ key: 'd', rangeEnd: 'e', prevKv: false });
    const before = s.bytes;
    s.compact(s.revision);
    assert.ok(s.bytes < before / 50, `bytes ${before} -> ${s.bytes}`);
    assert.equal(s.keyCount, 1, 'deleted keys are gone entirely');
    assert.equal(range(s, 'k').kvs[0]?.version, 100);
  });
});

describe('mvcc: range forms', () => {
  const s = new MvccStore();
  for (const k of ['a', 'ab', 'abc', 'b', 'c\u00ff', 'd']) put(s, k, `v-${k}`);

  it('single key, [key, end), prefix, from-key and all keys', () => {
    assert.deepEqual(keys(range(s, 'ab')), ['ab']);
    assert.deepEqual(keys(range(s, 'a', { rangeEnd: 'b' })), ['a', 'ab', 'abc']);
    assert.deepEqual(keys(range(s, 'b', { rangeEnd: '\0' })), ['b', 'c\u00ff', 'd']);
    assert.deepEqual(keys(range(s, '\0', { rangeEnd: '\0' })), ['a', 'ab', 'abc', 'b', 'c\u00ff', 'd']);
  });

  it('byte order: 0xff sorts after ASCII', () => {
    assert.deepEqual(keys(range(s, 'c', { rangeEnd: 'd' })), ['c\u00ff']);
  });

  it('limit keeps count of the whole range and says there is more', () => {
    const r = range(s, 'a', { rangeEnd: '\0', limit: 2 });
    assert.deepEqual(keys(r), ['a', 'ab']);
    assert.equal(r.more, true);
    assert.equal(r.count, 6);
  });

  it('sorts by any target, either way, then limits', () => {
    assert.deepEqual(keys(range(s, 'a', { rangeEnd: '\0', sortOrder: SortOrder.descend, sortTarget: SortTarget.key, limit: 2 })), [
      'd',
      'c\u00ff',
    ]);
    assert.deepEqual(keys(range(s, 'a', { rangeEnd: 'b', sortOrder: SortOrder.descend, sortTarget: SortTarget.create })), [
      'abc',
      'ab',
      'a',
    ]);
  });

  it('keys_only and count_only', () => {
    assert.equal(range(s, 'a', { rangeEnd: 'b', keysOnly: true }).kvs[0]?.value, '');
    const c = range(s, 'a', { rangeEnd: 'b', countOnly: true });
    assert.deepEqual([c.kvs.length, c.count], [0, 3]);
  });

  it('min/max mod and create revision filters', () => {
    assert.deepEqual(keys(range(s, 'a', { rangeEnd: '\0', minModRevision: 5 })), ['b', 'c\u00ff', 'd']);
    assert.deepEqual(keys(range(s, 'a', { rangeEnd: '\0', maxCreateRevision: 3 })), ['a', 'ab']);
  });
});

describe('mvcc: put and delete options', () => {
  it('prev_kv on put and delete; ignore_value keeps the value; ignore_value on a missing key fails', () => {
    const s = new MvccStore();
    put(s, 'k', 'old');
    assert.equal(put(s, 'k', 'new', { prevKv: true }).result.prevKv?.value, 'old');
    put(s, 'k', '', { ignoreValue: true });
    assert.equal(range(s, 'k').kvs[0]?.value, 'new');
    assert.throws(
      () => put(s, 'nope', '', { ignoreValue: true }),
      (e: unknown) => isBallastError(e, 'STORE_ERR_KEY_NOT_FOUND'),
    );
    const d = s.deleteRange({ key: 'k', rangeEnd: '', prevKv: true });
    assert.equal(d.result.prevKvs[0]?.value, 'new');
  });

  it('writes produce events in order with prev kvs', () => {
    const s = new MvccStore();
    put(s, 'a', '1');
    const r = s.txn({
      compare: [],
      success: [
        { put: { key: 'a', value: '2', lease: '0', prevKv: false, ignoreValue: false, ignoreLease: false } },
        { deleteRange: { key: 'a', rangeEnd: '', prevKv: false } },
      ],
      failure: [],
    });
    assert.deepEqual(
      r.events.map((e) => [e.type, e.kv.modRevision, e.prevKv?.value]),
      [
        [0, 3, '1'],
        [1, 3, '2'],
      ],
    );
  });
});

describe('mvcc: transactions', () => {
  const cmp = (key: string, target: number, result: number, operand: number | string) => ({ key, rangeEnd: '', target, result, operand });
  const putOp = (key: string, value: string) => ({
    put: { key, value, lease: '0', prevKv: false, ignoreValue: false, ignoreLease: false },
  });

  it('compare-and-set on value, version, create, mod and lease with =, !=, <, >', () => {
    const s = new MvccStore();
    put(s, 'k', 'v1');
    const ok = (c: ReturnType<typeof cmp>) => s.txn({ compare: [c], success: [], failure: [] }).result.succeeded;
    assert.ok(ok(cmp('k', CompareTarget.value, CompareResult.equal, 'v1')));
    assert.ok(ok(cmp('k', CompareTarget.value, CompareResult.notEqual, 'v2')));
    assert.ok(ok(cmp('k', CompareTarget.value, CompareResult.less, 'v2')));
    assert.ok(ok(cmp('k', CompareTarget.version, CompareResult.equal, 1)));
    assert.ok(ok(cmp('k', CompareTarget.create, CompareResult.greater, 1)));
    assert.ok(ok(cmp('k', CompareTarget.mod, CompareResult.equal, 2)));
    assert.ok(ok(cmp('k', CompareTarget.lease, CompareResult.equal, '0')));
    assert.ok(ok(cmp('missing', CompareTarget.version, CompareResult.equal, 0)), 'a missing key has version 0');
    assert.ok(ok(cmp('missing', CompareTarget.create, CompareResult.equal, 0)));
    assert.ok(!ok(cmp('missing', CompareTarget.value, CompareResult.equal, '')), 'a missing key has no value to compare');
  });

  it('runs the success or failure branch, atomically at one revision, reading its own writes', () => {
    const s = new MvccStore();
    const r = s.txn({
      compare: [cmp('lock', CompareTarget.version, CompareResult.equal, 0)],
      success: [putOp('lock', 'me'), putOp('data', 'x'), { range: { ...emptyRange, key: 'lock' } }],
      failure: [{ range: { ...emptyRange, key: 'lock' } }],
    });
    assert.equal(r.result.succeeded, true);
    assert.equal(r.revision, 2);
    const read = r.result.responses[2] as { range: { kvs: Array<{ value: string }> } };
    assert.equal(read.range.kvs[0]?.value, 'me', 'the txn read sees its own put');
    assert.equal(range(s, 'data').kvs[0]?.modRevision, 2);
    const again = s.txn({
      compare: [cmp('lock', CompareTarget.version, CompareResult.equal, 0)],
      success: [putOp('lock', 'you')],
      failure: [{ range: { ...emptyRange, key: 'lock' } }],
    });
    assert.equal(again.result.succeeded, false);
    assert.equal(s.revision, 2, 'a read-only branch does not consume a revision');
  });

  it('nested transactions', () => {
    const s = new MvccStore();
    const r = s.txn({
      compare: [],
      success: [
        { txn: { compare: [cmp('x', CompareTarget.version, CompareResult.equal, 0)], success: [putOp('x', 'inner')], failure: [] } },
      ],
      failure: [],
    });
    assert.equal((r.result.responses[0] as { txn: { succeeded: boolean } }).txn.succeeded, true);
    assert.equal(range(s, 'x').kvs[0]?.value, 'inner');
  });

  it('compares across a range: every key must match', () => {
    const s = new MvccStore();
    put(s, 'p/1', 'a');
    put(s, 'p/2', 'a');
    const ok = s.txn({
      compare: [{ key: 'p/', rangeEnd: 'p0', target: CompareTarget.value, result: CompareResult.equal, operand: 'a' }],
      success: [],
      failure: [],
    });
    assert.ok(ok.result.succeeded);
    put(s, 'p/3', 'b');
    assert.ok(
      !s.txn({
        compare: [{ key: 'p/', rangeEnd: 'p0', target: CompareTarget.value, result: CompareResult.equal, operand: 'a' }],
        success: [],
        failure: [],
      }).result.succeeded,
    );
  });
});

describe('mvcc: snapshots and hashes', () => {
  it('state round-trips and HashKV matches on identical histories, differs otherwise', () => {
    const a = new MvccStore();
    for (let i = 0; i < 50; i++) put(a, `k${i % 7}`, `v${i}`);
    a.compact(20);
    const b = MvccStore.fromState(structuredClone(a.state()));
    assert.deepEqual(range(b, '\0', { rangeEnd: '\0' }), range(a, '\0', { rangeEnd: '\0' }));
    assert.equal(b.hashKV(0).hash, a.hashKV(0).hash);
    assert.equal(b.bytes, a.bytes);
    put(b, 'k0', 'different');
    assert.notEqual(b.hashKV(0).hash, a.hashKV(0).hash);
    assert.equal(b.hashKV(a.revision).hash, a.hashKV(a.revision).hash, 'hash at a revision ignores later writes');
  });

  it('HashKV is the same function members of earlier versions compute (FNV-1a over each record, char by char): binary values, short and over 64 KiB', () => {
    const a = new MvccStore();
    const bytes = (n: number, seed: number) => Array.from({ length: n }, (_, i) => String.fromCharCode((i * 131 + seed) & 0xff)).join('');
    for (let i = 0; i < 40; i++) put(a, `k${i % 9}\u00ff`, bytes([0, 5, 63, 64, 65, 1000, 70_000, 200_000][i % 8] as number, i));
    a.deleteRange({ key: 'k1\u00ff', rangeEnd: '', prevKv: false });
    // The reference: how HashKV was computed before it was made faster (records as the state has them).
    let h = 0x811c9dc5;
    const mix = (str: string): void => {
      for (let i = 0; i < str.length; i++) h = Math.imul(h ^ str.charCodeAt(i), 0x01000193) >>> 0;
    };
    for (const [key, recs] of a.state().keys) {
      for (const r of recs) {
        mix(key);
        mix(`${r.mod}.${r.sub}.${r.create}.${r.version}.${r.lease}.${r.tomb ? 1 : 0}`);
        mix(r.value);
      }
    }
    assert.equal(a.hashKV(0).hash, h >>> 0);
  });

  it('hashKVAsync yields between slices and hashes what hashKV does; writes made meanwhile are past its revision, a compaction meanwhile is not seen', async () => {
    const a = new MvccStore();
    for (let i = 0; i < 300; i++) put(a, `k${i % 40}`, `value ${i} `.repeat(50));
    const rev = a.revision;
    const want = a.hashKV(rev);
    // Small slices: it yields many times; each yield, a write lands.
    const p = a.hashKVAsync(0, 1024);
    const writer = setImmediate(() => put(a, 'k1', 'during'));
    assert.deepEqual(await p, want);
    clearImmediate(writer);
    assert.ok(a.revision >= rev);
    // A compaction between slices changes nothing it reads: the hash and compact revision as called.
    const b = MvccStore.fromState(structuredClone(a.state()));
    const before = b.hashKV(b.revision);
    const q = b.hashKVAsync(0, 512);
    setImmediate(() => b.compact(100));
    assert.deepEqual(await q, before);
    assert.equal(before.compactRevision, 0);
    assert.equal(b.compactRevision, 100);
    assert.notEqual(b.hashKV(b.revision).hash, before.hash, 'the compaction did change the history');
  });
});

describe('mvcc: view (what a background snapshot reads)', () => {
  const read = (v: ReturnType<MvccStore['view']>) => ({
    rev: v.rev,
    compactRev: v.compactRev,
    keys: Array.from(v.keys, ([k, recs]) => [k, recs.map((r) => ({ ...r }))]),
  });

  it('stays as the key space was while puts, deletes, compaction and new keys change the store', () => {
    const s = new MvccStore();
    for (let i = 0; i < 500; i++) put(s, `k${i % 200}`, `v${i}`);
    s.deleteRange({ key: 'k10', rangeEnd: 'k19', prevKv: false });
    const before = s.state();
    const view = s.view();
    assert.deepEqual(read(view), before, 'the view reads as state() did');
    // Writes of every kind after the view was taken:
    for (let i = 0; i < 300; i++) put(s, `k${i % 250}`, `w${i}`); // overwrite, recreate deleted, new keys
    s.deleteRange({ key: 'k0', rangeEnd: 'k5', prevKv: false });
    s.compact(s.revision - 1); // drops history the view holds, and whole keys
    put(s, 'k100', 'after compaction');
    assert.notDeepEqual(s.state(), before);
    assert.deepEqual(read(view), before, 'unchanged by the writes, and readable again');
  });

  it('reads as a copy of state(): encoding the view and the copy gives the same bytes', () => {
    const s = new MvccStore();
    for (let i = 0; i < 50; i++) put(s, `key/${i % 7}`, 'x'.repeat(i));
    const st = s.state();
    const v = s.view();
    put(s, 'key/1', 'later');
    assert.deepEqual(read(v), st);
  });
});
