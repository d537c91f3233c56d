/**
 * Shared pieces of the benchmarks: machine and version facts, percentiles, a table printer,
 * and writing bench/results/<name>.json and <name>.html (every table printed in the run, drawn
 * as bar charts with the anchor and Ballast side by side: bench/plots.ts).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { comparisonFigures, page } from './plots.ts';

export const root = fileURLToPath(new URL('..', import.meta.url));

export function machine(): Record<string, unknown> {
  return {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    kernel: tryRun('uname', ['-r']),
    node: process.version,
    ballastCommit: tryRun('git', ['-C', root, 'rev-parse', '--short=12', 'HEAD']),
    date: new Date().toISOString(),
  };
}

export function tryRun(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

/** The tables printed in this run, for the HTML page writeResult writes. */
const printed: Array<{ title: string; rows: Array<Record<string, string | number>> }> = [];

/** A Markdown table of the rows (columns from the first); kept for the run's HTML page under `title`. */
export function table(rows: Array<Record<string, string | number>>, title = `table ${printed.length + 1}`): string {
  if (rows.length === 0) return '';
  printed.push({ title, rows });
  const cols = Object.keys(rows[0] as object);
  const fmt = (v: string | number | undefined) =>
    typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(2)) : String(v ?? '');
  const width = cols.map((c) => Math.max(c.length, ...rows.map((r) => fmt(r[c]).length)));
  const line = (vals: string[]) => `| ${vals.map((v, i) => v.padEnd(width[i] as number)).join(' | ')} |`;
  return [line(cols), `|${width.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map((r) => line(cols.map((c) => fmt(r[c]))))].join(
    '\n',
  );
}

/** bench/results/<name>.json, and <name>.html with the run's tables as figures; the JSON's path. */
export function writeResult(name: string, data: unknown): string {
  const dir = `${root}bench/results`;
  mkdirSync(dir, { recursive: true });
  const path = `${dir}/${name}.json`;
  writeFileSync(path, `${JSON.stringify(data, null, 2)}\n`);
  const facts = (data as { machine?: Record<string, unknown> }).machine ?? {};
  const sections = printed.map((t) => ({ title: t.title, figures: comparisonFigures(t.rows) })).filter((s) => s.figures.length > 0);
  writeFileSync(
    `${dir}/${name}.html`,
    page(
      `bench: ${name}`,
      [`The tables of bench/results/${name}.json, drawn: each measure with the anchor and Ballast side by side.`],
      sections,
      facts,
    ),
  );
  return path;
}

/** Resident memory of a process in bytes (VmRSS). */
export function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** What a wrk run printed (wrk from Debian, --latency): rate, counts, p50/p99 in ms. */
export interface WrkResult {
  rps: number;
  requests: number;
  non2xx: number;
  errors: number;
  p50: number;
  p99: number;
}

/** A wrk latency (e.g. 812.00us, 1.20ms, 2.01s) in milliseconds. */
export function wrkMs(v: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(v.trim());
  return m ? Number(m[1]) * ({ us: 0.001, ms: 1, s: 1000, m: 60_000 }[m[2] as 'us'] as number) : NaN;
}

export function parseWrk(out: string): WrkResult {
  const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? 0);
  const lat = (p: string) => wrkMs(new RegExp(`\\s${p}%\\s+(\\S+)`).exec(out)?.[1] ?? 'NaN');
  const errs = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  return {
    rps: num(/Requests\/sec:\s+([\d.]+)/),
    requests: num(/(\d+) requests in/),
    non2xx: num(/Non-2xx or 3xx responses: (\d+)/),
    errors: errs ? errs.slice(1).reduce((n, x) => n + Number(x), 0) : 0,
    p50: lat('50'),
    p99: lat('99'),
  };
}
