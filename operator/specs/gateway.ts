/**
 * Gateway API routes for the mesh (pure): HTTPRoutes and GRPCRoutes whose parentRefs name a
 * Service (GAMMA) become the `httpRoutes` of that Service's upstream in every meshed caller's
 * sidecar, and each route gets its status under the mesh's controller name.
 *
 * A route in the Service's own namespace is a producer route and applies to every caller; a route
 * in another namespace is a consumer route and applies to callers in its own namespace only, in
 * place of the producer routes (GAMMA's rule). A parentRef without a port applies to the
 * Service's HTTP ports (not those named or marked tcp, tls or https). Backends are Service ports;
 * one in another namespace needs a ReferenceGrant there. What cannot be honoured is said in the
 * route's status with the Gateway API's reasons, and left out of what sidecars get.
 */
import type { V1Service } from '@kubernetes/client-node';
import {
  type BackendReference,
  type GRPCRouteMatch,
  type GatewayRoute,
  type GwFilter,
  type GwRule,
  type ParentReference,
  type ReferenceGrant,
  type RouteParentStatus,
  gatewayDurationMs,
  gatewayGroup,
  isServiceRef,
  meshControllerName,
} from '../../api/gateway.ts';
import type { HttpRoute, RouteFilter, RouteMatch, RouteRule } from '../../api/http-routes.ts';

export interface GatewayView {
  routes: readonly GatewayRoute[];
  grants: readonly ReferenceGrant[];
  services: readonly V1Service[];
}

/** A Service port, as `<namespace>/<name>:<port>`. */
export type PortKey = string;
export const portKey = (ns: string, name: string, port: number): PortKey => `${ns}/${name}:${port}`;
export function parsePortKey(k: PortKey): { namespace: string; name: string; port: number } {
  const slash = k.indexOf('/');
  const colon = k.lastIndexOf(':');
  return { namespace: k.slice(0, slash), name: k.slice(slash + 1, colon), port: Number(k.slice(colon + 1)) };
}

/** A route as it applies to one Service port: rules whose backends are port keys ('' where a reference did not resolve). */
export interface Attached {
  parent: PortKey;
  /** The route's namespace (consumer routes apply only to callers there). */
  namespace: string;
  producer: boolean;
  route: HttpRoute;
}

export interface Translated {
  attached: Attached[];
  status: RouteParentStatus[];
}

const supportedFilters = new Set(['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestRedirect', 'URLRewrite']);

/** Is this Service port one HTTP routes apply to when the parentRef names no port? */
function httpPort(p: { name?: string; appProtocol?: string; protocol?: string }): boolean {
  if ((p.protocol ?? 'TCP') !== 'TCP') return false;
  const a = (p.appProtocol ?? '').toLowerCase();
  if (a) return ['http', 'h2c', 'grpc', 'http2', 'kubernetes.io/h2c'].includes(a);
  return !/^(tcp|tls|https|mongo|mysql|redis)/.test(p.name ?? '');
}

/** The Service `ns/name` among those the view holds. */
export const findService = (view: { services: readonly V1Service[] }, ns: string, name: string): V1Service | undefined =>
  view.services.find((s) => s.metadata?.namespace === ns && s.metadata?.name === name);

function granted(view: GatewayView, fromKind: string, fromNs: string, toNs: string, toName: string): boolean {
  return view.grants.some(
    (g) =>
      g.metadata.namespace === toNs &&
      g.spec.from.some((f) => f.group === gatewayGroup && f.kind === fromKind && f.namespace === fromNs) &&
      g.spec.to.some((t) => (t.group ?? '') === '' && t.kind === 'Service' && (!t.name || t.name === toName)),
  );
}

function filter(f: GwFilter): RouteFilter | undefined {
  switch (f.type) {
    case 'RequestHeaderModifier':
      return f.requestHeaderModifier ? { type: f.type, requestHeaderModifier: f.requestHeaderModifier } : undefined;
    case 'ResponseHeaderModifier':
      return f.responseHeaderModifier ? { type: f.type, responseHeaderModifier: f.responseHeaderModifier } : undefined;
    case 'RequestRedirect': {
      const r = f.requestRedirect ?? {};
      return {
        type: f.type,
        requestRedirect: {
          ...(r.scheme === 'http' || r.scheme === 'https' ? { scheme: r.scheme } : {}),
          ...(r.hostname ? { hostname: r.hostname } : {}),
          ...(r.path ? { path: r.path } : {}),
          ...(r.port ? { port: r.port } : {}),
          ...(r.statusCode ? { statusCode: r.statusCode as 301 | 302 | 303 | 307 | 308 } : {}),
        },
      };
    }
    case 'URLRewrite':
      return {
        type: f.type,
        urlRewrite: {
          ...(f.urlRewrite?.hostname ? { hostname: f.urlRewrite.hostname } : {}),
          ...(f.urlRewrite?.path ? { path: f.urlRewrite.path } : {}),
        },
      };
    default:
      return undefined;
  }
}

