/**
 * The process kubelet: registers a Node, renews its Lease, and runs the pods bound to it as
 * local processes: one network namespace per pod (its containers share it), an image map that
 * turns an image into a command, env with fieldRef values, restart policy with back-off, and
 * status (phase, conditions, container states, pod IP). Pods are reconciled level-triggered
 * from an informer through a work queue, as the operator's controllers are.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CoordinationV1Api, CoreV1Api, DiscoveryV1Api, type KubeConfig, type V1Container, type V1EndpointSlice, type V1LifecycleHandler, V1MicroTime, type V1PersistentVolumeClaim, type V1Pod } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { Clock, TimerHandle } from '../../lib/clock.ts';
import { SharedInformer } from '../../lib/kube/informer.ts';
import { WorkQueue } from '../../lib/kube/workqueue.ts';
import { silentLogger } from '../../lib/log.ts';
import { hostsFile } from './dns.ts';
import { argvOf, inSandbox, PodNetwork } from './network.ts';
import { containerEnv, expand, readEnvRefs } from './env.ts';
import { runHook } from './hooks.ts';
import { startProbes } from './probes.ts';
import { type PodRuntime, podStatus, type RunningContainer } from './runtime.ts';
import { KubeletServer, TcpForwarder } from './server.ts';
import { defaultTokenSeconds, mountsFor, prepareVolumes, provision, withMounts, writeProjected } from './volumes.ts';

/** image (exact, or a prefix ending in `*`) → the command that stands in for its entrypoint. */
export type ImageMap = Record<string, { entrypoint: string[]; cmd?: string[] }>;

export function loadImageMap(path: string): ImageMap {
  return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as ImageMap) : {};
}

export function resolveImage(map: ImageMap, image: string): { entrypoint: string[]; cmd: string[] } | undefined {
  const exact = map[image];
  if (exact) return { entrypoint: exact.entrypoint, cmd: exact.cmd ?? [] };
  for (const [pattern, v] of Object.entries(map)) {
    if (pattern.endsWith('*') && image.startsWith(pattern.slice(0, -1))) return { entrypoint: v.entrypoint, cmd: v.cmd ?? [] };
  }
  return undefined;
}

export interface KubeletOptions {
  kubeconfig: KubeConfig;
  /** Credentials for the local volume provisioner (it creates PersistentVolumes); none: no provisioner. */
  provisionerKubeconfig?: KubeConfig | undefined;
  nodeName: string;
  stateDir: string;
  imageMap: ImageMap;
  clock: Clock;
  log?: Logger;
  bridge?: string;
  podPrefix?: string;
  /** Serving certificate and client CA for the kubelet API (`kubectl logs`); none: no API. */
  tls?: { cert: string; key: string; ca: string } | undefined;
  /** Port of the kubelet API on the node address (10250). */
  port?: number;
  /** Pod networking: namespaces on a bridge, the 127.0.0.x fallback, or auto (the first that works). */
  podNetwork?: 'auto' | 'netns' | 'loopback';
}

/** Pods synced at once. */
const workers = 4;

/** The port pods dial for the apiserver (`KUBERNETES_SERVICE_PORT`). */
export const apiserverPodPort = 6443;

export class ProcessKubelet {
  readonly #o: KubeletOptions;
  readonly #log: Logger;
  readonly #core: CoreV1Api;
  readonly #coord: CoordinationV1Api;
  readonly #net: PodNetwork;
  readonly #pods = new Map<string, PodRuntime>();
  readonly #queue: WorkQueue;
  #informer: SharedInformer<V1Pod> | undefined;
  #claims: SharedInformer<V1PersistentVolumeClaim> | undefined;
  #slices: SharedInformer<V1EndpointSlice> | undefined;
  #hostsTimer: TimerHandle | undefined;
  #server: KubeletServer | undefined;
  #apiForwarders: TcpForwarder[] = [];
  #apiForPods = { host: '', port: apiserverPodPort };
  #leaseTimer: TimerHandle | undefined;
  #stopped = false;

