/**
 * ResiliencePolicy status (leader only): for each policy, whether its Service exists and how
 * many ready endpoints it has — what every sidecar is being sent — and how many of the
 * namespace's sidecars run the current configuration, and which refused it and why (recorded on
 * each sidecar's pod by the replica holding its discovery stream). Level-triggered: any change
 * to policies, Services, EndpointSlices or injected pods re-derives every policy's status from
 * the caches, and only a status that changed is written (a merge patch of the status subresource).
 */
import { type CustomObjectsApi, PatchStrategy, type V1Pod, setHeaderOptions } from '@kubernetes/client-node';
import type { Clock } from '../../lib/clock.ts';
import { type Condition, condition, statusSignature } from '../../lib/kube/conditions.ts';
import { StatusQueue } from '../../lib/kube/status-queue.ts';
import type { Logger } from '../../lib/log.ts';
import { type ResiliencePolicy, policyUpstreams, selects } from '../../api/resiliencepolicy.ts';
import type { Cache } from '../discovery/server.ts';
import { type DiscoveryView, buildSnapshot, serviceEndpoints } from '../specs/discovery.ts';
import { type Attached, parsePortKey, portKey, routesForCaller } from '../specs/gateway.ts';

/** On a sidecar's pod: the discovery version it last applied, and the last one it refused ("<version>: <reason>"). */
export const appliedVersionAnnotation = 'ballast.dev/discovery-version';
export const rejectedVersionAnnotation = 'ballast.dev/discovery-rejected';
/** Rejections listed in status, at most. */
const maxRejections = 10;

type Status = NonNullable<ResiliencePolicy['status']>;

/** Snapshots by namespace and label set: pods with the same labels get the same one. */
export type SnapshotMemo = Map<string, ReturnType<typeof buildSnapshot>>;

/**
 * The status a policy should have (pure). `sidecars`: injected pods (of any namespace);
 * `snapshots`: shared by the policies of one pass, so each label set's snapshot is built once.
 */
