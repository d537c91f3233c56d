/**
 * Pictures of results: self-contained HTML pages whose figures are SVG drawn by Observable Plot
 * (`@observablehq/plot`, rendered here in Node on jsdom's document, so a page needs no script,
 * no network and no library to open). Used by the benchmarks (a bar chart per measure of each
 * table, the anchor and Ballast side by side) and by the chaos report (test/chaos/report.ts:
 * latency over time with the faults shaded).
 */
import { createRequire } from 'node:module';
import * as Plot from '@observablehq/plot';

// jsdom's document is all Plot needs from it (jsdom's own types would bring the DOM's globals
// into every program's type check).
const { JSDOM } = createRequire(import.meta.url)('jsdom') as { JSDOM: new (html: string) => { window: { document: unknown } } };
const document = new JSDOM('').window.document as Plot.PlotOptions['document'];

export type Row = Record<string, string | number>;

/** One figure: Plot's options with our document; its outer HTML. */
export function figure(options: Plot.PlotOptions): string {
  return Plot.plot({ document, style: { fontSize: '12px', background: 'white' }, ...options }).outerHTML;
}

const escape = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c] ?? c);

/** A page: a title, paragraphs, sections of figures, and the facts (machine, versions) as a table. */
export function page(
  title: string,
  intro: string[],
  sections: Array<{ title: string; figures: string[] }>,
  facts: Record<string, unknown> = {},
): string {
  const factRows = Object.entries(facts)
    .map(([k, v]) => `<tr><th>${escape(k)}</th><td>${escape(typeof v === 'string' ? v : JSON.stringify(v))}</td></tr>`)
    .join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em 2em; color: #222; background: white; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
.figures { display: flex; flex-wrap: wrap; gap: 1.5em; } .figures figure { margin: 0; }
table.facts { border-collapse: collapse; font-size: 0.85em; margin-top: 2em; }
table.facts th, table.facts td { border: 1px solid #ddd; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }
</style></head><body>
<h1>${escape(title)}</h1>
${intro.map((p) => `<p>${escape(p)}</p>`).join('\n')}
${sections.map((s) => `<section><h2>${escape(s.title)}</h2><div class="figures">${s.figures.join('\n')}</div></section>`).join('\n')}
${factRows ? `<table class="facts">${factRows}</table>` : ''}
</body></html>
`;
}

const numeric = (rows: Row[], col: string) => rows.every((r) => typeof r[col] === 'number' && Number.isFinite(r[col]));

/**
 * Bar charts comparing systems in one table, whichever way the table is laid out:
 * - long: a `system` column, one row per system and case → one chart per numeric column, the
 *   systems side by side within each case;
 * - wide: column pairs `<system> <measure>` (`etcd ops/s`, `ballast ops/s`) → one chart per
 *   measure, the systems side by side within each row's case.
 * Ratio columns (`... ratio`, `a/b`) are drawn against 1 (parity). Columns that compare
 * nothing (counts, text) are left to the table.
 */
export function comparisonFigures(rows: Row[]): string[] {
  if (rows.length === 0) return [];
  const cols = Object.keys(rows[0] ?? {});
  // The case a row measures: its first text column (in a long table, one before `system`).
  const candidates = cols.includes('system') ? cols.slice(0, cols.indexOf('system')) : cols;
  const caseCol = candidates.find((c) => rows.every((r) => typeof r[c] === 'string'));
  const caseOf = (r: Row, i: number) => (caseCol ? String(r[caseCol]) : cols.includes('system') ? 'all' : `#${i + 1}`);
  const bars = (measure: string, data: Array<{ case: string; system: string; value: number }>) =>
    figure({
      title: measure,
      width: Math.max(280, 90 * new Set(data.map((d) => d.case)).size),
      height: 220,
      marginBottom: 40,
      marginLeft: 56,
      // (All zero: a 0–1 axis, not a degenerate one.)
      fx: { label: null, tickRotate: data.length > 8 ? -20 : 0 },
      y: { grid: true, label: measure, ...(data.every((d) => d.value === 0) ? { domain: [0, 1] } : {}) },
      // The systems in the table's order (the anchor first), in the same colours on every chart.
      x: { axis: null, domain: [...new Set(data.map((d) => d.system))] },
      color: { legend: true, scheme: 'tableau10', domain: [...new Set(data.map((d) => d.system))] },
      marks: [Plot.barY(data, { fx: 'case', x: 'system', y: 'value', fill: 'system' }), Plot.ruleY([0])],
    });
  const figures: string[] = [];
  // Ratios: `... ratio`, `on/off`, `ballast/etcd` (a slash not a rate's `/s`).
  const ratioCols = cols.filter((c) => /ratio|\/(?!s\b)/.test(c) && numeric(rows, c));
  if (cols.includes('system')) {
    for (const col of cols.filter((c) => c !== 'system' && !ratioCols.includes(c) && numeric(rows, c))) {
      figures.push(
        bars(
          col,
          rows.map((r, i) => ({ case: caseOf(r, i), system: String(r['system']), value: r[col] as number })),
        ),
      );
    }
  } else {
    const measures = new Map<string, Array<{ system: string; col: string }>>();
    for (const c of cols.filter((x) => !ratioCols.includes(x) && numeric(rows, x))) {
      const m = /^(\S+) (.+)$/.exec(c);
      if (!m) continue;
      const list = measures.get(m[2] ?? '') ?? [];
      list.push({ system: m[1] ?? '', col: c });
      measures.set(m[2] ?? '', list);
    }
    for (const [measure, systems] of measures) {
      if (systems.length < 2) continue;
      figures.push(
        bars(
          measure,
          rows.flatMap((r, i) => systems.map((s) => ({ case: caseOf(r, i), system: s.system, value: r[s.col] as number }))),
        ),
      );
    }
    // Single-row tables with one column per system (`etcd`, `ballast`).
    const perSystem = cols.filter((c) => !c.includes(' ') && numeric(rows, c) && !ratioCols.includes(c));
    if (figures.length === 0 && perSystem.length >= 2 && caseCol) {
      figures.push(
        bars(
          caseCol,
          rows.flatMap((r) => perSystem.map((s) => ({ case: String(r[caseCol]), system: s, value: r[s] as number }))),
        ),
      );
    }
  }
  for (const col of ratioCols) {
    const data = rows.map((r, i) => ({ case: caseOf(r, i), value: r[col] as number }));
    figures.push(
      figure({
        title: `${col} (1 = parity)`,
        width: Math.max(280, 70 * data.length),
        height: 220,
        marginBottom: 40,
        marginLeft: 56,
        x: { label: null, tickRotate: data.length > 6 ? -20 : 0, domain: data.map((d) => d.case) },
        y: { grid: true, label: col },
        marks: [
          Plot.barY(data, { x: 'case', y: 'value', fill: '#8aa' }),
          Plot.ruleY([1], { stroke: '#c33', strokeWidth: 2 }),
          Plot.ruleY([0]),
        ],
      }),
    );
  }
  return figures;
}
