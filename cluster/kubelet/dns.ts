/**
 * Cluster DNS for the process kubelet, as hosts files: `ip netns exec` bind-mounts
 * `/etc/netns/<name>/hosts` over `/etc/hosts`, so each pod's resolver sees the names below.
 * Hosts files have no search path, so every short form a pod may use is written out:
 *
 * - a Service: `svc.ns.svc.cluster.local`, `svc.ns.svc`, `svc.ns`, and `svc` in its own
 *   namespace, resolving to the IPs of its ready endpoints (from EndpointSlices; what a
 *   headless Service's A records hold, and what a ClusterIP routes to);
 * - a pod behind a headless Service (`hostname` + `subdomain`, as StatefulSet pods are):
 *   `hostname.svc.ns.svc.cluster.local`, and the same short forms;
 * - the apiserver: `kubernetes.default.svc` and its short forms;
 * - the pod itself: its hostname (and FQDN under its subdomain).
 *
 * Pure: data in, text out. The kubelet rewrites the files when Services, EndpointSlices or
 * pods change.
 */
import type { V1EndpointSlice, V1Pod } from '@kubernetes/client-node';

export const clusterDomain = 'cluster.local';

export interface DnsView {
  /** EndpointSlices of every namespace. */
  slices: readonly V1EndpointSlice[];
  /** The apiserver's address as pods reach it. */
  apiserverIp: string;
}

/** The names one object is known by, seen from namespace `from`. */
function forms(name: string, ns: string, from: string): string[] {
  const out = [`${name}.${ns}.svc.${clusterDomain}`, `${name}.${ns}.svc`, `${name}.${ns}`];
  if (ns === from) out.push(name);
  return out;
}

/** Service name → ready IPs, and per-endpoint hostname records, for every namespace. */
export function records(view: DnsView, from: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const add = (names: string[], ip: string) => {
    for (const n of names) {
      const list = out.get(n) ?? [];
      if (!list.includes(ip)) list.push(ip);
      out.set(n, list);
    }
  };
  add(forms('kubernetes', 'default', from), view.apiserverIp);
  const sorted = [...view.slices].sort((a, b) => (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? ''));
  for (const s of sorted) {
    const svc = s.metadata?.labels?.['kubernetes.io/service-name'];
    const ns = s.metadata?.namespace;
    if (!svc || !ns || s.addressType !== 'IPv4') continue;
    for (const e of s.endpoints ?? []) {
      // An endpoint with no `ready` condition counts as ready (the API's own rule).
      if (e.conditions?.ready === false) continue;
      for (const ip of e.addresses ?? []) {
        add(forms(svc, ns, from), ip);
        if (e.hostname) add(forms(`${e.hostname}.${svc}`, ns, from), ip);
      }
    }
  }
  return out;
}

/** The hosts file for one pod. */
export function hostsFile(pod: V1Pod, podIp: string, view: DnsView): string {
  const ns = pod.metadata?.namespace ?? 'default';
  const hostname = pod.spec?.hostname ?? pod.metadata?.name ?? 'pod';
  const self = [hostname];
  if (pod.spec?.subdomain) self.unshift(...forms(`${hostname}.${pod.spec.subdomain}`, ns, ns).slice(0, 3));
  const lines = ['# Kubernetes-managed hosts file (ballast process kubelet).', '127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback', `${podIp}\t${self.join(' ')}`];
  const own = new Set(self);
  for (const [name, ips] of records(view, ns)) {
    if (own.has(name)) continue;
    // One line per address: resolvers that return several addresses for a name take them all,
    // and those that take the first still get a ready endpoint.
    for (const ip of ips) lines.push(`${ip}\t${name}`);
  }
  return `${lines.join('\n')}\n`;
}
