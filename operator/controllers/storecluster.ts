/**
 * The StoreCluster reconciler. Level-triggered: it gets a key, reads the informer caches,
 * asks the members how they are, builds the desired objects (operator/specs), applies them with
 * server-side apply under one field manager, takes at most one membership step, writes status
 * last, and says when to look again.
 *
 * Membership is quorum-safe (docs/architecture.md): bootstrap starts every member at once from the
 * ordinals; scaling up adds one member as a learner (MemberAdd) before its pod exists and
 * promotes it once it has caught up (the store refuses earlier); scaling down moves leadership
 * off the highest ordinal if needed and removes it from the Raft configuration (MemberRemove)
 * before its pod goes. Nothing happens while the cluster is not healthy, and a lost quorum is
 * reported with recovery steps, never acted on.
 */
import { condition, statusSignature } from '../../lib/kube/conditions.ts';
import { randomBytes } from 'node:crypto';
import { type CoreV1Api, type KubeConfig, KubernetesObjectApi, PatchStrategy, type V1Condition, type V1Pod, type V1StatefulSet, CustomObjectsApi, setHeaderOptions } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { Clock } from '../../lib/clock.ts';
import type { SharedInformer } from '../../lib/kube/informer.ts';
import { ExitCode } from '../../lib/lifecycle.ts';
import { group, type MemberStatus, type StoreCluster, type StoreClusterStatus, version } from '../api/storecluster.ts';
import { type MemberClient, type MemberInfo, type MemberState, StoreCredentials } from '../members.ts';
import * as specs from '../specs/storecluster.ts';

export const pausedAnnotation = 'ballast.dev/reconcile';

export interface StoreClusterControllerDeps {
  kubeconfig: KubeConfig;
  core: CoreV1Api;
  clusters: SharedInformer<StoreCluster>;
  sets: SharedInformer<V1StatefulSet>;
  pods: SharedInformer<V1Pod>;
  /** A client for one member; `sc` for its TLS (loaded by loadTls first), `creds` while auth may be on. */
  members: (address: string, sc: StoreCluster, creds?: StoreCredentials) => MemberClient;
  /** Read the cluster's client TLS Secret (spec.tls.clientSecretName) so members() can use it. */
  loadTls?: (sc: StoreCluster) => Promise<void>;
  clock: Clock;
  log: Logger;
  /** Record an Event on the StoreCluster. */
  event: (sc: StoreCluster, type: 'Normal' | 'Warning', reason: string, message: string) => void;
}

interface Observed {
  pods: V1Pod[];
  /** pod name → what the member said (undefined: unreachable). */
  states: Map<string, MemberState | undefined>;
  /** The Raft configuration, from the leader (or any member that answered). */
  list: MemberInfo[] | undefined;
  leaderId: string;
  /** Members refused the operator's calls for want of credentials (auth on, no usable root Secret). */
  authProblem?: string;
}

const podReady = (p: V1Pod) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
/** A member's name from its peer URL (`http://<name>.<peer svc>...:2380`); learners not yet started have no name. */
const nameOf = (m: MemberInfo) => m.name || (new URL(m.peerURLs[0] ?? 'http://unknown').hostname.split('.')[0] ?? '');

export class StoreClusterController {
  readonly #d: StoreClusterControllerDeps;
  readonly #objects: KubernetesObjectApi;
  readonly #custom: CustomObjectsApi;
  /**
   * What this process last applied, per object, and when: an unchanged object is not applied
   * again until `reapplyMs` has passed (server-side apply would change nothing, but 20 idle
   * clusters should not cost the apiserver a write each per object per reconcile). Drift made
   * by someone else is corrected at the next re-apply.
   */
  readonly #applied = new Map<string, { body: string; at: number }>();
  /** The status last written per StoreCluster (without transition times). */
  readonly #written = new Map<string, string>();
  /** The root user per StoreCluster (spec.auth), read from its Secret, and when. */
  readonly #credentials = new Map<string, { creds: StoreCredentials | undefined; at: number }>();

  constructor(d: StoreClusterControllerDeps) {
    this.#d = d;
    this.#objects = KubernetesObjectApi.makeApiClient(d.kubeconfig);
    this.#custom = d.kubeconfig.makeApiClient(CustomObjectsApi);
  }

