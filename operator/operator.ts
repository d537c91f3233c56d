/**
 * The operator's runtime: informers (StoreClusters, and the StatefulSets and pods it manages),
 * a rate-limited work queue, workers that reconcile one key at a time, and leader election
 * (controllers run only on the leader; every replica keeps its caches warm so a new leader
 * starts at once). Metrics: reconciles by result, their duration, queue depth, leadership.
 */
import { hostname } from 'node:os';
import {
  AppsV1Api,
  BatchV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  KubernetesObjectApi,
  type KubernetesListObject,
  type V1Job,
  type V1Pod,
  type V1StatefulSet,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { Clock, TimerHandle } from '../lib/clock.ts';
import { SharedInformer } from '../lib/kube/informer.ts';
import { LeaderElector } from '../lib/kube/leader.ts';
import { WorkQueue } from '../lib/kube/workqueue.ts';
import { SpanStatusCode, type Tracer } from '@opentelemetry/api';
import type { Metrics } from '../lib/metrics.ts';
import type { Random } from '../lib/random.ts';
import { gatewayGroup, gatewayVersion } from '../api/gateway.ts';
import { group, type StoreCluster, version } from './api/storecluster.ts';
import { StoreBackupController, storeBackupMetrics } from './controllers/storebackup.ts';
import { StoreBackupScheduleController, storeBackupScheduleMetrics } from './controllers/storebackupschedule.ts';
import { scheduleLabel, type StoreBackupSchedule } from './api/storebackupschedule.ts';
import { StoreClusterController } from './controllers/storecluster.ts';
import type { StoreBackup } from './api/storebackup.ts';
import { type DiscoveryRuntime, discoveryRuntime } from './discovery/runtime.ts';
import { MemberClient, type MemberTls } from './members.ts';
import { backupLabel } from './specs/storebackup.ts';
import { clientTlsName, labels } from './specs/storecluster.ts';

export interface OperatorOptions {
  kubeconfig: KubeConfig;
  clock: Clock;
  random: Random;
  log: Logger;
  metrics: Metrics;
  /** Set when OpenTelemetry is on: a span per reconcile. */
  tracer?: Tracer;
  /** Namespace of the leader-election Lease. */
  namespace: string;
  identity?: string;
  leaderElection: boolean;
  workers?: number;
  /** host:port of the discovery service for sidecars (undefined or empty: not served). */
  discoveryAddress?: string;
  /** The mesh (workload certificates over discovery); absent: off. */
  mesh?: { trustDomain: string; anchorSecret: string; issuerSecret: string; certificateTtlMs: number; rotationStepMs: number };
  /** With the mesh: the discovery service serves TLS with a certificate for these names (its Service's) and authenticates sidecars. */
  discoveryTlsNames?: string[];
  leaseMs?: number;
  renewDeadlineMs?: number;
  retryMs?: number;
}

const managed = `${labels.managedBy}=ballast-operator`;
/** Queue keys of StoreBackups and StoreBackupSchedules (StoreClusters' keys are plain namespace/name). */
const backupPrefix = 'StoreBackup/';
const schedulePrefix = 'StoreBackupSchedule/';

export class Operator {
  readonly #options: OperatorOptions;
  readonly #queue: WorkQueue;
  readonly #clusters: SharedInformer<StoreCluster>;
  readonly #sets: SharedInformer<V1StatefulSet>;
  readonly #pods: SharedInformer<V1Pod>;
  readonly #controller: StoreClusterController;
  readonly #backups: SharedInformer<StoreBackup>;
  readonly #jobs: SharedInformer<V1Job>;
  readonly #backupController: StoreBackupController;
  readonly #schedules: SharedInformer<StoreBackupSchedule>;
  readonly #scheduleController: StoreBackupScheduleController;
  /** ResiliencePolicies, Services and EndpointSlices, for the discovery service (every replica serves it). */
  readonly #discovery: DiscoveryRuntime | undefined;
  readonly #elector: LeaderElector | undefined;
  readonly #core: CoreV1Api;
  readonly #custom: CustomObjectsApi;
  readonly #metrics;
  #running = false;
  #leading = false;
  #gatewayLogged = false;
  #gatewayRetry: TimerHandle | undefined;

  constructor(o: OperatorOptions) {
    this.#options = o;
    const kc = o.kubeconfig;
    this.#core = kc.makeApiClient(CoreV1Api);
    const apps = kc.makeApiClient(AppsV1Api);
    const custom = kc.makeApiClient(CustomObjectsApi);
    this.#custom = custom;
    this.#queue = new WorkQueue(o.clock);
    const informer = { kubeconfig: kc, clock: o.clock, log: o.log };
    this.#clusters = new SharedInformer<StoreCluster>({
      ...informer,
      path: `/apis/${group}/${version}/storeclusters`,
      list: () =>
        custom.listCustomObjectForAllNamespaces({ group, version, plural: 'storeclusters' }) as Promise<KubernetesListObject<StoreCluster>>,
    });
    this.#sets = new SharedInformer<V1StatefulSet>({
      ...informer,
      path: '/apis/apps/v1/statefulsets',
      labelSelector: managed,
      list: () => apps.listStatefulSetForAllNamespaces({ labelSelector: managed }),
    });
    this.#pods = new SharedInformer<V1Pod>({
      ...informer,
      path: '/api/v1/pods',
      labelSelector: managed,
      list: () => this.#core.listPodForAllNamespaces({ labelSelector: managed }),
    });
    // Changes to what a StoreCluster owns requeue the StoreCluster.
    this.#clusters.onChange((key) => {
      if (!this.#clusters.get(key)) this.#controller.forget(key);
      this.#queue.add(key);
    });
    const owner = (ns: string | undefined, l: Record<string, string> | undefined) =>
      ns && l?.[labels.instance] ? `${ns}/${l[labels.instance]}` : undefined;
    this.#sets.onChange((key) => {
      const s = this.#sets.get(key);
      const k = owner(s?.metadata?.namespace ?? key.split('/')[0], s?.metadata?.labels) ?? (s ? undefined : key);
      if (k) this.#queue.add(k);
    });
    this.#pods.onChange((key) => {
      const p = this.#pods.get(key);
      const k = owner(p?.metadata?.namespace, p?.metadata?.labels);
      if (k) this.#queue.add(k);
    });
    // StoreBackups and their Jobs (keys "StoreBackup/<namespace>/<name>" in the one queue); a
    // Job's pods carry the operator's label and the StoreBackup's name.
    const backupKey = (ns: string | undefined, name: string | undefined) => `${backupPrefix}${ns}/${name}`;
    this.#backups = new SharedInformer<StoreBackup>({
      ...informer,
      path: `/apis/${group}/${version}/storebackups`,
      list: () =>
        custom.listCustomObjectForAllNamespaces({ group, version, plural: 'storebackups' }) as Promise<KubernetesListObject<StoreBackup>>,
    });
    const batch = kc.makeApiClient(BatchV1Api);
    this.#jobs = new SharedInformer<V1Job>({
      ...informer,
      path: '/apis/batch/v1/jobs',
      labelSelector: managed,
      list: () => batch.listJobForAllNamespaces({ labelSelector: managed }),
    });
    this.#schedules = new SharedInformer<StoreBackupSchedule>({
      ...informer,
      path: `/apis/${group}/${version}/storebackupschedules`,
      list: () =>
        custom.listCustomObjectForAllNamespaces({ group, version, plural: 'storebackupschedules' }) as Promise<
          KubernetesListObject<StoreBackupSchedule>
        >,
    });
    this.#schedules.onChange((key) => this.#queue.add(`${schedulePrefix}${key}`));
    this.#backups.onChange((key) => {
      this.#queue.add(`${backupPrefix}${key}`);
      // The schedule that made it counts it (retention, last success).
      const schedule = this.#backups.get(key)?.metadata.labels?.[scheduleLabel];
      if (schedule) this.#queue.add(`${schedulePrefix}${key.split('/')[0]}/${schedule}`);
      // A StoreCluster created from this backup waits for it.
      const [ns, name] = key.split('/');
      for (const sc of this.#clusters.list())
        if (sc.metadata.namespace === ns && sc.spec.restore?.backup === name) this.#queue.add(`${ns}/${sc.metadata.name}`);
    });
    this.#jobs.onChange((key) => {
      const j = this.#jobs.get(key);
      const name = j?.metadata?.labels?.[backupLabel];
      if (name) this.#queue.add(backupKey(j?.metadata?.namespace, name));
    });
    this.#pods.onChange((key) => {
      const p = this.#pods.get(key);
      const name = p?.metadata?.labels?.[backupLabel];
      if (name) this.#queue.add(backupKey(p?.metadata?.namespace, name));
    });
    // Client TLS of clusters with spec.tls (the operator presents the cluster's own certificate).
    const memberTls = new Map<string, MemberTls>();
    this.#controller = new StoreClusterController({
      kubeconfig: kc,
      core: this.#core,
      clusters: this.#clusters,
      sets: this.#sets,
      pods: this.#pods,
      backups: this.#backups,
      members: (address, sc, creds) =>
        new MemberClient(address, 2000, memberTls.get(`${sc.metadata.namespace}/${sc.spec.tls?.clientSecretName ?? ''}`), creds),
      loadTls: async (sc) => {
        const name = sc.spec.tls?.clientSecretName;
        if (!name) return;
        const secret = await this.#core.readNamespacedSecret({ namespace: sc.metadata.namespace, name });
        const data = secret.data ?? {};
        const missing = ['ca.crt', 'tls.crt', 'tls.key'].filter((k) => !data[k]);
        if (missing.length > 0)
          throw new Error(`Secret ${sc.metadata.namespace}/${name} (spec.tls.clientSecretName) lacks ${missing.join(', ')}`);
        const b = (k: string) => Buffer.from(data[k] as string, 'base64');
        memberTls.set(`${sc.metadata.namespace}/${name}`, {
          ca: b('ca.crt'),
          cert: b('tls.crt'),
          key: b('tls.key'),
          serverName: clientTlsName(sc),
        });
      },
      clock: o.clock,
      log: o.log,
      event: (sc, type, reason, message) => this.#event('StoreCluster', sc, type, reason, message),
    });
    this.#backupController = new StoreBackupController({
      custom,
      batch,
      backups: this.#backups,
      clusters: this.#clusters,
      jobs: this.#jobs,
      pods: this.#pods,
      clock: o.clock,
      event: (sb, type, reason, message) => this.#event('StoreBackup', sb, type, reason, message),
      metrics: storeBackupMetrics(o.metrics),
    });
    this.#scheduleController = new StoreBackupScheduleController({
      custom,
      apps,
      objects: KubernetesObjectApi.makeApiClient(kc),
      schedules: this.#schedules,
      backups: this.#backups,
      clusters: this.#clusters,
      clock: o.clock,
      event: (s, type, reason, message) => this.#event('StoreBackupSchedule', s, type, reason, message),
      metrics: storeBackupScheduleMetrics(o.metrics),
    });
    if (o.discoveryAddress) {
      this.#discovery = discoveryRuntime({
        kubeconfig: kc,
        core: this.#core,
        custom,
        clock: o.clock,
        log: o.log,
        metrics: o.metrics,
        namespace: o.namespace,
        ...(o.mesh ? { mesh: o.mesh } : {}),
        ...(o.discoveryTlsNames ? { discoveryTlsNames: o.discoveryTlsNames } : {}),
      });
    }
    this.#metrics = {
      reconciles: o.metrics.counter('ballast_operator_reconcile_total', 'Reconciles by controller and result (success, error, requeue).', [
        'controller',
        'result',
      ]),
      duration: o.metrics.histogram(
        'ballast_operator_reconcile_duration_seconds',
        'Time one reconcile took.',
        ['controller'],
        [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      ),
      depth: o.metrics.gauge('ballast_operator_workqueue_depth', 'Keys waiting in the work queue.'),
      leader: o.metrics.gauge('ballast_operator_leader', '1 while this replica is the leader.'),
      transitions: o.metrics.counter('ballast_operator_leader_transitions_total', 'Times this replica started or stopped leading.'),
      queueWait: o.metrics.histogram(
        'ballast_operator_workqueue_queue_duration_seconds',
        'Time a key waited in the work queue before a worker took it.',
        [],
        [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      ),
    };
    // Every series exists from the start (at 0), so rates and alerts see "no errors", not "no data".
    for (const controller of ['storecluster', 'storebackup', 'storebackupschedule'])
      for (const result of ['success', 'error', 'requeue']) this.#metrics.reconciles.inc({ controller, result }, 0);
    this.#metrics.leader.set(0);
    this.#metrics.transitions.inc(0);
    this.#queue.onDequeue = (_key, waitedMs) => this.#metrics.queueWait.observe(waitedMs / 1000);
    if (o.leaderElection) {
      this.#elector = new LeaderElector({
        kubeconfig: kc,
        namespace: o.namespace,
        name: 'ballast-operator',
        identity: o.identity ?? `${hostname()}_${process.pid}`,
        clock: o.clock,
        random: o.random,
        log: o.log,
        ...(o.leaseMs ? { leaseMs: o.leaseMs } : {}),
        ...(o.renewDeadlineMs ? { renewDeadlineMs: o.renewDeadlineMs } : {}),
        ...(o.retryMs ? { retryMs: o.retryMs } : {}),
        onStartedLeading: () => this.#lead(true),
        onStoppedLeading: () => this.#lead(false),
      });
    }
  }

  get leading(): boolean {
    return this.#leading;
  }

  /** Every informer has listed once (the replica can act, or take over, at once). */
  get synced(): boolean {
    return (
      this.#clusters.synced &&
      this.#sets.synced &&
      this.#pods.synced &&
      this.#backups.synced &&
      this.#schedules.synced &&
      this.#jobs.synced &&
      (this.#discovery?.informers.every((i) => i.synced) ?? true) &&
      (!this.#discovery?.gateway.started || this.#discovery.gateway.informers.every((i) => i.synced))
    );
  }

  /** The mesh's trust bundle (PEM; '' when the mesh is off or not loaded yet). */
  get meshTrustBundle(): string {
    return this.#discovery?.mesh?.bundlePem ?? '';
  }

  /** The discovery service's port, once listening. */
  discoveryPort: number | undefined;

  async start(): Promise<void> {
    this.#running = true;
    await Promise.all([
      this.#clusters.start(),
      this.#sets.start(),
      this.#pods.start(),
      this.#backups.start(),
      this.#schedules.start(),
      this.#jobs.start(),
      ...(this.#discovery?.informers.map((i) => i.start()) ?? []),
    ]);
    await this.#startGateway();
    await this.#discovery?.mesh?.start();
    if (this.#discovery && this.#options.discoveryAddress)
      this.discoveryPort = await this.#discovery.server.listen(this.#options.discoveryAddress);
    if (this.#elector) this.#elector.start();
    else this.#lead(true);
  }

  /**
   * Gateway API routes, when the cluster has the CRDs (they are a prerequisite the chart does not
   * own): looked for now and every minute until found, so installing them later needs no restart.
   */
  async #startGateway(): Promise<void> {
    const g = this.#discovery?.gateway;
    if (!g || g.started || !this.#running) return;
    let present = false;
    try {
      await this.#custom.listCustomObjectForAllNamespaces({ group: gatewayGroup, version: gatewayVersion, plural: 'httproutes', limit: 1 });
      present = true;
    } catch (err) {
      if ((err as { code?: number }).code !== 404)
        this.#options.log.warn({ err }, 'could not look for the Gateway API; looking again in a minute');
    }
    if (!present) {
      if (!this.#gatewayLogged)
        this.#options.log.info(
          {},
          'the Gateway API CRDs (gateway.networking.k8s.io/v1) are not installed: HTTPRoutes and GRPCRoutes are not read; looking again every minute',
        );
      this.#gatewayLogged = true;
      this.#gatewayRetry = this.#options.clock.setTimeout(() => void this.#startGateway(), 60_000);
      return;
    }
    g.started = true;
    await Promise.all(g.informers.map((i) => i.start()));
    this.#options.log.info({}, 'Gateway API found: HTTPRoutes and GRPCRoutes attached to Services configure the sidecars');
    if (this.#leading) g.status.leading = true;
  }

  async stop(): Promise<void> {
    this.#running = false;
    this.#gatewayRetry?.cancel();
    this.#queue.shutdown();
    this.#discovery?.status.stop();
    this.#discovery?.gateway.status.stop();
    this.#discovery?.mesh?.stop();
    await this.#elector?.stop();
    await this.#discovery?.server.stop();
    await Promise.all([
      this.#clusters.stop(),
      this.#sets.stop(),
      this.#pods.stop(),
      this.#backups.stop(),
      this.#schedules.stop(),
      this.#jobs.stop(),
      ...(this.#discovery?.informers.map((i) => i.stop()) ?? []),
      ...(this.#discovery?.gateway.started ? this.#discovery.gateway.informers.map((i) => i.stop()) : []),
    ]);
  }

  /** An Event on one of the operator's objects, and the same as a log line. */
  #event(
    kind: 'StoreCluster' | 'StoreBackup' | 'StoreBackupSchedule',
    obj: { apiVersion: string; metadata: { name: string; namespace: string; uid?: string } },
    type: 'Normal' | 'Warning',
    reason: string,
    message: string,
  ): void {
    const { name, namespace, uid } = obj.metadata;
    this.#options.log.info({ [kind.toLowerCase()]: `${namespace}/${name}`, reason }, message);
    void this.#core
      .createNamespacedEvent({
        namespace,
        body: {
          metadata: { generateName: `${name}.` },
          involvedObject: { apiVersion: obj.apiVersion, kind, name, namespace, uid: uid ?? '' },
          reason,
          message,
          type,
          source: { component: 'ballast-operator' },
          firstTimestamp: new Date(),
          lastTimestamp: new Date(),
          count: 1,
        },
      })
      .catch((err: unknown) => this.#options.log.warn({ err }, 'event not recorded'));
  }

  #lead(v: boolean): void {
    if (v === this.#leading) return;
    this.#leading = v;
    this.#metrics.leader.set(v ? 1 : 0);
    this.#metrics.transitions.inc();
    if (!v) {
      // Lost the lease: stop acting at once; a process that cannot be sure it leads must not
      // write. The orchestrator restarts it as a candidate (controller-runtime exits too).
      this.#options.log.error('lost leadership: exiting so this replica restarts as a candidate');
      if (this.#running) process.exitCode = 1;
      void this.stop();
      return;
    }
    for (const sc of this.#clusters.list()) this.#queue.add(`${sc.metadata.namespace}/${sc.metadata.name}`);
    for (const sb of this.#backups.list()) this.#queue.add(`${backupPrefix}${sb.metadata.namespace}/${sb.metadata.name}`);
    for (const s of this.#schedules.list()) this.#queue.add(`${schedulePrefix}${s.metadata.namespace}/${s.metadata.name}`);
    if (this.#discovery) this.#discovery.status.leading = true;
    if (this.#discovery?.gateway.started) this.#discovery.gateway.status.leading = true;
    for (let i = 0; i < (this.#options.workers ?? 2); i++) void this.#work();
  }

  async #work(): Promise<void> {
    for (;;) {
      const key = await this.#queue.get();
      if (key === undefined) return;
      this.#metrics.depth.set(this.#queue.length);
      const [kind, reconcile] = key.startsWith(backupPrefix)
        ? (['StoreBackup', () => this.#backupController.reconcile(key.slice(backupPrefix.length))] as const)
        : key.startsWith(schedulePrefix)
          ? (['StoreBackupSchedule', () => this.#scheduleController.reconcile(key.slice(schedulePrefix.length))] as const)
          : (['StoreCluster', () => this.#controller.reconcile(key)] as const);
      const controller = kind.toLowerCase();
      const end = this.#metrics.duration.startTimer({ controller });
      const span = this.#options.tracer?.startSpan(`reconcile ${kind}`, {
        attributes: { 'ballast.controller': controller, 'ballast.key': key },
      });
      try {
        const requeue = await reconcile();
        this.#queue.forget(key);
        if (requeue !== undefined) this.#queue.addAfter(key, requeue);
        this.#metrics.reconciles.inc({ controller, result: requeue !== undefined ? 'requeue' : 'success' });
        span?.setAttribute('ballast.result', requeue !== undefined ? 'requeue' : 'success');
      } catch (err) {
        this.#options.log.warn({ err, [controller]: key }, 'reconcile failed; retrying with back-off');
        this.#metrics.reconciles.inc({ controller, result: 'error' });
        this.#queue.addRateLimited(key);
        span?.recordException(err as Error);
        span?.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
      } finally {
        end();
        span?.end();
        this.#queue.done(key);
      }
    }
  }
}
