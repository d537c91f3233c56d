/**
 * The chaos run's report: what it holds, report.json, report.md and report.html (plots over time,
 * as Jepsen draws them: each operation's latency with the faults shaded by kind, throughput and
 * unknown outcomes, and the stretches with no write completing), and what a failure keeps.
 */
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as Plot from '@observablehq/plot';
import { figure, page } from '../../bench/plots.ts';
import type { FaultKind } from './nemesis.ts';

export interface Fault {
  kind: FaultKind;
  target: string;
  /** ms since the run began (monotonic). */
  at: number;
  healedAt: number;
  /** What happened, when it is worth saying (skipped, alarm raised after 900 ms, ...). */
  note?: string;
  /** The longest stretch with no write completing while the fault was on; from the heal to the first write after it (ms). */
  unavailableWhileOnMs?: number;
  unavailableAfterHealMs?: number;
}

/** The run over time (test/chaos/checks.ts `timeline`); ms since the run began. */
export interface Timeline {
  bucketMs: number;
  points: Array<{ op: string; t: number; ok: number; unknown: number; p50: number; p99: number; max: number }>;
  /** Stretches of at least a second with no write completing. */
  gaps: Array<{ from: number; to: number }>;
}

export interface ChaosReport {
  target: 'ballast' | 'etcd';
  seed: number;
  durationMs: number;
  members: string[];
  operations: Record<string, number>;
  /** Why operations ended unknown, most common first. */
  unknownCauses: Record<string, number>;
  faults: Fault[];
  faultsByKind: Record<string, number>;
  availability: Record<string, { count: number; whileOn: { median: number; worst: number }; afterHeal: { median: number; worst: number } }>;
  linearizable: boolean;
  lincheck: string;
  set: { ok: boolean; acked: number; unknown: number; final: number; lost: string[]; unexpected: string[]; recovered: number };
  watch: { ok: boolean; watchers: number; revisions: number; problems: string[] };
  lease: { ok: boolean; granted: number; keptLive: number; gone: number; problems: string[] };
  hashKV: { ok: boolean; revision: number; hashes: Record<string, number> };
  /** Empty when the cluster was healthy after the faults healed; otherwise why not. */
  unhealthyAfterHeal: string;
  ok: boolean;
  /** Absent from reports written before the plots. */
  timeline?: Timeline;
}

/** report.json, report.md, report.html, and on failure Porcupine's HTML and the members' logs. */
export function writeReport(r: ChaosReport, dir: string, clusterDir: string, html: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'report.json'), `${JSON.stringify(r, null, 2)}\n`);
  writeFileSync(join(dir, 'report.md'), summarize(r));
  writeFileSync(join(dir, 'report.html'), chaosPage(r));
  if (!r.ok) {
    mkdirSync(join(dir, 'logs'), { recursive: true });
    for (const m of r.members) {
      const name = m.split(' ')[0] as string;
      const log = join(clusterDir, `${name}.log`);
      if (existsSync(log)) copyFileSync(log, join(dir, 'logs', `${name}.log`));
    }
    if (existsSync(html)) copyFileSync(html, join(dir, 'porcupine.html'));
  }
}