  /** Returns when to look again (ms), or undefined for "when something changes". */
  async reconcile(key: string): Promise<number | undefined> {
    const sc = this.#d.clusters.get(key);
    if (!sc || (sc as { metadata: { deletionTimestamp?: unknown } }).metadata.deletionTimestamp) return undefined;
    await this.#d.loadTls?.(sc);
    await this.#loadCredentials(sc);
    const observed = await this.#observe(sc);
    if (sc.metadata.annotations?.[pausedAnnotation] === 'paused') {
      await this.#writeStatus(sc, observed, { phase: 'Paused', progressing: { status: 'False', reason: 'Paused', message: `reconcile paused by the ${pausedAnnotation}: paused annotation; remove it to resume` } });
      return undefined;
    }
    // Going back to a version that cannot read the members' data: nothing is applied or replaced
    // (a member restarted on the older image would not start), until the version is set back.
    const running = observed.pods.map((p) => p.metadata?.annotations?.['ballast.dev/version'] ?? '').filter(Boolean);
    const refusal = specs.downgradeRefusal(sc.spec.version, running);
    if (refusal) {
      if (sc.status?.conditions?.find((c) => c.type === 'Progressing')?.reason !== 'DowngradeRefused') this.#d.event(sc, 'Warning', 'DowngradeRefused', refusal);
      await this.#writeStatus(sc, observed, { phase: 'Degraded', degraded: true, progressing: { status: 'False', reason: 'DowngradeRefused', message: refusal } });
      return undefined;
    }
    await this.#ensureToken(sc);
    for (const obj of [specs.serviceAccount(sc), specs.peerService(sc), specs.clientService(sc), specs.disruptionBudget(sc)]) await this.#apply(obj);
    const step = await this.#membership(sc, observed);
    await this.#writeStatus(sc, observed, step);
    // Pod and StatefulSet changes requeue on their own (informers); a timed look again is for
    // what only the members know (roles, catch-up), so it is short only right after a step.
    return step.requeueMs ?? (observed.pods.some((p) => p.status?.podIP) && !observed.leaderId ? 5_000 : 30_000);
  }

