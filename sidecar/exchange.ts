/**
 * One request as its attempts see it (sidecar/stack.ts owns the exchange, sidecar/attempt.ts its
 * attempts), and what an attempt derives from it alone: the balancer's hash key, the authority and
 * the headers sent upstream.
 */
import type { PolicySpec } from '../api/policy.ts';
import { type DownReq, type DownRes, endToEnd } from './http.ts';
import { deadlineHeader, formatGrpcTimeout } from './policies/timeout.ts';
import type { Headers } from './upstream/transport.ts';
import type { RouteState } from './upstream/route.ts';
import type { Upstream } from './upstream/upstream.ts';

export interface StackOptions {
  replayBufferBytes: number;
}

/** An upstream's retries, with what a Gateway API rule adds: status codes retried, and the least back-off. */
export type RetryPolicy = PolicySpec['retries'] & { statusCodes?: readonly number[]; minBackoffMs?: number };

/** What the attempts read of the request their exchange owns (sidecar/stack.ts). */
export interface ExchangeView {
  readonly up: Upstream;
  readonly req: DownReq;
  readonly res: DownRes;
  readonly path: string;
  readonly method: string;
  readonly isGrpc: boolean;
  readonly route: RouteState;
  readonly arrived: number;
  readonly options: StackOptions;
  /** The caller speaks HTTP/2. */
  readonly isH2: boolean;
  /** The route's time limits, with a Gateway API route's own (request, backendRequest) over them. */
  readonly timeouts: PolicySpec['timeouts'];
  /** The route's retries, with a Gateway API route's HTTPRouteRetry over them. */
  readonly retries: RetryPolicy;
}

/**
 * How a request ended, as the exchange's admission layers are told when they let go.
 * `status` is the answer's HTTP status (a gRPC status mapped to one), 0 when the request was
 * refused before any attempt, 499 when the caller left.
 */
export interface RequestEnd {
  /** The outcome label of the request metrics; undefined: the status class ('2xx'). */
  readonly outcome: string | undefined;
  readonly status: number;
  /** The upstream showed overload (a 503 or 429, a timeout, no endpoint reachable). */
  readonly overloaded: boolean;
}

/** The key a hashing balancer (ringHash, maglev) places the request by; undefined for the others. */
export function hashKey(x: ExchangeView): string | undefined {
  const k = x.route.policy.balancer.kind;
  if (k !== 'ringHash' && k !== 'maglev') return undefined;
  const on = x.route.policy.balancer.hashOn;
  if (on === 'path') return x.path;
  if (on === 'client') return x.req.socket?.remoteAddress ?? '';
  const v = x.req.headers[on.slice(7).toLowerCase()];
  return typeof v === 'string' ? v : undefined;
}

/** The authority the attempt names: the caller's, else the upstream's name. */
export function authority(x: ExchangeView): string {
  const h = x.req.headers;
  return (h[':authority'] as string | undefined) ?? h.host ?? x.up.name;
}

/** The headers an attempt sends: the caller's end-to-end headers, and the deadline it has left. */
export function upstreamHeaders(x: ExchangeView, callerDeadline: number, now: number): Headers {
  const out: Headers = endToEnd(x.req.headers);
  if (x.isGrpc) out['te'] = 'trailers';
  // Pass the caller's own deadline on, so no hop works past its caller. Only the caller's:
  // requestMs bounds the wait for the answer's head here (an attempt that overruns it is
  // cancelled, which the upstream sees), and a stream with no deadline of its own (an etcd
  // Watch) runs for as long as it stays active. Told to the upstream as a deadline, requestMs
  // would end every such stream at 15 s.
  if (callerDeadline !== Infinity) {
    const left = callerDeadline - now;
    if (x.isGrpc) out['grpc-timeout'] = formatGrpcTimeout(left);
    else out[deadlineHeader] = String(Math.max(1, Math.floor(left)));
  }
  return out;
}
