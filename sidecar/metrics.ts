/**
 * The sidecar's Prometheus metrics (ballast_sidecar_*). Label children are looked up once per
 * upstream, endpoint and outcome and kept, so a request costs a few increments, not label hashing.
 */
import type { Counter, Gauge, Histogram, Metrics } from '../lib/metrics.ts';

const latencyBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class SidecarMetrics {
  readonly requests: Counter<'upstream' | 'route' | 'outcome'>;
  readonly duration: Histogram<'upstream' | 'route'>;
  readonly attempts: Counter<'upstream' | 'endpoint' | 'result'>;
  readonly attemptDuration: Histogram<'upstream' | 'endpoint'>;
  readonly retries: Counter<'upstream' | 'reason'>;
  readonly hedges: Counter<'upstream'>;
  readonly budget: Gauge<'upstream'>;
  readonly breaker: Gauge<'upstream' | 'endpoint'>;
  readonly ejections: Counter<'upstream' | 'endpoint' | 'reason'>;
  readonly ejected: Gauge<'upstream' | 'endpoint'>;
  readonly queueLength: Gauge<'upstream' | 'route'>;
  readonly queueWait: Histogram<'upstream' | 'route'>;
  readonly inflight: Gauge<'upstream' | 'route'>;
  readonly limit: Gauge<'upstream'>;
  readonly configReloads: Counter<'source' | 'result'>;
  readonly discoveryConnected: Gauge;
  readonly certificateExpiry: Gauge;
  readonly certificateRenewals: Counter<'result'>;
  readonly inboundConnections: Counter<'listener' | 'security' | 'result'>;
  readonly authorization: Counter<'listener' | 'result' | 'caller'>;
  readonly intercepted: Counter<'direction' | 'result'>;
  readonly routeDecisions: Counter<'upstream' | 'route' | 'result'>;
  /** Pre-bound label children for what every request and attempt records. */
  readonly requestPath: RequestPathMetrics;

  constructor(m: Metrics) {
    this.requests = m.counter(
      'ballast_sidecar_requests_total',
      "Requests by outcome: the status class the caller got (2xx, 3xx, 4xx, 5xx) or the sidecar's own refusal (bulkhead_full, queue_timeout, rate_limited, shed, throttled, circuit_open, no_endpoint, unreachable, reset, timeout, fault, cancelled).",
      ['upstream', 'route', 'outcome'],
    );
    this.duration = m.histogram(
      'ballast_sidecar_request_duration_seconds',
      "Time from the request's arrival to the end of its response.",
      ['upstream', 'route'],
      latencyBuckets,
    );
    this.attempts = m.counter('ballast_sidecar_attempts_total', 'Attempts (first tries, retries and hedges) by endpoint and result.', [
      'upstream',
      'endpoint',
      'result',
    ]);
    this.attemptDuration = m.histogram(
      'ballast_sidecar_attempt_duration_seconds',
      "Time from an attempt's start to its response head.",
      ['upstream', 'endpoint'],
      latencyBuckets,
    );
    this.retries = m.counter('ballast_sidecar_retries_total', 'Retries by the failure that caused them.', ['upstream', 'reason']);
    this.hedges = m.counter('ballast_sidecar_hedges_total', 'Hedged attempts sent.', ['upstream']);
    this.budget = m.gauge('ballast_sidecar_retry_budget_remaining', 'Extra attempts (retries and hedges) the budget still allows now.', [
      'upstream',
    ]);
    this.breaker = m.gauge(
      'ballast_sidecar_breaker_state',
      'Circuit breaker state: 0 closed, 1 half-open, 2 open (endpoint "*": the upstream\'s own breaker).',
      ['upstream', 'endpoint'],
    );
    this.ejections = m.counter('ballast_sidecar_ejections_total', 'Outlier ejections by reason.', ['upstream', 'endpoint', 'reason']);
    this.ejected = m.gauge('ballast_sidecar_endpoint_ejected', '1 while the endpoint is ejected.', ['upstream', 'endpoint']);
    this.queueLength = m.gauge('ballast_sidecar_queue_length', 'Requests waiting for a bulkhead slot.', ['upstream', 'route']);
    this.queueWait = m.histogram(
      'ballast_sidecar_queue_wait_seconds',
      'Time requests waited for a bulkhead slot.',
      ['upstream', 'route'],
      latencyBuckets,
    );
    this.inflight = m.gauge('ballast_sidecar_inflight', 'Requests holding a bulkhead slot.', ['upstream', 'route']);
    this.limit = m.gauge('ballast_sidecar_concurrency_limit', 'The adaptive concurrency limit learned for the upstream.', ['upstream']);
    this.certificateExpiry = m.gauge(
      'ballast_sidecar_certificate_expiry_timestamp_seconds',
      "When the sidecar's mesh certificate expires (Unix seconds; absent: none yet).",
    );
    this.certificateRenewals = m.counter(
      'ballast_sidecar_certificate_requests_total',
      'Mesh certificate requests to the operator, by result (issued, or the refusal code).',
      ['result'],
    );
    this.inboundConnections = m.counter(
      'ballast_sidecar_inbound_connections_total',
      'Connections accepted by inbound listeners: security mtls or plaintext; result accepted or the refusal reason.',
      ['listener', 'security', 'result'],
    );
    this.authorization = m.counter(
      'ballast_sidecar_inbound_authorization_total',
      "Inbound requests judged by the listener's authorization policy: allowed or denied, by caller (SPIFFE ID, or plaintext).",
      ['listener', 'result', 'caller'],
    );
    this.intercepted = m.counter(
      'ballast_sidecar_intercepted_connections_total',
      'Connections redirected to the sidecar by interception: direction outbound or inbound; result matched (an upstream or inbound listener), passthrough (sent on as TCP), passthrough-tls (TLS the app originated), not-redirected (a direct connection to a capture port, refused) or failed (the destination refused).',
      ['direction', 'result'],
    );
    this.routeDecisions = m.counter(
      'ballast_sidecar_route_decisions_total',
      'Requests to a Service with Gateway API routes, by the route that took them and what it did: matched (sent to a backend), redirect, no-match (404) or backend-invalid (500).',
      ['upstream', 'route', 'result'],
    );
    this.requestPath = new RequestPathMetrics(this);
    this.discoveryConnected = m.gauge(
      'ballast_sidecar_discovery_connected',
      '1 while the discovery stream from the operator is up (the last good configuration serves either way).',
    );
    this.configReloads = m.counter('ballast_sidecar_config_reloads_total', 'Configuration changes applied or refused.', [
      'source',
      'result',
    ]);
  }
}

