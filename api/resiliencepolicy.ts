/**
 * `ResiliencePolicy` (ballast.dev/v1alpha1) and the policy block the sidecar runs: one schema,
 * the source of the CRD, of the sidecar's config-file validation and of the defaults. Every
 * default is finite and chosen to be safe without tuning; docs/sidecar.md gives each one's
 * reason. Durations are whole milliseconds and ratios whole percents (Kubernetes API conventions:
 * no floats, the unit in the field name).
 */
import { conditionsSchema, type CrdDefinition, type Schema, openapi } from './schema.ts';
import { type Problem, validate } from './validate.ts';
import { type MtlsMode, mtlsModes } from './mesh.ts';

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

/** One upstream a policy configures: calls from the selected pods' sidecars to a Service. */
export interface UpstreamPolicy {
  service: { name: string; port: number };
  protocol?: 'auto' | 'http1' | 'http2';
  mtls?: MtlsMode;
  localPort?: number;
  policy?: unknown;
  routes?: unknown[];
  /**
   * Policy attachment to a Gateway API route: the policy applies to the requests this HTTPRoute or
   * GRPCRoute sends to the Service, not to the Service's other traffic (absent: to all of it).
   */
  gatewayRoute?: GatewayRouteRef;
}

/** A Gateway API HTTPRoute or GRPCRoute, by name (namespace: the policy's when absent). */
export interface GatewayRouteRef {
  name: string;
  namespace?: string;
}
/**
 * Who may call an inbound listener. Rules are tried in order; the first that matches the request
 * decides (its action); none: `default`. A rule's `from` needs a mesh identity (mTLS): a
 * ServiceAccount (`namespace/name`, or `name` in the policy's namespace) or any ServiceAccount of a
 * namespace it names (`from: {}`: any meshed caller); a rule without `from` matches every caller,
 * plaintext ones too.
 */
export interface AuthorizationPolicy {
  default: 'allow' | 'deny';
  rules: AuthorizationRule[];
}
export interface AuthorizationRule {
  action: 'allow' | 'deny';
  from?: { serviceAccounts?: string[]; namespaces?: string[] };
  pathPrefixes: string[];
  methods: string[];
}

const k8sName = '[a-z0-9]([-a-z0-9.]*[a-z0-9])?';
export const authorizationSchema: Schema = openapi.object(
  'Who may call this listener: rules tried in order, the first that matches decides; none: default. A refusal is answered 403 SIDECAR_ERR_FORBIDDEN (gRPC PERMISSION_DENIED), logged with the caller and counted.',
  {
    default: openapi.string('What happens to a request no rule matches.', { enum: ['allow', 'deny'], default: 'deny' }),
    rules: openapi.array(
      'Rules, in order.',
      openapi.object('A rule.', {
        action: openapi.string('allow or deny what the rule matches.', { enum: ['allow', 'deny'], default: 'allow' }),
        from: openapi.object(
          'Callers, by mesh identity (mTLS): any of these ServiceAccounts or namespaces; empty: any meshed caller. Absent: every caller, plaintext ones too.',
          {
            serviceAccounts: openapi.array(
              "ServiceAccounts: namespace/name, or name (in the policy's namespace).",
              openapi.string('a ServiceAccount', { pattern: `^(${k8sName}/)?${k8sName}$` }),
              { default: [] },
            ),
            namespaces: openapi.array(
              'Every ServiceAccount of these namespaces.',
              openapi.string('a namespace', { pattern: `^${k8sName}$` }),
              {
                default: [],
              },
            ),
          },
        ),
        pathPrefixes: openapi.array(
          'Path prefixes (empty: any path). gRPC: /package.Service/ or /package.Service/Method.',
          openapi.string('a prefix', { pattern: '^/' }),
          {
            default: [],
          },
        ),
        methods: openapi.array('HTTP methods (empty: any).', openapi.string('a method', { pattern: '^[A-Za-z]+$' }), { default: [] }),
      }),
      { default: [] },
    ),
  },
);

/** One inbound listener: the sidecar in front of an application port. */
export interface InboundPolicy {
  name: string;
  port: number;
  targetPort: number;
  mtls?: MtlsMode;
  authorization?: Partial<AuthorizationPolicy>;
  policy?: unknown;
}
export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: Array<{ key: string; operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist'; values?: string[] }>;
}

