/**
 * The process kubelet: registers a Node, renews its Lease, and runs the pods bound to it as
 * local processes: one network namespace per pod (its containers share it), an image map that
 * turns an image into a command, env with fieldRef values, restart policy with back-off, and
 * status (phase, conditions, container states, pod IP). Pods are reconciled level-triggered
 * from an informer through a work queue, as the operator's controllers are.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { CoordinationV1Api, CoreV1Api, type KubeConfig, type V1Container, V1MicroTime, type V1PersistentVolumeClaim, type V1Pod } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { Clock, TimerHandle } from '../../lib/clock.ts';
import { SharedInformer } from '../../lib/kube/informer.ts';
import { WorkQueue } from '../../lib/kube/workqueue.ts';
import { silentLogger } from '../../lib/log.ts';
import { PodNetwork, type PodSandbox } from './network.ts';
import { ProbeWorker } from './probes.ts';
import { mountsFor, prepareVolumes, provision, withMounts } from './volumes.ts';

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

interface RunningContainer {
  name: string;
  /** init: runs to completion before the main containers; sidecar: an init container with restartPolicy Always. */
  kind: 'init' | 'sidecar' | 'main';
  /** An init container that exited 0. */
  completed: boolean;
  proc: ChildProcess | undefined;
  restarts: number;
  startedAt: string | undefined;
  lastExit: { code: number | null; signal: string | null; at: string } | undefined;
  waitingReason: string | undefined;
  restartTimer: TimerHandle | undefined;
  /** The startup probe passed (or there is none). */
  started: boolean;
  /** The readiness probe's verdict (true when there is none). */
  ready: boolean;
  probes: ProbeWorker[];
}

