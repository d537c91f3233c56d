/**
 * The chaos run's checkers, as pure functions over what the run recorded (the run gathers the
 * data: final reads, watchers' events, lease records; these decide). Linearizability is
 * Porcupine's (test/lincheck) and convergence is HashKV, both asked of the cluster directly.
 */
import type { HistoryOp } from '../support/linearizability.ts';
import type { ChaosReport, Fault, Timeline } from './report.ts';
import type { LeaseRecord, SetResult, WatchEvent } from './workloads.ts';

/** Set: every acknowledged add is in the final read, and nothing is there that no one added. */
export function checkSet(sets: Pick<SetResult, 'acked' | 'unknown'>, final: ReadonlySet<string> | undefined): ChaosReport['set'] {
  const seen = final ?? new Set<string>();
  const lost = [...sets.acked].filter((e) => !seen.has(e));
  const unexpected = [...seen].filter((e) => !sets.acked.has(e) && !sets.unknown.has(e));
  return {
    ok: final !== undefined && lost.length === 0 && unexpected.length === 0,
    acked: sets.acked.size,
    unknown: sets.unknown.size,
    final: seen.size,
    lost,
    unexpected,
    recovered: [...sets.unknown].filter((e) => seen.has(e)).length,
  };
}

/**
 * Leases, looked at once every lease no longer kept has had time to expire: no lease renewed in
 * time reported itself expired; a lease kept alive to the end still has its key; one no longer
 * kept (abandoned, revoked, or its keeper gave up) does not. `present` is the final read of the
 * lease keys (undefined: it failed).
 */
export function checkLeases(
  leases: readonly LeaseRecord[],
  keptNow: readonly LeaseRecord[],
  present: ReadonlySet<string> | undefined,
): string[] {
  const problems: string[] = [];
  if (!present) problems.push('could not read the lease keys after healing');
  for (const l of leases) {
    if (l.expiredEarly) problems.push(l.expiredEarly);
    const isKept = keptNow.includes(l);
    if (isKept && l.putAcked && present && !present.has(l.key))
      problems.push(`lease ${l.id} is alive (renewed in time until the end) but its key ${l.key} is gone`);
    if (!isKept && present?.has(l.key))
      problems.push(`lease ${l.id} (${l.fate}) is no longer kept alive and has expired, but its key ${l.key} is still there`);
  }
  return problems;
}

/**
 * Watchers, up to revision `head`: each saw revisions in order without duplicates; all saw the
 * same events; each acknowledged write is there at its revision with its key and value; and no
 * revision from the first seen to the head is missing (every revision is one write here).
 */
export function checkWatchers(events: ReadonlyArray<readonly WatchEvent[]>, history: readonly HistoryOp[], head: number): string[] {
  const problems: string[] = [];
  const acked = history.filter((h) => h.revision > 0 && h.revision <= head);
  const seqs = events.map((es) => es.filter((e) => e.rev <= head));
  seqs.forEach((seq, i) => {
    for (let j = 1; j < seq.length; j++) {
      const a = seq[j - 1] as WatchEvent;
      const b = seq[j] as WatchEvent;
      if (b.rev < a.rev) problems.push(`watcher ${i}: revision ${b.rev} after ${a.rev}`);
      if (b.rev === a.rev && b.key === a.key) problems.push(`watcher ${i}: revision ${b.rev} key ${b.key} delivered twice`);
    }
    if (i > 0) {
      const s0 = seqs[0] as WatchEvent[];
      const same =
        seq.length === s0.length && seq.every((e, k) => e.rev === s0[k]?.rev && e.key === s0[k]?.key && e.value === s0[k]?.value);
      if (!same)
        problems.push(`watcher ${i} saw ${seq.length} events up to revision ${head}, watcher 0 saw ${s0.length} (or different ones)`);
    }
    const byRev = new Map<number, WatchEvent[]>();
    for (const e of seq) byRev.set(e.rev, [...(byRev.get(e.rev) ?? []), e]);
    const missing = acked.filter((h) => !(byRev.get(h.revision) ?? []).some((e) => e.key === h.key && e.value === h.value));
    if (missing.length > 0)
      problems.push(
        `watcher ${i} missed or garbled ${missing.length} acknowledged writes (first: ${missing[0]?.key}=${missing[0]?.value} at revision ${missing[0]?.revision})`,
      );
  });
  const s0 = seqs[0];
  if (s0 && s0.length > 0) {
    const revs = new Set(s0.map((e) => e.rev));
    const first = s0[0]?.rev ?? 1;
    let gaps = 0;
    for (let r = first; r <= head; r++) if (!revs.has(r)) gaps++;
    if (gaps > 0) problems.push(`watcher 0 has ${gaps} revisions missing between ${first} and ${head}`);
  }
  return problems;
}

/** A completed write: when it was invoked and when it returned (ms since the run began). */
export interface WriteDone {
  call: number;
  ret: number;
}

/**
 * Write availability per fault, from the writes that succeeded, filled into each fault:
 *   while on: the longest stretch between the fault's start and its heal in which no write
 *     completed (start to first completion, between completions, last completion to heal);
 *   after heal: from the heal to the completion of the first write invoked after it.
 * Returns the per-kind medians and worsts, and the count of faults per kind.
 */
