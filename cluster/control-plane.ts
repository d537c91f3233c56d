/**
 * The local Kubernetes control plane: a store (a 3-member `ballast store`, or etcd 3.5),
 * kube-apiserver, kube-controller-manager and kube-scheduler, built from their Go modules by
 * cluster/go/build, run as local processes under a state directory. `up` is idempotent, `down`
 * ends exactly the processes it started (by pid), `status` reports each component's health.
 * (The process kubelet that runs pods is the next part of this work; see the README status.)
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { BallastError } from '../lib/errors.ts';
import { homeDir, packageRoot } from '../lib/paths.ts';

export const k8sVersion = 'v1.36.3';
export const etcdVersion = 'v3.5.35';

export interface ClusterOptions {
  stateDir: string;
  store: 'ballast' | 'etcd';
  apiserverPort: number;
  /** The kubelet's pod networking (see `ballast kubelet --pod-network`). */
  podNetwork?: 'auto' | 'netns' | 'loopback';
  cacheDir?: string;
  log?: (line: string) => void;
}

interface Component {
  name: string;
  pid: number;
  /** How to tell it is healthy: an HTTP(S) URL answering 200, and whether it needs the admin cert. */
  health: string;
}

interface State {
  store: 'ballast' | 'etcd';
  apiserverPort: number;
  components: Component[];
}

const repo = packageRoot();

function cache(o: ClusterOptions): { k8s: string; etcd: string } {
  const base = o.cacheDir ?? process.env['BALLAST_CACHE'] ?? join(homeDir(), '.cache', 'ballast');
  return { k8s: join(base, `k8s-${k8sVersion}`), etcd: join(base, `etcd-${etcdVersion}`) };
}

/**
 * Whether a process runs. A component whose parent has exited may linger as a zombie until
 * something reaps it; a zombie does not run, though kill(pid, 0) still succeeds on it.
 */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

const alive = isRunning;

function readState(dir: string): State | undefined {
  const p = join(dir, 'state.json');
  return existsSync(p) ? (JSON.parse(readFileSync(p, 'utf8')) as State) : undefined;
}

/** The node's address on the pod bridge (the kubelet's default pod network is 10.244.0.0/24). */
export const nodeAddress = '10.244.0.1';

/** Certificates and keys for the control plane, made once per state directory with openssl. */
function ensurePki(dir: string): void {
  const pki = join(dir, 'pki');
  mkdirSync(pki, { recursive: true });
  const ssl = (args: string[]) => execFileSync('openssl', args, { cwd: pki, stdio: 'ignore' });
  // Each piece is made only if missing, so a state directory from an older version gains the
  // certificates it lacks and keeps the ones it has.
  if (!existsSync(join(pki, 'ca.crt'))) ssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '365', '-subj', '/CN=ballast-local-ca']);
  const issue = (name: string, subj: string, ext: string) => {
    if (existsSync(join(pki, `${name}.crt`))) return;
    writeFileSync(join(pki, `${name}.ext`), ext);
    ssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subj]);
    ssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '365', '-extfile', `${name}.ext`]);
  };
  // Pods reach the apiserver at the node address (the kubelet passes :6443 through), so the
  // serving certificate names it too; a certificate from before that is reissued.
  if (existsSync(join(pki, 'apiserver.ext')) && !readFileSync(join(pki, 'apiserver.ext'), 'utf8').includes(`IP:${nodeAddress}`)) rmSync(join(pki, 'apiserver.crt'));
  issue('apiserver', '/CN=kube-apiserver', `subjectAltName=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.96.0.1,IP:${nodeAddress}\nextendedKeyUsage=serverAuth\n`);
  // The kubelet API (`kubectl logs`): the kubelet serves on the node address; the apiserver
  // calls it with its own client certificate.
  issue('kubelet-serving', '/CN=system:node:local/O=system:nodes', `subjectAltName=DNS:local,IP:${nodeAddress},IP:127.0.0.1\nextendedKeyUsage=serverAuth\n`);
  issue('apiserver-kubelet-client', '/CN=kube-apiserver-kubelet-client/O=system:masters', 'extendedKeyUsage=clientAuth\n');
  issue('admin', '/CN=admin/O=system:masters', 'extendedKeyUsage=clientAuth\n');
  issue('controller-manager', '/CN=system:kube-controller-manager', 'extendedKeyUsage=clientAuth\n');
  issue('scheduler', '/CN=system:kube-scheduler', 'extendedKeyUsage=clientAuth\n');
  issue('kubelet', '/CN=system:node:local/O=system:nodes', 'extendedKeyUsage=clientAuth\n');
  issue('provisioner', '/CN=system:ballast-local-provisioner', 'extendedKeyUsage=clientAuth\n');
  if (!existsSync(join(pki, 'sa.key'))) {
    ssl(['genrsa', '-out', 'sa.key', '2048']);
    ssl(['rsa', '-in', 'sa.key', '-pubout', '-out', 'sa.pub']);
  }
}