const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** A GRPCRoute method match as a path match on /<service>/<method>. */
function grpcPath(mm: GRPCRouteMatch['method']): NonNullable<RouteMatch['path']> {
  if (!mm || (!mm.service && !mm.method)) return { type: 'PathPrefix', value: '/' };
  if ((mm.type ?? 'Exact') === 'Exact') {
    if (mm.service && mm.method) return { type: 'Exact', value: `/${mm.service}/${mm.method}` };
    return {
      type: 'RegularExpression',
      value: mm.service ? `/${escapeRe(mm.service)}/[^/]+` : `/[^/]+/${escapeRe(mm.method ?? '')}`,
    };
  }
  return { type: 'RegularExpression', value: `/${mm.service || '[^/]+'}/${mm.method || '[^/]+'}` };
}

/**
 * HTTPRouteRetry (experimental channel): the codes (400–599, as the CRD allows), the number of
 * retries and the least back-off between them. A zero or unparseable backoff is none; a retry
 * with neither codes nor attempts changes nothing.
 */
function translateRetry(r: GwRule['retry']): RouteRule['retry'] | undefined {
  if (!r) return undefined;
  const codes = (r.codes ?? []).filter((c) => Number.isInteger(c) && c >= 400 && c <= 599);
  const backoffMs = gatewayDurationMs(r.backoff);
  if (codes.length === 0 && r.attempts === undefined) return undefined; // says nothing to retry on, nor how often
  return {
    ...(codes.length > 0 ? { codes } : {}),
    ...(r.attempts !== undefined ? { attempts: Math.max(0, Math.min(9, r.attempts)) } : {}),
    ...(backoffMs ? { backoffMs } : {}),
  };
}

interface RuleOutcome {
  rule: RouteRule;
  problems: Array<{ reason: string; message: string }>;
  refs: Array<{ reason: string; message: string }>;
}

function translateRule(route: GatewayRoute, rule: GwRule, i: number, view: GatewayView): RuleOutcome {
  const ns = route.metadata.namespace ?? 'default';
  const problems: RuleOutcome['problems'] = [];
  const refs: RuleOutcome['refs'] = [];
  const filters = (fs: GwFilter[] | undefined, at: string): RouteFilter[] =>
    (fs ?? []).flatMap((f) => {
      const t = supportedFilters.has(f.type) ? filter(f) : undefined;
      if (!t) problems.push({ reason: 'UnsupportedValue', message: `${at}: filter ${f.type} is not supported by the Ballast mesh` });
      return t ? [t] : [];
    });
  const matches: RouteMatch[] = (rule.matches ?? []).map((m) => {
    const headers = (m.headers ?? []).map((h) => ({ type: h.type ?? 'Exact', name: h.name, value: h.value }));
    if (route.kind === 'GRPCRoute') return { path: grpcPath(typeof m.method === 'object' ? m.method : undefined), headers, method: 'POST' };
    return {
      ...(m.path ? { path: { type: m.path.type ?? 'PathPrefix', value: m.path.value ?? '/' } } : {}),
      headers,
      queryParams: (m.queryParams ?? []).map((q) => ({ type: q.type ?? 'Exact', name: q.name, value: q.value })),
      ...(typeof m.method === 'string' ? { method: m.method } : {}),
    };
  });
  const backends = (rule.backendRefs ?? []).map((b: BackendReference, k: number) => {
    const at = `rules[${i}].backendRefs[${k}]`;
    const weight = b.weight ?? 1;
    const bf = filters(b.filters, `${at}.filters`);
    const kind = b.kind ?? 'Service';
    const bns = b.namespace ?? ns;
    const unresolved = (reason: string, message: string) => {
      refs.push({ reason, message: `${at}: ${message}` });
      return { upstream: '', weight, ...(bf.length > 0 ? { filters: bf } : {}) };
    };
    if ((b.group ?? '') !== '' || kind !== 'Service') return unresolved('InvalidKind', `${b.group ?? ''}/${kind} is not a Service`);
    // A consumer route may send to the Service it is attached to (GAMMA): its callers reach that
    // Service already, so no ReferenceGrant is asked for. Any other Service elsewhere needs one.
    const ownParent = (route.spec.parentRefs ?? []).some((r) => isServiceRef(r) && (r.namespace ?? ns) === bns && r.name === b.name);
    if (bns !== ns && !ownParent && !granted(view, route.kind, ns, bns, b.name))
      return unresolved('RefNotPermitted', `Service ${bns}/${b.name} is in another namespace and no ReferenceGrant there allows it`);
    const svc = findService(view, bns, b.name);
    if (!svc) return unresolved('BackendNotFound', `Service ${bns}/${b.name} does not exist`);
    if (b.port === undefined) return unresolved('BackendNotFound', `Service ${bns}/${b.name}: a port is required`);
    if (!(svc.spec?.ports ?? []).some((p) => p.port === b.port))
      return unresolved('BackendNotFound', `Service ${bns}/${b.name} has no port ${b.port}`);
    return { upstream: portKey(bns, b.name, b.port), weight, ...(bf.length > 0 ? { filters: bf } : {}) };
  });
  const requestMs = gatewayDurationMs(rule.timeouts?.request);
  const backendRequestMs = gatewayDurationMs(rule.timeouts?.backendRequest);
  const retry = translateRetry(rule.retry);
  return {
    rule: {
      matches,
      filters: filters(rule.filters, `rules[${i}].filters`),
      backends,
      ...(requestMs || backendRequestMs
        ? { timeouts: { ...(requestMs ? { requestMs } : {}), ...(backendRequestMs ? { backendRequestMs } : {}) } }
        : {}),
      ...(retry ? { retry } : {}),
    },
    problems,
    refs,
  };
}

