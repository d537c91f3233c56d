/**
 * bench/heap-summary: what fills a V8 heap snapshot (`.heapsnapshot`, as written by
 * `node --heapsnapshot-signal` or the inspector): self size and count per constructor (objects),
 * per node type otherwise (strings, arrays, code, hidden classes), largest first. Used by
 * bench/operator-scale --heap-snapshot; runs on its own too:
 *
 *   node bench/heap-summary.ts FILE.heapsnapshot [--top=30]
 */
import { readFileSync } from 'node:fs';
import { table } from './lib.ts';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

export interface HeapRow {
  what: string;
  count: number;
  selfMiB: number;
}

/** Self size and count per constructor (objects) or per node type (everything else). */
export function summarize(path: string, top = 30): { totalMiB: number; rows: HeapRow[] } {
  const snap = JSON.parse(readFileSync(path, 'utf8')) as Snapshot;
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const stride = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  const by = new Map<string, { count: number; bytes: number }>();
  let total = 0;
  for (let i = 0; i < snap.nodes.length; i += stride) {
    const type = types[snap.nodes[i + typeAt] as number] ?? 'unknown';
    const size = snap.nodes[i + sizeAt] as number;
    total += size;
    // Objects by their constructor's name; strings, arrays, code and the rest by their type.
    const what = type === 'object' ? (snap.strings[snap.nodes[i + nameAt] as number] ?? '?') : `(${type})`;
    const e = by.get(what) ?? { count: 0, bytes: 0 };
    e.count++;
    e.bytes += size;
    by.set(what, e);
  }
  const rows = [...by.entries()]
    .sort((a, b) => b[1].bytes - a[1].bytes)
    .slice(0, top)
    .map(([what, e]) => ({ what, count: e.count, selfMiB: Math.round((e.bytes / 2 ** 20) * 10) / 10 }));
  return { totalMiB: Math.round((total / 2 ** 20) * 10) / 10, rows };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const file = process.argv[2];
  if (!file) throw new Error('usage: node bench/heap-summary.ts FILE.heapsnapshot [--top=30]');
  const top = Number(process.argv.find((a) => a.startsWith('--top='))?.slice(6) ?? 30);
  const s = summarize(file, top);
  console.log(
    `heap ${s.totalMiB} MiB (self sizes)\n\n${table(
      s.rows.map((r) => ({ ...r })),
      'heap by constructor',
    )}`,
  );
}