function kubeconfig(dir: string, user: string, port: number): string {
  const pki = join(dir, 'pki');
  const path = join(dir, `${user}.kubeconfig`);
  writeFileSync(path, [
    'apiVersion: v1', 'kind: Config',
    `clusters: [{name: ballast-local, cluster: {server: "https://127.0.0.1:${port}", certificate-authority: ${join(pki, 'ca.crt')}}}]`,
    `users: [{name: ${user}, user: {client-certificate: ${join(pki, `${user}.crt`)}, client-key: ${join(pki, `${user}.key`)}}}]`,
    `contexts: [{name: ballast-local, context: {cluster: ballast-local, user: ${user}}}]`, 'current-context: ballast-local', '',
  ].join('\n'));
  return path;
}

async function healthy(url: string, dir: string): Promise<boolean> {
  // The apiserver and the controllers serve HTTPS with the local CA or self-signed certificates;
  // curl with the admin certificate is the simplest honest probe.
  try {
    const pki = join(dir, 'pki');
    const out = execFileSync('curl', ['-sk', '--max-time', '2', '--cert', join(pki, 'admin.crt'), '--key', join(pki, 'admin.key'), '-o', '/dev/null', '-w', '%{http_code}', url], { encoding: 'utf8' });
    return out.trim() === '200';
  } catch {
    return false;
  }
}

/** The default StorageClass and the local provisioner's permissions. */
const storageManifests = `apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: ballast-local
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: ballast.dev/local
reclaimPolicy: Retain
volumeBindingMode: Immediate
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:ballast-local-provisioner"}
rules:
- {apiGroups: [""], resources: [persistentvolumes], verbs: [get, list, watch, create, delete]}
- {apiGroups: [""], resources: [persistentvolumeclaims], verbs: [get, list, watch]}
- {apiGroups: [storage.k8s.io], resources: [storageclasses], verbs: [get, list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:ballast-local-provisioner"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:ballast-local-provisioner"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:ballast-local-provisioner"}]
---
# Cluster DNS: the kubelet writes each pod's hosts file from the EndpointSlices (the Node
# authorizer does not grant reading them; kube-proxy's role does, for the same reason).
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:ballast-kubelet-dns"}
rules:
- {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [get, list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:ballast-kubelet-dns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:ballast-kubelet-dns"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:nodes"}]
`;

export class ControlPlane {
  readonly #o: ClusterOptions;
  readonly #dir: string;

  constructor(o: ClusterOptions) {
    this.#o = o;
    this.#dir = resolve(o.stateDir);
  }

