/**
 * A request to an upstream that has Gateway API routes: choose the rule (routes.ts), apply its
 * filters in order (request headers, a redirect answered here, a rewrite), pick a backend by
 * weight and send the request to that upstream with the rule's timeouts and retries. Requests no rule
 * matches are answered 404 (gRPC: UNIMPLEMENTED), a backend that did not resolve 500, as the
 * Gateway API asks.
 */
import type { StackOptions } from '../exchange.ts';
import { type DownReq, type DownRes, localReply } from '../http.ts';
import { proxy } from '../stack.ts';
import type { Upstream } from '../upstream/upstream.ts';
import type { Counter } from '../../lib/metrics.ts';
import {
  type HeaderModifier,
  type RouteFilter,
  type RouteMatch,
  type RouteTable,
  modifyHeaders,
  modifyPath,
  pickBackend,
  redirectLocation,
} from './routes.ts';

export interface RoutingDeps {
  upstream(name: string): Upstream | undefined;
  /** Uniform in [0, 1). */
  random(): number;
  options: StackOptions;
  decisions: Counter<'upstream' | 'route' | 'result'>;
}

/** A response whose headers are changed as they are written (ResponseHeaderModifier). */
function withResponseHeaders(res: DownRes, mods: HeaderModifier[]): DownRes {
  const apply = (h: Record<string, string | string[]> | undefined): Record<string, string | string[]> => {
    const out: Record<string, string | string[] | undefined> = {};
    for (const [k, v] of Object.entries(h ?? {})) out[k.toLowerCase()] = v;
    for (const m of mods) modifyHeaders(out, m);
    return out as Record<string, string | string[]>;
  };
  return new Proxy(res, {
    get(target, prop, receiver) {
      if (prop === 'writeHead')
        return (status: number, headers?: Record<string, string | string[]>) => target.writeHead(status, apply(headers));
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
    set(target, prop, value) {
      return Reflect.set(target, prop, value);
    },
  });
}

const header = (req: DownReq, name: string): string | undefined => {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(',') : v;
};

export function routeRequest(
  table: RouteTable,
  parent: string,
  req: DownReq,
  res: DownRes,
  target: string,
  isH2: boolean,
  deps: RoutingDeps,
): void {
  const method = req.method ?? 'GET';
  const ct = req.headers['content-type'];
  const isGrpc = isH2 && typeof ct === 'string' && ct.startsWith('application/grpc');
  const chosen = table.choose(method, target, (n) => header(req, n));
  if (!chosen) {
    deps.decisions.inc({ upstream: parent, route: '', result: 'no-match' });
    return localReply(
      res,
      isGrpc,
      'SIDECAR_ERR_ROUTE_NOT_MATCHED',
      `no rule of the routes attached to ${parent} matches ${method} ${target.split('?')[0]}`,
    );
  }
  let path = target;
  let out = res;
  const responseMods: HeaderModifier[] = [];
  // Filters, in order; a redirect ends the request here.
  const run = (filters: RouteFilter[] | undefined, match: RouteMatch): boolean => {
    for (const f of filters ?? []) {
      if (f.type === 'RequestHeaderModifier' && f.requestHeaderModifier) modifyHeaders(req.headers, f.requestHeaderModifier);
      else if (f.type === 'ResponseHeaderModifier' && f.responseHeaderModifier) responseMods.push(f.responseHeaderModifier);
      else if (f.type === 'URLRewrite' && f.urlRewrite) {
        const q = path.indexOf('?');
        if (f.urlRewrite.path) path = modifyPath(q < 0 ? path : path.slice(0, q), f.urlRewrite.path, match) + (q < 0 ? '' : path.slice(q));
        if (f.urlRewrite.hostname) {
          if (req.headers[':authority'] !== undefined) req.headers[':authority'] = f.urlRewrite.hostname;
          req.headers['host'] = f.urlRewrite.hostname;
        }
      } else if (f.type === 'RequestRedirect' && f.requestRedirect) {
        const location = redirectLocation(
          f.requestRedirect,
          { scheme: 'http', authority: header(req, 'host') ?? header(req, ':authority') ?? parent, target: path },
          match,
        );
        deps.decisions.inc({ upstream: parent, route: chosen.route, result: 'redirect' });
        const r = responseMods.length > 0 ? withResponseHeaders(res, responseMods) : res;
        r.writeHead(f.requestRedirect.statusCode ?? 302, { location, 'content-length': '0' });
        r.end();
        return false;
      }
    }
    return true;
  };
  if (!run(chosen.spec.filters, chosen.match)) return;
  const backend = pickBackend(chosen.spec.backends, deps.random());
  const up = backend?.upstream ? deps.upstream(backend.upstream) : undefined;
  if (backend && !run(backend.filters, chosen.match)) return;
  if (responseMods.length > 0) out = withResponseHeaders(res, responseMods);
  if (!up) {
    deps.decisions.inc({ upstream: parent, route: chosen.route, result: 'backend-invalid' });
    return localReply(
      out,
      isGrpc,
      'SIDECAR_ERR_BACKEND_INVALID',
      backend
        ? `route ${chosen.route} sends this request to ${backend.upstream || 'a backend that did not resolve'}, which this sidecar has no upstream for`
        : `route ${chosen.route}'s rule ${chosen.rule} has no backend with weight`,
    );
  }
  deps.decisions.inc({ upstream: parent, route: chosen.route, result: 'matched' });
  const t = chosen.spec.timeouts;
  const retry = chosen.spec.retry;
  proxy(
    up,
    req,
    out,
    path,
    isH2,
    deps.options,
    t || retry
      ? {
          ...(t?.requestMs ? { requestMs: t.requestMs } : {}),
          ...(t?.backendRequestMs ? { attemptMs: t.backendRequestMs } : {}),
          ...(retry ? { retry } : {}),
        }
      : undefined,
  );
}
