/**
 * What the discovery service sends a sidecar (pure): for every ResiliencePolicy of the
 * sidecar's namespace that selects its pod, an upstream named `<service>.<namespace>` per
 * Service it names, with the Service's ready endpoints (from its EndpointSlices, the policy's
 * port resolved to the pods' target port), the host names that reach it through the sidecar's
 * HTTP proxy, and the policy; and its inbound listeners. The version is a hash of the content,
 * so an unchanged world sends nothing.
 */
import { createHash } from 'node:crypto';
import type { V1EndpointSlice, V1Pod, V1Service } from '@kubernetes/client-node';
import type { DiscoveredUpstream } from '../../api/discovery.ts';
import { type MtlsMode, spiffeId } from '../../api/mesh.ts';
import { type InboundPolicy, type ResiliencePolicy, type UpstreamPolicy, policyUpstreams, selects } from '../../api/resiliencepolicy.ts';
import { type Attached, type PortKey, findService, parsePortKey, portKey, routesForCaller } from './gateway.ts';

export interface DiscoveryView {
  policies: readonly ResiliencePolicy[];
  services: readonly V1Service[];
  slices: readonly V1EndpointSlice[];
  /** The mesh, when on: its trust domain and the pods with a sidecar (whose identities endpoints carry). */
  mesh?: { trustDomain: string; pods: readonly V1Pod[] } | undefined;
  /** Gateway API routes attached to Services (translated once per view: operator/specs/gateway.ts). */
  routes?: readonly Attached[] | undefined;
}

/** A meshed pod: its identity, and the ports where its sidecar accepts mTLS (its inbound listeners). */
interface MeshedPod {
  identity: string;
  ports: Set<number>;
}

const meshMemo = new WeakMap<DiscoveryView, { byPod: Map<string, MeshedPod>; byIp: Map<string, MeshedPod> }>();