  constructor(o: KubeletOptions) {
    this.#o = o;
    this.#log = o.log ?? silentLogger;
    this.#core = o.kubeconfig.makeApiClient(CoreV1Api);
    this.#coord = o.kubeconfig.makeApiClient(CoordinationV1Api);
    this.#net = new PodNetwork({ bridge: o.bridge ?? 'blst0', prefix: o.podPrefix ?? '10.244.0', mode: o.podNetwork ?? 'auto' });
    this.#queue = new WorkQueue(o.clock);
  }

  async start(): Promise<void> {
    this.#net.setup();
    // The kubernetes Service for pods: <node address>:6443 passes through to the apiserver.
    const api = new URL(this.#o.kubeconfig.getCurrentCluster()?.server ?? 'https://127.0.0.1:6443');
    const target = { host: api.hostname, port: Number(api.port || 443) };
    if (this.#net.fallback === undefined) {
      this.#apiForwarders = [new TcpForwarder(this.#net.gateway, apiserverPodPort, target)];
      // The kubernetes Service's endpoints name the apiserver's own port at the node address.
      if (target.port !== apiserverPodPort) this.#apiForwarders.push(new TcpForwarder(this.#net.gateway, target.port, target));
      for (const f of this.#apiForwarders) await f.start();
      this.#apiForPods = { host: this.#net.gateway, port: apiserverPodPort };
    } else {
      // Pods share the host's network: they reach the apiserver where it listens.
      this.#apiForPods = target;
      this.#log.warn({ reason: this.#net.fallback }, 'pods use loopback addresses instead of network namespaces');
    }
    if (this.#o.tls) {
      this.#server = new KubeletServer({ address: this.#net.gateway, port: this.#o.port ?? 10250, tls: this.#o.tls, log: this.#log, logOf: (ns, pod, container, previous) => this.#logOf(`${ns}/${pod}`, container, previous) });
      await this.#server.start();
    }
    await this.#registerNode();
    await this.#renewLease();
    this.#leaseTimer = this.#o.clock.setInterval(() => void this.#renewLease().catch((err: unknown) => this.#log.warn({ err }, 'node lease renewal failed')), 10_000, { unref: true });
    const path = '/api/v1/pods';
    this.#informer = new SharedInformer<V1Pod>({
      kubeconfig: this.#o.kubeconfig, path, clock: this.#o.clock, log: this.#log,
      fieldSelector: `spec.nodeName=${this.#o.nodeName}`,
      list: () => this.#core.listPodForAllNamespaces({ fieldSelector: `spec.nodeName=${this.#o.nodeName}` }),
    });
    this.#informer.onChange((key) => this.#queue.add(key));
    await this.#informer.start();
    // The local provisioner: claims of the default class get a directory under the state dir.
    const pk = this.#o.provisionerKubeconfig;
    if (pk) {
      const pcore = pk.makeApiClient(CoreV1Api);
      this.#claims = new SharedInformer<V1PersistentVolumeClaim>({
        kubeconfig: pk, path: '/api/v1/persistentvolumeclaims', clock: this.#o.clock, log: this.#log,
        list: () => pcore.listPersistentVolumeClaimForAllNamespaces(),
      });
      this.#claims.onChange((key) => {
        const pvc = this.#claims?.get(key);
        if (pvc) void provision(pcore, pvc, join(this.#o.stateDir, 'volumes')).catch((err: unknown) => this.#log.warn({ err, claim: key }, 'provisioning failed'));
        // A pod waiting for a claim retries with growing back-off; a claim that changed (bound)
        // is a reason to look again now.
        for (const p of this.#informer?.list() ?? []) {
          const podKey = `${p.metadata?.namespace}/${p.metadata?.name}`;
          if (!this.#pods.has(podKey)) this.#queue.add(podKey);
        }
      });
      await this.#claims.start();
    }
    // Cluster DNS: every pod's hosts file follows the EndpointSlices.
    const discovery = this.#o.kubeconfig.makeApiClient(DiscoveryV1Api);
    this.#slices = new SharedInformer<V1EndpointSlice>({
      kubeconfig: this.#o.kubeconfig, path: '/apis/discovery.k8s.io/v1/endpointslices', clock: this.#o.clock, log: this.#log,
      list: () => discovery.listEndpointSliceForAllNamespaces(),
    });
    this.#slices.onChange(() => this.#scheduleHosts());
    await this.#slices.start();
    // Several workers, one pod at a time each (the queue never hands a key to two): a pod
    // waiting out its grace period must not hold up every other pod.
    for (let i = 0; i < workers; i++) void this.#work();
  }

  /** Rewrite every pod's hosts file soon (changes arriving together are written once). */
  #scheduleHosts(): void {
    if (this.#hostsTimer) return;
    this.#hostsTimer = this.#o.clock.setTimeout(() => {
      this.#hostsTimer = undefined;
      for (const rt of this.#pods.values()) {
        if (!rt.sandbox.netns) continue;
        // In place: `ip netns exec` bind-mounted this very file into the pod's processes.
        try { writeFileSync(`/etc/netns/${rt.sandbox.netns}/hosts`, this.#hosts(rt.pod, rt.sandbox.ip)); } catch (err) { this.#log.warn({ err, netns: rt.sandbox.netns }, 'hosts file not updated'); }
      }
    }, 50, { unref: true });
  }

  #hosts(pod: V1Pod, ip: string): string {
    return hostsFile(pod, ip, { slices: this.#slices?.list() ?? [], apiserverIp: this.#net.gateway });
  }

  /** A container's log file for the kubelet API: the current run's, or the one before. */
  #logOf(key: string, container: string, previous: boolean): { path: string; running: () => boolean } | undefined {
    const rt = this.#pods.get(key);
    const rc = rt?.containers.get(container);
    if (!rt || !rc) return undefined;
    return { path: join(rt.dir, previous ? `${container}.previous.log` : `${container}.log`), running: () => !previous && rc.proc !== undefined };
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#leaseTimer?.cancel();
    this.#queue.shutdown();
    await this.#informer?.stop();
    await this.#claims?.stop();
    await this.#slices?.stop();
    this.#hostsTimer?.cancel();
    await this.#server?.stop();
    for (const f of this.#apiForwarders) await f.stop();
    await Promise.all([...this.#pods.keys()].map((key) => this.#teardown(key, 5)));
  }

  async #work(): Promise<void> {
    for (;;) {
      const key = await this.#queue.get();
      if (key === undefined) return;
      const started = Date.now();
      try {
        await this.#reconcile(key);
        this.#queue.forget(key);
        if (Date.now() - started > 5000) this.#log.warn({ pod: key, ms: Date.now() - started }, 'slow pod sync');
      } catch (err) {
        this.#log.warn({ err, pod: key }, 'pod sync failed; retrying');
        this.#queue.addRateLimited(key);
      } finally {
        this.#queue.done(key);
      }
    }
  }

  async #registerNode(): Promise<void> {
    const body = {
      metadata: { name: this.#o.nodeName, labels: { 'kubernetes.io/hostname': this.#o.nodeName, 'kubernetes.io/os': 'linux' } },
    };
    await this.#core.createNode({ body }).catch((err: { code?: number }) => {
      if (err.code !== 409) throw err;
    });
    await this.#setNodeStatus();
  }

  async #setNodeStatus(): Promise<void> {
    const now = new Date();
    const node = await this.#core.readNode({ name: this.#o.nodeName });
    node.status = {
      capacity: { cpu: '2', memory: '24Gi', pods: '110' },
      allocatable: { cpu: '2', memory: '23Gi', pods: '110' },
      addresses: [{ type: 'InternalIP', address: this.#net.gateway }, { type: 'Hostname', address: this.#o.nodeName }],
      conditions: [
        { type: 'Ready', status: 'True', reason: 'KubeletReady', message: `ballast process kubelet is posting ready status; ${this.#net.condition.message}`, lastHeartbeatTime: now, lastTransitionTime: now },
        { type: 'BallastPodNetwork', ...this.#net.condition, lastHeartbeatTime: now, lastTransitionTime: now },
      ],
      daemonEndpoints: { kubeletEndpoint: { Port: this.#o.tls ? (this.#o.port ?? 10250) : 0 } },
      nodeInfo: { architecture: 'amd64', bootID: '', containerRuntimeVersion: 'ballast-process://1', kernelVersion: '', kubeProxyVersion: '', kubeletVersion: 'v1.36.3', machineID: '', operatingSystem: 'linux', osImage: 'ballast process kubelet', systemUUID: '' },
    };
    await this.#core.replaceNodeStatus({ name: this.#o.nodeName, body: node });
  }

  async #renewLease(): Promise<void> {
    const ns = 'kube-node-lease';
    // renewTime is a MicroTime (six fractional digits); a plain Date would be refused.
    const spec = { holderIdentity: this.#o.nodeName, leaseDurationSeconds: 40, renewTime: new V1MicroTime() };
    try {
      const lease = await this.#coord.readNamespacedLease({ name: this.#o.nodeName, namespace: ns });
      lease.spec = { ...lease.spec, ...spec };
      await this.#coord.replaceNamespacedLease({ name: this.#o.nodeName, namespace: ns, body: lease });
    } catch (err) {
      if ((err as { code?: number }).code !== 404) throw err;
      await this.#coord.createNamespacedLease({ namespace: ns, body: { metadata: { name: this.#o.nodeName }, spec } });
    }
  }

  async #reconcile(key: string): Promise<void> {
    const pod = this.#informer?.get(key);
    const rt = this.#pods.get(key);
    if (!pod || (rt && pod.metadata?.uid !== rt.uid)) {
      if (rt) await this.#teardown(key, 0);
      if (!pod) return;
    }
    if (pod.metadata?.deletionTimestamp) {
      await this.#teardown(key, pod.metadata.deletionGracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30);
      // The kubelet confirms the deletion once the containers are gone.
      // A 404 means it is already gone; anything else fails this sync, so the queue retries
      // the confirmation instead of leaving the pod Terminating until something requeues it.
      await this.#core.deleteNamespacedPod({ name: pod.metadata.name ?? '', namespace: pod.metadata.namespace ?? 'default', gracePeriodSeconds: 0 }).catch((err: { code?: number }) => {
        if (err.code !== 404) throw err;
      });
      return;
    }
    const current = this.#pods.get(key) ?? (await this.#startPod(key, pod));
    await this.#writeStatus(pod, current);
  }

  async #startPod(key: string, pod: V1Pod): Promise<PodRuntime> {
    const uid = pod.metadata?.uid ?? key;
    const dir = join(this.#o.stateDir, 'pods', `${pod.metadata?.namespace}_${pod.metadata?.name}_${uid}`);
    // Volumes and env references first: a claim not bound yet, or a missing ConfigMap, fails
    // this sync, which retries with back-off.
    const volumes = await prepareVolumes(this.#core, pod, dir);
    const envRefs = await readEnvRefs(this.#core, pod);
    const sandbox = this.#net.create(uid, (podIp) => this.#hosts(pod, podIp));
    const rt: PodRuntime = { uid, pod, dir, tokenTimer: undefined, volumes, sandbox, containers: new Map(), startTime: new Date().toISOString(), terminating: false, initialized: false, failed: false, envRefs };
    this.#pods.set(key, rt);
    const add = (c: V1Container, kind: RunningContainer['kind']) => rt.containers.set(c.name, { name: c.name, kind, completed: false, proc: undefined, restarts: 0, startedAt: undefined, lastExit: undefined, waitingReason: kind === 'main' ? 'PodInitializing' : undefined, restartTimer: undefined, started: false, ready: false, probes: [] });
    for (const c of pod.spec?.initContainers ?? []) add(c, c.restartPolicy === 'Always' ? 'sidecar' : 'init');
    for (const c of pod.spec?.containers ?? []) add(c, 'main');
    this.#refreshTokens(key, rt);
    void this.#initialize(key, pod, rt).catch((err: unknown) => this.#log.warn({ err, pod: key }, 'pod initialization failed'));
    this.#log.info({ pod: key, ip: sandbox.ip, netns: sandbox.netns }, 'pod started');
    return rt;
  }

  /**
   * Init containers in order: a regular one must exit 0 before the next starts (retried with
   * back-off unless restartPolicy is Never); a native sidecar is started and must be started
   * (startup probe passed) before the next. Then the main containers start.
   */
  async #initialize(key: string, pod: V1Pod, rt: PodRuntime): Promise<void> {
    for (const c of pod.spec?.initContainers ?? []) {
      const rc = rt.containers.get(c.name) as RunningContainer;
      if (rc.kind === 'sidecar') {
        this.#run(key, pod, rt, c, rc);
        while (!rt.terminating && !(rc.proc && rc.started)) await new Promise((r) => setTimeout(r, 100));
      } else {
        for (;;) {
          if (rt.terminating) return;
          const proc = this.#spawnContainer(pod, rt, c, rc);
          const code = proc ? await new Promise<number | null>((resolve) => proc.on('exit', (cd) => resolve(cd))) : null;
          rc.proc = undefined;
          if (code === 0) {
            rc.completed = true;
            break;
          }
          rc.lastExit = { code, signal: null, at: new Date().toISOString() };
          if (pod.spec?.restartPolicy === 'Never') {
            rt.failed = true;
            this.#queue.add(key);
            return;
          }
          rc.waitingReason = 'CrashLoopBackOff';
          this.#queue.add(key);
          await new Promise((r) => setTimeout(r, Math.min(300_000, 1000 * 2 ** rc.restarts++)));
        }
      }
      this.#queue.add(key);
    }
    if (rt.terminating) return;
    rt.initialized = true;
    for (const c of pod.spec?.containers ?? []) this.#run(key, pod, rt, c, rt.containers.get(c.name) as RunningContainer);
    this.#queue.add(key);
  }

  /**
   * Projected service-account tokens are rotated as the kubelet does: once older than 80% of
   * their lifetime (or 24 hours), whichever comes first.
   */
  #refreshTokens(key: string, rt: PodRuntime): void {
    const projected = (rt.pod.spec?.volumes ?? []).filter((v) => v.projected?.sources?.some((src) => src.serviceAccountToken));
    if (projected.length === 0) return;
    const ttl = Math.min(...projected.flatMap((v) => (v.projected?.sources ?? []).map((src) => src.serviceAccountToken?.expirationSeconds ?? defaultTokenSeconds)));
    rt.tokenTimer = this.#o.clock.setTimeout(() => {
      void Promise.all(projected.map((v) => writeProjected(this.#core, rt.pod, v, rt.volumes.get(v.name) ?? '')))
        .catch((err: unknown) => this.#log.warn({ err, pod: key }, 'service-account token refresh failed; retrying at the next interval'))
        .finally(() => { if (!rt.terminating) this.#refreshTokens(key, rt); });
    }, Math.min(ttl * 800, 24 * 3600_000), { unref: true });
  }

  /** Start one long-running container (main or sidecar): probes, and restarts per policy. */
  #run(key: string, pod: V1Pod, rt: PodRuntime, c: V1Container, rc: RunningContainer): void {
    const proc = this.#spawnContainer(pod, rt, c, rc);
    if (!proc) return;
    startProbes(rt, c, rc, this.#o.clock, {
      changed: () => this.#queue.add(key),
      kill: (why) => {
        this.#log.info({ pod: key, container: c.name, why }, 'probe failed: restarting the container');
        if (rc.proc?.pid) try { process.kill(-rc.proc.pid, 'SIGKILL'); } catch { /* gone */ }
      },
    });
    proc.on('exit', (code, signal) => {
      rc.proc = undefined;
      for (const w of rc.probes.splice(0)) w.stop();
      rc.lastExit = { code, signal, at: new Date().toISOString() };
      if (rt.terminating || this.#stopped) return;
      // A native sidecar always restarts; main containers follow the pod's restartPolicy.
      const policy = rc.kind === 'sidecar' ? 'Always' : (pod.spec?.restartPolicy ?? 'Always');
      if (policy === 'Always' || (policy === 'OnFailure' && code !== 0)) {
        // CrashLoopBackOff: 1 s doubling to 5 min (Kubernetes uses 10 s; shorter suits a dev machine).
        const delay = Math.min(300_000, 1000 * 2 ** rc.restarts);
        rc.waitingReason = 'CrashLoopBackOff';
        rc.restartTimer = this.#o.clock.setTimeout(() => {
          rc.restarts++;
          this.#run(key, pod, rt, c, rc);
          this.#queue.add(key);
        }, delay, { unref: true });
      }
      this.#queue.add(key);
    });
  }

  /** Spawn a container's process in the pod's namespaces; undefined when its image is not mapped. */
  #spawnContainer(pod: V1Pod, rt: PodRuntime, c: V1Container, rc: RunningContainer): ChildProcess | undefined {
    const image = resolveImage(this.#o.imageMap, c.image ?? '');
    if (!image) {
      rc.waitingReason = 'ErrImageNeverPull';
      void this.#core.createNamespacedEvent({ namespace: pod.metadata?.namespace ?? 'default', body: {
        metadata: { generateName: `${pod.metadata?.name}.` }, involvedObject: { kind: 'Pod', name: pod.metadata?.name ?? '', namespace: pod.metadata?.namespace ?? 'default', uid: rt.uid },
        reason: 'ErrImageNeverPull', message: `image ${c.image} has no entry in the kubelet's image map (${join(this.#o.stateDir, 'images.json')}); add one mapping it to a command`, type: 'Warning',
      } }).catch(() => undefined);
      return undefined;
    }
    const env = containerEnv(pod, c, rt, { nodeName: this.#o.nodeName, hostIP: this.#net.gateway, apiserver: this.#apiForPods });
    const argv = withMounts([...(c.command ?? image.entrypoint), ...(c.args ?? (c.command ? [] : image.cmd))].map((a) => expand(a, env)), mountsFor(c, rt.volumes));
    mkdirSync(rt.dir, { recursive: true });
    // Each run has its own log; the one before stays for `kubectl logs --previous`.
    const logPath = join(rt.dir, `${c.name}.log`);
    if (rc.startedAt !== undefined && existsSync(logPath)) renameSync(logPath, join(rt.dir, `${c.name}.previous.log`));
    const out = openSync(logPath, 'a');
    const proc = spawn(...argvOf(inSandbox(rt.sandbox, argv)), { stdio: ['ignore', out, out], env, detached: true });
    closeSync(out);
    rc.proc = proc;
    rc.startedAt = new Date().toISOString();
    rc.waitingReason = undefined;
    proc.on('error', () => undefined);
    return proc;
  }



  async #teardown(key: string, graceSeconds: number): Promise<void> {
    const rt = this.#pods.get(key);
    if (!rt) return;
    rt.terminating = true;
    rt.tokenTimer?.cancel();
    const live = [...rt.containers.values()];
    for (const rc of live) {
      rc.restartTimer?.cancel();
      for (const w of rc.probes.splice(0)) w.stop();
    }
    const signal = (which: RunningContainer[], sig: NodeJS.Signals) => {
      for (const rc of which) if (rc.proc?.pid) try { process.kill(-rc.proc.pid, sig); } catch { /* gone */ }
    };
    // Main containers stop first; native sidecars stop after them (they serve the main ones).
    const deadline = Date.now() + graceSeconds * 1000;
    for (const phase of [live.filter((rc) => rc.kind !== 'sidecar'), live.filter((rc) => rc.kind === 'sidecar')]) {
      // preStop hooks run first, inside the grace period; SIGTERM follows each container's hook.
      await Promise.all(phase.map(async (rc) => {
        const spec = [...(rt.pod.spec?.initContainers ?? []), ...(rt.pod.spec?.containers ?? [])].find((c) => c.name === rc.name);
        const hook = spec?.lifecycle?.preStop;
        if (hook && rc.proc) await this.#runHook(key, rt, spec, hook, deadline - Date.now());
        signal([rc], 'SIGTERM');
      }));
      while (phase.some((rc) => rc.proc) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    }
    signal(live, 'SIGKILL');
    this.#net.release(rt.uid);
    // The pod's own volumes (emptyDir, configMap, secret copies) go with it; claims stay.
    rmSync(join(rt.dir, 'volumes'), { recursive: true, force: true });
    this.#pods.delete(key);
    this.#log.info({ pod: key }, 'pod stopped');
  }

  /** Run a lifecycle hook (exec in the container's namespaces, HTTP GET to the pod, or sleep), at most `budgetMs`. */
  async #runHook(key: string, rt: PodRuntime, c: V1Container, hook: V1LifecycleHandler, budgetMs: number): Promise<void> {
    if (budgetMs <= 0) return;
    const started = Date.now();
    const ok = await runHook(rt, c, hook, budgetMs);
    this.#log.info({ pod: key, container: c.name, ok, ms: Date.now() - started }, 'preStop hook ran');
    if (!ok) {
      void this.#core.createNamespacedEvent({ namespace: rt.pod.metadata?.namespace ?? 'default', body: {
        metadata: { generateName: `${rt.pod.metadata?.name}.` }, involvedObject: { kind: 'Pod', name: rt.pod.metadata?.name ?? '', namespace: rt.pod.metadata?.namespace ?? 'default', uid: rt.uid },
        reason: 'FailedPreStopHook', message: `preStop hook of container ${c.name} failed or ran past the grace period`, type: 'Warning',
      } }).catch(() => undefined);
    }
  }

  async #writeStatus(pod: V1Pod, rt: PodRuntime): Promise<void> {
    const status = podStatus(pod, rt, this.#net.gateway);
    const statuses = status.containerStatuses;
    const initStatuses = status.initContainerStatuses ?? [];
    // Write only when something a user sees changed (few API writes).
    const sig = (list: Array<{ name: string; ready: boolean; started?: boolean; restartCount: number; state?: object }> | undefined) => list?.map((c) => [c.name, c.ready, c.started, c.restartCount, Object.keys(c.state ?? {})[0]]);
    const before = JSON.stringify({ p: pod.status?.phase, ip: pod.status?.podIP, s: sig(pod.status?.containerStatuses), i: sig(pod.status?.initContainerStatuses) });
    const after = JSON.stringify({ p: status.phase, ip: status.podIP, s: sig(statuses), i: sig(initStatuses.length > 0 ? initStatuses : undefined) });
    if (before === after) return;
    const name = pod.metadata?.name ?? '';
    const namespace = pod.metadata?.namespace ?? 'default';
    try {
      await this.#core.replaceNamespacedPodStatus({ name, namespace, body: { ...pod, status } as V1Pod });
    } catch (err) {
      // The cache can lag our own last write (409 Conflict): write against the current version
      // at once, rather than waiting out a retry back-off with stale status.
      if ((err as { code?: number }).code !== 409) throw err;
      const fresh = await this.#core.readNamespacedPod({ name, namespace });
      if (fresh.metadata?.uid !== pod.metadata?.uid) return;
      await this.#core.replaceNamespacedPodStatus({ name, namespace, body: { ...fresh, status } as V1Pod });
    }
  }
}
