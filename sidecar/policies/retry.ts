/**
 * Which failures are retried (pure). Connection failures and refused streams are safe for any
 * request (the upstream never saw it); everything else only for idempotent requests: GET, HEAD,
 * OPTIONS, PUT, DELETE, TRACE, gRPC paths the policy names (gRPC is all POST), or any request
 * when the policy says `methods: all`. The answer is the reason (for the retries metric), or
 * undefined for "do not retry".
 */
import type { RetryOn } from '../../api/policy.ts';

const idempotentMethods = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

export interface RetryRules {
  retryOn: readonly RetryOn[];
  methods: 'idempotent' | 'all';
  idempotentPaths: readonly string[];
  /** HTTP status codes retried besides those retryOn names (a Gateway API route's HTTPRouteRetry codes). */
  statusCodes?: readonly number[];
}

export function isIdempotent(r: RetryRules, method: string, path: string, isGrpc: boolean): boolean {
  if (r.methods === 'all') return true;
  if (!isGrpc && idempotentMethods.has(method)) return true;
  for (const p of r.idempotentPaths) if (path.startsWith(p)) return true;
  return false;
}

/** What went wrong with an attempt: an answer (HTTP status, or gRPC status in a trailers-only answer), or a transport failure. */
export type AttemptOutcome =
  | { kind: 'status'; status: number; grpcStatus?: number | undefined }
  | { kind: 'connect' | 'refused' | 'reset' | 'timeout' | 'cancelled' | 'protocol' };

export function retryReason(r: RetryRules, idempotent: boolean, o: AttemptOutcome): string | undefined {
  const on = r.retryOn;
  if (o.kind === 'connect') return on.includes('connect-failure') ? 'connect-failure' : undefined;
  if (o.kind === 'refused') return on.includes('refused-stream') ? 'refused-stream' : undefined;
  if (!idempotent) return undefined;
  if (o.kind === 'reset') return on.includes('reset') ? 'reset' : undefined;
  if (o.kind === 'timeout') return on.includes('504') || on.includes('deadline-exceeded') ? 'attempt-timeout' : undefined;
  if (o.kind !== 'status') return undefined;
  if (o.grpcStatus !== undefined) {
    if (o.grpcStatus === 14 && on.includes('unavailable')) return 'unavailable';
    if (o.grpcStatus === 8 && on.includes('resource-exhausted')) return 'resource-exhausted';
    if (o.grpcStatus === 4 && on.includes('deadline-exceeded')) return 'deadline-exceeded';
    return undefined;
  }
  const s = String(o.status) as RetryOn;
  if (on.includes(s) || r.statusCodes?.includes(o.status)) return s;
  if (o.status >= 500 && on.includes('5xx')) return '5xx';
  return undefined;
}
