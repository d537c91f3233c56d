/**
 * ResiliencePolicy status (leader only): for each policy, whether its Service exists and how
 * many ready endpoints it has — what every sidecar is being sent. Level-triggered: any change to
 * policies, Services or EndpointSlices re-derives every policy's status from the caches, and
 * only a status that changed is written (a merge patch of the status subresource).
 */
import { type CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { Clock } from '../../lib/clock.ts';
import type { Logger } from '../../lib/log.ts';
import type { ResiliencePolicy } from '../api/resiliencepolicy.ts';
import type { Cache } from '../discovery/server.ts';
import { type DiscoveryView, serviceEndpoints } from '../specs/discovery.ts';

type Status = NonNullable<ResiliencePolicy['status']>;

/** The status a policy should have (pure). */
export function policyStatus(p: ResiliencePolicy, view: DiscoveryView, now: string): Status {
  const { name, port } = p.spec.service;
  const svc = view.services.find((s) => s.metadata?.namespace === p.metadata.namespace && s.metadata?.name === name);
  const hasPort = svc?.spec?.ports?.some((x) => x.port === port) ?? false;
  const endpoints = svc && hasPort ? serviceEndpoints(svc, port, view.slices).length : 0;
  const [status, reason, message] = !svc ? ['False', 'ServiceNotFound', `Service ${p.metadata.namespace}/${name} does not exist; sidecars get the policy with no endpoints`]
    : !hasPort ? ['False', 'PortNotFound', `Service ${name} has no port ${port}; its ports: ${(svc.spec?.ports ?? []).map((x) => x.port).join(', ')}`]
      : endpoints === 0 ? ['False', 'NoReadyEndpoints', `Service ${name} has no ready endpoints`]
        : ['True', 'EndpointsReady', `${endpoints} ready endpoint(s) streamed to sidecars`];
  const prev = p.status?.conditions?.find((c) => c.type === 'Ready');
  return {
    observedGeneration: p.metadata.generation ?? 0,
    endpoints,
    conditions: [{ type: 'Ready', status, reason, message, observedGeneration: p.metadata.generation ?? 0, lastTransitionTime: prev && prev.status === status && prev.lastTransitionTime ? prev.lastTransitionTime : now }],
  };
}

interface StatusDeps {
  policies: Cache<ResiliencePolicy>;
  services: Cache<DiscoveryView['services'][number]>;
  slices: Cache<DiscoveryView['slices'][number]>;
  custom: CustomObjectsApi;
  clock: Clock;
  log: Logger;
  group: string;
  version: string;
}

export class ResiliencePolicyStatus {
  readonly #written = new Map<string, string>();
  readonly d: StatusDeps;
  #pending = false;
  leading = false;

  constructor(d: StatusDeps) {
    this.d = d;
    const changed = (): void => this.schedule();
    d.policies.onChange(changed);
    d.services.onChange(changed);
    d.slices.onChange(changed);
  }

  schedule(): void {
    if (this.#pending || !this.leading) return;
    this.#pending = true;
    this.d.clock.setTimeout(() => {
      this.#pending = false;
      this.sync().catch((err: unknown) => {
        this.d.log.warn({ err }, 'ResiliencePolicy status not written; retrying');
        this.d.clock.setTimeout(() => this.schedule(), 5000);
      });
    }, 500);
  }

  async sync(): Promise<void> {
    const view: DiscoveryView = { policies: this.d.policies.list(), services: this.d.services.list(), slices: this.d.slices.list() };
    const now = new Date(this.d.clock.wallNow()).toISOString();
    for (const p of view.policies) {
      const status = policyStatus(p, view, now);
      const key = `${p.metadata.namespace}/${p.metadata.name}`;
      const sig = JSON.stringify({ ...status, conditions: status.conditions?.map((c) => ({ ...c, lastTransitionTime: undefined })) });
      const current = JSON.stringify({ ...p.status, conditions: p.status?.conditions?.map((c) => ({ ...c, lastTransitionTime: undefined })) });
      if (this.#written.get(key) === sig || current === sig) continue;
      await this.d.custom.patchNamespacedCustomObjectStatus({ group: this.d.group, version: this.d.version, namespace: p.metadata.namespace, plural: 'resiliencepolicies', name: p.metadata.name, body: { status } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
      this.#written.set(key, sig);
    }
  }
}
