/**
 * `ResiliencePolicy` (ballast.dev/v1alpha1): which pods' sidecars get which upstream and inbound
 * policies (the policy block itself and its defaults: api/policy.ts), and the CRD made from the
 * same schema.
 */
import { conditionsSchema, type CrdDefinition, type Schema, openapi } from './schema.ts';
import { type MtlsMode, mtlsModes } from './mesh.ts';
import { policySchema, routeSchema } from './policy.ts';

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