/** One route: what it attaches to, and its status for every parentRef that names a Service. */
export function translateRoute(route: GatewayRoute, view: GatewayView, now: string): Translated {
  const ns = route.metadata.namespace ?? 'default';
  const name = `${ns}/${route.metadata.name ?? ''}`;
  const ts = route.metadata.creationTimestamp as unknown;
  const created = ts instanceof Date ? ts.toISOString() : typeof ts === 'string' ? ts : '';
  const outcomes = (route.spec.rules ?? []).map((r, i) => translateRule(route, r, i, view));
  const problems = outcomes.flatMap((o) => o.problems);
  const refs = outcomes.flatMap((o) => o.refs);
  const httpRoute: HttpRoute = { name, created, rules: outcomes.map((o) => o.rule) };
  const attached: Attached[] = [];
  const status: RouteParentStatus[] = [];
  const gen = route.metadata.generation;
  const cond = (type: string, ok: boolean, reason: string, message: string) => ({
    type,
    status: ok ? ('True' as const) : ('False' as const),
    reason,
    message,
    ...(gen !== undefined ? { observedGeneration: gen } : {}),
    lastTransitionTime: now,
  });
  for (const ref of route.spec.parentRefs ?? []) {
    if (!isServiceRef(ref)) continue; // a Gateway's parentRef: another controller's
    const pns = ref.namespace ?? ns;
    const svc = findService(view, pns, ref.name);
    const parentRef: ParentReference = {
      group: '',
      kind: 'Service',
      ...(ref.namespace ? { namespace: ref.namespace } : {}),
      name: ref.name,
      ...(ref.port ? { port: ref.port } : {}),
    };
    let accepted = cond('Accepted', true, 'Accepted', 'the route is in force in the sidecars of its callers');
    if (!svc) accepted = cond('Accepted', false, 'NoMatchingParent', `Service ${pns}/${ref.name} does not exist`);
    else if (ref.port !== undefined && !(svc.spec?.ports ?? []).some((p) => p.port === ref.port))
      accepted = cond('Accepted', false, 'NoMatchingParent', `Service ${pns}/${ref.name} has no port ${ref.port}`);
    else if (problems.length > 0) accepted = cond('Accepted', false, 'UnsupportedValue', problems.map((p) => p.message).join('; '));
    const resolved =
      refs.length > 0
        ? cond('ResolvedRefs', false, refs[0]?.reason ?? 'BackendNotFound', refs.map((r) => r.message).join('; '))
        : cond('ResolvedRefs', true, 'ResolvedRefs', 'every backend resolved');
    status.push({ parentRef, controllerName: meshControllerName, conditions: [accepted, resolved] });
    if (accepted.status !== 'True' || !svc) continue;
    const ports =
      ref.port !== undefined
        ? [ref.port]
        : (svc.spec?.ports ?? []).filter((p) => route.kind === 'GRPCRoute' || httpPort(p)).map((p) => p.port);
    for (const port of ports)
      attached.push({ parent: portKey(pns, ref.name, port), namespace: ns, producer: pns === ns, route: httpRoute });
  }
  return { attached, status };
}

/**
 * The routes that apply to a caller in `namespace`, by parent Service port: its namespace's
 * consumer routes where it has some for that port, the producer routes otherwise.
 */
export function routesForCaller(namespace: string, attached: readonly Attached[]): Map<PortKey, HttpRoute[]> {
  const consumer = new Map<PortKey, HttpRoute[]>();
  const producer = new Map<PortKey, HttpRoute[]>();
  for (const a of attached) {
    if (!a.producer && a.namespace !== namespace) continue;
    const m = a.producer ? producer : consumer;
    const list = m.get(a.parent) ?? [];
    list.push(a.route);
    m.set(a.parent, list);
  }
  for (const [k, v] of consumer) producer.set(k, v);
  return producer;
}
