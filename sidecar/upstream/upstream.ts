/**
 * One upstream's live state: endpoints with their connections and breakers, the balancer, outlier
 * detection, the retry budget, the shedding limit and throttle, and per-route bulkheads and rate
 * limits. A new configuration or endpoint set is applied in place ({@link Upstream.update}): the
 * state of endpoints that stay is kept, removed endpoints drain, and requests in flight finish on
 * the objects they started with.
 */
import { readFileSync } from 'node:fs';
import type { Clock } from '../../lib/clock.ts';
import type { Logger } from '../../lib/log.ts';
import type { Random } from '../../lib/random.ts';
import type { PolicySpec } from '../../api/policy.ts';
import { type Picker, buildPicker } from '../balance/pickers.ts';
import type { SidecarMetrics } from '../metrics.ts';
import { breakerValue } from '../metrics.ts';
import { Breaker, type Ticket } from '../policies/breaker.ts';
import { LatencyTracker } from '../policies/hedge.ts';
import { OutlierDetector, ejectReasons } from '../policies/outlier.ts';
import { RetryBudget } from '../policies/retry-budget.ts';
import { ClientThrottle, PooledLimit } from '../policies/shed.ts';
import type { Tracing } from '../tracing.ts';
import type { RouteConfig } from '../config.ts';
import { RouteState, breakerRules } from './route.ts';
import { EndpointTransport, type MeshPeer, type TlsOptions } from './transport.ts';
import type { MtlsMode } from '../../api/mesh.ts';

export interface EndpointState {
  id: string;
  weight: number;
  /** The mesh identity its sidecar presents ('' : not meshed). */
  identity: string;
  transport: EndpointTransport;
  breaker: Breaker | undefined;
}

export interface UpstreamSpec {
  name: string;
  protocol: 'auto' | 'http1' | 'http2';
  tls: { enabled: boolean; caFile: string; serverName: string; insecureSkipVerify: boolean };
  /** Mesh mTLS towards endpoints with an identity (absent: off). */
  mtls?: MtlsMode;
  endpoints: Array<{ address: string; weight: number; identity?: string }>;
  policy: PolicySpec;
  routes: RouteConfig[];
  /** Inbound listeners: one target, no retries, hedges, ejection or breakers. */
  inbound?: boolean;
}

export interface UpstreamDeps {
  clock: Clock;
  random: Random;
  log: Logger;
  metrics: SidecarMetrics;
  /** Set when traces are exported. */
  tracing?: Tracing | undefined;
  /** The sidecar's mesh certificate, key and trust bundle (absent or undefined: none). */
  meshMaterial?: () => { chainPem: string; keyPem: string; bundlePem: string } | undefined;
  /** Whether the sidecar's own event loop is saturated (its adaptive limits then do not read their latency as overload). */
  proxyBusy?: () => boolean;
}

/** What an attempt held from its start: the endpoint, its breaker's ticket, its place under the endpoint's limit. */
export interface AttemptStart {
  readonly endpoint: EndpointState;
  /** The endpoint breaker's admission, when the endpoint has a breaker and admitted it. */
  readonly ticket: Ticket | undefined;
  /** The endpoint's in-flight count when the attempt started (its adaptive limit learns from it). */
  readonly inflightAtStart: number;
  readonly started: number;
}

/** How an attempt ended, as every policy that learns from attempts is told. */
export interface AttemptEnd {
  /** 'ok', a status class ('5xx') for an answer, else the failure's kind ('connect', 'timeout', 'reset', 'cancelled', ...). */
  readonly result: string;
  readonly status: number | 'connect';
  readonly latencyMs: number;
  /** Time from the start to the answer's head, when one came. */
  readonly headLatencyMs: number | undefined;
  readonly now: number;
}

/** A policy that learns from attempts (the balancer, an endpoint's limit and breaker, outlier detection, metrics). */
export type AttemptListener = (start: AttemptStart, end: AttemptEnd) => void;

