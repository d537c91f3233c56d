/**
 * The real node beside the local control plane: containerd 2.3 with runc and the CNI bridge, the
 * kubelet and kube-proxy of the control plane's release, CoreDNS, and the local volume
 * provisioner. Pods run the images cluster/images/build made (imported into containerd; nothing
 * is pulled). `stop` leaves the host as `start` found it (cluster/host.ts).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { packageRoot } from '../lib/paths.ts';
import { clusterError } from './errors.ts';
import { type HostState, applyRestore, diffHostState, planRestore, preflight, probeHost, readHostState } from './host.ts';
import {
  type NodePaths,
  bridgeName,
  buildCniConfig,
  buildContainerdConfig,
  buildCoreDnsManifests,
  buildKubeProxyConfig,
  buildKubeletConfig,
  buildRegistryHosts,
  buildStorageManifests,
  containerdSocket,
} from './node-config.ts';
import { nodeAddress, nodeName, writeKubeconfig } from './pki.ts';
import { type Component, isRunning, spawnLogged, stopProcesses, waitFor } from './processes.ts';
import { binaries, containerdRoot, imageIndex } from './toolchain.ts';

/** The node's short runtime directory (sockets); one local cluster runs at a time. */
export const runDir = '/run/ballast';
/** The cgroup every pod's cgroup is made under, in each hierarchy. */
export const cgroupRoot = 'ballast-node';
/** The node's components, in the order they start (and the reverse of how they stop). */
export const nodeComponents = ['containerd', 'kubelet', 'kube-proxy', 'local-provisioner'] as const;

export interface NodeOptions {
  stateDir: string;
  cache: string;
  /** The apiserver's URL as the node's components reach it. */
  apiserver: string;
  log: (line: string) => void;
}

/** One image of the index cluster/images/build writes. */
export interface ImageEntry {
  ref: string;
  key: string;
  archive: string;
}

export function parseImageIndex(text: string): ImageEntry[] {
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [ref = '', key = '', archive = ''] = l.split('\t');
      return { ref, key, archive };
    });
}

export class LocalNode {
  readonly #options: NodeOptions;
  readonly paths: NodePaths;
  readonly #bins: ReturnType<typeof binaries>;

  constructor(o: NodeOptions) {
    this.#options = o;
    this.#bins = binaries(o.cache);
    this.paths = {
      stateDir: o.stateDir,
      runDir,
      containerdRoot: containerdRoot(o.cache),
      kubeletRoot: join(o.stateDir, 'kubelet'),
      runc: '/usr/sbin/runc',
      cniBinDir: '/usr/lib/cni',
    };
  }

  get #hostFile(): string {
    return join(this.#options.stateDir, 'host-before.json');
  }

