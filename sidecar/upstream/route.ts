/**
 * What a route of an upstream holds (its bulkhead, rate limit and hedge options: the upstream itself
 * is the route named "default"), and an endpoint breaker's rules as the policy states them.
 */
import type { Clock } from '../../lib/clock.ts';
import type { PolicySpec } from '../../api/policy.ts';
import type { RouteConfig } from '../config.ts';
import type { BreakerRules } from '../policies/breaker.ts';
import { Bulkhead } from '../policies/bulkhead.ts';
import type { HedgeOptions } from '../policies/hedge.ts';
import { TokenBucket } from '../policies/ratelimit.ts';

/** An endpoint breaker's rules from the policy; undefined when no rule is on (no breaker then). */
export function breakerRules(b: PolicySpec['breaker']['endpoint']): BreakerRules | undefined {
  const r: BreakerRules = { windowMs: b.windowMs, openMs: b.openMs, halfOpenTrials: b.halfOpenTrials };
  if (b.consecutiveFailures > 0) r.consecutiveFailures = b.consecutiveFailures;
  if (b.failureRatePercent > 0) r.failureRate = { threshold: b.failureRatePercent / 100, minCalls: b.minCalls };
  if (b.slowCallRatePercent > 0) r.slowCallRate = { threshold: b.slowCallRatePercent / 100, slowMs: b.slowCallMs, minCalls: b.minCalls };
  return r.consecutiveFailures === undefined && !r.failureRate && !r.slowCallRate ? undefined : r;
}

/** Per route (the upstream itself is the route named "default"). */
export class RouteState {
  readonly name: string;
  readonly pathPrefix: string;
  readonly methods: readonly string[];
  readonly policy: PolicySpec;
  readonly bulkhead: Bulkhead;
  readonly rateLimit: TokenBucket | undefined;
  readonly idempotentPaths: readonly string[];
  /** The hedge options in the form the policy takes (built once, not per request). */
  readonly hedge: HedgeOptions;

  constructor(r: RouteConfig, clock: Clock, onWait: (ms: number) => void) {
    this.name = r.name;
    this.pathPrefix = r.pathPrefix;
    this.methods = r.methods;
    this.policy = r.policy;
    const b = r.policy.bulkhead;
    this.bulkhead = new Bulkhead({ maxConcurrent: b.maxConcurrent, queueLength: b.queueLength, queueWaitMs: b.queueWaitMs }, clock);
    this.bulkhead.onDequeue = onWait;
    const rl = r.policy.rateLimit;
    this.rateLimit =
      rl.perSecond > 0 ? new TokenBucket({ perSecond: rl.perSecond, burst: rl.burst || rl.perSecond }, clock.now()) : undefined;
    this.idempotentPaths = r.policy.retries.idempotentPaths;
    const h = r.policy.hedge;
    this.hedge = {
      ...(h.delayMs > 0 ? { delayMs: h.delayMs } : { percentile: h.percentile, initialDelayMs: h.initialDelayMs }),
      minDelayMs: h.minDelayMs,
      maxHedges: h.maxHedges,
    };
  }

  matches(method: string, path: string): boolean {
    return path.startsWith(this.pathPrefix) && (this.methods.length === 0 || this.methods.includes(method));
  }
}
