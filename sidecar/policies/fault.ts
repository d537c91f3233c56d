/**
 * Fault injection (pure; randomness passed in), for tests and chaos drills: delay a percentage of
 * requests by a fixed time, and abort a percentage with a status (HTTP) or gRPC code, as
 * Envoy's fault filter does. The two are independent: a request may be delayed and then aborted.
 */
import type { Random } from '../../lib/random.ts';

export interface FaultOptions {
  delay?: { percent: number; ms: number };
  abort?: { percent: number; status: number; grpcStatus?: number };
}

export interface FaultDecision {
  delayMs: number;
  abort?: { status: number; grpcStatus?: number };
}

const none: FaultDecision = { delayMs: 0 };

export function decideFault(o: FaultOptions, random: Random): FaultDecision {
  const delayMs = o.delay && random.next() * 100 < o.delay.percent ? o.delay.ms : 0;
  const abort = o.abort && random.next() * 100 < o.abort.percent ? o.abort : undefined;
  if (delayMs === 0 && abort === undefined) return none;
  return abort
    ? { delayMs, abort: abort.grpcStatus === undefined ? { status: abort.status } : { status: abort.status, grpcStatus: abort.grpcStatus } }
    : { delayMs };
}
