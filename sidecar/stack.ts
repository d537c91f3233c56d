/**
 * The one place where the sidecar's layers are ordered. A request passes, in this order:
 *
 *   1. fault injection    first, so a drill looks to the application exactly like a failing
 *                         dependency, and costs nothing else
 *   2. rate limit         route, then upstream: the cheapest refusal, before anything is held
 *   3. circuit breaker    the upstream's: while open, fail fast without taking a queue slot
 *   4. client throttle    SRE-book adaptive throttling: refuse locally what the upstream would
 *   5. load shedding      the adaptive concurrency limit, by priority class
 *   6. bulkhead + queue   route, then upstream: the hard cap, with a bounded wait
 *   7. deadline           the earliest of requestMs and the caller's own deadline
 *   8. retries / hedges   around attempts, drawing on one budget
 *   9. per attempt        balancer (skipping ejected, open-breaker and already-tried endpoints)
 *                         → endpoint breaker → attempt timeout → transport
 *
 * Admission layers (1–6) are released in reverse order when the response ends; outcomes flow
 * back to outlier detection, breakers, the balancer, the limit and the throttle. Layers 1–6
 * are cheap and synchronous when they admit at once; only a queue wait or an injected delay
 * waits.
 */
import type { PolicySpec } from '../api/policy.ts';
import { Attempts } from './attempt.ts';
import type { ExchangeView, RequestEnd, RetryPolicy, StackOptions } from './exchange.ts';
import { type Code, type DownReq, type DownRes, grpc, localReply, refusals } from './http.ts';
import { type Priority, priorityNames } from './policies/bulkhead.ts';
import { decideFault } from './policies/fault.ts';
import { callerBudgetMs } from './policies/timeout.ts';
import type { RouteState } from './upstream/route.ts';
import type { Upstream } from './upstream/upstream.ts';

export type { StackOptions } from './exchange.ts';

const priorities: Record<string, Priority> = { critical: 0, default: 1, sheddable: 2 };

/**
 * Proxy one request through an upstream's layers. `path` is the path to send (the proxy mode
 * strips the absolute URL).
 */
/**
 * What the Gateway API rule a request took says over the upstream's policy: its timeouts (whole
 * request, each attempt) and its retries (HTTPRouteRetry).
 */
export interface RouteOverride {
  requestMs?: number;
  attemptMs?: number;
  retry?: { codes?: readonly number[]; attempts?: number; backoffMs?: number };
}

export function proxy(
  up: Upstream,
  req: DownReq,
  res: DownRes,
  path: string,
  isH2: boolean,
  options: StackOptions,
  override?: RouteOverride,
): void {
  new Exchange(up, req, res, path, isH2, options, override).start();
}

/** A request ended before any attempt: refused by a layer, or the caller left while it waited. */
const refused = { outcome: undefined, status: 0, overloaded: false } as const;

/**
 * One request, from arrival to its end: it owns admission (layers 1–6, here) and its attempts
 * (7–9, {@link Attempts}). Each admission layer that lets the request in registers what it
 * does at the end, told how the request ended; they run in reverse order, once.
 */
class Exchange implements ExchangeView {
  readonly up: Upstream;
  readonly req: DownReq;
  readonly res: DownRes;
  readonly path: string;
  readonly method: string;
  readonly isGrpc: boolean;
  readonly isH2: boolean;
  readonly options: StackOptions;
  readonly arrived: number;
  #route: RouteState | undefined;
  #priority: Priority = 1;
  /** What the admission layers do when the request ends (run in reverse). */
  #onEnd: Array<(end: RequestEnd) => void> = [];
  #attempts: Attempts | undefined;
  #finished = false;

  readonly #override: RouteOverride | undefined;
  #timeouts: PolicySpec['timeouts'] | undefined;
  #retries: RetryPolicy | undefined;

  constructor(up: Upstream, req: DownReq, res: DownRes, path: string, isH2: boolean, options: StackOptions, override?: RouteOverride) {
    this.#override = override;
    this.up = up;
    this.req = req;
    this.res = res;
    this.path = path;
    this.method = req.method ?? 'GET';
    const ct = req.headers['content-type'];
    this.isGrpc = isH2 && typeof ct === 'string' && ct.startsWith('application/grpc');
    this.isH2 = isH2;
    this.options = options;
    this.arrived = up.deps.clock.now();
  }