  async #observe(sc: StoreCluster): Promise<Observed> {
    const pods = this.#d.pods.list().filter((p) => p.metadata?.namespace === sc.metadata.namespace && p.metadata.labels?.[specs.labels.instance] === sc.metadata.name && !p.metadata.deletionTimestamp);
    const states = new Map<string, MemberState | undefined>();
    let list: MemberInfo[] | undefined;
    let leaderId = '';
    let authProblem = '';
    await Promise.all(pods.map(async (p) => {
      const ip = p.status?.podIP;
      if (!ip) return void states.set(p.metadata?.name ?? '', undefined);
      const c = this.#d.members(`${ip}:${specs.clientPort}`, sc, this.#creds(sc));
      try {
        const st = await c.status();
        states.set(p.metadata?.name ?? '', st);
        if (st.leader !== '0') leaderId = st.leader;
        if (!list || st.leader === st.id) list = await c.list().catch(() => list);
      } catch (err) {
        states.set(p.metadata?.name ?? '', undefined);
        const details = (err as { details?: string }).details ?? '';
        if (/etcdserver: (user name is empty|authentication failed|permission denied)/.test(details)) authProblem = details;
      } finally {
        c.close();
      }
    }));
    return { pods, states, list, leaderId, ...(authProblem && !leaderId ? { authProblem } : {}) };
  }

  #creds(sc: StoreCluster): StoreCredentials | undefined {
    return this.#credentials.get(`${sc.metadata.namespace}/${sc.metadata.name}`)?.creds;
  }

  /**
   * The root user's Secret (spec.auth): created with a random password when auth is wanted and
   * it does not exist; read (if it exists) when auth is not wanted, to turn auth off with it.
   */
  async #loadCredentials(sc: StoreCluster): Promise<void> {
    const key = `${sc.metadata.namespace}/${sc.metadata.name}`;
    const cached = this.#credentials.get(key);
    if (cached && (cached.creds || !sc.spec.auth?.enabled) && this.#d.clock.now() - cached.at < reapplyMs) return;
    const name = specs.rootSecretName(sc);
    let secret = await this.#d.core.readNamespacedSecret({ name, namespace: sc.metadata.namespace }).catch((err: unknown) => {
      if ((err as { code?: number }).code === 404) return undefined;
      throw err;
    });
    if (!secret && sc.spec.auth?.enabled) {
      secret = await this.#d.core.createNamespacedSecret({ namespace: sc.metadata.namespace, body: specs.rootSecret(sc, randomBytes(24).toString('base64url')) });
      this.#d.event(sc, 'Normal', 'RootSecretCreated', `created Secret ${name} with the store's root user and a random password (spec.auth)`);
    }
    const field = (k: string) => {
      const v = secret?.data?.[k] ?? '';
      return v ? Buffer.from(v, 'base64').toString('utf8') : secret?.stringData?.[k] ?? '';
    };
    const password = field('password');
    this.#credentials.set(key, { creds: secret && password ? new StoreCredentials(field('username') || 'root', password) : undefined, at: this.#d.clock.now() });
  }

  async #ensureToken(sc: StoreCluster): Promise<void> {
    const key = `Secret/${sc.metadata.namespace}/${specs.tokenSecretName(sc)}`;
    if (this.#applied.has(key)) return;
    try {
      await this.#d.core.readNamespacedSecret({ name: specs.tokenSecretName(sc), namespace: sc.metadata.namespace });
    } catch (err) {
      if ((err as { code?: number }).code !== 404) throw err;
      await this.#d.core.createNamespacedSecret({ namespace: sc.metadata.namespace, body: specs.tokenSecret(sc, randomBytes(16).toString('hex')) });
    }
    this.#applied.set(key, { body: '', at: this.#d.clock.now() });
  }

  async #apply(obj: object): Promise<void> {
    const o = obj as { kind: string; metadata: { namespace?: string; name: string } };
    const key = `${o.kind}/${o.metadata.namespace}/${o.metadata.name}`;
    const body = JSON.stringify(obj);
    const last = this.#applied.get(key);
    const now = this.#d.clock.now();
    if (last && last.body === body && now - last.at < reapplyMs) return;
    await this.#objects.patch(obj as never, undefined, undefined, specs.fieldManager, true, PatchStrategy.ServerSideApply);
    this.#applied.set(key, { body, at: now });
  }

  /** Forget what was applied for a StoreCluster (it was deleted, or its objects may be gone). */
  forget(key: string): void {
    const [ns, name] = key.split('/');
    for (const k of this.#applied.keys()) if (k.includes(`/${ns}/${name}`)) this.#applied.delete(k);
    this.#written.delete(key);
    this.#credentials.delete(key);
  }

  async #applySet(sc: StoreCluster, replicas: number, members: Array<{ name: string; peerUrl: string }>, state: 'new' | 'existing'): Promise<void> {
    await this.#apply(specs.statefulSet(sc, { replicas, initialCluster: members.map((m) => `${m.name}=${m.peerUrl}`).join(','), clusterState: state }));
  }

  /** At most one membership step per reconcile; returns what status should say about it. */
  async #membership(sc: StoreCluster, o: Observed): Promise<StepResult> {
    const set = this.#d.sets.get(`${sc.metadata.namespace}/${sc.metadata.name}`);
    const want = sc.spec.replicas;
    if (!set) {
      const members = Array.from({ length: want }, (_, i) => ({ name: specs.memberName(sc, i), peerUrl: specs.peerUrl(sc, i) }));
      await this.#applySet(sc, want, members, 'new');
      this.#d.event(sc, 'Normal', 'Bootstrapping', `starting ${want} members: ${members.map((m) => m.name).join(', ')}`);
      return { phase: 'Bootstrapping', progressing: { status: 'True', reason: 'Bootstrapping', message: `starting ${want} members` } };
    }
    const current = set.spec?.replicas ?? 0;
    const list = o.list;
    const membersNow = (list ?? []).map((m) => ({ name: nameOf(m), peerUrl: m.peerURLs[0] ?? '' }));
    // Keep the template's bootstrap configuration in step with the Raft configuration.
    const keep = async (replicas: number) => this.#applySet(sc, replicas, membersNow.length > 0 ? membersNow : Array.from({ length: current }, (_, i) => ({ name: specs.memberName(sc, i), peerUrl: specs.peerUrl(sc, i) })), membersNow.length > 0 ? 'existing' : 'new');
    if (o.authProblem) {
      // Members answer, but not to the operator: auth is on and it has no usable root user.
      return { phase: 'Degraded', degraded: true, progressing: { status: 'False', reason: 'AuthCredentials', message: `the members refuse the operator's calls (${o.authProblem}): auth is on in the store and the operator has no working root credentials. Set spec.auth.enabled with spec.auth.rootSecretName naming a Secret whose username and password are the store's root user's (default ${specs.rootSecretName(sc)})` } };
    }
    if (!o.leaderId || !list) {
      // Without a leader the Raft configuration is unknown: the StatefulSet is left exactly as
      // it is (rewriting its bootstrap settings from a guess could, on a member that lost its
      // data, start a second cluster).
      if (o.pods.length > 0 && o.pods.every((p) => p.status?.podIP) && this.#hadLeader(sc)) {
        if (sc.status?.phase !== 'QuorumLost') this.#d.event(sc, 'Warning', 'QuorumLost', `no leader: fewer than a quorum of the ${current} members answer; nothing will be removed or replaced until they are back`);
        return { phase: 'QuorumLost', quorumLost: true, progressing: { status: 'False', reason: 'QuorumLost', message: 'no leader' } };
      }
      return { phase: 'Bootstrapping', progressing: { status: 'True', reason: 'WaitingForLeader', message: 'waiting for the members to elect a leader' } };
    }
    const leaderClient = () => {
      const leaderName = membersNow.find((_, i) => list[i]?.id === o.leaderId)?.name;
      const pod = o.pods.find((p) => p.metadata?.name === leaderName);
      return this.#d.members(`${pod?.status?.podIP ?? ''}:${specs.clientPort}`, sc, this.#creds(sc));
    };
    const call = async <T>(fn: (c: MemberClient) => Promise<T>): Promise<T> => {
      const c = leaderClient();
      try {
        return await fn(c);
      } finally {
        c.close();
      }
    };
    // Repair: a member whose data is gone stops with exit code 4 (STORE_ERR_DATA_LOST) instead of
    // voting with a forgotten log. Remove it from the Raft configuration, give it a new, empty
    // volume; it is added back as a learner below and promoted once caught up. Only while every
    // other member is ready, so the smaller configuration keeps its quorum.
    const lost = o.pods.find((p) => p.status?.containerStatuses?.some((c) => c.lastState?.terminated?.exitCode === dataLostExitCode || c.state?.terminated?.exitCode === dataLostExitCode));
    if (lost) {
      const name = lost.metadata?.name ?? '';
      const others = o.pods.filter((p) => p.metadata?.name !== name);
      if (!others.every(podReady)) {
        await keep(current);
        return { phase: 'Repairing', progressing: { status: 'True', reason: 'WaitingForHealthyMembers', message: `${name} lost its data; repair waits until every other member is ready` }, requeueMs: 3_000 };
      }
      const m = list.find((x) => nameOf(x) === name);
      if (m) {
        await call((c) => c.remove(m.id));
        this.#d.event(sc, 'Warning', 'MemberRemovedForRepair', `${name} lost its data (it stopped rather than vote with an empty log); removed it from the cluster to add it back empty`);
      }
      await this.#d.core.deleteNamespacedPersistentVolumeClaim({ name: `data-${name}`, namespace: sc.metadata.namespace }).catch(() => undefined);
      await this.#d.core.deleteNamespacedPod({ name, namespace: sc.metadata.namespace, gracePeriodSeconds: 0 }).catch(() => undefined);
      await keep(current);
      return { phase: 'Repairing', progressing: { status: 'True', reason: 'MemberRemovedForRepair', message: `${name} removed; it comes back empty as a learner` }, requeueMs: 2_000 };
    }
    // A member of the StatefulSet missing from the Raft configuration (removed for repair): add
    // it back as a learner; its pod joins empty and is promoted once caught up.
    const missing = Array.from({ length: Math.min(current, want) }, (_, i) => i).find((i) => !membersNow.some((m) => m.name === specs.memberName(sc, i) || m.peerUrl === specs.peerUrl(sc, i)));
    if (missing !== undefined && !list.some((m) => m.isLearner)) {
      const name = specs.memberName(sc, missing);
      const added = await call((c) => c.addLearner(specs.peerUrl(sc, missing)));
      this.#d.event(sc, 'Normal', 'MemberReAdded', `added ${name} back as a learner (${added.id}); it catches up from the others`);
      await this.#applySet(sc, current, [...membersNow, { name, peerUrl: specs.peerUrl(sc, missing) }], 'existing');
      return { phase: 'Repairing', progressing: { status: 'True', reason: 'MemberReAdded', message: `${name} added back as a learner` }, requeueMs: 2_000 };
    }
    // A learner waiting: promote it once its pod runs (the store refuses until it caught up).
    const learner = list.find((m) => m.isLearner);
    if (learner) {
      await keep(Math.max(current, list.length));
      try {
        await call((c) => c.promote(learner.id));
        this.#d.event(sc, 'Normal', 'MemberPromoted', `${nameOf(learner)} caught up and is now a voting member`);
        return { phase: 'Scaling', progressing: { status: 'True', reason: 'MemberPromoted', message: `${nameOf(learner)} promoted` }, requeueMs: 1_000 };
      } catch (err) {
        return { phase: 'Scaling', progressing: { status: 'True', reason: 'WaitingForLearner', message: `${nameOf(learner)} is catching up (${(err as Error).message})` }, requeueMs: 2_000 };
      }
    }
    const healthy = o.pods.length === current && o.pods.every(podReady) && list.length === current;
    if (want > current) {
      if (!healthy) {
        await keep(current);
        return { phase: 'Scaling', progressing: { status: 'True', reason: 'WaitingForHealthyMembers', message: `scaling ${current}→${want} waits until all ${current} members are ready` }, requeueMs: 3_000 };
      }
      const name = specs.memberName(sc, current);
      // A volume kept from an earlier scale-down holds a removed member's data: the new member
      // must start empty (it is sent a snapshot), so the old claim goes first.
      const claim = `data-${name}`;
      const stale = await this.#d.core.readNamespacedPersistentVolumeClaim({ name: claim, namespace: sc.metadata.namespace }).catch(() => undefined);
      if (stale) {
        await this.#d.core.deleteNamespacedPersistentVolumeClaim({ name: claim, namespace: sc.metadata.namespace }).catch(() => undefined);
        this.#d.event(sc, 'Normal', 'StaleVolumeDeleted', `deleted ${claim}, kept from when ${name} was removed, so the new ${name} starts empty`);
        await keep(current);
        return { phase: 'Scaling', progressing: { status: 'True', reason: 'StaleVolumeDeleted', message: `deleting ${claim} before adding ${name}` }, requeueMs: 1_000 };
      }
      const added = await call((c) => c.addLearner(specs.peerUrl(sc, current)));
      this.#d.event(sc, 'Normal', 'MemberAdded', `added ${name} (${added.id}) as a learner; its pod starts next`);
      await this.#applySet(sc, current + 1, [...membersNow, { name, peerUrl: specs.peerUrl(sc, current) }], 'existing');
      return { phase: 'Scaling', progressing: { status: 'True', reason: 'MemberAdded', message: `added ${name} as a learner (${current + 1}/${want})` }, requeueMs: 2_000 };
    }
    if (want < current) {
      if (!healthy) {
        await keep(current);
        return { phase: 'Scaling', progressing: { status: 'True', reason: 'WaitingForHealthyMembers', message: `scaling ${current}→${want} waits until all ${current} members are ready` }, requeueMs: 3_000 };
      }
      const victimName = specs.memberName(sc, current - 1);
      const victim = list.find((m) => nameOf(m) === victimName);
      if (victim && victim.id === o.leaderId) {
        const to = list.find((m) => m.id !== victim.id && !m.isLearner);
        if (to) await call((c) => c.moveLeader(to.id));
        this.#d.event(sc, 'Normal', 'LeadershipMoved', `moved leadership from ${victimName} to ${to ? nameOf(to) : '?'} before removing it`);
        return { phase: 'Scaling', progressing: { status: 'True', reason: 'LeadershipMoved', message: `moving leadership off ${victimName}` }, requeueMs: 1_000 };
      }
      if (victim) {
        await call((c) => c.remove(victim.id));
        this.#d.event(sc, 'Normal', 'MemberRemoved', `removed ${victimName} from the cluster; its pod goes next`);
      }
      await this.#applySet(sc, current - 1, membersNow.filter((m) => m.name !== victimName), 'existing');
      return { phase: 'Scaling', progressing: { status: 'True', reason: 'MemberRemoved', message: `removed ${victimName} (${current - 1}/${want})` }, requeueMs: 2_000 };
    }
    await keep(current);
    const update = await this.#rollout(sc, o, list, healthy, call);
    if (update) return update;
    if (!healthy) return { phase: 'Degraded', progressing: { status: 'False', reason: 'WaitingForMembers', message: 'some members are not ready' } };
    return this.#auth(sc, call);
  }

  /** spec.auth: turn the store's auth on or off to match, as root; then Ready. */
  async #auth(sc: StoreCluster, call: <T>(fn: (c: MemberClient) => Promise<T>) => Promise<T>): Promise<StepResult> {
    const want = sc.spec.auth?.enabled === true;
    const status = await call((c) => c.authEnabled());
    const on = status === true;
    const ready: StepResult = { phase: 'Ready', progressing: { status: 'False', reason: 'Reconciled', message: `${sc.spec.replicas} members, all ready` }, authEnabled: on };
    if (want === on) return ready;
    // The leader has no auth (0.1.x), or a member without it is still in the cluster.
    const needsUpgrade = `spec.auth needs every member at 0.2.0 or later (0.1.x has no auth); it is applied once the upgrade is done`;
    if (status === undefined) return { ...ready, phase: 'Degraded', degraded: true, progressing: { status: 'False', reason: 'AuthNeedsUpgrade', message: needsUpgrade } };
    const creds = this.#creds(sc);
    if (want) {
      if (!creds) return { ...ready, phase: 'Degraded', degraded: true, progressing: { status: 'False', reason: 'AuthCredentials', message: `Secret ${specs.rootSecretName(sc)} has no password: give it one (key password) or delete it and the operator makes one` } };
      try {
        await call((c) => c.enableAuth(creds));
      } catch (err) {
        if (/auth needs every member to run/.test((err as { details?: string }).details ?? '')) return { ...ready, phase: 'Degraded', degraded: true, progressing: { status: 'False', reason: 'AuthNeedsUpgrade', message: needsUpgrade } };
        throw err;
      }
      this.#d.event(sc, 'Normal', 'AuthEnabled', `auth is on: the root user's password is in Secret ${specs.rootSecretName(sc)}; clients now need a user (etcdctl --user, or a client certificate whose CN is a user)`);
    } else {
      await call((c) => c.disableAuth());
      this.#d.event(sc, 'Normal', 'AuthDisabled', 'auth is off: the store no longer checks users and permissions (users and roles are kept)');
    }
    return { phase: 'Updating', progressing: { status: 'True', reason: want ? 'AuthEnabled' : 'AuthDisabled', message: want ? 'turned auth on' : 'turned auth off' }, requeueMs: 1_000, authEnabled: want };
  }

  /**
   * Updates (image, version, configuration): members whose pod carries an older spec hash are
   * replaced one at a time, followers first, each only while every member is ready (so caught
   * up: readiness means applied within a small lag), the leader last after moving leadership to
   * an updated member. A replaced member that is not ready within the deadline stops the rollout
   * (nothing else is replaced while a member is not ready) and marks the cluster Degraded.
   */
  async #rollout(sc: StoreCluster, o: Observed, list: MemberInfo[], healthy: boolean, call: <T>(fn: (c: MemberClient) => Promise<T>) => Promise<T>): Promise<StepResult | undefined> {
    const want = specs.specHash(sc);
    const hashOf = (p: V1Pod) => p.metadata?.annotations?.[specs.specHashAnnotation];
    const outdated = o.pods.filter((p) => hashOf(p) !== want);
    const stuck = o.pods.find((p) => hashOf(p) === want && !podReady(p) && this.#d.clock.wallNow() - new Date(p.metadata?.creationTimestamp ?? 0).getTime() > updateDeadlineMs);
    if (stuck) {
      return { phase: 'Degraded', progressing: { status: 'False', reason: 'RolloutStuck', message: `${stuck.metadata?.name} was replaced for the update and is not ready after ${updateDeadlineMs / 60_000} minutes; the rollout is stopped. Check its logs (kubectl logs ${stuck.metadata?.name}) and fix the spec; nothing else is replaced while a member is not ready` }, degraded: true };
    }
    if (outdated.length === 0) return undefined;
    if (!healthy) return { phase: 'Updating', progressing: { status: 'True', reason: 'WaitingForHealthyMembers', message: `${outdated.length} member(s) to update; waiting until every member is ready` }, requeueMs: 3_000 };
    const leaderName = nameOf(list.find((m) => m.id === o.leaderId) ?? { id: '', name: '', peerURLs: [], clientURLs: [], isLearner: false });
    const follower = outdated.find((p) => p.metadata?.name !== leaderName);
    if (!follower) {
      // Only the leader is left: hand leadership to an updated member first.
      const to = list.find((m) => m.id !== o.leaderId && !m.isLearner && o.pods.some((p) => p.metadata?.name === nameOf(m) && hashOf(p) === want));
      if (!to) return { phase: 'Updating', progressing: { status: 'True', reason: 'NoUpdatedMember', message: 'no updated member to take over leadership' }, requeueMs: 3_000 };
      await call((c) => c.moveLeader(to.id));
      this.#d.event(sc, 'Normal', 'LeadershipMoved', `moved leadership from ${leaderName} to ${nameOf(to)} before updating ${leaderName}`);
      return { phase: 'Updating', progressing: { status: 'True', reason: 'LeadershipMoved', message: `moving leadership off ${leaderName} before updating it` }, requeueMs: 1_000 };
    }
    const name = follower.metadata?.name ?? '';
    await this.#d.core.deleteNamespacedPod({ name, namespace: sc.metadata.namespace });
    this.#d.event(sc, 'Normal', 'MemberUpdating', `replacing ${name} to run ${specs.imageOf(sc)} (${outdated.length - 1} more after it)`);
    return { phase: 'Updating', progressing: { status: 'True', reason: 'MemberUpdating', message: `replacing ${name} (${outdated.length} to go)` }, requeueMs: 2_000 };
  }

  #hadLeader(sc: StoreCluster): boolean {
    return Boolean(sc.status?.leader);
  }

  async #writeStatus(sc: StoreCluster, o: Observed, step: StepResult): Promise<void> {
    const now = new Date(this.#d.clock.wallNow()).toISOString();
    const gen = sc.metadata.generation;
    const leaderMember = o.list?.find((m) => m.id === o.leaderId);
    const podByName = new Map(o.pods.map((p) => [p.metadata?.name ?? '', p]));
    const members: MemberStatus[] = (o.list ?? []).map((m) => {
      const name = nameOf(m);
      const st = o.states.get(name);
      const pod = podByName.get(name);
      const store = pod?.status?.containerStatuses?.find((c) => c.name === 'store');
      const last = store?.lastState?.terminated;
      return {
        name, id: m.id, role: !st ? 'unknown' : m.isLearner ? 'learner' : m.id === o.leaderId ? 'leader' : 'follower',
        ready: pod !== undefined && podReady(pod), ...(st ? { appliedIndex: st.appliedIndex } : {}),
        // The ballast version the pod runs (the store reports etcd's API version, 3.5.0, to clients).
        ...(pod?.metadata?.annotations?.['ballast.dev/version'] ? { version: pod.metadata.annotations['ballast.dev/version'] } : {}),
        ...(store ? { restarts: store.restartCount } : {}),
        ...(last ? { lastTermination: { reason: last.reason ?? 'Unknown', exitCode: last.exitCode, ...(last.finishedAt ? { finishedAt: new Date(last.finishedAt).toISOString() } : {}) } } : {}),
      };
    });
    // A member that restarted since the last status: say so, with the kubelet's reason (an
    // OOMKilled member names its memory limit: the fix is usually spec.resources).
    for (const m of members) {
      const before = sc.status?.members?.find((x) => x.name === m.name)?.restarts;
      if (before === undefined || m.restarts === undefined || m.restarts <= before || !m.lastTermination) continue;
      const limit = podByName.get(m.name)?.spec?.containers.find((c) => c.name === 'store')?.resources?.limits?.['memory'];
      const oom = m.lastTermination.reason === 'OOMKilled';
      this.#d.event(sc, 'Warning', oom ? 'MemberOOMKilled' : 'MemberRestarted', `${m.name} stopped (${m.lastTermination.reason}, exit code ${m.lastTermination.exitCode})${oom ? ` at its memory limit${limit ? ` of ${limit}` : ''}; raise spec.resources.limits.memory if it recurs` : ''} and was restarted by the kubelet (restart ${m.restarts}); it rejoins with its data`);
    }
    const ready = members.filter((m) => m.ready).length;
    const allReady = step.phase === 'Ready';
    const quorum = Math.floor(sc.spec.replicas / 2) + 1;
    const cond = (type: string, status: 'True' | 'False', reason: string, message: string): V1Condition =>
      condition(sc.status?.conditions, { type, status, reason, message }, gen ?? 0, now) as unknown as V1Condition;
    const versions = [...new Set(members.map((m) => m.version).filter(Boolean))].sort();
    const status: StoreClusterStatus = {
      observedGeneration: gen ?? 0, phase: step.phase, replicas: o.pods.length, readyReplicas: ready, members,
      ...(leaderMember ? { leader: nameOf(leaderMember) } : {}),
      ...(versions[0] ? { currentVersion: versions[0] } : {}),
      selector: Object.entries(specs.selectorLabels(sc)).map(([k, v]) => `${k}=${v}`).join(','),
      ...(step.authEnabled !== undefined ? { authEnabled: step.authEnabled } : sc.status?.authEnabled !== undefined ? { authEnabled: sc.status.authEnabled } : {}),
      conditions: [
        cond('Ready', allReady ? 'True' : 'False', allReady ? 'AllMembersReady' : step.phase, allReady ? `${ready} of ${sc.spec.replicas} members ready; leader ${leaderMember ? nameOf(leaderMember) : 'unknown'}` : step.progressing.message),
        cond('Available', o.leaderId ? 'True' : 'False', o.leaderId ? 'QuorumAvailable' : step.quorumLost ? 'QuorumLost' : 'NoLeader', o.leaderId ? `a leader is elected; ${ready} of ${sc.spec.replicas} members ready (quorum ${quorum})` : step.quorumLost
          ? `no leader: fewer than ${quorum} of ${sc.spec.replicas} members are running. The operator does not act destructively on a lost quorum. Bring the members' pods back (kubectl get pods -l ${specs.labels.instance}=${sc.metadata.name}); if their data is gone, restore a snapshot into a new StoreCluster (docs/operations.md, "Recovering from quorum loss").`
          : 'waiting for the members to elect a leader'),
        cond('Progressing', step.progressing.status, step.progressing.reason, step.progressing.message),
        cond('Degraded', step.phase === 'Degraded' || step.quorumLost ? 'True' : 'False', step.quorumLost ? 'QuorumLost' : step.degraded ? step.progressing.reason : step.phase === 'Degraded' ? 'MembersNotReady' : 'AsExpected', step.quorumLost ? 'quorum lost' : step.degraded ? step.progressing.message : step.phase === 'Degraded' ? `${sc.spec.replicas - ready} member(s) not ready` : 'all members as expected'),
      ],
    };
    // Write only what changed (transition times are kept from before when nothing else did).
    const key = `${sc.metadata.namespace}/${sc.metadata.name}`;
    const sig = statusSignature(status);
    if (this.#written.get(key) === sig && sc.status?.observedGeneration === status.observedGeneration) return;
    await this.#custom.patchNamespacedCustomObjectStatus({ group, version, namespace: sc.metadata.namespace, plural: 'storeclusters', name: sc.metadata.name, body: { status } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
    this.#written.set(key, sig);
  }
}

/** `ballast store` exits with this code when it lost its data (STORE_ERR_DATA_LOST). */
const dataLostExitCode = ExitCode.dataLost;

/** Unchanged objects are applied again after this long (drift correction). */
const reapplyMs = 10 * 60_000;

/** How long a replaced member may take to become ready before the rollout stops. */
const updateDeadlineMs = 5 * 60_000;

interface StepResult {
  phase: string;
  progressing: { status: 'True' | 'False', reason: string, message: string };
  quorumLost?: boolean;
  degraded?: boolean;
  requeueMs?: number;
  /** What the store said of its auth, when this reconcile asked. */
  authEnabled?: boolean;
}