export function policyStatus(
  p: ResiliencePolicy,
  view: DiscoveryView,
  now: string,
  sidecars: readonly V1Pod[] = [],
  snapshots: SnapshotMemo = new Map(),
): Status {
  const ns = p.metadata.namespace;
  // Each upstream's Service: missing, without the port, without ready endpoints, or ready.
  let endpoints = 0;
  const problems: Array<[string, string]> = [];
  for (const up of policyUpstreams(p)) {
    const { name, port } = up.service;
    const svc = view.services.find((x) => x.metadata?.namespace === ns && x.metadata?.name === name);
    const hasPort = svc?.spec?.ports?.some((x) => x.port === port) ?? false;
    const n = svc && hasPort ? serviceEndpoints(svc, port, view.slices).length : 0;
    endpoints += n;
    if (!svc) problems.push(['ServiceNotFound', `Service ${ns}/${name} does not exist; sidecars get the policy with no endpoints`]);
    else if (!hasPort)
      problems.push([
        'PortNotFound',
        `Service ${name} has no port ${port}; its ports: ${(svc.spec?.ports ?? []).map((x) => x.port).join(', ')}`,
      ]);
    else if (n === 0) problems.push(['NoReadyEndpoints', `Service ${name} has no ready endpoints`]);
  }
  // The selected sidecars, and whether each runs what it is being sent now (its own snapshot).
  const pods = sidecars.filter(
    (x) =>
      x.metadata?.namespace === ns &&
      !x.metadata?.deletionTimestamp &&
      x.status?.phase === 'Running' &&
      (p.spec.selector === undefined || selects(p.spec.selector, x.metadata?.labels ?? {})),
  );
  let accepted = 0;
  const rejections: Array<{ pod: string; reason: string }> = [];
  let conflict: string | undefined;
  for (const pod of pods) {
    const labels = pod.metadata?.labels ?? {};
    const key = `${ns}\u0000${JSON.stringify(Object.entries(labels).sort())}`;
    let snap = snapshots.get(key);
    if (!snap) snapshots.set(key, (snap = buildSnapshot(ns, labels, view)));
    const c = snap.conflicts.find((x) => x.policy === p.metadata.name);
    if (c && !conflict)
      conflict = `${c.what} is also in ResiliencePolicy ${c.winner}, which comes first by name and wins for pod ${pod.metadata?.name}; remove it from one of them`;
    if (pod.metadata?.annotations?.[appliedVersionAnnotation] === snap.version) accepted++;
    const r = pod.metadata?.annotations?.[rejectedVersionAnnotation] ?? '';
    const i = r.indexOf(': ');
    if (i > 0 && r.slice(0, i) === snap.version) rejections.push({ pod: pod.metadata?.name ?? '', reason: r.slice(i + 2) });
  }
  rejections.sort((a, b) => a.pod.localeCompare(b.pod));
  const firstProblem = problems[0];
  const [status, reason, message] = conflict
    ? ['False', 'Conflict', conflict]
    : firstProblem
      ? ['False', firstProblem[0], problems.map((x) => x[1]).join('; ')]
      : ['True', 'EndpointsReady', `${endpoints} ready endpoint(s) streamed to sidecars`];
  const [aStatus, aReason, aMessage] =
    rejections.length > 0
      ? [
          'False',
          'Rejected',
          `${rejections.length} of ${pods.length} selected sidecar(s) refused their current configuration and keep their last good one; ${rejections[0]?.pod}: ${rejections[0]?.reason}`,
        ]
      : accepted < pods.length
        ? ['False', 'Propagating', `${accepted} of ${pods.length} selected sidecar(s) run their current configuration`]
        : [
            'True',
            'AllAccepted',
            pods.length === 0 ? 'no selected sidecars yet' : `all ${pods.length} selected sidecar(s) run their current configuration`,
          ];
  const overrides = routeOverrides(p, view);
  const cond = (type: string, st: string, r: string, m: string) =>
    condition(p.status?.conditions, { type, status: st as Condition['status'], reason: r, message: m }, p.metadata.generation ?? 0, now);
  return {
    observedGeneration: p.metadata.generation ?? 0,
    endpoints,
    selectedPods: pods.length,
    acceptedPods: accepted,
    rejections: rejections.slice(0, maxRejections),
    conditions: [
      cond('Ready', status, reason, message),
      cond('Accepted', aStatus, aReason, aMessage),
      overrides.length > 0
        ? cond(
            'RouteOverrides',
            'True',
            'RouteTimeouts',
            `${overrides.join('; ')}: where the Gateway API and this policy both speak, the route wins`,
          )
        : cond('RouteOverrides', 'False', 'NoOverrides', 'no Gateway API route overrides this policy'),
    ],
  };
}

/**
 * Which Gateway API routes override this policy's fields (pure): a rule with timeouts that sends
 * to one of the policy's Services sets `timeouts.requestMs` / `timeouts.attemptMs` for that
 * traffic, and one with a retry (HTTPRouteRetry) `retries.retryOn` (and `retries.maxAttempts`
 * when it gives attempts).
 */
export function routeOverrides(p: ResiliencePolicy, view: DiscoveryView): string[] {
  if (!view.routes || view.routes.length === 0) return [];
  const ns = p.metadata.namespace;
  const mine = new Set(policyUpstreams(p).map((u) => portKey(ns, u.service.name, u.service.port)));
  const out: string[] = [];
  for (const routes of routesForCaller(ns, view.routes).values())
    for (const r of routes)
      r.rules.forEach((rule, i) => {
        const fields = [
          ...(rule.timeouts?.requestMs ? ['timeouts.requestMs'] : []),
          ...(rule.timeouts?.backendRequestMs ? ['timeouts.attemptMs'] : []),
          ...(rule.retry ? ['retries.retryOn'] : []),
          ...(rule.retry?.attempts !== undefined ? ['retries.maxAttempts'] : []),
        ];
        const hits = (rule.backends ?? []).filter((b) => mine.has(b.upstream)).map((b) => parsePortKey(b.upstream));
        for (const h of hits) {
          const line = `route ${r.name} rule ${i} sets ${fields.join(' and ')} for ${h.name}:${h.port}`;
          if (fields.length > 0 && !out.includes(line)) out.push(line);
        }
      });
  return out.sort();
}