  get route(): RouteState {
    return this.#route as RouteState;
  }

  /**
   * The route's retries, with a Gateway API rule's retry over them: its codes (with connection
   * failures and refused streams, which are always safe) replace what the policy retries on, its
   * attempts count retries after the first, and its back-off is the least wait between tries. The
   * policy's idempotency rules and budget still hold.
   */
  get retries(): RetryPolicy {
    if (this.#retries) return this.#retries;
    const r = (this.#route as RouteState).policy.retries;
    const g = this.#override?.retry;
    this.#retries = g
      ? {
          ...r,
          retryOn: ['connect-failure', 'refused-stream'],
          statusCodes: g.codes ?? [],
          ...(g.attempts !== undefined ? { maxAttempts: g.attempts + 1 } : {}),
          ...(g.backoffMs ? { minBackoffMs: g.backoffMs } : {}),
        }
      : r;
    return this.#retries;
  }

  get timeouts(): PolicySpec['timeouts'] {
    if (this.#timeouts) return this.#timeouts;
    const t = (this.#route as RouteState).policy.timeouts;
    const o = this.#override;
    this.#timeouts = o
      ? { ...t, ...(o.requestMs ? { requestMs: o.requestMs } : {}), ...(o.attemptMs ? { attemptMs: o.attemptMs } : {}) }
      : t;
    return this.#timeouts;
  }

  start(): void {
    const { up, res } = this;
    res.once('close', () => {
      if (this.#finished) return;
      this.#attempts?.cancel();
      this.#end('cancelled', { outcome: 'cancelled', status: 499, overloaded: false });
    });
    const route = up.route(this.method, this.path);
    this.#route = route;
    const p = route.policy;
    const pr = this.req.headers[p.shed.priorityHeader];
    if (typeof pr === 'string') this.#priority = priorities[pr] ?? 1;
    // 1. fault injection
    const f = p.fault;
    if (f.delayPercent > 0 || f.abortPercent > 0) {
      const d = decideFault(
        {
          ...(f.delayPercent > 0 ? { delay: { percent: f.delayPercent, ms: f.delayMs } } : {}),
          ...(f.abortPercent > 0 ? { abort: { percent: f.abortPercent, status: f.abortStatus, grpcStatus: f.abortGrpcStatus } } : {}),
        },
        up.deps.random,
      );
      if (d.delayMs > 0 || d.abort) {
        const go = (): void => {
          if (this.#finished) return;
          if (d.abort)
            return this.#refuse('SIDECAR_ERR_FAULT_INJECTED', `fault injection aborted this request with ${d.abort.status}`, {
              status: d.abort.status,
              grpcStatus: d.abort.grpcStatus ?? grpc.UNAVAILABLE,
            });
          this.#admit();
        };
        if (d.delayMs > 0) up.deps.clock.setTimeout(go, d.delayMs);
        else go();
        return;
      }
    }
    this.#admit();
  }

  /** Refuse before any attempt (fault injection, admission, a deadline already passed). */
  #refuse(code: Code, message: string, o?: Parameters<typeof localReply>[4]): void {
    this.#end(refusals[code].outcome, refused);
    localReply(this.res, this.isGrpc, code, message, o);
  }

  #admit(): void {
    const { up } = this;
    const route = this.route;
    const clock = up.deps.clock;
    const now = clock.now();
    const def = up.defaultRoute;
    // 2. rate limits: route, then upstream
    for (const r of route === def ? [def] : [route, def]) {
      if (r.rateLimit) {
        const wait = r.rateLimit.take(now);
        if (wait > 0)
          return this.#refuse(
            'SIDECAR_ERR_RATE_LIMITED',
            `${up.name} (${r.name}) allows ${r.policy.rateLimit.perSecond} requests per second`,
            { headers: { 'retry-after': String(Math.ceil(wait / 1000)) } },
          );
      }
    }
    // 3. the upstream's circuit breaker
    const breaker = up.breaker;
    if (breaker) {
      const t = breaker.tryAcquire(now);
      if (!t.ok)
        return this.#refuse('SIDECAR_ERR_CIRCUIT_OPEN', `the circuit breaker of ${up.name} is open: its recent calls failed`, {
          headers: { 'retry-after': String(Math.max(1, Math.ceil(t.retryAfterMs / 1000))) },
        });
      const ticket = t.ticket;
      // A request refused further on (shed, queue full) or cancelled by its caller says nothing
      // about the upstream: it must not count as a failure.
      this.#onEnd.push((end) => {
        if (end.status === 0 || end.status === 499) breaker.onCancel(ticket);
        else breaker.onResult(ticket, clock.now(), end.status < 500, clock.now() - this.arrived);
      });
    }
    // 4. client-side throttling: told whether the upstream accepted what it was sent
    const throttle = up.throttle;
    if (throttle) {
      if (!throttle.admit(now, up.deps.random))
        return this.#refuse('SIDECAR_ERR_THROTTLED', `${up.name} has been refusing requests for overload; this one was throttled locally`);
      this.#onEnd.push((end) => {
        if (end.status !== 0 && end.status !== 499) throttle.onResult(clock.now(), !end.overloaded);
      });
    }
    // 5. adaptive concurrency limit: at the limit a request waits for room, and is shed only
    // when the wait shows the upstream queueing (sidecar/policies/shed.ts)
    const bulkheads = route === def ? [def] : [route, def];
    const limit = up.adaptive;
    if (!limit) return this.#bulkheads(bulkheads, 0);
    const release = (): void => limit.release();
    if (limit.tryAcquire(this.#priority)) {
      this.#onEnd.push(release);
      return this.#bulkheads(bulkheads, 0);
    }
    limit.acquire(this.#priority, (ok) => {
      if (this.#finished) {
        if (ok) limit.release();
        return;
      }
      if (!ok)
        return this.#refuse(
          'SIDECAR_ERR_SHED',
          `${up.name} is at its adaptive concurrency limit (${limit.limit}) for ${priorityNames[this.#priority]} requests, and waiting for room took longer than the upstream's latency allows`,
        );
      this.#onEnd.push(release);
      this.#bulkheads(bulkheads, 0);
    });
  }

  /** 6. bulkheads with their queues: the route's, then the upstream's. */
  #bulkheads(list: RouteState[], i: number): void {
    if (i >= list.length) return this.#begin();
    const r = list[i] as RouteState;
    const release = (): void => r.bulkhead.release();
    if (r.bulkhead.tryAcquire()) {
      this.#onEnd.push(release);
      return this.#bulkheads(list, i + 1);
    }
    r.bulkhead.enqueue(this.#priority, (ok, why) => {
      if (this.#finished) {
        if (ok) r.bulkhead.release();
        return;
      }
      if (!ok) {
        const b = r.policy.bulkhead;
        return why === 'timeout'
          ? this.#refuse(
              'SIDECAR_ERR_QUEUE_TIMEOUT',
              `waited ${b.queueWaitMs} ms for one of ${b.maxConcurrent} slots of ${this.up.name} (${r.name})`,
            )
          : this.#refuse(
              'SIDECAR_ERR_BULKHEAD_FULL',
              `${this.up.name} (${r.name}) has ${b.maxConcurrent} requests in flight and ${b.queueLength} waiting`,
            );
      }
      this.#onEnd.push(release);
      this.#bulkheads(list, i + 1);
    });
  }

  /** 7. deadline, then 8–9: the attempts (sidecar/attempt.ts). */
  #begin(): void {
    const caller = callerBudgetMs(this.req.headers);
    const attempts = new Attempts(this, (end) => this.#end(end.outcome, end));
    this.#attempts = attempts;
    if (!attempts.start(caller))
      this.#refuse('SIDECAR_ERR_TIMEOUT', `the caller's deadline (${caller} ms) passed before the request could be sent`);
  }

  /** The request is over: every admission layer lets go (in reverse), and it is counted once. */
  #end(outcome: string | undefined, end: RequestEnd): void {
    if (this.#finished) return;
    this.#finished = true;
    const onEnd = this.#onEnd;
    this.#onEnd = [];
    for (let i = onEnd.length - 1; i >= 0; i--) (onEnd[i] as (end: RequestEnd) => void)(end);
    const up = this.up;
    up.deps.metrics.requestPath.request(
      up.name,
      this.#route?.name ?? 'default',
      outcome ?? `${Math.floor(end.status / 100)}xx`,
      (up.deps.clock.now() - this.arrived) / 1000,
    );
  }
}