export function summarize(r: ChaosReport): string {
  const v = (ok: boolean) => (ok ? 'ok' : '**FAILED**');
  const lines = [
    `# Chaos run against ${r.target === 'etcd' ? "Debian's etcd" : 'ballast store'}: ${r.ok ? 'all checkers passed' : 'FAILED'}`,
    '',
    `Seed ${r.seed}, ${Math.round(r.durationMs / 1000)} s of traffic, ${r.faults.length} faults; members ${r.members.join(', ')}.`,
    '',
    '| checker | verdict | detail |',
    '|---|---|---|',
    `| linearizability (Porcupine, per key) | ${v(r.linearizable)} | ${r.lincheck.split('\n').slice(-1)[0] ?? ''} |`,
    `| set (no acknowledged add lost) | ${v(r.set.ok)} | ${r.set.acked} acknowledged, ${r.set.unknown} unknown (${r.set.recovered} of them present), ${r.set.final} in the final read, lost ${r.set.lost.length}, unexpected ${r.set.unexpected.length} |`,
    `| watch (in order, no gaps, matches the history) | ${v(r.watch.ok)} | ${r.watch.watchers} watchers up to revision ${r.watch.revisions}${r.watch.problems.length ? `: ${r.watch.problems.join('; ')}` : ''} |`,
    `| lease (expired keys gone, live keys kept) | ${v(r.lease.ok)} | ${r.lease.granted} leases, ${r.lease.keptLive} alive at the end${r.lease.problems.length ? `: ${r.lease.problems.slice(0, 5).join('; ')}` : ''} |`,
    `| recovery (healthy after the faults healed) | ${v(r.unhealthyAfterHeal === '')} | ${r.unhealthyAfterHeal} |`,
    `| convergence (HashKV) | ${v(r.hashKV.ok)} | at revision ${r.hashKV.revision}: ${Object.entries(r.hashKV.hashes)
      .map(([k, h]) => `${k}=${h}`)
      .join(' ')} |`,
    '',
    '## Operations',
    '',
    ...Object.entries(r.operations)
      .sort()
      .map(([k, n]) => `- ${k}: ${n}`),
    '',
    'Why outcomes were unknown (most common first):',
    '',
    ...Object.entries(r.unknownCauses).map(([k, n]) => `- ${n}× ${k}`),
    '',
    '## Write unavailability by fault kind (ms)',
    '',
    "While on: the longest stretch between the fault's start and its heal with no write completing. After heal: from the heal to the first write invoked after it completing. Median / worst over the faults of that kind (a combined fault counts for both kinds).",
    '',
    '| fault | count | while on: median / worst | after heal: median / worst |',
    '|---|---|---|---|',
    ...Object.entries(r.availability).map(
      ([k, a]) => `| ${k} | ${a.count} | ${a.whileOn.median} / ${a.whileOn.worst} | ${a.afterHeal.median} / ${a.afterHeal.worst} |`,
    ),
    '',
    '## Faults',
    '',
    '| at (ms) | healed (ms) | kind | target | note |',
    '|---|---|---|---|---|',
    ...r.faults.map((f) => `| ${f.at} | ${f.healedAt} | ${f.kind} | ${f.target} | ${f.note ?? ''} |`),
    '',
  ];
  return lines.join('\n');
}

/**
 * Each fault kind's shade in the plots: one hue per family (kills blue, pauses orange, partitions
 * red, a lossy or slow link teal, membership changes green, disk faults ochre), a shade per kind.
 */
export const faultColors: Record<FaultKind, string> = {
  'kill-random': '#4e79a7',
  'kill-leader': '#7aa6d6',
  'kill-majority': '#a0cbe8',
  'pause-leader': '#f28e2b',
  'pause-follower': '#ffbe7d',
  'partition-leader': '#e15759',
  'partition-majority': '#ff9d9a',
  'partition-bridge': '#b03a3c',
  'drop-one-way': '#499894',
  'slow-network': '#86bcb6',
  'add-learner': '#59a14f',
  'promote-learner': '#8cd17d',
  'remove-member': '#3d7a35',
  'replace-member': '#b6d7a8',
  'transfer-leader': '#2f5e2a',
  'disk-lose-unsynced': '#b6992d',
  'disk-slow-fsync': '#f1ce63',
  'disk-full': '#8c6d1f',
};

/**
 * The report as a page of plots (Observable Plot's SVG, no script): per operation kind, latency
 * p50 and p99 over time on a log scale with every fault shaded by its kind; operations returned per
 * second with the unknown outcomes; and writes completed per second with the stretches of no
 * write shaded red.
 */
