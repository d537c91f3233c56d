/**
 * The local Kubernetes cluster: a store (a 3-member `ballast store`, or etcd 3.5),
 * kube-apiserver, kube-controller-manager and kube-scheduler, and one real node (containerd,
 * runc, the kubelet, kube-proxy, CoreDNS; cluster/node.ts), all built from their Go modules by
 * cluster/go/build and run as local processes under a state directory. `up` is idempotent,
 * `down` ends exactly the processes it started (by pid) and leaves the host as it found it,
 * `status` reports each component's health.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { packageRoot } from '../lib/paths.ts';
import { clusterError } from './errors.ts';
import { clusterObjectStorePorts, ensureBucket, ensureCredentials, s3Client, s3Endpoint, weedArgs, writeS3Config } from './object-store.ts';
import { LocalNode, nodeComponents } from './node.ts';
import { ensurePki, nodeAddress, nodeName, serviceCidr, writeKubeconfig } from './pki.ts';
import { type Component, isHealthy, isRunning, spawnLogged, stopProcesses, waitFor } from './processes.ts';
import { binaries, cacheDir, versions } from './toolchain.ts';

export const k8sVersion = versions.k8s;
export const etcdVersion = versions.etcd;
export { isRunning };
export { nodeAddress };

export interface ClusterOptions {
  stateDir: string;
  store: 'ballast' | 'etcd';
  apiserverPort: number;
  /** Also run object storage (SeaweedFS's S3 gateway) on the node's address, with a bucket `backups`. */
  objectStore?: boolean;
  cacheDir?: string;
  log?: (line: string) => void;
}

/** Where `--object-store` serves, and the keys it takes (in the state directory, mode 0600). */
export interface ObjectStoreInfo {
  endpoint: string;
  bucket: string;
  credentialsFile: string;
}

interface State {
  store: 'ballast' | 'etcd';
  apiserverPort: number;
  components: Component[];
  objectStore?: ObjectStoreInfo;
}

const repo = packageRoot();

function readState(dir: string): State | undefined {
  const p = join(dir, 'state.json');
  return existsSync(p) ? (JSON.parse(readFileSync(p, 'utf8')) as State) : undefined;
}

export class ControlPlane {
  readonly #options: ClusterOptions;
  readonly #dir: string;
  readonly #node: LocalNode;
  readonly #cache: string;

  constructor(o: ClusterOptions) {
    this.#options = o;
    this.#dir = resolve(o.stateDir);
    this.#cache = cacheDir(o.cacheDir);
    this.#node = new LocalNode({ stateDir: this.#dir, cache: this.#cache, apiserver: this.apiserverUrl, log: (l) => this.#log(l) });
  }

  get kubeconfigPath(): string {
    return join(this.#dir, 'admin.kubeconfig');
  }

  /** Where every client reaches the apiserver: the node's address, which pods reach too. */
  get apiserverUrl(): string {
    return `https://${nodeAddress}:${this.#options.apiserverPort}`;
  }

  #log(line: string): void {
    (this.#options.log ?? ((l: string) => process.stdout.write(`${l}\n`)))(line);
  }

  #kubectl(args: string[], input?: string): string {
    return execFileSync('kubectl', [`--kubeconfig=${this.kubeconfigPath}`, ...args], {
      input: input ?? '',
      encoding: 'utf8',
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: 60_000,
    });
  }