  /**
   * Check the host before anything changes: every missing piece at once, each with its fix; the
   * images are built; no other local cluster runs.
   */
  preflight(): void {
    const b = this.#bins;
    const bins = {
      kubelet: b.kubelet,
      kubeProxy: b.kubeProxy,
      containerd: b.containerd,
      shim: b.containerdShim,
      ctr: b.ctr,
      crictl: b.crictl,
    };
    const problems = preflight(probeHost(Object.values(bins)), bins);
    if (problems.length > 0) throw clusterError('CLUSTER_ERR_HOST', `the host cannot run the node:\n  - ${problems.join('\n  - ')}`);
    const images = this.images();
    const missing = ['registry.k8s.io/pause:3.10', 'ballast.local/coredns:', 'docker.io/library/ballast:'].filter(
      (r) => !images.some((i) => i.ref.startsWith(r) && existsSync(i.archive)),
    );
    if (missing.length > 0)
      throw clusterError(
        'CLUSTER_ERR_IMAGES',
        `images not built (${missing.join(', ')}): run \`make images\` (cluster/images/build builds them with buildah, once per change)`,
      );
    const owner = join(runDir, 'owner');
    if (existsSync(owner)) {
      const other = readFileSync(owner, 'utf8').trim();
      const state = join(other, 'state.json');
      const pids = existsSync(state)
        ? (JSON.parse(readFileSync(state, 'utf8')) as { components: Component[] }).components.map((c) => c.pid)
        : [];
      if (other !== this.#options.stateDir && pids.some(isRunning))
        throw clusterError(
          'CLUSTER_ERR_BUSY',
          `another local cluster runs from ${other}: stop it first with \`ballast cluster down --state-dir ${other}\``,
        );
    }
  }

  /** The images cluster/images/build made. */
  images(): ImageEntry[] {
    const index = imageIndex(this.#options.cache);
    return existsSync(index) ? parseImageIndex(readFileSync(index, 'utf8')) : [];
  }

  /**
   * Record the host's state (once: a second `up` after a crash keeps the first record), then make
   * the pod bridge with the node's address, which the apiserver binds to, and turn on forwarding.
   */
  prepareNetwork(): void {
    if (!existsSync(this.#hostFile)) writeFileSync(this.#hostFile, `${JSON.stringify(readHostState(), null, 2)}\n`);
    mkdirSync(runDir, { recursive: true });
    writeFileSync(join(runDir, 'owner'), `${this.#options.stateDir}\n`);
    const ip = (args: string[]) => spawnSync('ip', args, { encoding: 'utf8' });
    if (ip(['link', 'show', bridgeName]).status !== 0) ip(['link', 'add', bridgeName, 'type', 'bridge']);
    if (!ip(['-4', 'addr', 'show', 'dev', bridgeName]).stdout.includes(`${nodeAddress}/`))
      ip(['addr', 'add', `${nodeAddress}/24`, 'dev', bridgeName]);
    ip(['link', 'set', bridgeName, 'up']);
    writeFileSync('/proc/sys/net/ipv4/ip_forward', '1');
  }

  /**
   * containerd, the images, the kubelet, kube-proxy and the provisioner; each is handed to
   * `started` the moment it runs (so a failure later still leaves it recorded, and `down` stops it).
   */
  async start(started: (c: Component) => void): Promise<void> {
    const p = this.paths;
    const dir = join(this.#options.stateDir, 'node');
    const pki = join(this.#options.stateDir, 'pki');
    for (const d of ['certs.d/_default', 'cni', 'ipam', 'volume-plugins', 'pod-logs']) mkdirSync(join(dir, d), { recursive: true });
    mkdirSync(p.containerdRoot, { recursive: true });
    writeFileSync(join(dir, 'containerd.toml'), buildContainerdConfig(p));
    writeFileSync(join(dir, 'certs.d', '_default', 'hosts.toml'), buildRegistryHosts());
    writeFileSync(join(dir, 'cni', '10-ballast.conflist'), buildCniConfig(p));
    writeFileSync(
      join(dir, 'resolv.conf'),
      '# Pods with dnsPolicy Default: no upstream resolver (the node has no network beyond its own).\noptions ndots:1\n',
    );
    writeFileSync(
      join(dir, 'kubelet.yaml'),
      buildKubeletConfig(p, { pki, resolvConf: join(dir, 'resolv.conf'), podLogsDir: join(dir, 'pod-logs') }),
    );
    writeFileSync(
      join(dir, 'kube-proxy.yaml'),
      buildKubeProxyConfig(writeKubeconfig(this.#options.stateDir, 'kube-proxy', this.#options.apiserver)),
    );
    const containerd = this.#startContainerd();
    started({ name: 'containerd', pid: containerd, health: '' });
    await this.waitContainerd(containerd);
    this.#importImages();

    this.#makeCgroupRoot();
    const kubelet = spawnLogged(this.#options.stateDir, 'kubelet', this.#bins.kubelet, [
      `--config=${join(dir, 'kubelet.yaml')}`,
      `--kubeconfig=${writeKubeconfig(this.#options.stateDir, 'kubelet', this.#options.apiserver)}`,
      `--root-dir=${p.kubeletRoot}`,
      `--hostname-override=${nodeName}`,
      `--node-ip=${nodeAddress}`,
      `--cert-dir=${join(dir, 'kubelet-pki')}`,
    ]);
    started({ name: 'kubelet', pid: kubelet.pid as number, health: 'http://127.0.0.1:10248/healthz' });
    const proxy = spawnLogged(this.#options.stateDir, 'kube-proxy', this.#bins.kubeProxy, [`--config=${join(dir, 'kube-proxy.yaml')}`]);
    started({ name: 'kube-proxy', pid: proxy.pid as number, health: 'http://127.0.0.1:10256/healthz' });
    const provisioner = spawnLogged(this.#options.stateDir, 'local-provisioner', join(packageRoot(), 'bin', 'ballast'), [
      'local-provisioner',
      `--kubeconfig=${writeKubeconfig(this.#options.stateDir, 'provisioner', this.#options.apiserver)}`,
      `--root=${join(this.#options.stateDir, 'volumes')}`,
    ]);
    started({ name: 'local-provisioner', pid: provisioner.pid as number, health: '' });
  }

  /**
   * The kubelet wants its cgroup root to exist in every hierarchy. A new v1 cpuset cgroup starts
   * with no CPUs and no memory nodes: it gets its parent's.
   */
  #makeCgroupRoot(): void {
    for (const h of readdirSync('/sys/fs/cgroup')) {
      const parent = join('/sys/fs/cgroup', h);
      if (h === 'unified' || !existsSync(join(parent, 'cgroup.procs'))) continue;
      const dir = join(parent, cgroupRoot);
      mkdirSync(dir, { recursive: true });
      for (const f of ['cpuset.cpus', 'cpuset.mems']) {
        if (existsSync(join(parent, f)) && readFileSync(join(dir, f), 'utf8').trim() === '')
          writeFileSync(join(dir, f), readFileSync(join(parent, f), 'utf8'));
      }
    }
  }

  /** The cluster add-ons the node needs: the default StorageClass and CoreDNS. */
  addonManifests(): string {
    return `${buildStorageManifests()}---\n${buildCoreDnsManifests()}`;
  }

  #ctr(args: string[], timeoutMs = 120_000): { status: number | null; stdout: string; stderr: string } {
    const r = spawnSync(this.#bins.ctr, ['--address', containerdSocket(this.paths), '--namespace', 'k8s.io', ...args], {
      encoding: 'utf8',
      timeout: timeoutMs,
    });
    return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
  }

  #startContainerd(): number {
    const env = {
      ...process.env,
      PATH: `${dirname(this.#bins.containerdShim)}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
    };
    const p = spawnLogged(
      this.#options.stateDir,
      'containerd',
      this.#bins.containerd,
      ['--config', join(this.#options.stateDir, 'node', 'containerd.toml')],
      env,
    );
    return p.pid as number;
  }

  async waitContainerd(pid: number): Promise<void> {
    const up = await waitFor(() => isRunning(pid) && this.#ctr(['version'], 5_000).status === 0, 30_000);
    if (!up)
      throw clusterError(
        'CLUSTER_ERR_NOT_READY',
        `containerd did not start; see ${join(this.#options.stateDir, 'logs', 'containerd.log')}`,
      );
  }

  /**
   * Import every image of the index that containerd lacks at its key (once per build: the store
   * is kept across clusters). Imported images are pinned, so the kubelet's image GC leaves them.
   */
  #importImages(): void {
    const recordFile = join(this.paths.containerdRoot, 'ballast-imported.tsv');
    const record = new Map(existsSync(recordFile) ? parseImageIndex(readFileSync(recordFile, 'utf8')).map((e) => [e.ref, e.key]) : []);
    const present = new Set(this.#ctr(['images', 'list', '--quiet']).stdout.split('\n').filter(Boolean));
    for (const image of this.images()) {
      if (record.get(image.ref) === image.key && present.has(image.ref)) continue;
      const started = Date.now();
      const r = this.#ctr(['images', 'import', '--snapshotter', 'overlayfs', '--local', image.archive], 600_000);
      if (r.status !== 0 || !this.#ctr(['images', 'list', '--quiet']).stdout.split('\n').includes(image.ref)) {
        throw clusterError(
          'CLUSTER_ERR_IMAGES',
          `importing ${image.ref} from ${image.archive} into containerd failed: ${r.stderr.trim() || r.stdout.trim() || 'the image is not listed after the import'}; rebuild it with \`make images\``,
        );
      }
      this.#ctr(['images', 'label', image.ref, 'io.cri-containerd.pinned=pinned']);
      record.set(image.ref, image.key);
      writeFileSync(recordFile, [...record].map(([ref, key]) => `${ref}\t${key}\t-\n`).join(''));
      this.#options.log(`imported ${image.ref} into containerd in ${((Date.now() - started) / 1000).toFixed(1)}s`);
    }
  }

  /**
   * Stop the node: its processes by pid, every pod sandbox through the CRI (so the CNI plugins
   * take their interfaces and addresses back), kube-proxy's rules, then leftover shims and
   * container processes. {@link restoreHost} does the rest once the control plane is down too.
   */
  async stop(components: Component[]): Promise<void> {
    const pidOf = (name: string) => components.find((c) => c.name === name)?.pid;
    const others = ['local-provisioner', 'kube-proxy', 'kubelet'].map(pidOf).filter((x): x is number => x !== undefined);
    await stopProcesses(others, 10_000);
    const configured = existsSync(join(this.#options.stateDir, 'node', 'containerd.toml'));
    let containerd = pidOf('containerd');
    if (configured && (containerd === undefined || !isRunning(containerd))) {
      // Pods outlive a crashed containerd (their shims run on); containerd is needed to remove them.
      containerd = this.#startContainerd();
      await this.waitContainerd(containerd).catch(() => undefined);
    }
    if (configured && containerd !== undefined && isRunning(containerd)) {
      spawnSync(
        this.#bins.crictl,
        ['--runtime-endpoint', `unix://${containerdSocket(this.paths)}`, '--timeout', '60s', 'rmp', '--all', '--force'],
        { encoding: 'utf8', timeout: 120_000 },
      );
    }
    if (existsSync(join(this.#options.stateDir, 'node', 'kube-proxy.yaml'))) {
      spawnSync(this.#bins.kubeProxy, ['--cleanup', `--config=${join(this.#options.stateDir, 'node', 'kube-proxy.yaml')}`], {
        encoding: 'utf8',
        timeout: 60_000,
      });
    }
    if (containerd !== undefined) await stopProcesses([containerd], 10_000);
    // Shims whose containerd is gone, and anything still in the node's cgroups.
    const shims = readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .map(Number)
      .filter((pid) => {
        try {
          const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
          return (cmd[0] ?? '').endsWith('containerd-shim-runc-v2') && cmd.includes(containerdSocket(this.paths));
        } catch {
          return false;
        }
      });
    await stopProcesses([...shims, ...this.#cgroupPids()], 2_000);
  }

  /**
   * Undo on the host what changed since `up` recorded it (after every process of the cluster
   * stopped). Returns what could not be undone, one line each: empty when the host is as it was.
   */
  restoreHost(): string[] {
    if (!existsSync(this.#hostFile)) return [];
    const before = JSON.parse(readFileSync(this.#hostFile, 'utf8')) as HostState;
    const plan = planRestore(before, readHostState(), {
      mountRoots: [this.#options.stateDir, runDir, this.paths.containerdRoot, this.paths.kubeletRoot],
      cgroupRoot,
      bridge: bridgeName,
    });
    const failed = applyRestore(plan);
    const left = diffHostState(before, readHostState());
    if (left.length === 0) rmSync(this.#hostFile, { force: true });
    return [...failed, ...left];
  }

  /** Processes in the node's cgroups (containers whose shim is gone). */
  #cgroupPids(): number[] {
    const pids = new Set<number>();
    const walk = (d: string) => {
      let names: string[];
      try {
        names = readdirSync(d, { withFileTypes: true })
          .filter((e) => e.isDirectory())
          .map((e) => e.name);
      } catch {
        return;
      }
      try {
        for (const l of readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n')) if (l) pids.add(Number(l));
      } catch {
        // not a cgroup directory
      }
      for (const n of names) walk(join(d, n));
    };
    for (const h of existsSync('/sys/fs/cgroup') ? readdirSync('/sys/fs/cgroup') : []) walk(join('/sys/fs/cgroup', h, cgroupRoot));
    return [...pids];
  }
}
