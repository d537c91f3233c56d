/**
 * The sidecar's configuration file (YAML): listeners, upstreams with their endpoints and
 * policies, inbound listeners, the explicit HTTP proxy, discovery. Policies use the
 * ResiliencePolicy schema (api/policy.ts), so a policy means the same
 * thing in a file and in the cluster. Every problem is reported at once with its field path.
 */
import { readFileSync } from 'node:fs';
import { parseYaml } from '../lib/yaml.ts';
import { catalogue } from './errors.ts';
import type { MtlsMode } from '../api/mesh.ts';
import { type PolicySpec, checkOverrides, merge, resolvePolicy } from '../api/policy.ts';
import { type AuthorizationPolicy, authorizationSchema } from '../api/resiliencepolicy.ts';
import { openapi } from '../api/schema.ts';
import { type Problem, validate } from '../api/validate.ts';
import { type HttpRoute, routeProblems } from './routing/routes.ts';
import { httpRoutesSchema } from './routing/schema.ts';

const address = (description: string, dflt?: string) =>
  openapi.string(description, {
    pattern: '^(\\[[0-9a-fA-F:.]+\\]|[^:\\s]+):[0-9]{1,5}$',
    ...(dflt === undefined ? {} : { default: dflt }),
  });

const fileSchema = openapi.object('ballast sidecar configuration', {
  admin: address('host:port of the admin endpoint (/ready, /live, /metrics, /config, /endpoints)', '127.0.0.1:15000'),
  replayBufferBytes: openapi.int('Request bytes kept so a request can be retried or hedged; a larger body is sent once.', {
    default: 65_536,
    minimum: 0,
    maximum: 16_777_216,
  }),
  drainMs: openapi.int("On shutdown (or a listener's removal), how long in-flight requests may finish.", { default: 10_000, minimum: 0 }),
  upstreams: openapi.array(
    'Services this application calls.',
    openapi.object(
      'An upstream.',
      {
        name: openapi.string('Name in metrics and the admin endpoint.', { pattern: '^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$' }),
        listen: address('Local listener the application calls (127.0.0.1:<port>); empty: reachable only through the HTTP proxy.', ''),
        protocol: openapi.string('Towards the endpoints: http1, http2, or auto (what the caller spoke).', {
          enum: ['auto', 'http1', 'http2'],
          default: 'auto',
        }),
        listenTls: openapi.object('TLS on the listener (HTTP/1.1 and HTTP/2 by ALPN); empty files: plaintext (HTTP/1.1 and h2c).', {
          certFile: openapi.string('PEM certificate chain.', { default: '' }),
          keyFile: openapi.string('PEM private key.', { default: '' }),
        }),
        hosts: openapi.array(
          'Host names that select this upstream in HTTP proxy mode (Host header or absolute URL).',
          openapi.string('a host, with or without :port'),
          { default: [] },
        ),
        addresses: openapi.array(
          "Addresses (ip:port) that select this upstream for intercepted connections: the Service's cluster IPs and port (discovery sets them); its endpoints' addresses select it too.",
          address('ip:port'),
          { default: [] },
        ),
        mtls: openapi.string(
          'Mesh mTLS towards the endpoints: permissive (mTLS to endpoints with an identity, plaintext to the rest), strict (only endpoints with an identity), off (plaintext).',
          { enum: ['strict', 'permissive', 'off'], default: 'permissive' },
        ),
        tls: openapi.object('TLS towards the endpoints.', {
          enabled: openapi.bool('Use TLS.', { default: false }),
          caFile: openapi.string("PEM bundle of the CAs to trust (empty: the system's).", { default: '' }),
          serverName: openapi.string('SNI and certificate name (empty: the endpoint host).', { default: '' }),
          insecureSkipVerify: openapi.bool('Do not verify the certificate (tests only).', { default: false }),
        }),
        httpRoutes: httpRoutesSchema,
        endpoints: openapi.array(
          'Static endpoints (host:port, optional weight); with discovery, the operator sends them.',
          openapi.object(
            'An endpoint.',
            {
              address: address('host:port'),
              weight: openapi.int('Relative weight.', { default: 1, minimum: 1, maximum: 1000 }),
              identity: openapi.string(
                "The mesh identity (SPIFFE ID) the endpoint's sidecar presents; set: called over mTLS and checked (discovery sets it).",
                { default: '', pattern: '^(spiffe://.+)?$' },
              ),
            },
            { required: ['address'] },
          ),
          { default: [] },
        ),
        policy: {
          type: 'object',
          description: "The upstream's policy (the ResiliencePolicy schema).",
          'x-kubernetes-preserve-unknown-fields': true,
        },
        routes: openapi.array(
          'Per-route overrides, first match wins.',
          openapi.object(
            'A route.',
            {
              name: openapi.string('Name in metrics.', { pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$' }),
              pathPrefix: openapi.string('Path prefix.', { default: '/' }),
              methods: openapi.array('Methods (empty: all).', openapi.string('a method'), { default: [] }),
              policy: { type: 'object', description: "Overrides of the upstream's policy.", 'x-kubernetes-preserve-unknown-fields': true },
            },
            { required: ['name'] },
          ),
          { default: [] },
        ),
      },
      { required: ['name'] },
    ),
    { default: [] },
  ),
  inbound: openapi.array(
    "Listeners in front of the application's own ports.",
    openapi.object(
      'An inbound listener.',
      {
        name: openapi.string('Name in metrics.', { pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$' }),
        listen: address('Where callers connect.'),
        target: address("The application's port."),
        mtls: openapi.string(
          'Mesh mTLS on the listener: permissive (meshed callers over mTLS, others in plaintext), strict (plaintext requests answered 403), off (plaintext only).',
          { enum: ['strict', 'permissive', 'off'], default: 'permissive' },
        ),
        authorization: authorizationSchema,
        listenTls: openapi.object('TLS on the listener (HTTP/1.1 and HTTP/2 by ALPN); empty files: plaintext (HTTP/1.1 and h2c).', {
          certFile: openapi.string('PEM certificate chain.', { default: '' }),
          keyFile: openapi.string('PEM private key.', { default: '' }),
        }),
        policy: {
          type: 'object',
          description: 'Inbound policy: timeouts, bulkhead, rateLimit, shed, fault.',
          'x-kubernetes-preserve-unknown-fields': true,
        },
      },
      { required: ['name', 'listen', 'target'] },
    ),
    { default: [] },
  ),
  proxy: openapi.object('Explicit HTTP proxy (HTTP_PROXY) for HTTP/1.1 clients.', {
    listen: address('host:port (empty: off).', ''),
  }),
  capture: openapi.object(
    "Transparent interception: where the pod's iptables rules (ballast mesh-init) redirect outbound and inbound TCP; the original destination picks the upstream or inbound listener.",
    {
      outbound: address('host:port of the outbound capture listener, 127.0.0.1:15001 when injected (empty: off).', ''),
      inbound: address('host:port of the inbound capture listener, 0.0.0.0:15006 when injected (empty: off).', ''),
    },
  ),
  tracing: openapi.object('OpenTelemetry traces: a span per attempt, sent over OTLP/HTTP.', {
    endpoint: openapi.string(
      "OTLP/HTTP collector base URL for this sidecar's spans, e.g. http://otel-collector:4318 (empty: the process' OpenTelemetry SDK when OTEL_EXPORTER_OTLP_ENDPOINT is set, else no tracing).",
      { default: '' },
    ),
    samplePercent: {
      type: 'number',
      description: "Percent of new traces recorded (a caller's sampled trace is always followed).",
      default: 1,
      minimum: 0,
      maximum: 100,
    },
    serviceName: openapi.string(
      'service.name of the spans sent to tracing.endpoint (default ballast-sidecar; the process SDK uses OTEL_SERVICE_NAME).',
      { default: '' },
    ),
  }),
  identity: openapi.object(
    'The mesh identity: a certificate from the operator for this pod (tokenFile, with discovery), or from files another agent keeps (certFile, keyFile, bundleFile).',
    {
      tokenFile: openapi.string(
        "The pod's projected ServiceAccount token (audience ballast.dev/mesh) proving who it is; empty: no mesh identity from the operator.",
        { default: '' },
      ),
      certFile: openapi.string('PEM certificate chain with a SPIFFE ID (re-read when it changes).', { default: '' }),
      keyFile: openapi.string("PEM private key of certFile's certificate.", { default: '' }),
      bundleFile: openapi.string('PEM trust anchors to check peers with.', { default: '' }),
    },
  ),
  discovery: openapi.object("The operator's discovery service.", {
    address: openapi.string('host:port (empty: static configuration only).', { default: '' }),
    node: openapi.string("This sidecar's identity (default: $POD_NAMESPACE/$POD_NAME).", { default: '' }),
    trustBundle: openapi.string(
      "PEM: the mesh's trust anchors; set: the stream is TLS, the operator's certificate checked against them (the injector sets it). Empty: plaintext.",
      { default: '' },
    ),
    serverName: openapi.string("The name the operator's certificate must carry (empty: the address' host).", { default: '' }),
  }),
});

export interface RouteConfig {
  name: string;
  pathPrefix: string;
  methods: string[];
  policy: PolicySpec;
}

export interface ListenTls {
  certFile: string;
  keyFile: string;
}

export interface UpstreamConfig {
  name: string;
  listen: string;
  listenTls: ListenTls;
  protocol: 'auto' | 'http1' | 'http2';
  hosts: string[];
  addresses: string[];
  tls: { enabled: boolean; caFile: string; serverName: string; insecureSkipVerify: boolean };
  mtls: MtlsMode;
  endpoints: Array<{ address: string; weight: number; identity: string }>;
  policy: PolicySpec;
  routes: RouteConfig[];
  httpRoutes: HttpRoute[];
}

/**
 * Whether an upstream is reached other than as a Gateway API route's backend: by its listener,
 * proxy hosts or Service addresses. One with none of them (a route-attached policy's own
 * upstream) is reached only through its route: never by address, nor left unreachable.
 */
export function reachedDirectly(u: Pick<UpstreamConfig, 'listen' | 'hosts' | 'addresses'>): boolean {
  return Boolean(u.listen) || u.hosts.length > 0 || u.addresses.length > 0;
}

export interface InboundConfig {
  name: string;
  listen: string;
  target: string;
  mtls: MtlsMode;
  /** Absent: every caller may call. */
  authorization?: AuthorizationPolicy;
  listenTls: ListenTls;
  policy: PolicySpec;
}

export interface SidecarConfig {
  admin: string;
  replayBufferBytes: number;
  drainMs: number;
  upstreams: UpstreamConfig[];
  inbound: InboundConfig[];
  proxy: { listen: string };
  capture: { outbound: string; inbound: string };
  tracing: { endpoint: string; samplePercent: number; serviceName: string };
  identity: { tokenFile: string; certFile: string; keyFile: string; bundleFile: string };
  discovery: { address: string; node: string; trustBundle: string; serverName: string };
}

/** Inbound listeners get no retries, hedging or balancing (there is one target); say so rather than ignore it. */
const inboundOnly = new Set(['timeouts', 'bulkhead', 'rateLimit', 'shed', 'fault']);

/** Validate a parsed document; throws SIDECAR_ERR_CONFIG_INVALID listing every problem. */
export function resolveConfig(doc: unknown, source: string): SidecarConfig {
  // Endpoints may be written as plain "host:port" strings (normalised in a copy: the caller's
  // document is left as it was).
  const d = doc as { upstreams?: unknown } | null;
  const normalised =
    d && Array.isArray(d.upstreams)
      ? {
          ...d,
          upstreams: d.upstreams.map((u: { endpoints?: unknown }) =>
            u && Array.isArray(u.endpoints)
              ? { ...u, endpoints: u.endpoints.map((e: unknown) => (typeof e === 'string' ? { address: e } : e)) }
              : u,
          ),
        }
      : doc;
  const { value, problems } = validate(fileSchema, normalised ?? {}, 'config');
  // The checks across fields below read a well-formed document: a wrong shape is reported alone.
  if (problems.length > 0) throw invalid(problems, source);
  const c = value as SidecarConfig;
  const names = new Set<string>();
  const listens = new Map<string, string>();
  const claim = (addr: string, who: string, path: string): void => {
    if (!addr || addr.endsWith(':0')) return; // port 0: the system picks a free one each time
    const other = listens.get(addr);
    if (other) problems.push({ path, message: `${addr} is already the listener of ${other}` });
    listens.set(addr, who);
  };
  claim(c.admin, 'the admin endpoint', 'config.admin');
  claim(c.proxy.listen, 'the HTTP proxy', 'config.proxy.listen');
  claim(c.capture.outbound, 'the outbound capture listener', 'config.capture.outbound');
  claim(c.capture.inbound, 'the inbound capture listener', 'config.capture.inbound');
  // Upstreams a Gateway API route sends to are reached through it (a route-attached policy's own upstream has nothing else).
  const routeBackends = new Set(
    (c.upstreams ?? []).flatMap((u) =>
      (u.httpRoutes ?? []).flatMap((r) => r.rules.flatMap((rule) => (rule.backends ?? []).map((b) => b.upstream))),
    ),
  );
  (c.upstreams ?? []).forEach((u, i) => {
    const path = `config.upstreams[${i}]`;
    if (names.has(u.name)) problems.push({ path: `${path}.name`, message: `${u.name} is used twice; names must be unique` });
    checkTls(u.listenTls, `${path}.listenTls`, problems);
    names.add(u.name);
    claim(u.listen, `upstream ${u.name}`, `${path}.listen`);
    if (!reachedDirectly(u) && !routeBackends.has(u.name))
      problems.push({
        path,
        message:
          'has neither a listener, proxy hosts nor addresses, and no Gateway API route sends to it: nothing can reach it; set listen, hosts or addresses',
      });
    if (u.endpoints.length === 0 && !c.discovery.address)
      problems.push({
        path: `${path}.endpoints`,
        message: 'is empty and there is no discovery address: requests would have nowhere to go',
      });
    u.httpRoutes.forEach((hr, j) => problems.push(...routeProblems(hr, `${path}.httpRoutes[${j}]`)));
    const r = resolvePolicy(u.policy, `${path}.policy`);
    problems.push(...r.problems);
    u.policy = r.policy;
    u.routes = u.routes.map((rt, j) => {
      problems.push(...checkOverrides(rt.policy, `${path}.routes[${j}].policy`));
      return { ...rt, methods: rt.methods.map((m) => m.toUpperCase()), policy: merge(r.policy, rt.policy) };
    });
  });
  const rawInbound = (d as { inbound?: Array<{ authorization?: unknown } | undefined> } | null)?.inbound;
  (c.inbound ?? []).forEach((ib, i) => {
    const path = `config.inbound[${i}]`;
    // No authorization given: everyone may call (the schema's defaults would make it deny-all).
    if (!Array.isArray(rawInbound) || rawInbound[i]?.authorization === undefined) delete ib.authorization;
    if (names.has(ib.name)) problems.push({ path: `${path}.name`, message: `${ib.name} is used twice; names must be unique` });
    checkTls(ib.listenTls, `${path}.listenTls`, problems);
    names.add(ib.name);
    claim(ib.listen, `inbound ${ib.name}`, `${path}.listen`);
    for (const k of Object.keys((ib.policy ?? {}) as object))
      if (!inboundOnly.has(k))
        problems.push({
          path: `${path}.policy.${k}`,
          message: `does not apply to an inbound listener (one target: no retries, hedging, balancing or ejection); allowed: ${[...inboundOnly].join(', ')}`,
        });
    const r = resolvePolicy(ib.policy, `${path}.policy`);
    problems.push(...r.problems);
    ib.policy = r.policy;
  });
  if (c.discovery.trustBundle && !/-----BEGIN CERTIFICATE-----/.test(c.discovery.trustBundle))
    problems.push({ path: 'config.discovery.trustBundle', message: 'is not PEM (-----BEGIN CERTIFICATE-----)' });
  if (c.discovery.trustBundle && !c.identity.tokenFile)
    problems.push({
      path: 'config.discovery.trustBundle',
      message: "a TLS discovery stream is authenticated with the pod's token: set identity.tokenFile too",
    });
  const files = [c.identity.certFile, c.identity.keyFile, c.identity.bundleFile];
  if (files.some(Boolean) && !files.every(Boolean))
    problems.push({ path: 'config.identity', message: 'certFile, keyFile and bundleFile go together: set all three (or none)' });
  if (c.identity.certFile && c.identity.tokenFile)
    problems.push({
      path: 'config.identity',
      message: 'either tokenFile (a certificate from the operator) or certFile (from files), not both',
    });
  if (c.identity.tokenFile && !c.discovery.address)
    problems.push({ path: 'config.identity.tokenFile', message: 'a mesh identity comes from the operator: set discovery.address too' });
  if (problems.length > 0) throw invalid(problems, source);
  return c;
}

function checkTls(t: ListenTls | undefined, path: string, problems: Problem[]): void {
  if (!t) return;
  if (Boolean(t.certFile) !== Boolean(t.keyFile))
    problems.push({ path, message: 'needs both certFile and keyFile (or neither, for plaintext)' });
}

function invalid(problems: Problem[], source: string): Error {
  return catalogue.error(
    'SIDECAR_ERR_CONFIG_INVALID',
    `${source}: ${problems.length} problem${problems.length === 1 ? '' : 's'}:\n${problems.map((p) => `  ${p.path}: ${p.message}`).join('\n')}`,
  );
}

/** Read a configuration file as a document (not yet validated). */
export function readConfigDoc(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw catalogue.error('SIDECAR_ERR_CONFIG_INVALID', `cannot read the config file ${file}: ${(err as Error).message}`, { cause: err });
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw catalogue.error('SIDECAR_ERR_CONFIG_INVALID', `${file} is not valid YAML: ${(err as Error).message}`, { cause: err });
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc))
    throw catalogue.error('SIDECAR_ERR_CONFIG_INVALID', `${file} must be a mapping (admin:, upstreams:, ...)`);
  return doc as Record<string, unknown>;
}

/** Read and validate a configuration file; `adjust` may change the document first (command-line flags). */
export function loadConfigFile(file: string, adjust: (doc: Record<string, unknown>) => Record<string, unknown> = (d) => d): SidecarConfig {
  return resolveConfig(adjust(readConfigDoc(file)), file);
}
