/**
 * What the sidecar's listeners do with a request: an upstream listener's, an inbound listener's
 * (mTLS policy, authorization, the caller's identity passed on), the explicit HTTP proxy's (by
 * host), and HTTP/1.1 upgrades (tunnelled). They read the sidecar's state through HandlerState as
 * it is when the request arrives: a reload swaps upstreams and tables under them.
 */
import type { IncomingMessage } from 'node:http';
import type { AuthorizationPolicy } from '../api/resiliencepolicy.ts';
import type { Logger } from '../lib/log.ts';
import type { Random } from '../lib/random.ts';
import type { SidecarConfig } from './config.ts';
import { localReply } from './http.ts';
import type { SidecarMetrics } from './metrics.ts';
import { authorize } from './policies/authz.ts';
import { routeRequest } from './routing/apply.ts';
import type { RouteTable } from './routing/routes.ts';
import { type Handler, type UpgradeHandler, peerIdentity } from './server/listener.ts';
import { proxy as forward } from './stack.ts';
import { tunnel } from './upstream/tunnel.ts';
import type { Upstream } from './upstream/upstream.ts';

/** The sidecar's state a request is handled with, read per request. */
export interface HandlerState {
  upstream(name: string): Upstream | undefined;
  /** An upstream's compiled Gateway API routes, when it has some. */
  table(name: string): RouteTable | undefined;
  /** Proxy mode: the upstream a host (as configured, with or without port) names. */
  hostUpstream(host: string): string | undefined;
  config(): SidecarConfig;
  /** The pod's namespace (bare ServiceAccount names in authorization rules are in it). */
  namespace(): string;
  metrics: SidecarMetrics;
  log: Logger;
  random: Random;
}

export class RequestHandlers {
  readonly #s: HandlerState;

  constructor(state: HandlerState) {
    this.#s = state;
  }

  upstream(name: string): Handler {
    return (req, res, isH2) => {
      const up = this.#s.upstream(name);
      if (!up) return localReply(res, false, 'SIDECAR_ERR_NO_ROUTE', `upstream ${name} was removed`);
      this.#send(up, req, res, req.url ?? '/', isH2);
    };
  }

  /** To an upstream: through its Gateway API routes when it has some, else straight to it. */
  #send(up: Upstream, req: Parameters<Handler>[0], res: Parameters<Handler>[1], path: string, isH2: boolean): void {
    const table = this.#s.table(up.name);
    if (!table) return forward(up, req, res, path, isH2, this.#s.config());
    routeRequest(table, up.name, req, res, path, isH2, {
      upstream: (n) => this.#s.upstream(n),
      random: () => this.#s.random.next(),
      options: this.#s.config(),
      decisions: this.#s.metrics.routeDecisions,
    });
  }

