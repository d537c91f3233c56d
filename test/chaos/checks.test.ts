// The chaos checkers on made-up records: each finds the fault it exists for, and passes a clean run.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { HistoryOp } from '../support/linearizability.ts';
import { availability, checkLeases, checkSet, checkWatchers, timeline } from './checks.ts';
import type { Fault } from './report.ts';
import type { LeaseRecord, WatchEvent } from './workloads.ts';

const ev = (rev: number, key = `k${rev}`, value = `v${rev}`): WatchEvent => ({ rev, key, value, type: 0 });
const put = (rev: number, key = `k${rev}`, value = `v${rev}`): HistoryOp => ({
  client: 0,
  key,
  op: 'put',
  value,
  old: '',
  call: 0,
  return: 0,
  unknown: false,
  ok: true,
  exists: false,
  result: '',
  revision: rev,
});

describe('chaos checkers', () => {
  it('set: lost and unexpected elements; an unknown add may or may not be there; no final read fails', () => {
    const acked = new Set(['a', 'b']);
    const unknown = new Set(['u']);
    assert.deepEqual(checkSet({ acked, unknown }, new Set(['a', 'b', 'u'])), {
      ok: true,
      acked: 2,
      unknown: 1,
      final: 3,
      lost: [],
      unexpected: [],
      recovered: 1,
    });
    const bad = checkSet({ acked, unknown }, new Set(['a', 'x']));
    assert.equal(bad.ok, false);
    assert.deepEqual([bad.lost, bad.unexpected], [['b'], ['x']]);
    assert.equal(checkSet({ acked, unknown }, undefined).ok, false);
  });

  it('watch: clean when every watcher saw every revision; finds gaps, duplicates, disagreement and a missing acknowledged write', () => {
    const all = [ev(1), ev(2), ev(3), ev(4)];
    const history = [put(2), put(4)];
    assert.deepEqual(checkWatchers([all, all], history, 4), []);
    assert.match(checkWatchers([[ev(1), ev(2), ev(4)]], [], 4).join('\n'), /watcher 0 has 1 revisions missing between 1 and 4/);
    assert.match(checkWatchers([[ev(1), ev(2), ev(2), ev(3), ev(4)]], [], 4).join('\n'), /revision 2 key k2 delivered twice/);
    assert.match(checkWatchers([[ev(1), ev(3), ev(2), ev(4)]], [], 4).join('\n'), /revision 2 after 3/);
    assert.match(
      checkWatchers([all, [ev(1), ev(2), ev(3, 'k3', 'other'), ev(4)]], [], 4).join('\n'),
      /watcher 1 saw 4 events up to revision 4, watcher 0 saw 4 \(or different ones\)/,
    );
    assert.match(
      checkWatchers([all], [put(4, 'k4', 'acked')], 4).join('\n'),
      /watcher 0 missed or garbled 1 acknowledged writes \(first: k4=acked at revision 4\)/,
    );
    assert.deepEqual(checkWatchers([all], [put(9)], 4), [], 'writes after the head are not judged');
  });

  it('leases: an early expiry, a kept lease whose key is gone, an expired lease whose key remains', () => {
    const lease = (id: string, fate: LeaseRecord['fate'], extra: Partial<LeaseRecord> = {}): LeaseRecord => ({
      id,
      key: `lease/${id}`,
      ttl: 3,
      fate,
      grantSentAt: 0,
      putAcked: true,
      kept: fate === 'keep',
      lastRenewSentAt: 0,
      alive: true,
      ...extra,
    });
    const kept = lease('1', 'keep');
    const dropped = lease('2', 'abandon');
    assert.deepEqual(checkLeases([kept, dropped], [kept], new Set(['lease/1'])), []);
    assert.match(
      checkLeases([kept, dropped], [kept], new Set(['lease/2'])).join('\n'),
      /lease 1 is alive .* its key lease\/1 is gone\n.*lease 2 \(abandon\) .* still there/,
    );
    assert.deepEqual(checkLeases([lease('3', 'keep', { expiredEarly: 'lease 3 expired while renewed' })], [], new Set()), [
      'lease 3 expired while renewed',
    ]);
    assert.deepEqual(checkLeases([], [], undefined), ['could not read the lease keys after healing']);
  });

  it('availability: the longest stretch without a completed write while on, and the first write after the heal', () => {
    const faults: Fault[] = [
      { kind: 'kill-leader', target: 'm1', at: 1000, healedAt: 5000 },
      { kind: 'kill-leader', target: 'm2', at: 10_000, healedAt: 11_000 },
    ];
    const writes = [
      { call: 900, ret: 1100 },
      { call: 1100, ret: 3600 },
      { call: 3600, ret: 3700 },
      { call: 5200, ret: 5300 },
      { call: 9000, ret: 12_500 },
    ];
    const { byKind, counts } = availability(faults, writes);
    assert.deepEqual([faults[0]!.unavailableWhileOnMs, faults[0]!.unavailableAfterHealMs], [2500, 300]);
    assert.deepEqual(
      [faults[1]!.unavailableWhileOnMs, faults[1]!.unavailableAfterHealMs],
      [1000, undefined],
      'no write completed while on; none invoked after the heal',
    );
    assert.deepEqual(counts, { 'kill-leader': 2 });
    assert.deepEqual(byKind['kill-leader'], { count: 2, whileOn: { median: 1000, worst: 2500 }, afterHeal: { median: 300, worst: 300 } });
  });

  it('timeline: buckets by return time with known and unknown counts and latency percentiles; gaps of a second with no write', () => {
    const ops = [
      { op: 'put', call: 0, ret: 2, unknown: false },
      { op: 'put', call: 10, ret: 14, unknown: false },
      { op: 'put', call: 20, ret: 50, unknown: false },
      { op: 'get', call: 30, ret: 31, unknown: false },
      { op: 'put', call: 40, ret: 5000, unknown: true },
      { op: 'put', call: 5200, ret: 5210, unknown: false },
    ];
    const writes = ops.filter((o) => o.op === 'put' && !o.unknown);
    const tl = timeline(ops, writes, 10_000);
    assert.equal(tl.bucketMs, 100);
    assert.deepEqual(
      tl.points.filter((p) => p.t === 0),
      [
        { op: 'get', t: 0, ok: 1, unknown: 0, p50: 1, p99: 1, max: 1 },
        { op: 'put', t: 0, ok: 3, unknown: 0, p50: 4, p99: 30, max: 30 },
      ],
    );
    assert.deepEqual(
      tl.points.find((p) => p.t === 5000),
      { op: 'put', t: 5000, ok: 0, unknown: 1, p50: 0, p99: 0, max: 0 },
    );
    // No write from 50 ms until 5,210 ms, and none after it to the end of the run.
    assert.deepEqual(tl.gaps, [
      { from: 50, to: 5210 },
      { from: 5210, to: 10_000 },
    ]);
    // Long runs: about 400 buckets, a whole number of 100 ms each.
    assert.equal(timeline([], [], 30 * 60_000).bucketMs, 4500);
  });
});
