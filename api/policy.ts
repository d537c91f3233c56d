/**
 * The policy block the sidecar runs for an upstream (or one route of it), and its schema: the
 * source of the ResiliencePolicy CRD's policy fields (api/resiliencepolicy.ts), of the sidecar's
 * config-file validation and of the defaults. Every default is finite and chosen to be safe
 * without tuning; docs/sidecar.md gives each one's reason. Durations are whole milliseconds and
 * ratios whole percents (Kubernetes API conventions: no floats, the unit in the field name).
 */
import { type Schema, openapi } from './schema.ts';
import { type Problem, validate } from './validate.ts';

export const retryOnValues = [
  'connect-failure',
  'reset',
  'refused-stream',
  '5xx',
  '502',
  '503',
  '504',
  '429',
  'unavailable',
  'resource-exhausted',
  'deadline-exceeded',
] as const;
export type RetryOn = (typeof retryOnValues)[number];
export const balancerKinds = ['roundRobin', 'weighted', 'random', 'leastRequest', 'ewma', 'ringHash', 'maglev'] as const;

export interface BreakerSpec {
  consecutiveFailures: number;
  failureRatePercent: number;
  slowCallRatePercent: number;
  slowCallMs: number;
  minCalls: number;
  windowMs: number;
  openMs: number;
  halfOpenTrials: number;
}

export interface PolicySpec {
  timeouts: { connectMs: number; attemptMs: number; requestMs: number; idleMs: number };
  retries: {
    maxAttempts: number;
    retryOn: RetryOn[];
    methods: 'idempotent' | 'all';
    idempotentPaths: string[];
    backoffBaseMs: number;
    backoffMaxMs: number;
    budget: { ratioPercent: number; minPerSecond: number; windowMs: number };
  };
  breaker: { endpoint: BreakerSpec; upstream: BreakerSpec };
  bulkhead: { maxConcurrent: number; queueLength: number; queueWaitMs: number };
  rateLimit: { perSecond: number; burst: number };
  shed: {
    adaptive: { enabled: boolean; initialLimit: number; minLimit: number; maxLimit: number };
    priorityHeader: string;
    throttle: { enabled: boolean; acceptsMultiplier: number; windowMs: number };
  };
  hedge: { enabled: boolean; delayMs: number; percentile: number; initialDelayMs: number; minDelayMs: number; maxHedges: number };
  balancer: { kind: (typeof balancerKinds)[number]; hashOn: string };
  outlier: {
    enabled: boolean;
    consecutive5xx: number;
    consecutiveGatewayErrors: number;
    intervalMs: number;
    baseEjectionMs: number;
    maxEjectionMs: number;
    maxEjectionPercent: number;
    panicThresholdPercent: number;
    failurePercentThreshold: number;
    failurePercentMinRequests: number;
  };
  fault: { delayPercent: number; delayMs: number; abortPercent: number; abortStatus: number; abortGrpcStatus: number };
}

const ms = (description: string, dflt: number, min = 0, max = 86_400_000): Schema =>
  openapi.int(description, { default: dflt, minimum: min, maximum: max });
const pct = (description: string, dflt: number): Schema => openapi.int(description, { default: dflt, minimum: 0, maximum: 100 });

const breakerSchema = (who: string, d: Partial<BreakerSpec>): Schema =>
  openapi.object(
    `Circuit breaker per ${who}: opens on any rule that trips (0 turns a rule off), fails calls fast while open, then lets halfOpenTrials calls test the way.`,
    {
      consecutiveFailures: openapi.int('Open after this many failures in a row (0: off).', {
        default: d.consecutiveFailures ?? 0,
        minimum: 0,
      }),
      failureRatePercent: pct('Open when at least this percent of the calls in the window failed (0: off).', d.failureRatePercent ?? 0),
      slowCallRatePercent: pct(
        'Open when at least this percent of the calls in the window took slowCallMs or more (0: off).',
        d.slowCallRatePercent ?? 0,
      ),
      slowCallMs: ms('A call this slow counts as slow.', d.slowCallMs ?? 5000, 1),
      minCalls: openapi.int('The rate rules need at least this many calls in the window.', { default: d.minCalls ?? 100, minimum: 1 }),
      windowMs: ms('The sliding window of the rate rules.', d.windowMs ?? 10_000, 100),
      openMs: ms('How long the breaker stays open before trial calls.', d.openMs ?? 5000, 1),
      halfOpenTrials: openapi.int('Trial calls let through at once when half-open; all must succeed to close.', {
        default: d.halfOpenTrials ?? 3,
        minimum: 1,
        maximum: 1000,
      }),
    },
  );