interface PodRuntime {
  uid: string;
  dir: string;
  volumes: Map<string, string>;
  sandbox: PodSandbox;
  containers: Map<string, RunningContainer>;
  startTime: string;
  terminating: boolean;
  /** Every init container completed (or, for sidecars, started). */
  initialized: boolean;
  /** A regular init container failed under restartPolicy Never. */
  failed: boolean;
  /** configMapKeyRef / secretKeyRef values, read once when the pod starts. */
  envRefs: Map<string, string>;
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
}

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
  #leaseTimer: TimerHandle | undefined;
  #stopped = false;

  constructor(o: KubeletOptions) {
    this.#o = o;
    this.#log = o.log ?? silentLogger;
    this.#core = o.kubeconfig.makeApiClient(CoreV1Api);
    this.#coord = o.kubeconfig.makeApiClient(CoordinationV1Api);
    this.#net = new PodNetwork({ bridge: o.bridge ?? 'blst0', prefix: o.podPrefix ?? '10.244.0' });
    this.#queue = new WorkQueue(o.clock);
  }

  async start(): Promise<void> {
    this.#net.setup();
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
    void this.#work();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#leaseTimer?.cancel();
    this.#queue.shutdown();
    await this.#informer?.stop();
    await this.#claims?.stop();
    await Promise.all([...this.#pods.keys()].map((key) => this.#teardown(key, 5)));
  }

  async #work(): Promise<void> {
    for (;;) {
      const key = await this.#queue.get();
      if (key === undefined) return;
      try {
        await this.#reconcile(key);
        this.#queue.forget(key);
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
      conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'ballast process kubelet is posting ready status; pods run in their own network namespaces', lastHeartbeatTime: now, lastTransitionTime: now }],
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
      await this.#core.deleteNamespacedPod({ name: pod.metadata.name ?? '', namespace: pod.metadata.namespace ?? 'default', gracePeriodSeconds: 0 }).catch(() => undefined);
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
    const envRefs = await this.#readEnvRefs(pod);
    const sandbox = this.#net.create(uid, pod.metadata?.name ?? 'pod', '');
    const rt: PodRuntime = { uid, dir, volumes, sandbox, containers: new Map(), startTime: new Date().toISOString(), terminating: false, initialized: false, failed: false, envRefs };
    this.#pods.set(key, rt);
    const add = (c: V1Container, kind: RunningContainer['kind']) => rt.containers.set(c.name, { name: c.name, kind, completed: false, proc: undefined, restarts: 0, startedAt: undefined, lastExit: undefined, waitingReason: kind === 'main' ? 'PodInitializing' : undefined, restartTimer: undefined, started: false, ready: false, probes: [] });
    for (const c of pod.spec?.initContainers ?? []) add(c, c.restartPolicy === 'Always' ? 'sidecar' : 'init');
    for (const c of pod.spec?.containers ?? []) add(c, 'main');
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

  async #readEnvRefs(pod: V1Pod): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    const ns = pod.metadata?.namespace ?? 'default';
    for (const c of [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])]) {
      for (const e of c.env ?? []) {
        const cm = e.valueFrom?.configMapKeyRef;
        const sec = e.valueFrom?.secretKeyRef;
        if (cm) {
          const v = (await this.#core.readNamespacedConfigMap({ name: cm.name ?? '', namespace: ns })).data?.[cm.key];
          if (v === undefined && !cm.optional) throw new Error(`ConfigMap ${ns}/${cm.name} has no key ${cm.key} (env ${e.name} of ${c.name})`);
          if (v !== undefined) out.set(`cm:${cm.name}/${cm.key}`, v);
        } else if (sec) {
          const v = (await this.#core.readNamespacedSecret({ name: sec.name ?? '', namespace: ns })).data?.[sec.key];
          if (v === undefined && !sec.optional) throw new Error(`Secret ${ns}/${sec.name} has no key ${sec.key} (env ${e.name} of ${c.name})`);
          if (v !== undefined) out.set(`secret:${sec.name}/${sec.key}`, Buffer.from(v, 'base64').toString());
        }
      }
    }
    return out;
  }

  /** Start one long-running container (main or sidecar): probes, and restarts per policy. */
  #run(key: string, pod: V1Pod, rt: PodRuntime, c: V1Container, rc: RunningContainer): void {
    const proc = this.#spawnContainer(pod, rt, c, rc);
    if (!proc) return;
    this.#startProbes(key, rt, c, rc);
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
    const argv = withMounts([...(c.command ?? image.entrypoint), ...(c.args ?? (c.command ? [] : image.cmd))], mountsFor(c, rt.volumes));
    const env: Record<string, string> = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOSTNAME: pod.metadata?.name ?? '', KUBERNETES_SERVICE_HOST: this.#net.gateway, KUBERNETES_SERVICE_PORT: '6443' };
    for (const e of c.env ?? []) {
      if (e.value !== undefined) env[e.name] = e.value;
      const f = e.valueFrom?.fieldRef?.fieldPath;
      const cm = e.valueFrom?.configMapKeyRef;
      const sec = e.valueFrom?.secretKeyRef;
      if (cm) env[e.name] = rt.envRefs.get(`cm:${cm.name}/${cm.key}`) ?? '';
      if (sec) env[e.name] = rt.envRefs.get(`secret:${sec.name}/${sec.key}`) ?? '';
      if (f) env[e.name] = f === 'metadata.name' ? pod.metadata?.name ?? '' : f === 'metadata.namespace' ? pod.metadata?.namespace ?? '' : f === 'status.podIP' ? rt.sandbox.ip : f === 'spec.nodeName' ? this.#o.nodeName : f === 'metadata.uid' ? rt.uid : '';
    }
    mkdirSync(rt.dir, { recursive: true });
    const out = openSync(join(rt.dir, `${c.name}.log`), 'a');
    const proc = spawn('ip', ['netns', 'exec', rt.sandbox.netns, ...argv], { stdio: ['ignore', out, out], env, detached: true });
    rc.proc = proc;
    rc.startedAt = new Date().toISOString();
    rc.waitingReason = undefined;
    proc.on('error', () => undefined);
    return proc;
  }

  /**
   * Startup, liveness and readiness probes for a started container. Until the startup probe
   * passes, the others wait; a failed liveness or startup probe kills the container (the
   * restart policy brings it back); readiness decides whether the container counts as ready.
   */
  #startProbes(key: string, rt: PodRuntime, c: V1Container, rc: RunningContainer): void {
    const target = { ip: rt.sandbox.ip, netns: rt.sandbox.netns, ports: Object.fromEntries((c.ports ?? []).filter((p) => p.name).map((p) => [p.name as string, p.containerPort])) };
    const kill = (why: string) => {
      this.#log.info({ pod: key, container: c.name, why }, 'probe failed: restarting the container');
      if (rc.proc?.pid) try { process.kill(-rc.proc.pid, 'SIGKILL'); } catch { /* gone */ }
    };
    rc.started = !c.startupProbe;
    rc.ready = !c.readinessProbe;
    const others = () => {
      if (c.livenessProbe) {
        const w = new ProbeWorker(c.livenessProbe, target, this.#o.clock, (ok) => { if (!ok) kill('liveness'); });
        rc.probes.push(w);
        w.start();
      }
      if (c.readinessProbe) {
        const w = new ProbeWorker(c.readinessProbe, target, this.#o.clock, (ok) => {
          rc.ready = ok;
          this.#queue.add(key);
        });
        rc.probes.push(w);
        w.start();
      }
    };
    if (c.startupProbe) {
      const w = new ProbeWorker(c.startupProbe, target, this.#o.clock, (ok) => {
        if (!ok) return kill('startup');
        rc.started = true;
        this.#queue.add(key);
        others();
      });
      rc.probes.push(w);
      w.start();
    } else {
      others();
    }
  }

  async #teardown(key: string, graceSeconds: number): Promise<void> {
    const rt = this.#pods.get(key);
    if (!rt) return;
    rt.terminating = true;
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
      signal(phase, 'SIGTERM');
      while (phase.some((rc) => rc.proc) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    }
    signal(live, 'SIGKILL');
    this.#net.release(rt.uid);
    // The pod's own volumes (emptyDir, configMap, secret copies) go with it; claims stay.
    rmSync(join(rt.dir, 'volumes'), { recursive: true, force: true });
    this.#pods.delete(key);
    this.#log.info({ pod: key }, 'pod stopped');
  }

  async #writeStatus(pod: V1Pod, rt: PodRuntime): Promise<void> {
    const now = new Date();
    const statusOf = (c: V1Container) => {
      const rc = rt.containers.get(c.name);
      const running = rc?.proc !== undefined;
      const started = running && rc?.started === true;
      const state = rc?.completed
        ? { terminated: { exitCode: 0, reason: 'Completed', finishedAt: new Date(rc.lastExit?.at ?? now) } }
        : running ? { running: { startedAt: new Date(rc?.startedAt ?? now) } } : { waiting: { reason: rc?.waitingReason ?? 'ContainerCreating' } };
      return {
        name: c.name, image: c.image ?? '', imageID: '', ready: started && rc?.ready === true, started, restartCount: rc?.restarts ?? 0, state,
        ...(rc?.lastExit && !rc.completed ? { lastState: { terminated: { exitCode: rc.lastExit.code ?? 137, signal: 0, reason: rc.lastExit.signal ? 'Killed' : 'Error', finishedAt: new Date(rc.lastExit.at) } } } : {}),
      };
    };
    const statuses = (pod.spec?.containers ?? []).map(statusOf);
    const initStatuses = (pod.spec?.initContainers ?? []).map(statusOf);
    const ready = rt.initialized && statuses.every((s) => s.ready);
    const cond = (type: string, ok: boolean) => ({ type, status: ok ? 'True' : 'False', lastTransitionTime: now });
    const status = {
      phase: rt.failed ? 'Failed' : rt.initialized ? 'Running' : 'Pending', hostIP: this.#net.gateway, podIP: rt.sandbox.ip, podIPs: [{ ip: rt.sandbox.ip }], startTime: new Date(rt.startTime),
      conditions: [cond('PodScheduled', true), cond('Initialized', rt.initialized), cond('ContainersReady', ready), cond('Ready', ready)],
      containerStatuses: statuses,
      ...(initStatuses.length > 0 ? { initContainerStatuses: initStatuses } : {}),
    };
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
