/**
 * The StoreCluster reconciler. Level-triggered: it gets a key, reads the informer caches and
 * asks the members how they are (observe), lets `plan` (operator/plan, pure) decide the one step
 * to take, performs it (server-side apply under one field manager, member calls to the leader,
 * deletions), writes status last (`planStatus`), and says when to look again.
 *
 * What the steps are (quorum-safe membership, repair, rollouts, auth, a lost quorum reported and
 * never acted on) is written, and unit-tested, in operator/plan.
 */
import { randomBytes } from 'node:crypto';
import {
  type CoreV1Api,
  type KubeConfig,
  KubernetesObjectApi,
  PatchStrategy,
  type V1Pod,
  type V1StatefulSet,
  CustomObjectsApi,
  setHeaderOptions,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { Clock } from '../../lib/clock.ts';
import { statusSignature } from '../../lib/kube/conditions.ts';
import type { SharedInformer } from '../../lib/kube/informer.ts';
import { ExitCode } from '../../lib/lifecycle.ts';
import { goodBackupsNewestFirst, type StoreBackup } from '../api/storebackup.ts';
import { group, type StoreCluster, version } from '../api/storecluster.ts';
import { type MemberClient, type MemberInfo, StoreCredentials } from '../members.ts';
import {
  type MemberView,
  type Observed,
  type PodView,
  type Step,
  type StepStatus,
  plan,
  planStatus,
  statusPatch,
} from '../plan/storecluster.ts';
import * as specs from '../specs/storecluster.ts';

export { pausedAnnotation } from '../plan/storecluster.ts';

export interface StoreClusterControllerDeps {
  kubeconfig: KubeConfig;
  core: CoreV1Api;
  clusters: SharedInformer<StoreCluster>;
  sets: SharedInformer<V1StatefulSet>;
  pods: SharedInformer<V1Pod>;
  /** StoreBackups (spec.restore names one). */
  backups?: SharedInformer<StoreBackup>;
  /** A client for one member; `sc` for its TLS (loaded by loadTls first), `creds` while auth may be on. */
  members: (address: string, sc: StoreCluster, creds?: StoreCredentials) => MemberClient;
  /** Read the cluster's client TLS Secret (spec.tls.clientSecretName) so members() can use it. */
  loadTls?: (sc: StoreCluster) => Promise<void>;
  clock: Clock;
  log: Logger;
  /** Record an Event on the StoreCluster. */
  event: (sc: StoreCluster, type: 'Normal' | 'Warning', reason: string, message: string) => void;
}

const podReady = (p: V1Pod) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
/** A member's name from its peer URL (`http://<name>.<peer svc>...:2380`); learners not yet started have no name. */
const nameOf = (m: MemberInfo) => m.name || (new URL(m.peerURLs[0] ?? 'http://unknown').hostname.split('.')[0] ?? '');

export class StoreClusterController {
  readonly #deps: StoreClusterControllerDeps;
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
    this.#deps = d;
    this.#objects = KubernetesObjectApi.makeApiClient(d.kubeconfig);
    this.#custom = d.kubeconfig.makeApiClient(CustomObjectsApi);
  }

  /** Returns when to look again (ms), or undefined for "when something changes". */
  async reconcile(key: string): Promise<number | undefined> {
    const sc = this.#deps.clusters.get(key);
    if (!sc || (sc as { metadata: { deletionTimestamp?: unknown } }).metadata.deletionTimestamp) return undefined;
    await this.#deps.loadTls?.(sc);
    await this.#loadCredentials(sc);
    const observed = await this.#observe(sc);
    const step = plan(sc, observed);
    if (step.ensureObjects) {
      await this.#ensureToken(sc);
      for (const obj of [specs.serviceAccount(sc), specs.peerService(sc), specs.clientService(sc), specs.disruptionBudget(sc)])
        await this.#apply(obj);
    }
    const done = await this.#perform(sc, observed, step);
    await this.#writeStatus(sc, observed, done);
    return done.requeueMs;
  }

  async #observe(sc: StoreCluster): Promise<Observed> {
    const pods = this.#deps.pods
      .list()
      .filter(
        (p) =>
          p.metadata?.namespace === sc.metadata.namespace &&
          p.metadata.labels?.[specs.labels.instance] === sc.metadata.name &&
          !p.metadata.deletionTimestamp,
      );
    const views: PodView[] = [];
    let list: MemberInfo[] | undefined;
    let local: { term: number; index: number; members: MemberInfo[] } | undefined;
    let leaderId = '';
    let authProblem = '';
    let auth: Observed['auth'] = 'unknown';
    await Promise.all(
      pods.map(async (p) => {
        const store = p.status?.containerStatuses?.find((c) => c.name === 'store');
        const last = store?.lastState?.terminated;
        const memoryLimit = p.spec?.containers.find((c) => c.name === 'store')?.resources?.limits?.['memory'];
        const view: PodView = {
          name: p.metadata?.name ?? '',
          ready: podReady(p),
          dataLost:
            p.status?.containerStatuses?.some(
              (c) => c.lastState?.terminated?.exitCode === ExitCode.dataLost || c.state?.terminated?.exitCode === ExitCode.dataLost,
            ) === true,
          createdAt: new Date(p.metadata?.creationTimestamp ?? 0).getTime(),
          ...(p.status?.podIP ? { ip: p.status.podIP } : {}),
          ...(p.metadata?.annotations?.[specs.specHashAnnotation] ? { specHash: p.metadata.annotations[specs.specHashAnnotation] } : {}),
          ...(p.metadata?.annotations?.['ballast.dev/version'] ? { version: p.metadata.annotations['ballast.dev/version'] } : {}),
          ...(store ? { restarts: store.restartCount } : {}),
          ...(last
            ? {
                lastTermination: {
                  reason: last.reason ?? 'Unknown',
                  exitCode: last.exitCode,
                  ...(last.finishedAt ? { finishedAt: new Date(last.finishedAt).toISOString() } : {}),
                },
              }
            : {}),
          ...(memoryLimit ? { memoryLimit } : {}),
          ...forcePlanOf(p),
        };
        views.push(view);
        if (!view.ip) return;
        const c = this.#deps.members(`${view.ip}:${specs.clientPort}`, sc, this.#creds(sc));
        try {
          const st = await c.status();
          Object.assign(view, { appliedIndex: st.appliedIndex, memberId: st.id, term: st.term, commitIndex: st.commitIndex });
          if (st.leader !== '0') leaderId = st.leader;
          if (!list || st.leader === st.id) list = await c.list().catch(() => list);
          // Without a leader, the configuration as the member with the newest data applied it (for a recovery plan).
          if (st.leader === '0' && (!local || st.term > local.term || (st.term === local.term && st.commitIndex > local.index))) {
            const members = await c.list(false).catch(() => undefined);
            if (members) local = { term: st.term, index: st.commitIndex, members };
          }
          // The store's auth, asked of the leader on the connection already open.
          if (st.leader === st.id)
            auth = await c.authEnabled().then(
              (on) => (on === undefined ? 'unsupported' : on ? 'on' : 'off'),
              () => 'unknown' as const,
            );
        } catch (err) {
          const details = (err as { details?: string }).details ?? '';
          if (/etcdserver: (user name is empty|authentication failed|permission denied)/.test(details)) authProblem = details;
        } finally {
          c.close();
        }
      }),
    );
    views.sort((a, b) => a.name.localeCompare(b.name, 'en', { numeric: true }));
    const toViews = (l: MemberInfo[]): MemberView[] =>
      l.map((m) => ({ id: m.id, name: nameOf(m), peerUrl: m.peerURLs[0] ?? '', isLearner: m.isLearner }));
    const members = list ? toViews(list) : undefined;
    const set = this.#deps.sets.get(`${sc.metadata.namespace}/${sc.metadata.name}`);
    const setReplicas = set ? (set.spec?.replicas ?? 0) : undefined;
    // A volume kept from an earlier scale-down, where the next member would start.
    const nextClaimExists =
      setReplicas !== undefined &&
      sc.spec.replicas > setReplicas &&
      (await this.#deps.core
        .readNamespacedPersistentVolumeClaim({ name: `data-${specs.memberName(sc, setReplicas)}`, namespace: sc.metadata.namespace })
        .then(
          () => true,
          () => false,
        ));
    return {
      setReplicas,
      pods: views,
      members,
      leaderId,
      auth,
      ...(sc.spec.restore ? { restoreSource: this.#deps.backups?.get(`${sc.metadata.namespace}/${sc.spec.restore.backup}`) } : {}),
      ...newestBackupOf(sc, this.#deps.backups?.list() ?? []),
      ...(local ? { localMembers: toViews(local.members) } : {}),
      hasRootCredentials: this.#creds(sc) !== undefined,
      nextClaimExists,
      now: this.#deps.clock.wallNow(),
      ...(authProblem && !leaderId ? { authProblem } : {}),
    };
  }

  /** Call the leader (its pod's IP, from the Raft configuration's name for the leader's id). */
  async #leaderCall<T>(sc: StoreCluster, o: Observed, fn: (c: MemberClient) => Promise<T>): Promise<T> {
    const leaderName = o.members?.find((m) => m.id === o.leaderId)?.name;
    const ip = o.pods.find((p) => p.name === leaderName)?.ip;
    // (An empty host would reach whatever listens on this machine's client port.)
    if (!ip) throw new Error(`the leader${leaderName ? ` ${leaderName}` : ''} has no pod IP yet (its pod is being replaced); asking again`);
    const c = this.#deps.members(`${ip}:${specs.clientPort}`, sc, this.#creds(sc));
    try {
      return await fn(c);
    } finally {
      c.close();
    }
  }

  /** Perform a step's actions in order, then record its events; what status should say. */
  async #perform(sc: StoreCluster, o: Observed, step: Step): Promise<StepStatus> {
    const namespace = sc.metadata.namespace;
    let addedId = '';
    for (const a of step.actions) {
      try {
        switch (a.do) {
          case 'applyStatefulSet':
            await this.#apply(
              specs.statefulSet(sc, {
                replicas: a.replicas,
                initialCluster: a.members.map((m) => `${m.name}=${m.peerUrl}`).join(','),
                clusterState: a.state,
                ...(a.forceNewCluster ? { forceNewCluster: a.forceNewCluster } : {}),
                ...(a.restoreFrom ? { restoreFrom: a.restoreFrom } : {}),
              }),
            );
            break;
          case 'addLearner':
            addedId = (await this.#leaderCall(sc, o, (c) => c.addLearner(a.peerUrl))).id;
            break;
          case 'promote':
            await this.#leaderCall(sc, o, (c) => c.promote(a.id));
            break;
          case 'remove':
            await this.#leaderCall(sc, o, (c) => c.remove(a.id));
            break;
          case 'moveLeader':
            await this.#leaderCall(sc, o, (c) => c.moveLeader(a.to));
            break;
          case 'deleteClaim':
            await this.#deps.core.deleteNamespacedPersistentVolumeClaim({ name: a.name, namespace }).catch(() => undefined);
            break;
          case 'deletePod':
            if (a.force)
              await this.#deps.core.deleteNamespacedPod({ name: a.name, namespace, gracePeriodSeconds: 0 }).catch(() => undefined);
            else await this.#deps.core.deleteNamespacedPod({ name: a.name, namespace });
            break;
          case 'enableAuth': {
            const creds = this.#creds(sc);
            if (!creds) throw new Error(`no root credentials in Secret ${specs.rootSecretName(sc)}`);
            await this.#leaderCall(sc, o, (c) => c.enableAuth(creds));
            break;
          }
          case 'disableAuth':
            await this.#leaderCall(sc, o, (c) => c.disableAuth());
            break;
        }
      } catch (err) {
        const f = step.ifFailed;
        const text = `${(err as Error).message ?? ''} ${(err as { details?: string }).details ?? ''}`;
        if (!f || f.action !== a.do || !f.match.test(text)) throw err;
        return f.appendError
          ? {
              ...f.instead,
              progressing: { ...f.instead.progressing, message: `${f.instead.progressing.message} (${(err as Error).message})` },
            }
          : f.instead;
      }
    }
    for (const e of step.events) this.#deps.event(sc, e.type, e.reason, e.message.replace('{id}', addedId));
    return step;
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
    if (cached && (cached.creds || !sc.spec.auth?.enabled) && this.#deps.clock.now() - cached.at < reapplyMs) return;
    const name = specs.rootSecretName(sc);
    let secret = await this.#deps.core.readNamespacedSecret({ name, namespace: sc.metadata.namespace }).catch((err: unknown) => {
      if ((err as { code?: number }).code === 404) return undefined;
      throw err;
    });
    if (!secret && sc.spec.auth?.enabled) {
      secret = await this.#deps.core.createNamespacedSecret({
        namespace: sc.metadata.namespace,
        body: specs.rootSecret(sc, randomBytes(24).toString('base64url')),
      });
      this.#deps.event(
        sc,
        'Normal',
        'RootSecretCreated',
        `created Secret ${name} with the store's root user and a random password (spec.auth)`,
      );
    }
    const field = (k: string) => {
      const v = secret?.data?.[k] ?? '';
      return v ? Buffer.from(v, 'base64').toString('utf8') : (secret?.stringData?.[k] ?? '');
    };
    const password = field('password');
    this.#credentials.set(key, {
      creds: secret && password ? new StoreCredentials(field('username') || 'root', password) : undefined,
      at: this.#deps.clock.now(),
    });
  }

  async #ensureToken(sc: StoreCluster): Promise<void> {
    const key = `Secret/${sc.metadata.namespace}/${specs.tokenSecretName(sc)}`;
    if (this.#applied.has(key)) return;
    try {
      await this.#deps.core.readNamespacedSecret({ name: specs.tokenSecretName(sc), namespace: sc.metadata.namespace });
    } catch (err) {
      if ((err as { code?: number }).code !== 404) throw err;
      await this.#deps.core.createNamespacedSecret({
        namespace: sc.metadata.namespace,
        body: specs.tokenSecret(sc, randomBytes(16).toString('hex')),
      });
    }
    this.#applied.set(key, { body: '', at: this.#deps.clock.now() });
  }

  async #apply(obj: object): Promise<void> {
    const o = obj as { kind: string; metadata: { namespace?: string; name: string } };
    const key = `${o.kind}/${o.metadata.namespace}/${o.metadata.name}`;
    const body = JSON.stringify(obj);
    const last = this.#applied.get(key);
    const now = this.#deps.clock.now();
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

  async #writeStatus(sc: StoreCluster, o: Observed, step: StepStatus): Promise<void> {
    const { status, events } = planStatus(sc, o, step);
    for (const e of events) this.#deps.event(sc, e.type, e.reason, e.message);
    // Write only what changed (transition times are kept from before when nothing else did).
    const key = `${sc.metadata.namespace}/${sc.metadata.name}`;
    const sig = statusSignature(status);
    if (this.#written.get(key) === sig && sc.status?.observedGeneration === status.observedGeneration) return;
    await this.#custom.patchNamespacedCustomObjectStatus(
      { group, version, namespace: sc.metadata.namespace, plural: 'storeclusters', name: sc.metadata.name, body: statusPatch(sc, status) },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    this.#written.set(key, sig);
  }
}

/** Unchanged objects are applied again after this long (drift correction). */
const reapplyMs = 10 * 60_000;

/** The recovery plan a member pod's store was started to force a new cluster under (its own name named). */
function forcePlanOf(p: V1Pod): { forcePlan?: string } {
  const args = p.spec?.containers.find((c) => c.name === 'store')?.args ?? [];
  const value = (flag: string) => args.find((a) => a.startsWith(`--${flag}=`))?.slice(flag.length + 3);
  const id = value('force-new-cluster-id');
  return id && value('force-new-cluster-member') === p.metadata?.name ? { forcePlan: id } : {};
}

/** The cluster's newest good backup (Succeeded, verification not failed), for the no-survivor advice. */
function newestBackupOf(sc: StoreCluster, all: readonly StoreBackup[]): { newestBackup?: StoreBackup } {
  const newest = goodBackupsNewestFirst(
    all.filter((b) => b.metadata.namespace === sc.metadata.namespace && b.spec.cluster === sc.metadata.name),
  )[0];
  return newest ? { newestBackup: newest } : {};
}
