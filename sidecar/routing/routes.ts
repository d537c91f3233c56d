/**
 * Request routing with the Gateway API's semantics (pure): the HTTPRoute and GRPCRoute rules
 * attached to a Service, as the sidecar of every caller of that Service applies them (GAMMA).
 *
 * A table is compiled once per configuration: every (route, rule, match) in the Gateway API's
 * precedence order (an Exact path, then a regular expression, then the longest PathPrefix; a
 * method match; more header matches; more query-parameter matches; then the older route, the
 * route's namespace/name, the rule's and the match's order), so choosing is a walk to the first
 * match. The choice carries what the rule does: filters (header modifiers, a redirect, a
 * rewrite), weighted backends (each an upstream), and timeouts.
 */

import type {
  HeaderModifier,
  HttpRoute,
  PathMatch,
  PathModifier,
  Redirect,
  RouteBackend,
  RouteFilter,
  RouteMatch,
  RouteRule,
  StringMatchType,
  ValueMatch,
} from '../../api/http-routes.ts';

export type { HeaderModifier, HttpRoute, PathMatch, PathModifier, Redirect, RouteBackend, RouteFilter, RouteMatch, RouteRule };

/** The rule a request matched, and how. */
export interface Chosen {
  route: string;
  rule: number;
  match: RouteMatch;
  spec: RouteRule;
}

interface Entry {
  route: HttpRoute;
  rule: number;
  matchIndex: number;
  match: RouteMatch;
  path: (p: string) => boolean;
  headers: Array<{ name: string; test: (v: string) => boolean }>;
  query: Array<{ name: string; test: (v: string) => boolean }>;
}

const valueTest = (m: { type: StringMatchType; value: string }): ((v: string) => boolean) => {
  if (m.type === 'RegularExpression') {
    const re = new RegExp(`^(?:${m.value})$`);
    return (v) => re.test(v);
  }
  return (v) => v === m.value;
};

/** Does `path` fall under `prefix`, element by element (`/foo` takes `/foo`, `/foo/` and `/foo/bar`, not `/foobar`)? */
export function underPrefix(path: string, prefix: string): boolean {
  const p = prefix.length > 1 && prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  if (p === '/' || p === '') return true;
  return path === p || path.startsWith(`${p}/`);
}

function pathTest(m: PathMatch | undefined): (p: string) => boolean {
  if (!m) return () => true;
  if (m.type === 'Exact') return (p) => p === m.value;
  if (m.type === 'RegularExpression') {
    const re = new RegExp(`^(?:${m.value})$`);
    return (p) => re.test(p);
  }
  return (p) => underPrefix(p, m.value);
}

/** Problems the schema cannot see (bad regular expressions, redirect codes), by field path; empty when fine. */
export function routeProblems(r: HttpRoute, path: string): Array<{ path: string; message: string }> {
  const out: Array<{ path: string; message: string }> = [];
  const check = (pattern: string, at: string): void => {
    try {
      new RegExp(pattern);
    } catch (err) {
      out.push({ path: at, message: `is not a regular expression: ${(err as Error).message}` });
    }
  };
  const filters = (fs: RouteFilter[] | undefined, at: string): void =>
    (fs ?? []).forEach((f, k) => {
      // As Gateway API's own rule: a filter's type names the field that says what it does.
      if (f.type === 'RequestRedirect' && !f.requestRedirect)
        out.push({ path: `${at}[${k}].requestRedirect`, message: 'is required when type is RequestRedirect' });
      if (f.type === 'URLRewrite' && !f.urlRewrite)
        out.push({ path: `${at}[${k}].urlRewrite`, message: 'is required when type is URLRewrite' });
      const code = f.requestRedirect?.statusCode;
      if (code !== undefined && ![301, 302, 303, 307, 308].includes(code))
        out.push({
          path: `${at}[${k}].requestRedirect.statusCode`,
          message: `${code} is not a redirect code; use 301, 302, 303, 307 or 308`,
        });
    });
  r.rules.forEach((rule, i) => {
    const at = `${path}.rules[${i}]`;
    (rule.matches ?? []).forEach((m, j) => {
      const mat = `${at}.matches[${j}]`;
      if (m.path?.type === 'RegularExpression') check(m.path.value, `${mat}.path.value`);
      (m.headers ?? []).forEach((h, k) => h.type === 'RegularExpression' && check(h.value, `${mat}.headers[${k}].value`));
      (m.queryParams ?? []).forEach((q, k) => q.type === 'RegularExpression' && check(q.value, `${mat}.queryParams[${k}].value`));
    });
    filters(rule.filters, `${at}.filters`);
    (rule.backends ?? []).forEach((b, k) => filters(b.filters, `${at}.backends[${k}].filters`));
  });
  return out;
}

/** Precedence: lower sorts first. */
function rank(e: Entry): Array<number | string> {
  const p = e.match.path ?? { type: 'PathPrefix', value: '/' };
  const kind = p.type === 'Exact' ? 0 : p.type === 'RegularExpression' ? 1 : 2;
  const prefixLen = p.type === 'PathPrefix' ? -p.value.replace(/\/$/, '').length : 0;
  return [
    kind,
    prefixLen,
    e.match.method ? 0 : 1,
    -(e.match.headers?.length ?? 0),
    -(e.match.queryParams?.length ?? 0),
    e.route.created,
    e.route.name,
    e.rule,
    e.matchIndex,
  ];
}

function compare(a: Array<number | string>, b: Array<number | string>): number {
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as number | string;
    const y = b[i] as number | string;
    if (x < y) return -1;
    if (x > y) return 1;
  }
  return 0;
}