  /** An inbound listener's requests: mTLS policy, the caller's identity passed on to the app, then the inbound stack. */
  inbound(name: string, mtls: 'strict' | 'permissive' | 'off', authz: AuthorizationPolicy | undefined): Handler {
    const upstream = `inbound:${name}`;
    return (req, res, isH2) => {
      const caller = peerIdentity(req);
      const ct = req.headers['content-type'];
      if (mtls === 'strict' && !caller) {
        this.#s.metrics.inboundConnections.inc({ listener: name, security: 'plaintext', result: 'refused-strict' });
        this.#s.log.warn(
          { listener: name, remote: req.socket?.remoteAddress, path: req.url },
          'refused a plaintext request on an mtls: strict inbound listener',
        );
        return localReply(
          res,
          isH2 && typeof ct === 'string' && ct.startsWith('application/grpc'),
          'SIDECAR_ERR_MTLS_REQUIRED',
          `inbound listener ${name} accepts only mesh mTLS (mtls: strict); call it from a pod with a Ballast sidecar`,
        );
      }
      if (authz) {
        const path = req.url ?? '/';
        const d = authorize(authz, this.#s.namespace(), { identity: caller, method: req.method ?? 'GET', path });
        this.#s.metrics.authorization.inc({ listener: name, result: d.allowed ? 'allowed' : 'denied', caller: caller || 'plaintext' });
        if (!d.allowed) {
          this.#s.log.warn(
            { listener: name, caller: caller || 'plaintext', method: req.method, path, rule: d.rule, remote: req.socket?.remoteAddress },
            'inbound request denied by the authorization policy',
          );
          return localReply(
            res,
            isH2 && typeof ct === 'string' && ct.startsWith('application/grpc'),
            'SIDECAR_ERR_FORBIDDEN',
            `${caller || 'a plaintext caller (no mesh identity)'} may not ${req.method} ${path} on inbound listener ${name} (${d.rule === 'default' ? 'no rule allows it' : `rule ${d.rule} denies it`})`,
          );
        }
      }
      // The app learns who called (Envoy's header); a caller cannot claim it.
      delete req.headers['x-forwarded-client-cert'];
      if (caller) req.headers['x-forwarded-client-cert'] = `URI=${caller}`;
      const up = this.#s.upstream(upstream);
      if (!up) return localReply(res, false, 'SIDECAR_ERR_NO_ROUTE', `upstream ${upstream} was removed`);
      forward(up, req, res, req.url ?? '/', isH2, this.#s.config());
    };
  }

  /** Proxy mode: the upstream a request names, by its absolute-form target or its Host. */
  hostOf(req: { url?: string | undefined; headers: Record<string, string | string[] | undefined> }): {
    host: string;
    path: string;
    name: string | undefined;
  } {
    const url = req.url ?? '/';
    let host: string;
    let path: string;
    if (/^https?:\/\//i.test(url)) {
      const u = new URL(url);
      host = u.host;
      path = `${u.pathname}${u.search}`;
    } else {
      host = ((req.headers['host'] ?? req.headers[':authority']) as string | undefined) ?? '';
      path = url;
    }
    return { host, path, name: this.#s.hostUpstream(host) ?? this.#s.hostUpstream(host.replace(/:\d+$/, '')) };
  }

  /** Explicit HTTP proxy: absolute-form request targets, routed by host to an upstream. */
  proxy(): Handler {
    return (req, res, isH2) => {
      if (req.method === 'CONNECT')
        return localReply(
          res,
          false,
          'SIDECAR_ERR_NO_ROUTE',
          'the Ballast sidecar proxies plain HTTP; call TLS upstreams through their local listener',
          { status: 405 },
        );
      const { host, path, name } = this.hostOf(req);
      const up = name === undefined ? undefined : this.#s.upstream(name);
      if (!up)
        return localReply(
          res,
          false,
          'SIDECAR_ERR_NO_ROUTE',
          `${host} is not a configured upstream; known hosts: ${
            this.#s
              .config()
              .upstreams.flatMap((u) => u.hosts)
              .join(', ') || '(none)'
          }`,
        );
      this.#send(up, req, res, path, isH2);
    };
  }

  /** HTTP/1.1 Upgrade (WebSocket): tunnelled to the upstream's endpoint (sidecar/upstream/tunnel.ts). */
  upgrade(upstreamOf: (req: IncomingMessage) => string | undefined): UpgradeHandler {
    return (req, socket, head) => {
      const name = upstreamOf(req);
      const up = name === undefined ? undefined : this.#s.upstream(name);
      if (!up) {
        socket.on('error', () => undefined);
        return socket.end(
          'HTTP/1.1 502 Bad Gateway\r\nx-ballast-error: SIDECAR_ERR_NO_ROUTE\r\ncontent-length: 0\r\nconnection: close\r\n\r\n',
        );
      }
      tunnel(up, req, socket, head, /^https?:\/\//i.test(req.url ?? '') ? this.hostOf(req).path : (req.url ?? '/'));
    };
  }
}