  get kubeconfigPath(): string {
    return join(this.#dir, 'admin.kubeconfig');
  }

  #log(line: string): void {
    (this.#o.log ?? ((l: string) => process.stdout.write(`${l}\n`)))(line);
  }

  #spawn(name: string, cmd: string, args: string[]): ChildProcess {
    const logs = join(this.#dir, 'logs');
    mkdirSync(logs, { recursive: true });
    const fd = openSync(join(logs, `${name}.log`), 'a');
    const p = spawn(cmd, args, { stdio: ['ignore', fd, fd], detached: true });
    p.unref();
    return p;
  }

  /** Start everything; a no-op when it already runs. */
  async up(): Promise<void> {
    const running = readState(this.#dir);
    if (running && running.components.every((c) => alive(c.pid))) {
      this.#log(`already running (state in ${this.#dir}); kubeconfig: ${this.kubeconfigPath}`);
      return;
    }
    if (running) await this.down();
    const bins = cache(this.#o);
    for (const b of [join(bins.k8s, 'kube-apiserver'), join(bins.k8s, 'kube-controller-manager'), join(bins.k8s, 'kube-scheduler')]) {
      if (!existsSync(b)) throw new BallastError('BALLAST_ERR_START_FAILED', `${b} is missing: run \`make control-plane\` (it builds Kubernetes ${k8sVersion} from its Go modules, once)`);
    }
    mkdirSync(this.#dir, { recursive: true });
    ensurePki(this.#dir);
    const pki = join(this.#dir, 'pki');
    const components: Component[] = [];
    const state: State = { store: this.#o.store, apiserverPort: this.#o.apiserverPort, components };
    const save = () => writeFileSync(join(this.#dir, 'state.json'), `${JSON.stringify(state, null, 2)}\n`);
    const start = Date.now();

    let etcdServers: string[];
    if (this.#o.store === 'ballast') {
      const ic = [1, 2, 3].map((i) => `s${i}=http://127.0.0.1:${i}3380`).join(',');
      etcdServers = [1, 2, 3].map((i) => `http://127.0.0.1:${i}3379`);
      for (const i of [1, 2, 3]) {
        const p = this.#spawn(`store-s${i}`, join(repo, 'bin', 'ballast'), [
          'store', `--name=s${i}`, `--data-dir=${join(this.#dir, 'store', `s${i}`)}`,
          // Ports i3379-i3381: clear of etcd's 2379 and the benchmark anchor's i2379.
          `--listen-client-urls=http://127.0.0.1:${i}3379`, `--advertise-client-urls=http://127.0.0.1:${i}3379`,
          `--listen-peer-urls=http://127.0.0.1:${i}3380`, `--initial-advertise-peer-urls=http://127.0.0.1:${i}3380`,
          `--initial-cluster=${ic}`, '--initial-cluster-token=ballast-local', `--listen-metrics-urls=http://127.0.0.1:${i}3381`,
          '--auto-compaction-mode=periodic', '--auto-compaction-retention=1h',
        ]);
        components.push({ name: `store-s${i}`, pid: p.pid as number, health: `http://127.0.0.1:${i}3381/health` });
      }
    } else {
      etcdServers = ['http://127.0.0.1:2379'];
      const p = this.#spawn('etcd', join(bins.etcd, 'etcd'), ['--name=local', `--data-dir=${join(this.#dir, 'etcd')}`, '--listen-client-urls=http://127.0.0.1:2379', '--advertise-client-urls=http://127.0.0.1:2379', '--listen-peer-urls=http://127.0.0.1:2380', '--listen-metrics-urls=http://127.0.0.1:2381']);
      components.push({ name: 'etcd', pid: p.pid as number, health: 'http://127.0.0.1:2381/health' });
    }
    save();
    const port = this.#o.apiserverPort;
    const api = this.#spawn('kube-apiserver', join(bins.k8s, 'kube-apiserver'), [
      `--etcd-servers=${etcdServers.join(',')}`, '--bind-address=127.0.0.1', `--secure-port=${port}`,
      // Advertised at the node address, where the kubelet passes pods through to it (a loopback
      // address is refused for the kubernetes Service's endpoints).
      `--advertise-address=${nodeAddress}`,
      `--tls-cert-file=${join(pki, 'apiserver.crt')}`, `--tls-private-key-file=${join(pki, 'apiserver.key')}`, `--client-ca-file=${join(pki, 'ca.crt')}`,
      '--service-account-issuer=https://kubernetes.default.svc', `--service-account-key-file=${join(pki, 'sa.pub')}`, `--service-account-signing-key-file=${join(pki, 'sa.key')}`,
      '--authorization-mode=Node,RBAC', '--enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook', '--enable-aggregator-routing=true',
      '--service-cluster-ip-range=10.96.0.0/16', '--allow-privileged=true',
      // `kubectl logs` and friends: the apiserver calls the kubelet API at the node's InternalIP.
      `--kubelet-client-certificate=${join(pki, 'apiserver-kubelet-client.crt')}`, `--kubelet-client-key=${join(pki, 'apiserver-kubelet-client.key')}`,
      `--kubelet-certificate-authority=${join(pki, 'ca.crt')}`, '--kubelet-preferred-address-types=InternalIP',
    ]);
    components.push({ name: 'kube-apiserver', pid: api.pid as number, health: `https://127.0.0.1:${port}/readyz` });
    save();
    const admin = kubeconfig(this.#dir, 'admin', port);
    for (let i = 0; i < 240 && !(await healthy(`https://127.0.0.1:${port}/readyz`, this.#dir)); i++) await new Promise((r) => setTimeout(r, 250));
    if (!(await healthy(`https://127.0.0.1:${port}/readyz`, this.#dir))) throw new BallastError('BALLAST_ERR_START_FAILED', `kube-apiserver did not become ready; see ${join(this.#dir, 'logs', 'kube-apiserver.log')}`);
    this.#log(`kube-apiserver ready on https://127.0.0.1:${port} after ${((Date.now() - start) / 1000).toFixed(1)}s (store: ${this.#o.store})`);
    const cm = this.#spawn('kube-controller-manager', join(bins.k8s, 'kube-controller-manager'), [
      `--kubeconfig=${kubeconfig(this.#dir, 'controller-manager', port)}`, '--bind-address=127.0.0.1', '--secure-port=10257', '--leader-elect=false',
      `--service-account-private-key-file=${join(pki, 'sa.key')}`, `--root-ca-file=${join(pki, 'ca.crt')}`, '--use-service-account-credentials=true',
      '--controllers=*,tokencleaner', '--cluster-signing-cert-file=' + join(pki, 'ca.crt'), '--cluster-signing-key-file=' + join(pki, 'ca.key'),
    ]);
    components.push({ name: 'kube-controller-manager', pid: cm.pid as number, health: 'https://127.0.0.1:10257/healthz' });
    const sched = this.#spawn('kube-scheduler', join(bins.k8s, 'kube-scheduler'), [`--kubeconfig=${kubeconfig(this.#dir, 'scheduler', port)}`, '--bind-address=127.0.0.1', '--secure-port=10259', '--leader-elect=false']);
    components.push({ name: 'kube-scheduler', pid: sched.pid as number, health: 'https://127.0.0.1:10259/healthz' });
    // The process kubelet: pods as local processes. The image map sends ballast:* to this checkout.
    const images = join(this.#dir, 'images.json');
    if (!existsSync(images)) {
      writeFileSync(images, `${JSON.stringify({
        'ballast:*': { entrypoint: [join(repo, 'bin', 'ballast')] },
        'ballast-test/http-echo': { entrypoint: [process.execPath, join(repo, 'test', 'support', 'http-echo.mjs')] },
      }, null, 2)}\n`);
    }
    // Storage: the default StorageClass, and what the local provisioner may do (admin applies it).
    execFileSync('kubectl', [`--kubeconfig=${admin}`, 'apply', '-f', '-'], { input: storageManifests, stdio: ['pipe', 'ignore', 'pipe'] });
    const kubelet = this.#spawn('kubelet', join(repo, 'bin', 'ballast'), ['kubelet', `--kubeconfig=${kubeconfig(this.#dir, 'kubelet', port)}`, `--provisioner-kubeconfig=${kubeconfig(this.#dir, 'provisioner', port)}`, '--node-name=local', `--state-dir=${this.#dir}`,
      `--tls-cert-file=${join(pki, 'kubelet-serving.crt')}`, `--tls-private-key-file=${join(pki, 'kubelet-serving.key')}`, `--client-ca-file=${join(pki, 'ca.crt')}`, `--pod-network=${this.#o.podNetwork ?? 'auto'}`]);
    components.push({ name: 'kubelet', pid: kubelet.pid as number, health: '' });
    save();
    // Up means usable: the node registered (it is Ready when it does), and the default service
    // account exists (until the controller-manager makes it, pods are refused at admission).
    for (const path of ['/api/v1/nodes/local', '/api/v1/namespaces/default/serviceaccounts/default']) {
      for (let i = 0; i < 120 && !(await healthy(`https://127.0.0.1:${port}${path}`, this.#dir)); i++) await new Promise((r) => setTimeout(r, 250));
    }
    this.#log(`control plane up; kubeconfig: ${admin}`);
  }

  /** Stop every process this state directory started, by pid: SIGTERM, then SIGKILL after 10 s. */
  async down(): Promise<void> {
    const state = readState(this.#dir);
    if (!state) {
      this.#log('not running');
      return;
    }
    // In dependency order: the API's clients first, then the apiserver, then its store, so no
    // component spends its shutdown retrying against one already gone. The apiserver keeps
    // nothing of its own (its state is in the store), so it gets a short grace: it otherwise
    // waits out in-flight requests for up to a minute.
    const phases: Array<[(name: string) => boolean, number]> = [
      [(n) => n !== 'kube-apiserver' && n !== 'etcd' && !n.startsWith('store-'), 10_000],
      [(n) => n === 'kube-apiserver', 3_000],
      [() => true, 10_000],
    ];
    for (const [which, graceMs] of phases) {
      const group = state.components.filter((c) => which(c.name) && alive(c.pid));
      for (const c of group) process.kill(c.pid, 'SIGTERM');
      for (let t = 0; t < graceMs && group.some((c) => alive(c.pid)); t += 100) await new Promise((r) => setTimeout(r, 100));
      for (const c of group) if (alive(c.pid)) process.kill(c.pid, 'SIGKILL');
      for (let t = 0; t < 5_000 && group.some((c) => alive(c.pid)); t += 100) await new Promise((r) => setTimeout(r, 100));
    }
    rmSync(join(this.#dir, 'state.json'), { force: true });
    // Namespaces and links the kubelet made (ours by name) go too, even after a kubelet crash.
    const list = (args: string[]) => { try { return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }); } catch { return ''; } };
    for (const ns of list(['netns', 'list']).split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n.startsWith('blst-'))) list(['netns', 'del', ns]);
    if (list(['link', 'show', 'blst0'])) list(['link', 'del', 'blst0']);
    this.#log(`stopped ${state.components.map((c) => c.name).join(', ')}`);
  }

  /** Each component's pid and health; true when all are up and healthy. */
  async status(): Promise<{ ok: boolean; rows: Array<{ name: string; pid: number; running: boolean; healthy: boolean }> }> {
    const state = readState(this.#dir);
    if (!state) return { ok: false, rows: [] };
    const rows = [];
    for (const c of state.components) {
      const running = alive(c.pid);
      // A component without a health endpoint (the kubelet) is healthy while it runs.
      rows.push({ name: c.name, pid: c.pid, running, healthy: running && (c.health === '' || (await healthy(c.health, this.#dir))) });
    }
    return { ok: rows.every((r) => r.healthy), rows };
  }
}