export function chaosPage(r: ChaosReport): string {
  const tl = r.timeline;
  const faults = r.faults.map((f) => ({ kind: f.kind, from: f.at / 1000, to: Math.max(f.healedAt, f.at + 100) / 1000 }));
  // The legend lists the kinds this run injected, each in its own shade.
  const kinds = (Object.keys(faultColors) as FaultKind[]).filter((k) => r.faults.some((f) => f.kind === k));
  const color = { domain: kinds, range: kinds.map((k) => faultColors[k]), label: 'fault' };
  const width = 1100;
  const x = { label: 'seconds since the run began', domain: [0, r.durationMs / 1000] };
  const sections: Array<{ title: string; figures: string[] }> = [];
  if (tl) {
    const perSec = 1000 / tl.bucketMs;
    const ops = [...new Set(tl.points.map((p) => p.op))].sort();
    sections.push({
      title: 'Latency over time, faults shaded by kind',
      figures: ops.map((op) => {
        const pts = tl.points.filter((p) => p.op === op && p.ok > 0).map((p) => ({ ...p, s: p.t / 1000 }));
        const top = Math.max(1, ...pts.map((p) => p.p99));
        return figure({
          title: `${op}: latency p50 (blue) and p99 (red), ms`,
          width,
          height: 200,
          x,
          y: { type: 'log', label: 'ms', grid: true, domain: [Math.max(0.1, Math.min(...pts.map((p) => p.p50), top) / 2), top * 1.5] },
          color: { ...color, legend: op === ops[0] },
          marks: [
            Plot.rectY(faults, { x1: 'from', x2: 'to', y1: 0.1, y2: top * 1.5, fill: 'kind', fillOpacity: 0.18, clip: true }),
            Plot.lineY(pts, { x: 's', y: 'p50', stroke: '#1f77b4', strokeWidth: 1.2 }),
            Plot.lineY(pts, { x: 's', y: 'p99', stroke: '#d62728', strokeWidth: 1 }),
          ],
        });
      }),
    });
    const totals = new Map<number, { s: number; ok: number; unknown: number }>();
    for (const p of tl.points) {
      const c = totals.get(p.t) ?? { s: p.t / 1000, ok: 0, unknown: 0 };
      c.ok += p.ok * perSec;
      c.unknown += p.unknown * perSec;
      totals.set(p.t, c);
    }
    const series = [...totals.values()].sort((a, b) => a.s - b.s);
    sections.push({
      title: 'Throughput and unknown outcomes',
      figures: [
        figure({
          title: 'operations returned per second: known (grey), unknown (red)',
          width,
          height: 200,
          x,
          y: { label: 'ops/s', grid: true },
          color,
          marks: [
            Plot.rectY(faults, {
              x1: 'from',
              x2: 'to',
              y1: 0,
              y2: Math.max(1, ...series.map((d) => d.ok)),
              fill: 'kind',
              fillOpacity: 0.18,
            }),
            Plot.areaY(series, { x: 's', y: 'ok', fill: '#999', fillOpacity: 0.6 }),
            Plot.rectY(series, { x1: 's', x2: (d: { s: number }) => d.s + tl.bucketMs / 1000, y: 'unknown', fill: '#d62728' }),
          ],
        }),
      ],
    });
    const gaps = tl.gaps.map((g) => ({ from: g.from / 1000, to: g.to / 1000, ms: g.to - g.from }));
    const writes = [...totals.keys()]
      .sort((a, b) => a - b)
      .map((t) => ({
        s: t / 1000,
        rate: tl.points.filter((p) => p.t === t && /put|cas|set/.test(p.op)).reduce((n, p) => n + p.ok * perSec, 0),
      }));
    sections.push({
      title: `Availability: ${gaps.length} stretches of a second or more with no write completing (red)`,
      figures: [
        figure({
          title: 'writes completed per second',
          width,
          height: 200,
          x,
          y: { label: 'writes/s', grid: true },
          marks: [
            Plot.rectY(gaps, {
              x1: 'from',
              x2: 'to',
              y1: 0,
              y2: Math.max(1, ...writes.map((w) => w.rate)),
              fill: '#d62728',
              fillOpacity: 0.25,
            }),
            Plot.lineY(writes, { x: 's', y: 'rate', stroke: '#2a7', strokeWidth: 1.2 }),
          ],
        }),
      ],
    });
  }
  const verdict = r.ok ? 'all checkers passed' : 'FAILED';
  return page(
    `Chaos run against ${r.target === 'etcd' ? "Debian's etcd" : 'ballast store'}: ${verdict}`,
    [
      `Seed ${r.seed}, ${Math.round(r.durationMs / 1000)} s of traffic, ${r.faults.length} faults of ${Object.keys(r.faultsByKind).length} kinds on ${r.members.join(', ')}.`,
      `Linearizable: ${r.linearizable}; set: ${r.set.acked} acknowledged, ${r.set.lost.length} lost; watch: ${r.watch.ok ? 'clean' : r.watch.problems.length + ' problems'}; lease: ${r.lease.ok ? 'clean' : 'problems'}; HashKV equal: ${r.hashKV.ok}.`,
      ...(tl ? [] : ['This report was written before the run kept its timeline: no plots.']),
    ],
    sections,
    { operations: r.operations, 'faults by kind': r.faultsByKind },
  );
}
