/**
 * What the discovery service sends a sidecar (pure): for every ResiliencePolicy in the
 * sidecar's namespace, an upstream named `<service>.<namespace>` with the Service's ready
 * endpoints (from its EndpointSlices, the policy's port resolved to the pods' target port), the
 * host names that reach it through the sidecar's HTTP proxy, and the policy. The version is a
 * hash of the content, so an unchanged world sends nothing.
 */
import { createHash } from 'node:crypto';
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import type { DiscoveredUpstream } from '../api/discovery.ts';
import type { ResiliencePolicy } from '../api/resiliencepolicy.ts';

export interface DiscoveryView {
  policies: readonly ResiliencePolicy[];
  services: readonly V1Service[];
  slices: readonly V1EndpointSlice[];
}

/** Ready endpoint addresses (`ip:targetPort`) of a Service port. */
export function serviceEndpoints(svc: V1Service, port: number, slices: readonly V1EndpointSlice[]): string[] {
  const sp = svc.spec?.ports?.find((p) => p.port === port);
  if (!sp) return [];
  const ns = svc.metadata?.namespace;
  const name = svc.metadata?.name;
  const out = new Set<string>();
  for (const sl of slices) {
    if (sl.metadata?.namespace !== ns || sl.metadata?.labels?.['kubernetes.io/service-name'] !== name) continue;
    if (sl.addressType !== 'IPv4' && sl.addressType !== 'IPv6') continue;
    // The slice's port with the Service port's name (unnamed: the only one).
    const ep = sl.ports?.find((p) => (p.name ?? '') === (sp.name ?? ''));
    if (ep?.port === undefined) continue;
    for (const e of sl.endpoints ?? []) {
      if (e.conditions?.ready === false) continue;
      for (const a of e.addresses) out.add(sl.addressType === 'IPv6' ? `[${a}]:${ep.port}` : `${a}:${ep.port}`);
    }
  }
  return [...out].sort();
}

export function hostsFor(service: string, namespace: string, port: number): string[] {
  const names = [service, `${service}.${namespace}`, `${service}.${namespace}.svc`, `${service}.${namespace}.svc.cluster.local`];
  return [...names, ...names.map((n) => `${n}:${port}`)];
}

export function buildSnapshot(namespace: string, view: DiscoveryView): { version: string; upstreams: DiscoveredUpstream[] } {
  const upstreams: DiscoveredUpstream[] = [];
  const policies = view.policies.filter((p) => p.metadata.namespace === namespace).sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  for (const p of policies) {
    const { name, port } = p.spec.service;
    const svc = view.services.find((s) => s.metadata?.namespace === namespace && s.metadata?.name === name);
    const u: DiscoveredUpstream = {
      name: `${name}.${namespace}`,
      hosts: hostsFor(name, namespace, port),
      protocol: p.spec.protocol ?? 'auto',
      endpoints: svc ? serviceEndpoints(svc, port, view.slices).map((address) => ({ address })) : [],
      ...(p.spec.localPort ? { listen: `127.0.0.1:${p.spec.localPort}` } : {}),
      ...(p.spec.policy !== undefined ? { policy: p.spec.policy } : {}),
      ...(p.spec.routes !== undefined && p.spec.routes.length > 0 ? { routes: p.spec.routes } : {}),
    };
    upstreams.push(u);
  }
  const version = createHash('sha256').update(JSON.stringify(upstreams)).digest('hex').slice(0, 16);
  return { version, upstreams };
}