  /** Start everything; a no-op when it already runs. */
  async up(): Promise<void> {
    const running = readState(this.#dir);
    if (running && running.components.every((c) => isRunning(c.pid))) {
      this.#log(`already running (state in ${this.#dir}); kubeconfig: ${this.kubeconfigPath}`);
      return;
    }
    if (running) await this.down();
    const bins = binaries(this.#cache);
    for (const b of [
      bins.kubeApiserver,
      bins.kubeControllerManager,
      bins.kubeScheduler,
      ...(this.#options.store === 'etcd' ? [bins.etcd] : []),
      ...(this.#options.objectStore ? [bins.weed] : []),
    ]) {
      if (!existsSync(b))
        throw clusterError(
          'CLUSTER_ERR_HOST',
          `${b} is missing: run \`make control-plane\` (it builds Kubernetes ${k8sVersion} from its Go modules, once)`,
        );
    }
    mkdirSync(this.#dir, { recursive: true });
    this.#node.preflight();
    const pki = ensurePki(this.#dir);
    const components: Component[] = [];
    const state: State = { store: this.#options.store, apiserverPort: this.#options.apiserverPort, components };
    const save = () => writeFileSync(join(this.#dir, 'state.json'), `${JSON.stringify(state, null, 2)}\n`);
    save();
    const start = Date.now();
    const since = () => `${((Date.now() - start) / 1000).toFixed(1)}s`;
    const spawn = (name: string, cmd: string, args: string[], health: string) => {
      components.push({ name, pid: spawnLogged(this.#dir, name, cmd, args).pid as number, health });
      save();
    };
    this.#node.prepareNetwork();

    let etcdServers: string[];
    if (this.#options.store === 'ballast') {
      const ic = [1, 2, 3].map((i) => `s${i}=http://127.0.0.1:${i}3380`).join(',');
      etcdServers = [1, 2, 3].map((i) => `http://127.0.0.1:${i}3379`);
      for (const i of [1, 2, 3]) {
        spawn(
          `store-s${i}`,
          join(repo, 'bin', 'ballast'),
          [
            'store',
            `--name=s${i}`,
            `--data-dir=${join(this.#dir, 'store', `s${i}`)}`,
            // Ports i3379-i3381: clear of etcd's 2379 and the benchmark anchor's i2379.
            `--listen-client-urls=http://127.0.0.1:${i}3379`,
            `--advertise-client-urls=http://127.0.0.1:${i}3379`,
            `--listen-peer-urls=http://127.0.0.1:${i}3380`,
            `--initial-advertise-peer-urls=http://127.0.0.1:${i}3380`,
            `--initial-cluster=${ic}`,
            '--initial-cluster-token=ballast-local',
            `--listen-metrics-urls=http://127.0.0.1:${i}3381`,
            '--auto-compaction-mode=periodic',
            '--auto-compaction-retention=1h',
          ],
          `http://127.0.0.1:${i}3381/health`,
        );
      }
    } else {
      etcdServers = ['http://127.0.0.1:2379'];
      spawn(
        'etcd',
        bins.etcd,
        [
          '--name=local',
          `--data-dir=${join(this.#dir, 'etcd')}`,
          '--listen-client-urls=http://127.0.0.1:2379',
          '--advertise-client-urls=http://127.0.0.1:2379',
          '--listen-peer-urls=http://127.0.0.1:2380',
          '--listen-metrics-urls=http://127.0.0.1:2381',
        ],
        'http://127.0.0.1:2381/health',
      );
    }
    const port = this.#options.apiserverPort;
    const readyz = `${this.apiserverUrl}/readyz`;
    spawn(
      'kube-apiserver',
      bins.kubeApiserver,
      [
        `--etcd-servers=${etcdServers.join(',')}`,
        // On the node's address: pods reach it there through the `kubernetes` Service.
        `--bind-address=${nodeAddress}`,
        `--advertise-address=${nodeAddress}`,
        `--secure-port=${port}`,
        `--tls-cert-file=${join(pki, 'apiserver.crt')}`,
        `--tls-private-key-file=${join(pki, 'apiserver.key')}`,
        `--client-ca-file=${join(pki, 'ca.crt')}`,
        '--service-account-issuer=https://kubernetes.default.svc',
        `--service-account-key-file=${join(pki, 'sa.pub')}`,
        `--service-account-signing-key-file=${join(pki, 'sa.key')}`,
        '--authorization-mode=Node,RBAC',
        '--enable-admission-plugins=NodeRestriction,MutatingAdmissionWebhook,ValidatingAdmissionWebhook',
        `--service-cluster-ip-range=${serviceCidr}`,
        '--allow-privileged=true',
        // `kubectl logs` and `exec`: the apiserver calls the kubelet at the node's InternalIP and checks its serving certificate.
        `--kubelet-client-certificate=${join(pki, 'apiserver-kubelet-client.crt')}`,
        `--kubelet-client-key=${join(pki, 'apiserver-kubelet-client.key')}`,
        `--kubelet-certificate-authority=${join(pki, 'ca.crt')}`,
        '--kubelet-preferred-address-types=InternalIP',
      ],
      readyz,
    );
    const admin = writeKubeconfig(this.#dir, 'admin', this.apiserverUrl);
    if (!(await waitFor(() => isHealthy(readyz, pki), 60_000)))
      throw clusterError(
        'CLUSTER_ERR_NOT_READY',
        `kube-apiserver did not become ready; see ${join(this.#dir, 'logs', 'kube-apiserver.log')}`,
      );
    this.#log(`kube-apiserver ready on ${this.apiserverUrl} after ${since()} (store: ${this.#options.store})`);
    spawn(
      'kube-controller-manager',
      bins.kubeControllerManager,
      [
        `--kubeconfig=${writeKubeconfig(this.#dir, 'controller-manager', this.apiserverUrl)}`,
        '--bind-address=127.0.0.1',
        '--secure-port=10257',
        '--leader-elect=false',
        `--service-account-private-key-file=${join(pki, 'sa.key')}`,
        `--root-ca-file=${join(pki, 'ca.crt')}`,
        '--use-service-account-credentials=true',
        '--controllers=*,tokencleaner',
        `--cluster-signing-cert-file=${join(pki, 'ca.crt')}`,
        `--cluster-signing-key-file=${join(pki, 'ca.key')}`,
      ],
      'https://127.0.0.1:10257/healthz',
    );
    spawn(
      'kube-scheduler',
      bins.kubeScheduler,
      [
        `--kubeconfig=${writeKubeconfig(this.#dir, 'scheduler', this.apiserverUrl)}`,
        '--bind-address=127.0.0.1',
        '--secure-port=10259',
        '--leader-elect=false',
      ],
      'https://127.0.0.1:10259/healthz',
    );

    await this.#node.start((c) => {
      components.push(c);
      save();
    });
    this.#log(`node components started after ${since()} (containerd ${versions.containerd}, kubelet and kube-proxy ${k8sVersion})`);
    this.#kubectl(['apply', '-f', '-'], this.#node.addonManifests());
    // Up means usable: the node Ready, the default service account made (pods are refused at
    // admission until it exists), and cluster DNS answering.
    const ready = async (what: string, cond: () => boolean, logName: string) => {
      if (!(await waitFor(cond, 120_000, 250)))
        throw clusterError('CLUSTER_ERR_NOT_READY', `${what} did not become ready; see ${join(this.#dir, 'logs', logName)}`);
    };
    const ok = (args: string[]) => {
      try {
        return this.#kubectl(args).trim();
      } catch {
        return '';
      }
    };
    await ready(
      `node ${nodeName}`,
      () => ok(['get', 'node', nodeName, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}']) === 'True',
      'kubelet.log',
    );
    await ready(
      'the default service account',
      () => ok(['get', 'serviceaccount', 'default', '-o', 'name']) !== '',
      'kube-controller-manager.log',
    );
    await ready(
      'CoreDNS',
      () => ok(['get', 'deployment', 'coredns', '-n', 'kube-system', '-o', 'jsonpath={.status.readyReplicas}']) === '1',
      'kubelet.log',
    );
    if (this.#options.objectStore) {
      // On the node's address, where pods reach it; the bucket made once it takes requests.
      const dir = join(this.#dir, 'object-store');
      const creds = ensureCredentials(dir);
      mkdirSync(join(dir, 'data'), { recursive: true });
      const config = join(dir, 's3.json');
      writeS3Config(config, creds);
      const ports = clusterObjectStorePorts;
      spawn('object-store', bins.weed, weedArgs(dir, nodeAddress, ports, config), `${s3Endpoint(nodeAddress, ports.s3)}/healthz`);
      const info: ObjectStoreInfo = {
        endpoint: s3Endpoint(nodeAddress, ports.s3),
        bucket: 'backups',
        credentialsFile: join(dir, 'credentials.json'),
      };
      const s3 = s3Client(info.endpoint, creds);
      const failed = await ensureBucket(s3, info.bucket, 90_000, () => isRunning(components[components.length - 1]?.pid ?? 0));
      s3.destroy();
      if (failed)
        throw clusterError(
          'CLUSTER_ERR_NOT_READY',
          `the object store did not take requests (${failed}); see ${join(this.#dir, 'logs', 'object-store.log')}`,
        );
      state.objectStore = info;
      save();
      this.#log(`object store (SeaweedFS S3) on ${info.endpoint}, bucket ${info.bucket}; keys in ${info.credentialsFile}`);
    }
    this.#log(`cluster up after ${since()}; node ${nodeName} (containerd ${versions.containerd}); kubeconfig: ${admin}`);
  }

  /** Stop every process this state directory started, by pid, and put the host back as it was. */
  async down(): Promise<void> {
    const state = readState(this.#dir);
    if (!state) {
      // A host record with no state: a crashed `up`; still undo what it changed.
      await this.#node.stop([]);
      const left = this.#node.restoreHost();
      this.#log(left.length === 0 ? 'not running' : `not running; could not undo on the host:\n  ${left.join('\n  ')}`);
      return;
    }
    const isNode = (n: string) => (nodeComponents as readonly string[]).includes(n);
    await this.#node.stop(state.components.filter((c) => isNode(c.name)));
    // Then the API's clients, then the apiserver, then its store, so no component spends its
    // shutdown retrying against one already gone. The apiserver keeps nothing of its own (its
    // state is in the store), so it gets a short grace: it otherwise waits out in-flight
    // requests for up to a minute.
    const phases: Array<[(name: string) => boolean, number]> = [
      [(n) => !isNode(n) && n !== 'kube-apiserver' && n !== 'etcd' && !n.startsWith('store-'), 10_000],
      [(n) => n === 'kube-apiserver', 3_000],
      [() => true, 10_000],
    ];
    for (const [which, graceMs] of phases)
      await stopProcesses(
        state.components.filter((c) => which(c.name)).map((c) => c.pid),
        graceMs,
      );
    rmSync(join(this.#dir, 'state.json'), { force: true });
    const left = this.#node.restoreHost();
    this.#log(`stopped ${state.components.map((c) => c.name).join(', ')}`);
    if (left.length > 0) this.#log(`could not undo on the host:\n  ${left.join('\n  ')}`);
  }

  /** Each component's pid and health; true when all are up and healthy. */
  async status(): Promise<{
    ok: boolean;
    rows: Array<{ name: string; pid: number; running: boolean; healthy: boolean }>;
    objectStore?: ObjectStoreInfo;
  }> {
    const state = readState(this.#dir);
    if (!state) return { ok: false, rows: [] };
    const pki = join(this.#dir, 'pki');
    const rows = state.components.map((c) => {
      const running = isRunning(c.pid);
      // A component without a health endpoint (containerd, the provisioner) is healthy while it runs.
      return { name: c.name, pid: c.pid, running, healthy: running && (c.health === '' || isHealthy(c.health, pki)) };
    });
    return { ok: rows.every((r) => r.healthy), rows, ...(state.objectStore ? { objectStore: state.objectStore } : {}) };
  }
}