/** The view's meshed pods by namespace/name and by IP (computed once per view). */
function meshedPods(view: DiscoveryView): { byPod: Map<string, MeshedPod>; byIp: Map<string, MeshedPod> } {
  let m = meshMemo.get(view);
  if (m) return m;
  m = { byPod: new Map(), byIp: new Map() };
  const mesh = view.mesh;
  for (const pod of mesh?.pods ?? []) {
    const ns = pod.metadata?.namespace ?? '';
    const labels = pod.metadata?.labels ?? {};
    if (!mesh || pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed' || pod.metadata?.deletionTimestamp) continue;
    const ports = new Set<number>();
    for (const p of view.policies)
      if (p.metadata.namespace === ns && selects(p.spec.selector, labels)) for (const ib of p.spec.inbound ?? []) ports.add(ib.port);
    if (ports.size === 0) continue;
    const mp = {
      identity: spiffeId({ trustDomain: mesh.trustDomain, namespace: ns, serviceAccount: pod.spec?.serviceAccountName || 'default' }),
      ports,
    };
    m.byPod.set(`${ns}/${pod.metadata?.name}`, mp);
    for (const ip of pod.status?.podIPs ?? (pod.status?.podIP ? [{ ip: pod.status.podIP }] : [])) m.byIp.set(ip.ip, mp);
  }
  meshMemo.set(view, m);
  return m;
}

export interface ServiceEndpoint {
  address: string;
  /** The mesh identity its sidecar presents, when the pod is meshed on this port. */
  identity?: string;
}

/** Ready endpoint addresses (`ip:targetPort`) of a Service port. */
export function serviceEndpoints(svc: V1Service, port: number, slices: readonly V1EndpointSlice[]): string[] {
  return endpointsWithIdentity(svc, port, { policies: [], services: [], slices }).map((e) => e.address);
}

/** Ready endpoints of a Service port, with the mesh identity of those whose pods' sidecars take mTLS there. */
export function endpointsWithIdentity(svc: V1Service, port: number, view: DiscoveryView): ServiceEndpoint[] {
  const slices = view.slices;
  const sp = svc.spec?.ports?.find((p) => p.port === port);
  if (!sp) return [];
  const ns = svc.metadata?.namespace;
  const name = svc.metadata?.name;
  const meshed = view.mesh ? meshedPods(view) : undefined;
  const out = new Map<string, ServiceEndpoint>();
  for (const sl of slices) {
    if (sl.metadata?.namespace !== ns || sl.metadata?.labels?.['kubernetes.io/service-name'] !== name) continue;
    if (sl.addressType !== 'IPv4' && sl.addressType !== 'IPv6') continue;
    // The slice's port with the Service port's name (unnamed: the only one).
    const ep = sl.ports?.find((p) => (p.name ?? '') === (sp.name ?? ''));
    if (ep?.port === undefined) continue;
    for (const e of sl.endpoints ?? []) {
      if (e.conditions?.ready === false) continue;
      for (const a of e.addresses) {
        const address = sl.addressType === 'IPv6' ? `[${a}]:${ep.port}` : `${a}:${ep.port}`;
        const ref = e.targetRef?.kind === 'Pod' ? `${e.targetRef.namespace ?? ns}/${e.targetRef.name}` : undefined;
        const pod = meshed && (ref ? meshed.byPod.get(ref) : meshed.byIp.get(a));
        out.set(address, pod && pod.ports.has(ep.port) ? { address, identity: pod.identity } : { address });
      }
    }
  }
  return [...out.values()].sort((x, y) => (x.address < y.address ? -1 : x.address > y.address ? 1 : 0));
}

/** The Service's cluster IPs (both families) with `port`, as intercepted connections are sent to them; none for a headless Service. */
export function clusterAddresses(svc: V1Service | undefined, port: number): string[] {
  const ips = svc?.spec?.clusterIPs ?? (svc?.spec?.clusterIP ? [svc.spec.clusterIP] : []);
  return ips.filter((ip) => ip && ip !== 'None').map((ip) => (ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`));
}

/** `{ addresses }` when the Service has cluster IPs (a headless one has none: its pods are its addresses). */
function addressesOf(svc: V1Service | undefined, port: number): { addresses?: string[] } {
  const a = clusterAddresses(svc, port);
  return a.length > 0 ? { addresses: a } : {};
}

export function hostsFor(service: string, namespace: string, port: number): string[] {
  const names = [service, `${service}.${namespace}`, `${service}.${namespace}.svc`, `${service}.${namespace}.svc.cluster.local`];
  return [...names, ...names.map((n) => `${n}:${port}`)];
}

/** Inbound listeners as the sidecar configuration file's `inbound` schema. */
export interface DiscoveredInbound {
  name: string;
  listen: string;
  target: string;
  mtls?: MtlsMode;
  authorization?: unknown;
  policy?: unknown;
}

/** An inbound authorization with bare ServiceAccount names spelt out in the policy's namespace. */
function qualified(authz: InboundPolicy['authorization'], namespace: string): unknown {
  if (!authz) return authz;
  return {
    ...authz,
    rules: (authz.rules ?? []).map((r) =>
      r.from?.serviceAccounts
        ? { ...r, from: { ...r.from, serviceAccounts: r.from.serviceAccounts.map((sa) => (sa.includes('/') ? sa : `${namespace}/${sa}`)) } }
        : r,
    ),
  };
}

export interface Snapshot {
  version: string;
  upstreams: DiscoveredUpstream[];
  inbound: DiscoveredInbound[];
  /** Upstreams or inbound ports named by more than one selecting policy: the first by name wins. */
  conflicts: Array<{ policy: string; what: string; winner: string }>;
}

/**
 * The configuration for one sidecar: every policy of its namespace that selects its pod
 * (`labels`; undefined when the pod is not known yet: only policies without a selector), in
 * name order. An upstream or inbound port two policies name goes to the first; the other is
 * reported as a conflict.
 */
export function buildSnapshot(namespace: string, labels: Readonly<Record<string, string>> | undefined, view: DiscoveryView): Snapshot {
  const upstreams: DiscoveredUpstream[] = [];
  const inbound: DiscoveredInbound[] = [];
  const conflicts: Snapshot['conflicts'] = [];
  const owner = new Map<string, string>();
  const policies = view.policies
    .filter(
      (p) =>
        p.metadata.namespace === namespace && (p.spec.selector === undefined || (labels !== undefined && selects(p.spec.selector, labels))),
    )
    .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  const claim = (p: ResiliencePolicy, what: string): boolean => {
    const first = owner.get(what);
    if (first !== undefined && first !== p.metadata.name) {
      conflicts.push({ policy: p.metadata.name, what, winner: first });
      return false;
    }
    owner.set(what, p.metadata.name);
    return true;
  };
  // Policies attached to a Gateway API route: their upstreams are made where the route's backends are (attachRoutes).
  const viaRoute: Array<{ up: UpstreamPolicy; route: string }> = [];
  for (const p of policies) {
    for (const up of policyUpstreams(p)) {
      const { name, port } = up.service;
      if (up.gatewayRoute) {
        const route = `${up.gatewayRoute.namespace ?? namespace}/${up.gatewayRoute.name}`;
        if (claim(p, `upstream ${name}.${namespace} through route ${route}`)) viaRoute.push({ up, route });
        continue;
      }
      if (!claim(p, `upstream ${name}.${namespace}`)) continue;
      const svc = findService(view, namespace, name);
      upstreams.push({
        name: `${name}.${namespace}`,
        hosts: hostsFor(name, namespace, port),
        ...addressesOf(svc, port),
        protocol: up.protocol ?? 'auto',
        endpoints: svc ? endpointsWithIdentity(svc, port, view) : [],
        ...(up.mtls ? { mtls: up.mtls } : {}),
        ...(up.localPort ? { listen: `127.0.0.1:${up.localPort}` } : {}),
        ...(up.policy !== undefined ? { policy: up.policy } : {}),
        ...(up.routes !== undefined && up.routes.length > 0 ? { routes: up.routes } : {}),
      });
    }
    for (const ib of p.spec.inbound ?? []) {
      if (!claim(p, `inbound port ${ib.port}`)) continue;
      inbound.push({
        name: `${p.metadata.name}-${ib.name}`,
        listen: `0.0.0.0:${ib.port}`,
        target: `127.0.0.1:${ib.targetPort}`,
        ...(ib.mtls ? { mtls: ib.mtls } : {}),
        ...(ib.authorization ? { authorization: qualified(ib.authorization, namespace) } : {}),
        ...(ib.policy !== undefined ? { policy: ib.policy } : {}),
      });
    }
  }
  if (view.routes && view.routes.length > 0) attachRoutes(namespace, upstreams, policies, viaRoute, view);
  const version = createHash('sha256')
    .update(JSON.stringify([upstreams, inbound]))
    .digest('hex')
    .slice(0, 16);
  return { version, upstreams, inbound, conflicts };
}

/**
 * The policy of a Service port that a caller reaches only through Gateway API routes (no
 * ResiliencePolicy of the caller names it): what a Gateway API mesh does, and nothing it would
 * not. Shedding, client-side throttling and hedging are Ballast's own judgement calls about load;
 * they are opted into with a ResiliencePolicy (policy attachment), not switched on by a route. A
 * route-only Service keeps the rest of the defaults: safe retries within the budget, breakers,
 * outlier ejection, the bulkhead's generous 1024 and the timeouts the route does not set.
 */
export const routeOnlyPolicy = {
  shed: { adaptive: { enabled: false }, throttle: { enabled: false } },
  hedge: { enabled: false },
} as const;

/**
 * Gateway API routes for this caller: each parent Service port's upstream (the policy's, when one
 * names that port; else one of its own, `<service>.<namespace>.<port>`) gets the routes as
 * `httpRoutes`, and every backend Service port an upstream too, so a route can send to it. A
 * backend's ResiliencePolicy upstream is used where there is one: its policy applies to the
 * route's traffic (policy attachment).
 */
function attachRoutes(
  namespace: string,
  upstreams: DiscoveredUpstream[],
  policies: readonly ResiliencePolicy[],
  viaRoute: ReadonlyArray<{ up: UpstreamPolicy; route: string }>,
  view: DiscoveryView,
): void {
  const byCaller = routesForCaller(namespace, view.routes ?? []);
  if (byCaller.size === 0) return;
  const names = new Map<PortKey, DiscoveredUpstream>();
  for (const p of policies)
    for (const up of policyUpstreams(p)) {
      const u = upstreams.find((x) => x.name === `${up.service.name}.${namespace}`);
      if (u) names.set(portKey(namespace, up.service.name, up.service.port), u);
    }
  const bare = new Set(upstreams.flatMap((u) => u.hosts ?? []));
  const upstreamFor = (key: PortKey): DiscoveredUpstream | undefined => {
    const have = names.get(key);
    if (have) return have;
    const { namespace: ns, name, port } = parsePortKey(key);
    const svc = findService(view, ns, name);
    if (!svc) return undefined;
    // Host names with the port always; the bare names only for port 80 and only when no other upstream has them.
    const hosts = hostsFor(name, ns, port).filter((h) => (h.includes(':') || port === 80) && !bare.has(h));
    for (const h of hosts) bare.add(h);
    const u: DiscoveredUpstream = {
      name: `${name}.${ns}.${port}`,
      hosts,
      protocol: 'auto',
      policy: routeOnlyPolicy,
      endpoints: endpointsWithIdentity(svc, port, view),
      ...addressesOf(svc, port),
    };
    upstreams.push(u);
    names.set(key, u);
    return u;
  };
  // A policy attached to a route: the route's requests to that Service port go to an upstream of
  // their own (the same endpoints) with the policy; the Service's other traffic keeps its own.
  const attached = new Map(viaRoute.map((v) => [`${v.route}|${portKey(namespace, v.up.service.name, v.up.service.port)}`, v.up]));
  const through = new Map<string, DiscoveredUpstream>();
  const backendFor = (route: string, key: PortKey): string => {
    const a = attached.get(`${route}|${key}`);
    if (!a) return upstreamFor(key)?.name ?? '';
    const name = `${a.service.name}.${namespace}.${a.service.port}.route.${route.replace('/', '.')}`;
    let u = through.get(name);
    if (!u) {
      const svc = findService(view, namespace, a.service.name);
      if (!svc) return '';
      u = {
        name,
        protocol: a.protocol ?? 'auto',
        endpoints: endpointsWithIdentity(svc, a.service.port, view),
        ...(a.mtls ? { mtls: a.mtls } : {}),
        policy: a.policy ?? {},
      };
      through.set(name, u);
      upstreams.push(u);
    }
    return u.name;
  };
  for (const [parent, routes] of [...byCaller].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    const up = upstreamFor(parent);
    if (!up) continue;
    up.httpRoutes = routes
      .map((r) => ({
        ...r,
        rules: r.rules.map((rule) => ({
          ...rule,
          backends: (rule.backends ?? []).map((b) => ({ ...b, upstream: b.upstream ? backendFor(r.name, b.upstream) : '' })),
        })),
      }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }
}