export class Upstream {
  readonly name: string;
  readonly deps: UpstreamDeps;
  #spec!: UpstreamSpec;
  /** The upstream-wide route ("default") and the configured routes, in order. */
  #defaultRoute!: RouteState;
  #routes: RouteState[] = [];
  #endpoints = new Map<string, EndpointState>();
  #endpointList: EndpointState[] = [];
  #picker!: Picker;
  #outlier: OutlierDetector | undefined;
  #budget!: RetryBudget;
  #throttle: ClientThrottle | undefined;
  #adaptive: PooledLimit | undefined;
  #breaker: Breaker | undefined;
  #hedgeTracker: LatencyTracker | undefined;
  #tls: TlsOptions | undefined;
  /** Endpoint breakers not closed (to skip the per-pick check when all are closed). */
  #openBreakers = 0;
  /** Told of every attempt's end: registered as the policies are built ({@link #listen}). */
  #attemptListeners: AttemptListener[] = [];
  #policyKey = '';

  constructor(spec: UpstreamSpec, deps: UpstreamDeps) {
    this.name = spec.name;
    this.deps = deps;
    this.update(spec);
  }

  /** Apply a new spec; keeps the state of what did not change. */
  update(spec: UpstreamSpec): void {
    this.#spec = spec;
    const p = spec.inbound ? inboundPolicy(spec.policy) : spec.policy;
    const { clock, random, metrics } = this.deps;
    const policyKey = JSON.stringify([p, spec.routes, spec.tls, spec.protocol, spec.mtls]);
    if (policyKey !== this.#policyKey) {
      this.#policyKey = policyKey;
      const wait = (route: string) => {
        metrics.queueWait.zero({ upstream: this.name, route });
        const h = metrics.queueWait.labels({ upstream: this.name, route });
        return (ms: number) => h.observe(ms / 1000);
      };
      this.#defaultRoute = new RouteState({ name: 'default', pathPrefix: '/', methods: [], policy: p }, clock, wait('default'));
      this.#routes = spec.routes.map(
        (r) => new RouteState(spec.inbound ? { ...r, policy: inboundPolicy(r.policy) } : r, clock, wait(r.name)),
      );
      const rb = p.retries.budget;
      this.#budget = new RetryBudget({ ratio: rb.ratioPercent / 100, minPerSecond: rb.minPerSecond, windowMs: rb.windowMs });
      this.#throttle = p.shed.throttle.enabled
        ? new ClientThrottle({ k: p.shed.throttle.acceptsMultiplier, windowMs: p.shed.throttle.windowMs })
        : undefined;
      const a = p.shed.adaptive;
      this.#adaptive = a.enabled
        ? new PooledLimit(
            {
              initialLimit: a.initialLimit,
              minLimit: a.minLimit,
              maxLimit: a.maxLimit,
              ...(this.deps.proxyBusy ? { proxyBusy: this.deps.proxyBusy } : {}),
            },
            random,
            clock,
          )
        : undefined;
      if (this.#adaptive) {
        const g = metrics.limit.labels({ upstream: this.name });
        this.#adaptive.onLimit = (l) => g.set(l);
      }
      const ub = breakerRules(p.breaker.upstream);
      this.#breaker = ub ? new Breaker(ub) : undefined;
      if (this.#breaker) {
        const g = metrics.breaker.labels({ upstream: this.name, endpoint: '*' });
        g.set(0);
        this.#breaker.onChange = (from, to) => {
          g.set(breakerValue[to]);
          this.deps.log.warn({ upstream: this.name, from, to }, 'upstream circuit breaker changed state');
        };
      }
      // Series exist from the start (at 0): dashboards and alerts see "none", not "no data".
      metrics.hedges.inc({ upstream: this.name }, 0);
      this.#hedgeTracker = p.hedge.enabled && p.hedge.delayMs === 0 ? new LatencyTracker(p.hedge.percentile) : undefined;
      this.#tls = spec.tls.enabled
        ? {
            ...(spec.tls.caFile ? { ca: readFileSync(spec.tls.caFile) } : {}),
            ...(spec.tls.serverName ? { serverName: spec.tls.serverName } : {}),
            insecureSkipVerify: spec.tls.insecureSkipVerify,
          }
        : undefined;
      // Transports depend on TLS and timeouts, breakers and ejection on their rules: rebuild
      // them (old connections drain).
      for (const ep of this.#endpoints.values()) void ep.transport.close();
      this.#endpoints.clear();
      for (const ep of this.#endpointList)
        if (this.#outlier?.isEjected(ep.id)) metrics.ejected.set({ upstream: this.name, endpoint: ep.id }, 0);
      this.#outlier = undefined;
    }
    this.#setEndpoints(spec.endpoints);
    this.#listen();
  }

  get policy(): PolicySpec {
    return this.#defaultRoute.policy;
  }
  get spec(): UpstreamSpec {
    return this.#spec;
  }
  get defaultRoute(): RouteState {
    return this.#defaultRoute;
  }
  get routes(): readonly RouteState[] {
    return this.#routes;
  }
  get endpoints(): ReadonlyMap<string, EndpointState> {
    return this.#endpoints;
  }
  get endpointList(): readonly EndpointState[] {
    return this.#endpointList;
  }
  get picker(): Picker {
    return this.#picker;
  }
  get outlier(): OutlierDetector | undefined {
    return this.#outlier;
  }
  get budget(): RetryBudget {
    return this.#budget;
  }
  get throttle(): ClientThrottle | undefined {
    return this.#throttle;
  }
  get adaptive(): PooledLimit | undefined {
    return this.#adaptive;
  }
  get breaker(): Breaker | undefined {
    return this.#breaker;
  }
  get hedgeTracker(): LatencyTracker | undefined {
    return this.#hedgeTracker;
  }
  get tls(): TlsOptions | undefined {
    return this.#tls;
  }

  /** An attempt to `ep` starts (holding `ticket` from its breaker): the balancer and the endpoint's limit count it. */
  startAttempt(ep: EndpointState, ticket: Ticket | undefined, now: number): AttemptStart {
    this.#picker.started(ep.id);
    return { endpoint: ep, ticket, inflightAtStart: this.#adaptive?.endpoint(ep.id)?.begin() ?? 0, started: now };
  }

  /** An attempt ended: every policy that learns from attempts is told, in the order they were registered. */
  endAttempt(start: AttemptStart, end: AttemptEnd): void {
    for (const listener of this.#attemptListeners) listener(start, end);
  }

  /** Fewer than panicThresholdPercent of the endpoints are available (not ejected, breaker not open). */
  panicking(now: number): boolean {
    const threshold = this.policy.outlier.panicThresholdPercent;
    if (threshold <= 0) return false;
    let available = 0;
    for (const e of this.#endpointList) if (!this.#outlier?.isEjected(e.id) && e.breaker?.state(now) !== 'open') available++;
    return (available * 100) / this.#endpointList.length < threshold;
  }

  /**
   * The balancer's choice among endpoints not in `skip` whose breaker lets a request through,
   * with the breaker's ticket. `skip` is the caller's to keep (endpoints refused here are added).
   */
  pickAdmitted(
    now: number,
    key: string | undefined,
    skip: Set<string> | undefined,
  ): { ep: EndpointState | undefined; ticket: Ticket | undefined } {
    for (let tries = 0; tries <= this.#endpointList.length; tries++) {
      const picked = this.#picker.pick(key, skip);
      const ep = picked ? this.#endpoints.get(picked.id) : undefined;
      if (!ep || !ep.breaker) return { ep, ticket: undefined };
      const admitted = ep.breaker.tryAcquire(now);
      if (admitted.ok) return { ep, ticket: admitted.ticket };
      (skip ??= new Set()).add(ep.id);
      if (skip.size >= this.#endpointList.length) break;
    }
    return { ep: undefined, ticket: undefined };
  }

  /** Endpoint breakers not closed right now (0: no pick needs to ask them). */
  get openBreakers(): number {
    return this.#openBreakers;
  }

  /**
   * The policies that learn from attempts, registered as they are built: the balancer (latency;
   * a cancelled attempt only as a lower bound), the endpoint's adaptive limit (its time to the
   * answer's head), then, for attempts not cancelled, the attempt metrics, outlier detection,
   * and the endpoint's breaker (a cancelled half-open trial gives its slot back).
   */
  #listen(): void {
    const { metrics } = this.deps;
    const listeners: AttemptListener[] = [];
    listeners.push((s, e) => {
      if (e.result === 'cancelled') this.#picker.finished(s.endpoint.id, e.now - s.started, true);
      else this.#picker.finished(s.endpoint.id, e.latencyMs);
    });
    const adaptive = this.#adaptive;
    if (adaptive) {
      listeners.push((s, e) => {
        const limit = adaptive.endpoint(s.endpoint.id);
        if (!limit) return;
        // A stream's lifetime says nothing of the endpoint's latency; a connection failure or a cancel teaches nothing.
        if (e.headLatencyMs !== undefined) limit.onSample(e.headLatencyMs, e.status === 503 || e.status === 429, s.inflightAtStart);
        else if (e.result === 'timeout') limit.onSample(e.latencyMs, true, s.inflightAtStart);
        else limit.onDrop();
      });
    }
    listeners.push((s, e) => {
      if (e.result !== 'cancelled') metrics.requestPath.attempt(this.name, s.endpoint.id, e.result);
    });
    const outlier = this.#outlier;
    if (outlier) {
      listeners.push((s, e) => {
        if (e.result !== 'cancelled') outlier.onResult(s.endpoint.id, e.now, e.status);
      });
    }
    listeners.push((s, e) => {
      const breaker = s.endpoint.breaker;
      if (!s.ticket || !breaker) return;
      if (e.result === 'cancelled') breaker.onCancel(s.ticket);
      else breaker.onResult(s.ticket, e.now, e.status !== 'connect' && e.status < 500, e.latencyMs);
    });
    this.#attemptListeners = listeners;
  }

  route(method: string, path: string): RouteState {
    for (const r of this.#routes) if (r.matches(method, path)) return r;
    return this.#defaultRoute;
  }

  /** How an endpoint is reached in the mesh: mTLS checked against its identity, or plaintext (undefined). */
  #meshPeer(identity: string): MeshPeer | undefined {
    const mode = this.#spec.mtls ?? 'off';
    if (mode === 'off' || (!identity && mode === 'permissive')) return undefined;
    const material = this.deps.meshMaterial ?? (() => undefined);
    return { identity, strict: mode === 'strict', material };
  }

  #transport(address: string, identity: string): EndpointTransport {
    const p = this.policy;
    const mesh = this.#meshPeer(identity);
    return new EndpointTransport(address, {
      connectMs: p.timeouts.connectMs,
      idleMs: p.timeouts.idleMs,
      connections: Math.min(p.bulkhead.maxConcurrent, 256),
      ...(mesh ? { mesh } : this.#tls ? { tls: this.#tls } : {}),
    });
  }

  /**
   * This sidecar's mesh certificate arrived (or went): connections to meshed endpoints made
   * without one (plaintext, permissive) are replaced; requests in flight finish on them.
   */
  remesh(): void {
    for (const ep of this.#endpointList) {
      if (!ep.identity || !this.#meshPeer(ep.identity)) continue;
      void ep.transport.close();
      ep.transport = this.#transport(ep.id, ep.identity);
    }
  }

  #setEndpoints(list: Array<{ address: string; weight: number; identity?: string }>): void {
    const { clock, metrics, random } = this.deps;
    const p = this.policy;
    const next = new Map<string, EndpointState>();
    for (const e of list) {
      const had = this.#endpoints.get(e.address);
      if (had && had.identity === (e.identity ?? '')) {
        had.weight = e.weight;
        next.set(e.address, had);
        continue;
      }
      if (had) {
        // The same address is now another pod (or meshed differently): new connections.
        void had.transport.close();
        had.identity = e.identity ?? '';
        had.transport = this.#transport(e.address, had.identity);
        had.weight = e.weight;
        next.set(e.address, had);
        continue;
      }
      const rules = breakerRules(p.breaker.endpoint);
      const breaker = rules ? new Breaker(rules) : undefined;
      const st: EndpointState = {
        id: e.address,
        weight: e.weight,
        identity: e.identity ?? '',
        transport: this.#transport(e.address, e.identity ?? ''),
        breaker,
      };
      if (breaker) {
        const g = metrics.breaker.labels({ upstream: this.name, endpoint: e.address });
        g.set(0);
        breaker.onChange = (from, to) => {
          g.set(breakerValue[to]);
          if (from === 'closed') this.#openBreakers++;
          if (to === 'closed') this.#openBreakers = Math.max(0, this.#openBreakers - 1);
          this.deps.log.info({ upstream: this.name, endpoint: e.address, from, to }, 'endpoint circuit breaker changed state');
        };
      }
      if (p.outlier.enabled) {
        metrics.ejected.set({ upstream: this.name, endpoint: e.address }, 0);
        for (const reason of ejectReasons) metrics.ejections.inc({ upstream: this.name, endpoint: e.address, reason }, 0);
      }
      next.set(e.address, st);
    }
    for (const [id, ep] of this.#endpoints) {
      if (!next.has(id)) {
        // Requests in flight keep their connections; new ones cannot pick it.
        void ep.transport.close();
        if (ep.breaker && ep.breaker.state(clock.now()) !== 'closed') this.#openBreakers = Math.max(0, this.#openBreakers - 1);
        metrics.ejected.remove({ upstream: this.name, endpoint: id });
        for (const reason of ejectReasons) metrics.ejections.remove({ upstream: this.name, endpoint: id, reason });
        metrics.requestPath.forgetEndpoint(this.name, id);
        metrics.breaker.remove({ upstream: this.name, endpoint: id });
      }
    }
    this.#endpoints = next;
    this.#endpointList = [...next.values()];
    this.#adaptive?.setEndpoints(next.keys());
    this.#picker = buildPicker(
      p.balancer.kind,
      this.#endpointList.map((e) => ({ id: e.id, weight: e.weight })),
      { random, now: () => clock.now() },
    );
    const o = p.outlier;
    if (!o.enabled) this.#outlier = undefined;
    else if (this.#outlier) this.#outlier.setEndpoints(next.keys());
    else {
      this.#outlier = new OutlierDetector(
        {
          consecutive5xx: o.consecutive5xx,
          consecutiveGatewayErrors: o.consecutiveGatewayErrors,
          intervalMs: o.intervalMs,
          baseEjectionMs: o.baseEjectionMs,
          maxEjectionMs: o.maxEjectionMs,
          maxEjectionPercent: o.maxEjectionPercent,
          panicThresholdPercent: o.panicThresholdPercent,
          ...(o.failurePercentThreshold > 0
            ? { failurePercent: { threshold: o.failurePercentThreshold, minRequests: o.failurePercentMinRequests } }
            : {}),
        },
        next.keys(),
        clock.now(),
      );
      this.#outlier.onEject = (id, reason, forMs) => {
        metrics.ejections.inc({ upstream: this.name, endpoint: id, reason });
        metrics.ejected.set({ upstream: this.name, endpoint: id }, 1);
        this.deps.log.warn({ upstream: this.name, endpoint: id, reason, forMs }, 'endpoint ejected');
      };
      this.#outlier.onReturn = (id) => {
        metrics.ejected.set({ upstream: this.name, endpoint: id }, 0);
        this.deps.log.info({ upstream: this.name, endpoint: id }, 'endpoint returned from ejection');
      };
    }
  }

  /** The admin endpoint's view. */
  describe(): Record<string, unknown> {
    const now = this.deps.clock.now();
    return {
      name: this.name,
      protocol: this.#spec.protocol,
      concurrencyLimit: this.#adaptive?.limit ?? null,
      concurrencyInflight: this.#adaptive?.inflight ?? null,
      retryBudgetRemaining: this.#budget.remaining(now),
      breaker: this.#breaker?.state(now) ?? 'none',
      queued: this.#defaultRoute.bulkhead.queued,
      inflight: this.#defaultRoute.bulkhead.running,
      endpoints: this.#endpointList.map((e) => ({
        address: e.id,
        weight: e.weight,
        ...(e.identity ? { identity: e.identity, mtls: this.#meshPeer(e.identity) !== undefined } : {}),
        breaker: e.breaker?.state(now) ?? 'none',
        ejected: this.#outlier?.isEjected(e.id) ?? false,
      })),
    };
  }

  async close(): Promise<void> {
    await Promise.all([...this.#endpoints.values()].map((e) => e.transport.close()));
  }
}

/** What an inbound listener keeps of a policy: no retries, hedges, ejection or breakers (one target). */
function inboundPolicy(p: PolicySpec): PolicySpec {
  const off = { ...p.breaker.endpoint, consecutiveFailures: 0, failureRatePercent: 0, slowCallRatePercent: 0 };
  return {
    ...p,
    retries: { ...p.retries, maxAttempts: 1 },
    hedge: { ...p.hedge, enabled: false },
    outlier: { ...p.outlier, enabled: false },
    breaker: { endpoint: off, upstream: off },
    shed: { ...p.shed, throttle: { ...p.shed.throttle, enabled: false } },
  };
}