/** How long a burst of cache changes is gathered before policies are looked at. */

interface StatusDeps {
  policies: Cache<ResiliencePolicy>;
  services: Cache<DiscoveryView['services'][number]>;
  slices: Cache<DiscoveryView['slices'][number]>;
  /** Injected pods (label ballast.dev/sidecar=injected). */
  sidecars: Cache<V1Pod>;
  /** The mesh's trust domain when it is on (endpoint identities are part of what sidecars are sent). */
  trustDomain?: string;
  /** Gateway API routes as the discovery service sends them (part of what sidecars are sent), and their changes. */
  routes?: { attached: () => Attached[]; onChange: (fn: () => void) => void };
  custom: CustomObjectsApi;
  clock: Clock;
  log: Logger;
  group: string;
  version: string;
}

/**
 * Writes each policy's status, as a controller: a change to any cache queues every policy (after
 * a short pause, so a burst of changes is one pass), a worker derives one policy's status and
 * writes it if it changed, and a failed write is retried with that policy's back-off (the work
 * queue's per-key exponential back-off: 500 ms doubling to a minute), never blocking the others.
 */
export class ResiliencePolicyStatus {
  readonly #written = new Map<string, string>();
  readonly #deps: StatusDeps;
  readonly #queue: StatusQueue;

  constructor(d: StatusDeps) {
    this.#deps = d;
    this.#queue = new StatusQueue({
      clock: d.clock,
      log: d.log,
      what: 'ResiliencePolicy',
      keys: () => d.policies.list().map((p) => `${p.metadata.namespace}/${p.metadata.name}`),
      sync: (key) => this.sync(key),
    });
    const changed = (): void => this.schedule();
    d.policies.onChange(changed);
    d.services.onChange(changed);
    d.slices.onChange(changed);
    d.sidecars.onChange(changed);
    d.routes?.onChange(changed);
  }

  get leading(): boolean {
    return this.#queue.leading;
  }

  /** Writing starts when this replica leads (and every policy is looked at then). */
  set leading(v: boolean) {
    this.#queue.leading = v;
  }

  /** Look at every policy again shortly (the earliest pending look wins). */
  schedule(): void {
    this.#queue.schedule();
  }

  stop(): void {
    this.#queue.stop();
  }

  /** Failed writes so far for a policy (its back-off step); for tests and metrics. */
  retries(key: string): number {
    return this.#queue.retries(key);
  }

  /** Derive one policy's status from the caches and write it if it changed. */
  async sync(key: string): Promise<void> {
    const d = this.#deps;
    const policies = d.policies.list();
    const p = policies.find((x) => `${x.metadata.namespace}/${x.metadata.name}` === key);
    if (!p) {
      this.#written.delete(key);
      return;
    }
    const view: DiscoveryView = {
      policies,
      services: d.services.list(),
      slices: d.slices.list(),
      ...(d.trustDomain ? { mesh: { trustDomain: d.trustDomain, pods: d.sidecars.list() } } : {}),
      // The same view the discovery service builds, so a sidecar's applied version is compared with what it is sent.
      ...(d.routes ? { routes: d.routes.attached() } : {}),
    };
    const status = policyStatus(p, view, new Date(d.clock.wallNow()).toISOString(), d.sidecars.list(), new Map());
    const sig = statusSignature(status);
    const current = statusSignature(p.status);
    // What was written is remembered with the object's uid: a policy deleted and made again under
    // the same name is a new object with no status, whatever was written to its predecessor.
    const memo = `${p.metadata.uid ?? ''}:${sig}`;
    if (this.#written.get(key) === memo || current === sig) return;
    await d.custom.patchNamespacedCustomObjectStatus(
      {
        group: d.group,
        version: d.version,
        namespace: p.metadata.namespace,
        plural: 'resiliencepolicies',
        name: p.metadata.name,
        body: { status },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    this.#written.set(key, memo);
  }
}