/** First one wins for a name given twice (the Gateway API's rule for matches). */
function firstByName(ms: ValueMatch[] | undefined, fold: boolean): ValueMatch[] {
  const seen = new Set<string>();
  return (ms ?? []).filter((m) => {
    const k = fold ? m.name.toLowerCase() : m.name;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

export class RouteTable {
  readonly #entries: Entry[];
  readonly size: number;

  constructor(routes: readonly HttpRoute[]) {
    const entries: Entry[] = [];
    for (const route of routes)
      route.rules.forEach((rule, ri) => {
        // A rule without matches matches every request (a PathPrefix "/").
        const matches = rule.matches && rule.matches.length > 0 ? rule.matches : [{}];
        matches.forEach((match, mi) => {
          entries.push({
            route,
            rule: ri,
            matchIndex: mi,
            match,
            path: pathTest(match.path),
            headers: firstByName(match.headers, true).map((h) => ({ name: h.name.toLowerCase(), test: valueTest(h) })),
            query: firstByName(match.queryParams, false).map((q) => ({ name: q.name, test: valueTest(q) })),
          });
        });
      });
    const ranked = entries.map((e) => ({ e, r: rank(e) }));
    ranked.sort((a, b) => compare(a.r, b.r));
    this.#entries = ranked.map((x) => x.e);
    this.size = routes.length;
  }

  /** The rule this request takes, or undefined when no rule matches (the answer is then 404). */
  choose(method: string, target: string, header: (name: string) => string | undefined): Chosen | undefined {
    const q = target.indexOf('?');
    const path = q < 0 ? target : target.slice(0, q);
    let params: URLSearchParams | undefined;
    for (const e of this.#entries) {
      if (e.match.method && e.match.method !== method) continue;
      if (!e.path(path)) continue;
      if (
        !e.headers.every((h) => {
          const v = header(h.name);
          return v !== undefined && h.test(v);
        })
      )
        continue;
      if (e.query.length > 0) {
        params ??= new URLSearchParams(q < 0 ? '' : target.slice(q + 1));
        if (!e.query.every((m) => params?.has(m.name) && m.test(params.get(m.name) ?? ''))) continue;
      }
      return { route: e.route.name, rule: e.rule, match: e.match, spec: e.route.rules[e.rule] as RouteRule };
    }
    return undefined;
  }
}

/** A weighted pick among the backends (`r` uniform in [0, 1)); undefined when none has weight. */
export function pickBackend(backends: readonly RouteBackend[] | undefined, r: number): RouteBackend | undefined {
  const live = (backends ?? []).filter((b) => b.weight > 0);
  const total = live.reduce((s, b) => s + b.weight, 0);
  if (total === 0) return undefined;
  let at = r * total;
  for (const b of live) {
    if (at < b.weight) return b;
    at -= b.weight;
  }
  return live[live.length - 1];
}

/** The path after a path modifier, given the match the request took (ReplacePrefixMatch needs a PathPrefix match). */
export function modifyPath(path: string, m: PathModifier, match: RouteMatch): string {
  if (m.type === 'ReplaceFullPath') return m.replaceFullPath ?? '/';
  const prefix = match.path?.type === 'PathPrefix' ? match.path.value.replace(/\/$/, '') : '';
  const rest = path.slice(prefix.length);
  const repl = m.replacePrefixMatch ?? '/';
  let out: string;
  if (repl.endsWith('/') && rest.startsWith('/')) out = repl + rest.slice(1);
  else if (repl === '' || (rest !== '' && !rest.startsWith('/'))) out = `${repl}/${rest}`.replace(/\/{2,}/g, '/');
  else out = repl + rest;
  return out === '' ? '/' : out;
}

/** Headers after a modifier: set replaces, add appends (a comma-joined value), remove drops; names are case-insensitive. */
export function modifyHeaders(headers: Record<string, string | string[] | undefined>, m: HeaderModifier): void {
  for (const { name, value } of m.set ?? []) headers[name.toLowerCase()] = value;
  for (const { name, value } of m.add ?? []) {
    const k = name.toLowerCase();
    const have = headers[k];
    headers[k] = have === undefined ? value : `${Array.isArray(have) ? have.join(',') : have},${value}`;
  }
  for (const name of m.remove ?? []) Reflect.deleteProperty(headers, name.toLowerCase());
}

/** The Location of a redirect, from the request's scheme, authority and target. */
export function redirectLocation(
  rd: Redirect,
  req: { scheme: 'http' | 'https'; authority: string; target: string },
  match: RouteMatch,
): string {
  const q = req.target.indexOf('?');
  const path = q < 0 ? req.target : req.target.slice(0, q);
  const query = q < 0 ? '' : req.target.slice(q);
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(req.authority);
  const reqHost = m?.[1] ?? req.authority;
  const reqPort = m?.[2] ? Number(m[2]) : undefined;
  const scheme = rd.scheme ?? req.scheme;
  const host = rd.hostname ?? reqHost;
  // A port given wins; a changed scheme takes its own default; otherwise the request's.
  const port = rd.port ?? (rd.scheme && rd.scheme !== req.scheme ? undefined : reqPort);
  const defaultPort = scheme === 'https' ? 443 : 80;
  const authority = port === undefined || port === defaultPort ? host : `${host}:${port}`;
  const newPath = rd.path ? modifyPath(path, rd.path, match) : path;
  return `${scheme}://${authority}${newPath}${query}`;
}