export interface ResiliencePolicy {
  apiVersion: string;
  kind: 'ResiliencePolicy';
  metadata: { name: string; namespace: string; generation?: number; uid?: string; resourceVersion?: string };
  spec: {
    /** Which pods' sidecars (in the namespace) this policy configures; none: every one. */
    selector?: LabelSelector;
    /** One upstream, the short form (or `upstreams`). */
    service?: { name: string; port: number };
    protocol?: 'auto' | 'http1' | 'http2';
    mtls?: MtlsMode;
    localPort?: number;
    policy?: unknown;
    routes?: unknown[];
    /** The short form's attachment to a Gateway API route (see {@link UpstreamPolicy.gatewayRoute}). */
    gatewayRoute?: GatewayRouteRef;
    upstreams?: UpstreamPolicy[];
    inbound?: InboundPolicy[];
  };
  status?: {
    observedGeneration?: number;
    endpoints?: number;
    selectedPods?: number;
    acceptedPods?: number;
    rejections?: Array<{ pod: string; reason: string }>;
    conditions?: Array<{
      type: string;
      status: string;
      reason?: string;
      message?: string;
      lastTransitionTime?: string;
      observedGeneration?: number;
    }>;
  };
}

/** The upstreams a policy names: `spec.upstreams`, or the short form's one. */
export function policyUpstreams(p: ResiliencePolicy): UpstreamPolicy[] {
  if (p.spec.upstreams) return p.spec.upstreams;
  if (!p.spec.service) return [];
  return [
    {
      service: p.spec.service,
      protocol: p.spec.protocol ?? 'auto',
      ...(p.spec.mtls ? { mtls: p.spec.mtls } : {}),
      localPort: p.spec.localPort ?? 0,
      ...(p.spec.policy !== undefined ? { policy: p.spec.policy } : {}),
      ...(p.spec.routes ? { routes: p.spec.routes } : {}),
      ...(p.spec.gatewayRoute ? { gatewayRoute: p.spec.gatewayRoute } : {}),
    },
  ];
}

/** Whether a pod's labels match a label selector (Kubernetes semantics; no selector: everything). */
export function selects(selector: LabelSelector | undefined, labels: Readonly<Record<string, string>>): boolean {
  if (!selector) return true;
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    const v = labels[e.key];
    if (e.operator === 'In' && !(has && (e.values ?? []).includes(v as string))) return false;
    if (e.operator === 'NotIn' && has && (e.values ?? []).includes(v as string)) return false;
    if (e.operator === 'Exists' && !has) return false;
    if (e.operator === 'DoesNotExist' && has) return false;
  }
  return true;
}

