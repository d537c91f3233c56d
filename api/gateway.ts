/**
 * The parts of the Gateway API (gateway.networking.k8s.io/v1, standard channel) the mesh reads:
 * HTTPRoute and GRPCRoute attached to Services (GAMMA), and ReferenceGrant for backends in other
 * namespaces. Field names are the API's; only what Ballast acts on is typed.
 */

export const gatewayGroup = 'gateway.networking.k8s.io';
export const gatewayVersion = 'v1';
/** The controller name routes' status is written under. */
export const meshControllerName = 'ballast.dev/mesh';

export interface ParentReference {
  group?: string;
  kind?: string;
  namespace?: string;
  name: string;
  sectionName?: string;
  port?: number;
}

export interface GwHeader {
  name: string;
  value: string;
}

export interface GwHeaderFilter {
  set?: GwHeader[];
  add?: GwHeader[];
  remove?: string[];
}

export interface GwPathModifier {
  type: 'ReplaceFullPath' | 'ReplacePrefixMatch';
  replaceFullPath?: string;
  replacePrefixMatch?: string;
}

export interface GwFilter {
  type: string;
  requestHeaderModifier?: GwHeaderFilter;
  responseHeaderModifier?: GwHeaderFilter;
  requestRedirect?: {
    scheme?: string;
    hostname?: string;
    path?: GwPathModifier;
    port?: number;
    statusCode?: number;
  };
  urlRewrite?: { hostname?: string; path?: GwPathModifier };
}

export interface BackendReference {
  group?: string;
  kind?: string;
  name: string;
  namespace?: string;
  port?: number;
  weight?: number;
  filters?: GwFilter[];
}

export interface GwValueMatch {
  type?: 'Exact' | 'RegularExpression';
  name: string;
  value: string;
}

export interface HTTPRouteMatch {
  path?: { type?: 'Exact' | 'PathPrefix' | 'RegularExpression'; value?: string };
  headers?: GwValueMatch[];
  queryParams?: GwValueMatch[];
  method?: string;
}

export interface GRPCRouteMatch {
  method?: { type?: 'Exact' | 'RegularExpression'; service?: string; method?: string };
  headers?: GwValueMatch[];
}

export interface GwRule {
  name?: string;
  /** HTTPRoute's or GRPCRoute's (their `method` differs: a string, or {service, method}). */
  matches?: Array<Omit<HTTPRouteMatch, 'method'> & { method?: string | GRPCRouteMatch['method'] }>;
  filters?: GwFilter[];
  backendRefs?: BackendReference[];
  timeouts?: { request?: string; backendRequest?: string };
  /** HTTPRouteRetry (experimental channel; the apiserver drops it where only the standard CRDs are installed). */
  retry?: { codes?: number[]; attempts?: number; backoff?: string };
}

export interface RouteParentStatus {
  parentRef: ParentReference;
  controllerName: string;
  conditions: Array<{
    type: string;
    status: 'True' | 'False' | 'Unknown';
    reason: string;
    message: string;
    observedGeneration?: number;
    lastTransitionTime?: string;
  }>;
}

export interface GatewayRoute {
  apiVersion?: string;
  kind: 'HTTPRoute' | 'GRPCRoute';
  /** creationTimestamp: a string as the apiserver sends it (the client's type says Date). */
  metadata: { namespace?: string; name?: string; creationTimestamp?: Date; generation?: number; uid?: string; resourceVersion?: string };
  spec: { parentRefs?: ParentReference[]; hostnames?: string[]; rules?: GwRule[] };
  status?: { parents?: RouteParentStatus[] };
}

export interface ReferenceGrant {
  apiVersion?: string;
  kind?: string;
  metadata: { namespace?: string; name?: string };
  spec: {
    from: Array<{ group: string; kind: string; namespace: string }>;
    to: Array<{ group: string; kind: string; name?: string }>;
  };
}

/** A Gateway API Duration ("1h", "10s", "500ms", "1m30s") in milliseconds; undefined when absent or zero (no limit). */
export function gatewayDurationMs(d: string | undefined): number | undefined {
  if (!d) return undefined;
  const re = /(\d+)(h|ms|m|s)/g;
  let total = 0;
  let seen = '';
  for (let m = re.exec(d); m; m = re.exec(d)) {
    seen += m[0];
    const n = Number(m[1]);
    total += m[2] === 'h' ? n * 3_600_000 : m[2] === 'm' ? n * 60_000 : m[2] === 's' ? n * 1000 : n;
  }
  if (seen !== d) return undefined;
  return total > 0 ? total : undefined;
}

/** Does this parentRef name a Service (the mesh's kind of parent)? */
export function isServiceRef(r: { group?: string | undefined; kind?: string | undefined }): boolean {
  return (r.group ?? '') === '' && r.kind === 'Service';
}