export const policySchema: Schema = openapi.object('Resilience policy for calls to one upstream (or one route of it).', {
  timeouts: openapi.object(
    "Time limits. The caller's own deadline (grpc-timeout, x-ballast-timeout-ms) shortens them, and the time left is passed on.",
    {
      connectMs: ms('Connection set-up to an endpoint.', 1000, 1),
      attemptMs: ms(
        'One attempt, until the response headers arrive (an attempt never outlives its request: the smaller of the two applies).',
        5000,
        1,
      ),
      requestMs: ms(
        'The whole request across retries and hedges, until the response headers arrive. Streams (a gRPC watch) are bounded by idleMs afterwards, not by this.',
        15_000,
        1,
      ),
      idleMs: ms('A response or request stream with no data for this long is reset.', 300_000, 1),
    },
  ),
  retries: openapi.object('Retries, drawn from a budget shared with hedging.', {
    maxAttempts: openapi.int('Attempts per request, the first included (1: never retry).', { default: 3, minimum: 1, maximum: 10 }),
    retryOn: openapi.array(
      'Outcomes that are retried. connect-failure and refused-stream are safe for any method (the upstream never saw the request); the rest only for idempotent requests.',
      openapi.string('an outcome', { enum: [...retryOnValues] }),
      { default: ['connect-failure', 'refused-stream', 'reset', '502', '503', '504', 'unavailable'] },
    ),
    methods: openapi.string(
      'idempotent: retry GET, HEAD, OPTIONS, PUT, DELETE, TRACE and gRPC methods listed in idempotentPaths; all: retry any request.',
      { enum: ['idempotent', 'all'], default: 'idempotent' },
    ),
    idempotentPaths: openapi.array(
      'Path prefixes of requests that are idempotent whatever their method (gRPC reads: /etcdserverpb.KV/Range).',
      openapi.string('a path prefix'),
      { default: [] },
    ),
    backoffBaseMs: ms('Back-off before retry n is uniform in [0, min(backoffMaxMs, backoffBaseMs × 2^n)) (full jitter).', 25, 1),
    backoffMaxMs: ms('The cap of the back-off.', 250, 1),
    budget: openapi.object('At most ratioPercent extra attempts per request in the window, plus minPerSecond.', {
      ratioPercent: pct('Extra attempts (retries and hedges) per 100 requests.', 20),
      minPerSecond: openapi.int('Extra attempts allowed per second however little traffic there is.', { default: 10, minimum: 0 }),
      windowMs: ms('The window requests and extra attempts are counted over.', 10_000, 1000),
    }),
  }),
  breaker: openapi.object('Circuit breakers.', {
    endpoint: breakerSchema('endpoint', { consecutiveFailures: 5, openMs: 5000, halfOpenTrials: 1 }),
    upstream: breakerSchema('upstream', { failureRatePercent: 50, minCalls: 100, openMs: 5000, halfOpenTrials: 5 }),
  }),
  bulkhead: openapi.object('Concurrency limit with a bounded queue; a full queue fails at once with 503 (SIDECAR_ERR_BULKHEAD_FULL).', {
    maxConcurrent: openapi.int('Requests in flight at once.', { default: 1024, minimum: 1 }),
    queueLength: openapi.int('Requests waiting for a slot.', { default: 1024, minimum: 0 }),
    queueWaitMs: ms('How long a request may wait for a slot.', 1000, 0),
  }),
  rateLimit: openapi.object('Token bucket; refused requests get 429 with Retry-After (SIDECAR_ERR_RATE_LIMITED).', {
    perSecond: openapi.int('Requests per second (0: no limit).', { default: 0, minimum: 0 }),
    burst: openapi.int('Bucket size: requests admitted at once after a quiet spell (0: perSecond).', { default: 0, minimum: 0 }),
  }),
  shed: openapi.object('Load shedding: an adaptive concurrency limit learned from latency, priority classes and client-side throttling.', {
    adaptive: openapi.object(
      'Vegas-style adaptive concurrency limit, learned per endpoint from its latency; the upstream admits up to the sum over its endpoints.',
      {
        enabled: openapi.bool('Learn and enforce the limit.', { default: true }),
        initialLimit: openapi.int("Each endpoint's limit before anything is learned.", { default: 50, minimum: 1 }),
        minLimit: openapi.int("An endpoint's limit never goes below this.", { default: 5, minimum: 1 }),
        maxLimit: openapi.int("An endpoint's limit never goes above this.", { default: 500, minimum: 1 }),
      },
    ),
    priorityHeader: openapi.string("Header naming the request's class: critical, default or sheddable (sheddable is refused first).", {
      default: 'x-ballast-priority',
    }),
    throttle: openapi.object(
      'Client-side adaptive throttling (Google SRE book): refuse locally with probability max(0, (requests − K·accepts)/(requests + 1)).',
      {
        enabled: openapi.bool('Throttle when the upstream rejects for overload.', { default: true }),
        acceptsMultiplier: openapi.int('K.', { default: 2, minimum: 1, maximum: 100 }),
        windowMs: ms('The window requests and accepts are counted over.', 120_000, 1000),
      },
    ),
  }),
  hedge: openapi.object(
    'Hedged requests: an idempotent request still unanswered after the delay is also sent to another endpoint; the first answer wins.',
    {
      enabled: openapi.bool('Send hedges (idempotent requests only; each hedge spends the retry budget).', { default: true }),
      delayMs: ms('A fixed delay (0: use the percentile).', 0),
      percentile: openapi.int('Hedge after this percentile of recent latency: 99 hedges about 1% of requests.', {
        default: 99,
        minimum: 50,
        maximum: 100,
      }),
      initialDelayMs: ms('Before enough latencies are known for the percentile (a cold start), hedge after this long.', 50, 1),
      minDelayMs: ms('Never hedge sooner than this.', 5, 0),
      maxHedges: openapi.int('Extra attempts per request at most.', { default: 1, minimum: 1, maximum: 3 }),
    },
  ),
  balancer: openapi.object('Load balancing over the endpoints.', {
    kind: openapi.string(
      'roundRobin, weighted, random, leastRequest (power of two choices), ewma (peak EWMA, power of two choices), ringHash or maglev.',
      { enum: [...balancerKinds], default: 'ewma' },
    ),
    hashOn: openapi.string('ringHash and maglev: "header:<name>", "path" or "client".', {
      default: 'path',
      pattern: '^(path|client|header:[A-Za-z0-9-]+)$',
    }),
  }),
  outlier: openapi.object('Outlier detection: endpoints that fail are taken out of balancing for a while.', {
    enabled: openapi.bool('Eject outliers.', { default: true }),
    consecutive5xx: openapi.int('Eject after this many 5xx in a row.', { default: 5, minimum: 1 }),
    consecutiveGatewayErrors: openapi.int('Eject after this many 502/503/504 or connection failures in a row.', { default: 5, minimum: 1 }),
    intervalMs: ms('How often failure percentages are checked.', 10_000, 100),
    baseEjectionMs: ms('Ejection time, multiplied by the times the endpoint was ejected.', 30_000, 1),
    maxEjectionMs: ms('Ejection time at most.', 300_000, 1),
    maxEjectionPercent: pct('At most this percent of endpoints out at once (at least one may be; never all).', 50),
    panicThresholdPercent: pct(
      'Below this percent of available endpoints (not ejected, circuit breaker not open), ejections and open breakers are ignored and all endpoints share the load (0: never).',
      50,
    ),
    failurePercentThreshold: pct('Eject an endpoint whose failures in an interval reach this percent (0: off).', 85),
    failurePercentMinRequests: openapi.int('The failure-percent rule needs this many requests in the interval.', {
      default: 50,
      minimum: 1,
    }),
  }),
  fault: openapi.object('Fault injection for tests and drills (off by default).', {
    delayPercent: pct('Percent of requests delayed.', 0),
    delayMs: ms('The delay.', 0),
    abortPercent: pct('Percent of requests answered at once with abortStatus.', 0),
    abortStatus: openapi.int('HTTP status of an aborted request.', { default: 503, minimum: 200, maximum: 599 }),
    abortGrpcStatus: openapi.int('gRPC status of an aborted gRPC request.', { default: 14, minimum: 1, maximum: 16 }),
  }),
});

