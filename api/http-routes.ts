/**
 * Routes as the sidecar takes them (an upstream's `httpRoutes`): Gateway API HTTPRoute and
 * GRPCRoute rules in the API's own terms, durations in milliseconds and backends named by
 * upstream. The operator writes them (operator/specs/gateway.ts), the sidecar applies them
 * (sidecar/routing/routes.ts).
 */

export type StringMatchType = 'Exact' | 'RegularExpression';

export interface PathMatch {
  type: 'Exact' | 'PathPrefix' | 'RegularExpression';
  value: string;
}

export interface ValueMatch {
  type: StringMatchType;
  name: string;
  value: string;
}

export interface RouteMatch {
  path?: PathMatch;
  headers?: ValueMatch[];
  queryParams?: ValueMatch[];
  method?: string;
}

export interface HeaderModifier {
  set?: Array<{ name: string; value: string }>;
  add?: Array<{ name: string; value: string }>;
  remove?: string[];
}

export interface PathModifier {
  type: 'ReplaceFullPath' | 'ReplacePrefixMatch';
  replaceFullPath?: string;
  replacePrefixMatch?: string;
}

export interface Redirect {
  scheme?: 'http' | 'https';
  hostname?: string;
  path?: PathModifier;
  port?: number;
  statusCode?: 301 | 302 | 303 | 307 | 308;
}

export interface Rewrite {
  hostname?: string;
  path?: PathModifier;
}

export interface RouteFilter {
  type: 'RequestHeaderModifier' | 'ResponseHeaderModifier' | 'RequestRedirect' | 'URLRewrite';
  requestHeaderModifier?: HeaderModifier;
  responseHeaderModifier?: HeaderModifier;
  requestRedirect?: Redirect;
  urlRewrite?: Rewrite;
}

export interface RouteBackend {
  /** The upstream (a Service of the mesh, `<service>.<namespace>`); '' when the reference did not resolve (its share answers 500). */
  upstream: string;
  weight: number;
  filters?: RouteFilter[];
}

export interface RouteRule {
  matches?: RouteMatch[];
  filters?: RouteFilter[];
  backends?: RouteBackend[];
  /** Gateway API timeouts, in milliseconds: the whole request (retries included), and each attempt. */
  timeouts?: { requestMs?: number; backendRequestMs?: number };
  /**
   * Gateway API retries (HTTPRouteRetry): retry up to `attempts` times (unset: the policy's
   * maxAttempts − 1) on these status codes (besides connection failures), `backoffMs` at least
   * between tries. Retries still draw on the upstream's retry budget.
   */
  retry?: { codes?: number[]; attempts?: number; backoffMs?: number };
}

export interface HttpRoute {
  /** `<namespace>/<name>` of the HTTPRoute or GRPCRoute (in metrics and answers). */
  name: string;
  /** creationTimestamp (RFC 3339): the older route wins a tie. */
  created: string;
  rules: RouteRule[];
}
