/**
 * Outlier detection (pure; time passed in), after Envoy's. Each endpoint's answers are counted;
 * an endpoint is ejected (taken out of load balancing) when
 *   - it returns `consecutive5xx` 5xx answers in a row, or `consecutiveGatewayErrors` gateway
 *     errors (502, 503, 504, connection failures) in a row, at once; or
 *   - at an interval sweep, its failure percentage is at least `failurePercent.threshold` over at
 *     least `failurePercent.minRequests`; or its success rate is more than `successRate.stdevFactor`
 *     standard deviations below the mean of the endpoints with enough requests.
 * It stays out for `baseEjectionMs` × the number of times it has been ejected (capped at
 * `maxEjectionMs`); the multiplier decays by one per clean interval. At most
 * `maxEjectionPercent` of the endpoints are out at once (at least one may be, never all), and
 * below `panicThresholdPercent` healthy endpoints the balancer ignores ejections altogether
 * (Envoy's panic mode): better to spread load over sick endpoints than to pile it on one.
 */
export interface OutlierOptions {
  consecutive5xx: number;
  consecutiveGatewayErrors: number;
  intervalMs: number;
  baseEjectionMs: number;
  maxEjectionMs: number;
  maxEjectionPercent: number;
  panicThresholdPercent: number;
  failurePercent?: { threshold: number; minRequests: number };
  successRate?: { stdevFactor: number; minRequests: number; minEndpoints: number };
}

interface EndpointState {
  consecutive5xx: number;
  consecutiveGateway: number;
  ok: number;
  failed: number;
  ejectedUntil: number;
  multiplier: number;
}

export const ejectReasons = ['consecutive5xx', 'consecutiveGatewayErrors', 'failurePercent', 'successRate'] as const;
export type EjectReason = (typeof ejectReasons)[number];

export class OutlierDetector {
  readonly #options: OutlierOptions;
  readonly #eps = new Map<string, EndpointState>();
  #ejected = new Set<string>();
  #lastSweep: number;
  /** Told of every ejection and return (for metrics and logs). */
  onEject: ((id: string, reason: EjectReason, forMs: number) => void) | undefined;
  onReturn: ((id: string) => void) | undefined;

  constructor(o: OutlierOptions, ids: Iterable<string>, now: number) {
    this.#options = o;
    this.#lastSweep = now;
    this.setEndpoints(ids);
  }

  /** Keep the state of endpoints that stay; start new ones clean. */
  setEndpoints(ids: Iterable<string>): void {
    const keep = new Set(ids);
    for (const id of [...this.#eps.keys()])
      if (!keep.has(id)) {
        this.#eps.delete(id);
        this.#ejected.delete(id);
      }
    for (const id of keep)
      if (!this.#eps.has(id))
        this.#eps.set(id, { consecutive5xx: 0, consecutiveGateway: 0, ok: 0, failed: 0, ejectedUntil: 0, multiplier: 0 });
  }

  /**
   * The endpoints the balancer must skip now (empty in panic mode). The same Set object is
   * returned while nothing changes, so callers can cheaply test `size`.
   */
  excluded(now: number): ReadonlySet<string> {
    this.#tick(now);
    if (this.#ejected.size === 0) return this.#ejected;
    const healthy = this.#eps.size - this.#ejected.size;
    return (healthy * 100) / this.#eps.size < this.#options.panicThresholdPercent ? empty : this.#ejected;
  }

  get ejectedCount(): number {
    return this.#ejected.size;
  }

  isEjected(id: string): boolean {
    return this.#ejected.has(id);
  }

  /**
   * One answer from `id`: `status` is the HTTP status (a gRPC status is mapped by the caller:
   * UNAVAILABLE as 503, DEADLINE_EXCEEDED as 504, others 200 or 500), or 'connect' for a
   * connection failure.
   */
  onResult(id: string, now: number, status: number | 'connect'): void {
    const s = this.#eps.get(id);
    if (!s) return;
    const gateway = status === 'connect' || status === 502 || status === 503 || status === 504;
    const fivexx = status === 'connect' || status >= 500;
    if (fivexx) s.failed++;
    else s.ok++;
    s.consecutive5xx = fivexx ? s.consecutive5xx + 1 : 0;
    s.consecutiveGateway = gateway ? s.consecutiveGateway + 1 : 0;
    if (s.consecutive5xx >= this.#options.consecutive5xx) this.#eject(id, s, now, 'consecutive5xx');
    else if (s.consecutiveGateway >= this.#options.consecutiveGatewayErrors) this.#eject(id, s, now, 'consecutiveGatewayErrors');
  }

  #tick(now: number): void {
    if (this.#ejected.size > 0) {
      for (const id of this.#ejected) {
        const s = this.#eps.get(id) as EndpointState;
        if (now >= s.ejectedUntil) {
          this.#ejected = new Set([...this.#ejected].filter((x) => x !== id));
          s.consecutive5xx = 0;
          s.consecutiveGateway = 0;
          this.onReturn?.(id);
        }
      }
    }
    if (now - this.#lastSweep >= this.#options.intervalMs) this.#sweep(now);
  }

  #sweep(now: number): void {
    this.#lastSweep = now;
    const o = this.#options;
    const rates: Array<{ id: string; s: EndpointState; rate: number }> = [];
    for (const [id, s] of this.#eps) {
      const total = s.ok + s.failed;
      if (!this.#ejected.has(id)) {
        if (o.failurePercent && total >= o.failurePercent.minRequests && (s.failed * 100) / total >= o.failurePercent.threshold)
          this.#eject(id, s, now, 'failurePercent');
        else if (o.successRate && total >= o.successRate.minRequests) rates.push({ id, s, rate: s.ok / total });
        else if (s.failed === 0 && s.multiplier > 0) s.multiplier--;
      }
    }
    if (o.successRate && rates.length >= o.successRate.minEndpoints) {
      const mean = rates.reduce((n, r) => n + r.rate, 0) / rates.length;
      const sd = Math.sqrt(rates.reduce((n, r) => n + (r.rate - mean) ** 2, 0) / rates.length);
      for (const r of rates) if (r.rate < mean - o.successRate.stdevFactor * sd) this.#eject(r.id, r.s, now, 'successRate');
    }
    for (const s of this.#eps.values()) {
      s.ok = 0;
      s.failed = 0;
    }
  }

  #eject(id: string, s: EndpointState, now: number, reason: EjectReason): void {
    if (this.#ejected.has(id)) return;
    const total = this.#eps.size;
    const cap = Math.max(1, Math.floor((total * this.#options.maxEjectionPercent) / 100));
    if (this.#ejected.size + 1 > cap || this.#ejected.size + 1 >= total) return;
    s.multiplier++;
    const forMs = Math.min(this.#options.maxEjectionMs, this.#options.baseEjectionMs * s.multiplier);
    s.ejectedUntil = now + forMs;
    s.consecutive5xx = 0;
    s.consecutiveGateway = 0;
    this.#ejected = new Set([...this.#ejected, id]);
    this.onEject?.(id, reason, forMs);
  }
}

const empty: ReadonlySet<string> = new Set();