/** The schema without defaults (route overrides must not reset what the upstream set). */
export function stripDefaults(schema: Schema): Schema {
  const { default: _d, ...rest } = schema;
  return rest.properties
    ? { ...rest, properties: Object.fromEntries(Object.entries(rest.properties).map(([k, v]) => [k, stripDefaults(v)])) }
    : rest;
}

export interface RouteSpec {
  name: string;
  pathPrefix: string;
  methods: string[];
  policy: PolicySpec;
}

export const routeSchema: Schema = openapi.object(
  "A route: requests whose path starts with pathPrefix (and whose method is listed, if any) get this route's own policy; its unset fields come from the upstream's.",
  {
    name: openapi.string("The route's name in metrics.", { pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$' }),
    pathPrefix: openapi.string('Path prefix.', { default: '/' }),
    methods: openapi.array('HTTP methods (empty: all).', openapi.string('a method'), { default: [] }),
    policy: { ...stripDefaults(policySchema), description: "The route's policy overrides (unset fields come from the upstream's policy)." },
  },
  { required: ['name'] },
);

/** Deep-merge `over` onto `base` (objects merge, everything else replaces). */
export function merge<T>(base: T, over: unknown): T {
  if (over === undefined || over === null) return base;
  if (typeof base !== 'object' || base === null || Array.isArray(base) || typeof over !== 'object' || Array.isArray(over)) return over as T;
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [k, v] of Object.entries(over as Record<string, unknown>)) out[k] = merge(out[k], v);
  return out as T;
}

/** A policy from user input (defaults filled, all problems listed). */
export function resolvePolicy(input: unknown, path: string): { policy: PolicySpec; problems: Problem[] } {
  const { value, problems } = validate(policySchema, input, path);
  const p = value as PolicySpec;
  const a = p.shed.adaptive;
  if (a.minLimit > a.maxLimit)
    problems.push({ path: `${path}.shed.adaptive.minLimit`, message: `must not exceed maxLimit (${a.maxLimit}), got ${a.minLimit}` });
  if (p.retries.backoffBaseMs > p.retries.backoffMaxMs)
    problems.push({ path: `${path}.retries.backoffBaseMs`, message: `must not exceed backoffMaxMs (${p.retries.backoffMaxMs})` });
  return { policy: p, problems };
}

/** Only the fields the user set (for route overrides: validated, but without defaults). */
export function checkOverrides(input: unknown, path: string): Problem[] {
  return validate(stripDefaults(policySchema), input, path).problems;
}