/** Label children looked up once and kept (prom-client hashes the label object on every call). */
export class RequestPathMetrics {
  readonly #metrics: SidecarMetrics;
  readonly #counters = new Map<string, { inc(): void }>();
  readonly #histograms = new Map<string, { observe(v: number): void }>();

  constructor(m: SidecarMetrics) {
    this.#metrics = m;
  }

  request(upstream: string, route: string, outcome: string, seconds: number): void {
    const k = `${upstream}\u0000${route}\u0000${outcome}`;
    let c = this.#counters.get(k);
    if (!c) this.#counters.set(k, (c = this.#metrics.requests.labels({ upstream, route, outcome })));
    c.inc();
    const hk = `d\u0000${upstream}\u0000${route}`;
    let h = this.#histograms.get(hk);
    if (!h) this.#histograms.set(hk, (h = this.#metrics.duration.labels({ upstream, route })));
    h.observe(seconds);
  }

  attempt(upstream: string, endpoint: string, result: string): void {
    const k = `a\u0000${upstream}\u0000${endpoint}\u0000${result}`;
    let c = this.#counters.get(k);
    if (!c) this.#counters.set(k, (c = this.#metrics.attempts.labels({ upstream, endpoint, result })));
    c.inc();
  }

  attemptHead(upstream: string, endpoint: string, seconds: number): void {
    const k = `h\u0000${upstream}\u0000${endpoint}`;
    let h = this.#histograms.get(k);
    if (!h) this.#histograms.set(k, (h = this.#metrics.attemptDuration.labels({ upstream, endpoint })));
    h.observe(seconds);
  }

  /** An endpoint left: forget its children (the series go with {@link SidecarMetrics} removal). */
  forgetEndpoint(upstream: string, endpoint: string): void {
    for (const k of [...this.#counters.keys()]) if (k.startsWith(`a\u0000${upstream}\u0000${endpoint}\u0000`)) this.#counters.delete(k);
    this.#histograms.delete(`h\u0000${upstream}\u0000${endpoint}`);
  }
}

export const breakerValue = { closed: 0, halfOpen: 1, open: 2 } as const;
