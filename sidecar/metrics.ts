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

  constructor(m: Metrics) {
    this.requests = m.counter('ballast_sidecar_requests_total', 'Requests by outcome: the status class the caller got (2xx, 3xx, 4xx, 5xx) or the sidecar\'s own refusal (bulkhead_full, queue_timeout, rate_limited, shed, throttled, circuit_open, no_endpoint, unreachable, reset, timeout, fault, cancelled).', ['upstream', 'route', 'outcome']);
    this.duration = m.histogram('ballast_sidecar_request_duration_seconds', 'Time from the request\'s arrival to the end of its response.', ['upstream', 'route'], latencyBuckets);
    this.attempts = m.counter('ballast_sidecar_attempts_total', 'Attempts (first tries, retries and hedges) by endpoint and result.', ['upstream', 'endpoint', 'result']);
    this.attemptDuration = m.histogram('ballast_sidecar_attempt_duration_seconds', 'Time from an attempt\'s start to its response head.', ['upstream', 'endpoint'], latencyBuckets);
    this.retries = m.counter('ballast_sidecar_retries_total', 'Retries by the failure that caused them.', ['upstream', 'reason']);
    this.hedges = m.counter('ballast_sidecar_hedges_total', 'Hedged attempts sent.', ['upstream']);
    this.budget = m.gauge('ballast_sidecar_retry_budget_remaining', 'Extra attempts (retries and hedges) the budget still allows now.', ['upstream']);
    this.breaker = m.gauge('ballast_sidecar_breaker_state', 'Circuit breaker state: 0 closed, 1 half-open, 2 open (endpoint "*": the upstream\'s own breaker).', ['upstream', 'endpoint']);
    this.ejections = m.counter('ballast_sidecar_ejections_total', 'Outlier ejections by reason.', ['upstream', 'endpoint', 'reason']);
    this.ejected = m.gauge('ballast_sidecar_endpoint_ejected', '1 while the endpoint is ejected.', ['upstream', 'endpoint']);
    this.queueLength = m.gauge('ballast_sidecar_queue_length', 'Requests waiting for a bulkhead slot.', ['upstream', 'route']);
    this.queueWait = m.histogram('ballast_sidecar_queue_wait_seconds', 'Time requests waited for a bulkhead slot.', ['upstream', 'route'], latencyBuckets);
    this.inflight = m.gauge('ballast_sidecar_inflight', 'Requests holding a bulkhead slot.', ['upstream', 'route']);
    this.limit = m.gauge('ballast_sidecar_concurrency_limit', 'The adaptive concurrency limit learned for the upstream.', ['upstream']);
    this.configReloads = m.counter('ballast_sidecar_config_reloads_total', 'Configuration changes applied or refused.', ['source', 'result']);
  }
}

export const breakerValue = { closed: 0, halfOpen: 1, open: 2 } as const;
