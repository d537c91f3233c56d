/** The chaos run's report: what it holds, report.json and report.md, and what a failure keeps. */
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
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
}


/** report.json, report.md, and on failure Porcupine's HTML and the members' logs. */
export function writeReport(r: ChaosReport, dir: string, clusterDir: string, html: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'report.json'), `${JSON.stringify(r, null, 2)}\n`);
  writeFileSync(join(dir, 'report.md'), summarize(r));
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
    `| convergence (HashKV) | ${v(r.hashKV.ok)} | at revision ${r.hashKV.revision}: ${Object.entries(r.hashKV.hashes).map(([k, h]) => `${k}=${h}`).join(' ')} |`,
    '',
    '## Operations',
    '',
    ...Object.entries(r.operations).sort().map(([k, n]) => `- ${k}: ${n}`),
    '',
    'Why outcomes were unknown (most common first):',
    '',
    ...Object.entries(r.unknownCauses).map(([k, n]) => `- ${n}× ${k}`),
    '',
    '## Write unavailability by fault kind (ms)',
    '',
    'While on: the longest stretch between the fault\'s start and its heal with no write completing. After heal: from the heal to the first write invoked after it completing. Median / worst over the faults of that kind (a combined fault counts for both kinds).',
    '',
    '| fault | count | while on: median / worst | after heal: median / worst |',
    '|---|---|---|---|',
    ...Object.entries(r.availability).map(([k, a]) => `| ${k} | ${a.count} | ${a.whileOn.median} / ${a.whileOn.worst} | ${a.afterHeal.median} / ${a.afterHeal.worst} |`),
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

