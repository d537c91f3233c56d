/**
 * The rules of Grafana's dashboard linter (github.com/grafana/dashboard-linter), checked on the
 * dashboards' JSON as it ships. The linter itself cannot be built here: the Go module proxy serves
 * no version of it (its one release refused, no version list), so its rules are restated here
 * under their own names, and a finding reads as the linter's would:
 * `[rule] dashboard 'title', panel 'title': what is wrong`.
 *
 * The PromQL of every query is parsed and evaluated by a real Prometheus in
 * test/e2e/observe.test.ts (the linter's target-promql-rule).
 */
import * as Units from '@grafana/grafana-foundation-sdk/units';

interface Target {
  expr?: string;
}
export interface ModelPanel {
  type?: string;
  title?: string;
  description?: string;
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
  fieldConfig?: { defaults?: { unit?: string } };
  panels?: ModelPanel[];
}
interface ModelVariable {
  name?: string;
  label?: string;
  type?: string;
  query?: unknown;
  definition?: string;
  datasource?: { uid?: string };
  refresh?: number;
  multi?: boolean;
  includeAll?: boolean;
}
export interface DashboardModel {
  title?: string;
  editable?: boolean;
  templating?: { list?: ModelVariable[] };
  panels?: ModelPanel[];
}

/**
 * Counters' names end in `_total`, but etcd names two gauges that way; Ballast keeps etcd's names
 * so that etcd's own dashboards work on it. These are read as gauges, never rated.
 */
export const gaugesNamedTotal = new Set(['etcd_debugging_mvcc_watcher_total', 'etcd_debugging_mvcc_keys_total']);

const templated = (uid: string | undefined) => uid === '$datasource' || uid === '${datasource}';
const validUnits = new Set(Object.values(Units as Record<string, unknown>).filter((u): u is string => typeof u === 'string'));
const panelsWithUnits = new Set(['timeseries', 'stat', 'gauge', 'bargauge', 'graph', 'singlestat']);
/** Metric names: Ballast's and etcd's prefixes (PromQL functions and keywords never start so). */
const metricName = /\b(?:etcd|ballast)_[a-zA-Z0-9_:]*/g;

/** The function whose parentheses enclose position `at` of `expr` most closely, if any. */
function enclosingFunction(expr: string, at: number): string | undefined {
  let depth = 0;
  for (let i = at - 1; i >= 0; i--) {
    const c = expr[i];
    if (c === ')') depth++;
    else if (c === '(') {
      if (depth === 0) return /([a-zA-Z_]+)\s*$/.exec(expr.slice(0, i))?.[1];
      depth--;
    }
  }
  return undefined;
}

/** Findings for one target's PromQL; an empty list when it keeps every target rule. */
function lintExpr(expr: string, where: string): string[] {
  const findings: string[] = [];
  for (const m of expr.matchAll(/\b(i?rate)\s*\([^[]*\[([^\]]+)\]/g)) {
    if (m[2] !== '$__rate_interval')
      findings.push(`[target-rate-interval-rule] ${where}: ${m[1]}() over [${m[2]}] should use [$__rate_interval]`);
  }
  for (const m of expr.matchAll(metricName)) {
    const name = m[0];
    const after = expr.slice(m.index + name.length);
    const selector = /^\s*\{([^}]*)\}/.exec(after)?.[1];
    for (const label of ['job', 'instance']) {
      if (!selector?.includes(`${label}=~"$${label}"`)) {
        findings.push(`[target-${label}-rule] ${where}: ${name} is not narrowed by ${label}=~"$${label}"`);
      }
    }
    if (name.endsWith('_total') && !gaugesNamedTotal.has(name)) {
      const fn = enclosingFunction(expr, m.index);
      if (!['rate', 'irate', 'increase'].includes(fn ?? '')) {
        findings.push(`[target-counter-agg-rule] ${where}: counter ${name} is read without rate(), irate() or increase()`);
      }
    }
  }
  return findings;
}

/** A dashboard's panels, those inside collapsed rows included, rows themselves left out. */
export function modelPanels(d: DashboardModel): ModelPanel[] {
  return (d.panels ?? []).flatMap((p) => [p, ...(p.panels ?? [])]).filter((p) => p.type !== 'row');
}

/** PromQL with Grafana's placeholders filled as "All" would: variables match anything. */
export function fillAll(expr: string, rateInterval = '1m'): string {
  return expr.replaceAll('$__rate_interval', rateInterval).replace(/\$([a-z]+)/g, '.*');
}

/** Every finding of the linter's rules on one dashboard's JSON model. */
export function lintDashboard(d: DashboardModel): string[] {
  const board = `dashboard '${d.title ?? '?'}'`;
  const findings: string[] = [];
  if (d.editable !== false)
    findings.push(`[uneditable-dashboard] ${board}: is editable; a provisioned dashboard should not be (edits are lost on the next sync)`);
  const variables = d.templating?.list ?? [];
  const ds = variables.find((v) => v.type === 'datasource');
  if (!ds || ds.name !== 'datasource' || ds.query !== 'prometheus' || ds.label !== 'Data source') {
    findings.push(
      `[template-datasource-rule] ${board}: needs a variable named 'datasource' of type datasource, query 'prometheus', labelled 'Data source'`,
    );
  }
  for (const name of ['job', 'instance']) {
    const v = variables.find((x) => x.name === name);
    if (!v) findings.push(`[template-${name}-rule] ${board}: has no '${name}' variable`);
    else if (v.type !== 'query' || !templated(v.datasource?.uid) || !v.multi || !v.includeAll) {
      findings.push(
        `[template-${name}-rule] ${board}: the '${name}' variable should be a multi-value query on $datasource with an All option`,
      );
    }
  }
  for (const v of variables.filter((x) => x.type === 'query')) {
    if (v.refresh !== 2)
      findings.push(
        `[template-on-time-change-reload-rule] ${board}: variable '${v.name}' should refresh on time range change (refresh: 2)`,
      );
    if (!/^label_values\(.+, *[a-zA-Z_][a-zA-Z0-9_]*\)$/.test(v.definition ?? '')) {
      findings.push(
        `[template-label-promql-rule] ${board}: variable '${v.name}' is not a label_values(<selector>, <label>) query: ${v.definition}`,
      );
    }
  }
  for (const p of modelPanels(d)) {
    const where = `${board}, panel '${p.title ?? '?'}'`;
    if (!p.title || !p.description) findings.push(`[panel-title-description-rule] ${where}: needs a title and a description`);
    if (!templated(p.datasource?.uid)) findings.push(`[panel-datasource-rule] ${where}: does not use the $datasource variable`);
    if (panelsWithUnits.has(p.type ?? '')) {
      const unit = p.fieldConfig?.defaults?.unit;
      if (!unit || !validUnits.has(unit))
        findings.push(`[panel-units-rule] ${where}: has ${unit ? `the unknown unit '${unit}'` : 'no unit'}`);
    }
    const exprs = (p.targets ?? []).flatMap((t) => (t.expr ? [t.expr] : []));
    if (exprs.length === 0) findings.push(`[panel-no-targets-rule] ${where}: has no query`);
    for (const expr of exprs) findings.push(...lintExpr(expr, where));
  }
  return findings;
}