export function availability(
  faults: Fault[],
  writes: readonly WriteDone[],
): { byKind: ChaosReport['availability']; counts: Record<string, number> } {
  const done = [...writes].sort((a, b) => a.ret - b.ret);
  const longestGap = (from: number, to: number): number => {
    let prev = from;
    let worst = 0;
    for (const w of done) {
      if (w.ret < from) continue;
      if (w.ret > to) break;
      worst = Math.max(worst, w.ret - prev);
      prev = w.ret;
    }
    return Math.round(Math.max(worst, to - prev));
  };
  const firstWriteAfter = (t: number): number | undefined => {
    let best: number | undefined;
    for (const w of done) if (w.call >= t && (best === undefined || w.ret < best)) best = w.ret;
    return best === undefined ? undefined : Math.round(best - t);
  };
  for (const f of faults) {
    f.unavailableWhileOnMs = longestGap(f.at, f.healedAt);
    f.unavailableAfterHealMs = firstWriteAfter(f.healedAt);
  }
  const stats = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return { median: s.length ? (s[Math.floor((s.length - 1) / 2)] as number) : 0, worst: s.at(-1) ?? 0 };
  };
  const byKind: ChaosReport['availability'] = {};
  const counts: Record<string, number> = {};
  for (const k of [...new Set(faults.map((f) => f.kind))].sort()) {
    const fs = faults.filter((f) => f.kind === k);
    counts[k] = fs.length;
    byKind[k] = {
      count: fs.length,
      whileOn: stats(fs.map((f) => f.unavailableWhileOnMs).filter((x): x is number => x !== undefined)),
      afterHeal: stats(fs.map((f) => f.unavailableAfterHealMs).filter((x): x is number => x !== undefined)),
    };
  }
  return { byKind, counts };
}

/** Operations by kind and outcome, and the eight commonest causes of unknown outcomes. */
export function operationCounts(
  history: readonly HistoryOp[],
  sets: Pick<SetResult, 'acked' | 'unknown'>,
  leasesGranted: number,
): { ops: Record<string, number>; unknownCauses: Record<string, number> } {
  const ops: Record<string, number> = {};
  for (const h of history) {
    const k = `${h.op} ${h.unknown ? 'unknown' : h.op === 'cas' && !h.ok ? 'failed' : 'ok'}`;
    ops[k] = (ops[k] ?? 0) + 1;
  }
  const causes: Record<string, number> = {};
  for (const h of history) if (h.error) causes[h.error] = (causes[h.error] ?? 0) + 1;
  ops['set-add ok'] = sets.acked.size;
  ops['set-add unknown'] = sets.unknown.size;
  ops['lease-grant ok'] = leasesGranted;
  return {
    ops,
    unknownCauses: Object.fromEntries(
      Object.entries(causes)
        .sort((a, b) => b[1] - a[1])
        .slice(0, 8),
    ),
  };
}

/** An operation for the timeline: when it was invoked and returned (ms since the run began). */
export interface TimedOp {
  op: string;
  call: number;
  ret: number;
  unknown: boolean;
}

/**
 * The run over time, for the report's plots: per operation kind and bucket (by return time),
 * how many returned known and unknown, and the latency p50 / p99 / max of the known ones (ms);
 * and every stretch of at least `gapMs` in which no write completed (`writes`: the acknowledged
 * ones). Buckets are a whole number of 100 ms, about 400 per run.
 */
export function timeline(ops: readonly TimedOp[], writes: readonly WriteDone[], durationMs: number, gapMs = 1000): Timeline {
  const bucketMs = Math.max(100, Math.ceil(durationMs / 400 / 100) * 100);
  const cells = new Map<string, { op: string; t: number; known: number[]; unknown: number }>();
  for (const o of ops) {
    if (o.ret < 0 || o.ret > durationMs + 60_000) continue;
    const t = Math.floor(o.ret / bucketMs) * bucketMs;
    const key = `${o.op}@${t}`;
    const cell = cells.get(key) ?? { op: o.op, t, known: [], unknown: 0 };
    if (o.unknown) cell.unknown++;
    else cell.known.push(o.ret - o.call);
    cells.set(key, cell);
  }
  const at = (s: number[], p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? 0;
  const points = [...cells.values()]
    .sort((a, b) => a.t - b.t || a.op.localeCompare(b.op))
    .map((c) => {
      const s = c.known.sort((a, b) => a - b);
      const r = (x: number) => Math.round(x * 100) / 100;
      return { op: c.op, t: c.t, ok: s.length, unknown: c.unknown, p50: r(at(s, 0.5)), p99: r(at(s, 0.99)), max: r(s.at(-1) ?? 0) };
    });
  const gaps: Timeline['gaps'] = [];
  let prev = 0;
  for (const w of [...writes].sort((a, b) => a.ret - b.ret)) {
    if (w.ret - prev >= gapMs) gaps.push({ from: Math.round(prev), to: Math.round(w.ret) });
    prev = Math.max(prev, w.ret);
  }
  if (durationMs - prev >= gapMs) gaps.push({ from: Math.round(prev), to: durationMs });
  return { bucketMs, points, gaps };
}