const serviceRef = openapi.object(
  "A Service in the policy's namespace.",
  {
    name: openapi.string('Service name.', { pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$' }),
    port: openapi.int('Service port.', { minimum: 1, maximum: 65535 }),
  },
  { required: ['name', 'port'] },
);
const protocolSchema = openapi.string('http1, http2 (h2c or TLS) or auto (the same as the caller spoke).', {
  enum: ['auto', 'http1', 'http2'],
  default: 'auto',
});
const upstreamMtls = openapi.string(
  "mTLS towards the Service's pods: permissive (mTLS to pods whose sidecar takes it, checking the pod's identity; plaintext to the rest), strict (mTLS only: pods without a mesh identity are not called), off (plaintext). Absent: permissive.",
  { enum: [...mtlsModes] },
);
const inboundMtls = openapi.string(
  'mTLS on this listener: permissive (meshed callers over mTLS, others in plaintext), strict (mTLS only: plaintext requests are answered 403 SIDECAR_ERR_MTLS_REQUIRED), off (plaintext). Absent: permissive.',
  { enum: [...mtlsModes] },
);
const gatewayRouteSchema = openapi.object(
  "Policy attachment to a Gateway API route: the policy applies to the requests this HTTPRoute or GRPCRoute sends to the Service (its rules' backendRefs to the Service's port), not to the Service's other traffic. Absent: to all of the Service's traffic.",
  {
    name: openapi.string('The HTTPRoute or GRPCRoute.'),
    namespace: openapi.string("Its namespace (absent: the policy's)."),
  },
  { required: ['name'] },
);
const localPortSchema = openapi.int(
  'Also open a local listener on 127.0.0.1:<localPort> in each sidecar (for clients that cannot use HTTP_PROXY, such as gRPC); 0: HTTP proxy mode only.',
  { default: 0, minimum: 0, maximum: 65535 },
);

export const resiliencePolicyCrd: CrdDefinition = {
  group: 'ballast.dev',
  kind: 'ResiliencePolicy',
  plural: 'resiliencepolicies',
  singular: 'resiliencepolicy',
  shortNames: ['rp'],
  categories: ['ballast'],
  version: 'v1alpha1',
  description:
    "ResiliencePolicy: how the Ballast sidecars of the pods it selects call Services (timeouts, retries, breakers, bulkheads, shedding, rate limits, hedging, balancing, outlier detection) and guard the pods' own ports. The operator streams it, with the Services' endpoints, to every selected sidecar.",
  spec: openapi.object(
    "The desired policy: which pods' sidecars it configures (selector), the upstreams they call with the policy for each (service and policy for one, upstreams for several), and inbound listeners in front of the pods' own ports.",
    {
      selector: openapi.object(
        'Which pods of the namespace (with a Ballast sidecar) this policy configures, by label; absent: all of them.',
        {
          matchLabels: openapi.map('Labels a pod must have, with these values.'),
          matchExpressions: openapi.array(
            'Label requirements (all must hold).',
            openapi.object(
              'A label requirement.',
              {
                key: openapi.string('The label.'),
                operator: openapi.string('In, NotIn, Exists or DoesNotExist.', { enum: ['In', 'NotIn', 'Exists', 'DoesNotExist'] }),
                values: openapi.array('Values for In and NotIn.', openapi.string('a value')),
              },
              { required: ['key', 'operator'] },
            ),
          ),
        },
      ),
      service: {
        ...serviceRef,
        description: 'One upstream, the short form: the Service the selected sidecars call (use upstreams for several).',
      },
      protocol: protocolSchema,
      mtls: upstreamMtls,
      localPort: localPortSchema,
      policy: { ...policySchema, description: "The short form's policy for every request to the Service." },
      routes: openapi.array(
        "The short form's per-route overrides, first match wins.",
        { ...routeSchema, required: ['name'] },
        { default: [] },
      ),
      gatewayRoute: gatewayRouteSchema,
      upstreams: openapi.array(
        'Upstreams the selected sidecars call, each with its policy.',
        openapi.object(
          'An upstream.',
          {
            service: serviceRef,
            protocol: protocolSchema,
            mtls: upstreamMtls,
            localPort: localPortSchema,
            policy: { ...policySchema, description: 'The policy for every request to the Service.' },
            routes: openapi.array('Per-route overrides, first match wins.', { ...routeSchema, required: ['name'] }, { default: [] }),
            gatewayRoute: gatewayRouteSchema,
          },
          { required: ['service'] },
        ),
      ),
      inbound: openapi.array(
        "Listeners the selected sidecars open in front of the pod's own ports (point a Service's targetPort at port to use them).",
        openapi.object(
          'An inbound listener.',
          {
            name: openapi.string('Name in metrics (unique in the policy).', { pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$' }),
            port: openapi.int('Where callers connect (all addresses of the pod).', { minimum: 1, maximum: 65535 }),
            targetPort: openapi.int("The application's port (on 127.0.0.1).", { minimum: 1, maximum: 65535 }),
            mtls: inboundMtls,
            authorization: authorizationSchema,
            policy: {
              type: 'object',
              description:
                'Inbound policy: timeouts, bulkhead, rateLimit, shed, fault (one target, so no retries, hedging, balancing or ejection).',
              'x-kubernetes-preserve-unknown-fields': true,
            },
          },
          { required: ['name', 'port', 'targetPort'] },
        ),
      ),
    },
    {
      'x-kubernetes-validations': [
        {
          rule: '!(has(self.service) && has(self.upstreams))',
          message: 'use spec.service for one upstream or spec.upstreams for several, not both',
        },
        {
          rule: '!has(self.gatewayRoute) || has(self.service)',
          message: "spec.gatewayRoute attaches the short form's policy to a route's requests to spec.service: set spec.service too",
        },
        {
          rule: 'has(self.service) || has(self.upstreams) || has(self.inbound)',
          message: 'name an upstream (spec.service, or spec.upstreams) or an inbound listener (spec.inbound)',
        },
      ],
    },
  ),
  status: openapi.object('What the operator observed.', {
    observedGeneration: openapi.int('The generation last processed.'),
    endpoints: openapi.int("Ready endpoints of the upstreams' Services, in all."),
    selectedPods: openapi.int('Running pods with a Ballast sidecar that the policy selects.'),
    acceptedPods: openapi.int('Of those, the sidecars that applied the configuration they are being sent now (this policy included).'),
    rejections: openapi.array(
      'Selected sidecars that refused the configuration they are being sent now, and why (they keep serving their last good one); at most 10.',
      openapi.object('A refusal.', {
        pod: openapi.string('The pod.'),
        reason: openapi.string('What the sidecar said.'),
      }),
    ),
    conditions: conditionsSchema,
  }),
  columns: [
    { name: 'Service', type: 'string', jsonPath: '.spec.service.name' },
    { name: 'Port', type: 'integer', jsonPath: '.spec.service.port' },
    { name: 'Endpoints', type: 'integer', jsonPath: '.status.endpoints' },
    { name: 'Sidecars', type: 'integer', jsonPath: '.status.selectedPods' },
    { name: 'Accepted', type: 'integer', jsonPath: '.status.acceptedPods' },
    { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
  ],
};
