/**
 * What the real node needs from the host, and what it changes there. Before `up` the host is
 * checked (every missing piece named with how to get it) and its state recorded: network
 * namespaces, links, iptables chains, nftables tables, mounts, cgroups, the sysctls the node sets
 * and the paths its components create. `down` puts back exactly that: what appeared since, of the
 * kinds the node makes, is removed, and the sysctls get their old values. The checks and the
 * comparison are pure functions over facts; reading and changing the host are the edges.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** The host's state, as far as the node touches it. */
export interface HostState {
  netns: string[];
  links: string[];
  /** `table/chain` for every iptables chain (IPv4 and IPv6, marked `6:`). */
  chains: string[];
  /** `family name` of every nftables table. */
  nftTables: string[];
  mounts: string[];
  /** Cgroups directly under each hierarchy's root, as `hierarchy/name`. */
  cgroups: string[];
  sysctls: Record<string, string>;
  /** Paths the node's components create outside its own directories, and whether they exist. */
  paths: Record<string, boolean>;
}

/** The sysctls the node changes (the bridge plugin turns on forwarding; kube-proxy route_localnet). */
export const nodeSysctls = [
  'net/ipv4/ip_forward',
  'net/ipv4/conf/all/route_localnet',
  'net/bridge/bridge-nf-call-iptables',
  'net/bridge/bridge-nf-call-ip6tables',
];
/**
 * Paths the kubelet, containerd and the CNI plugins create whatever they are told (the device
 * plugin directory is fixed in the kubelet; the CNI result cache in containerd's CNI library).
 */
export const nodePaths = [
  '/var/lib/kubelet',
  '/var/lib/cni',
  '/run/containerd',
  '/var/run/netns',
  '/usr/libexec/kubernetes',
  '/opt/containerd',
  '/etc/cni',
  '/run/ballast',
  '/var/log/pods',
  '/var/log/containers',
];
/** Chains and tables the node's components make: kube-proxy and the kubelet (KUBE-*), CNI (CNI-*). */
export const isNodeChain = (chain: string) => /^(KUBE-|CNI-)/.test(chain.split('/').pop() ?? '');
const iptablesTables = ['filter', 'nat', 'mangle', 'raw'];

const run = (cmd: string, args: string[]): string => {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return r.status === 0 ? r.stdout : '';
};

/** Read the host's state (the edge: commands and /proc, /sys). */
export function readHostState(): HostState {
  const chains: string[] = [];
  for (const [bin, mark] of [
    ['iptables', ''],
    ['ip6tables', '6:'],
  ] as const) {
    for (const table of iptablesTables) {
      for (const line of run(bin, ['-w', '-t', table, '-S']).split('\n')) {
        const m = /^-[NP] (\S+)/.exec(line);
        if (m) chains.push(`${mark}${table}/${m[1]}`);
      }
    }
  }
  const cgroups: string[] = [];
  for (const h of safeList('/sys/fs/cgroup')) {
    for (const name of safeList(join('/sys/fs/cgroup', h))) {
      if (isDir(join('/sys/fs/cgroup', h, name))) cgroups.push(`${h}/${name}`);
    }
  }
  const sysctls: Record<string, string> = {};
  for (const s of nodeSysctls) {
    try {
      sysctls[s] = readFileSync(`/proc/sys/${s}`, 'utf8').trim();
    } catch {
      // not on this kernel
    }
  }
  return {
    netns: run('ip', ['netns', 'list'])
      .split('\n')
      .map((l) => l.split(' ')[0] ?? '')
      .filter(Boolean)
      .sort(),
    links: run('ip', ['-o', 'link', 'show'])
      .split('\n')
      .map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1] ?? '')
      .filter(Boolean)
      .sort(),
    chains: chains.sort(),
    nftTables: run('nft', ['list', 'tables'])
      .split('\n')
      .map((l) => l.replace(/^table /, '').trim())
      .filter(Boolean)
      .sort(),
    mounts: readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .map((l) => l.split(' ')[4] ?? '')
      .filter(Boolean)
      .sort(),
    cgroups: cgroups.sort(),
    sysctls,
    paths: Object.fromEntries(nodePaths.map((p) => [p, existsSync(p)])),
  };
}

function safeList(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** What differs between two states: one line per difference, empty when the host is as it was. */
export function diffHostState(before: HostState, after: HostState): string[] {
  const out: string[] = [];
  const lists = ['netns', 'links', 'chains', 'nftTables', 'mounts', 'cgroups'] as const;
  for (const k of lists) {
    const was = new Set(before[k]);
    const is = new Set(after[k]);
    for (const x of is) if (!was.has(x)) out.push(`${k}: ${x} was added`);
    for (const x of was) if (!is.has(x)) out.push(`${k}: ${x} was removed`);
  }
  for (const [k, v] of Object.entries(before.sysctls))
    if (after.sysctls[k] !== v) out.push(`sysctl ${k}: ${v} became ${after.sysctls[k] ?? 'unset'}`);
  for (const [k, v] of Object.entries(before.paths)) if (after.paths[k] !== v) out.push(`path ${k}: ${v ? 'was removed' : 'was created'}`);
  return out;
}

/** What `down` removes to get from `after` back to `before`: only new things of the node's kinds. */
export interface Restore {
  mounts: string[];
  netns: string[];
  links: string[];
  /** Chains to flush and delete (`[6:]table/chain`), in tables that existed before. */
  chains: string[];
  /** nftables tables that did not exist before (deleting one removes its chains too). */
  nftTables: string[];
  cgroups: string[];
  sysctls: Record<string, string>;
  paths: string[];
}

/** Decide what to undo (pure). */
export function planRestore(
  before: HostState,
  after: HostState,
  owned: { mountRoots: string[]; cgroupRoot: string; bridge: string },
): Restore {
  const added = <T>(was: T[], is: T[]) => is.filter((x) => !was.includes(x));
  const newTables = added(before.nftTables, after.nftTables);
  // iptables-nft keeps each iptables table as an nftables table: `ip nat` holds iptables' nat.
  const tableOf = (chain: string) => `${chain.startsWith('6:') ? 'ip6' : 'ip'} ${chain.replace(/^6:/, '').split('/')[0]}`;
  return {
    // Deepest first, so a mount under another comes off before it.
    mounts: added(before.mounts, after.mounts)
      .filter((m) => owned.mountRoots.some((r) => m === r || m.startsWith(`${r}/`)))
      .sort((a, b) => b.length - a.length),
    netns: added(before.netns, after.netns).filter((n) => n.startsWith('cni-')),
    links: added(before.links, after.links).filter((l) => l === owned.bridge || l.startsWith('veth')),
    chains: added(before.chains, after.chains).filter((c) => isNodeChain(c) && !newTables.includes(tableOf(c))),
    nftTables: newTables,
    cgroups: added(before.cgroups, after.cgroups).filter((c) => c.split('/')[1] === owned.cgroupRoot),
    sysctls: Object.fromEntries(Object.entries(before.sysctls).filter(([k, v]) => after.sysctls[k] !== v)),
    paths: Object.entries(before.paths)
      .filter(([p, existed]) => !existed && after.paths[p])
      .map(([p]) => p),
  };
}

/** Carry out a restore (the edge). Returns what could not be undone, one line each. */
export function applyRestore(r: Restore): string[] {
  const failed: string[] = [];
  const must = (what: string, cmd: string, args: string[]) => {
    const res = spawnSync(cmd, args, { encoding: 'utf8' });
    if (res.status !== 0) failed.push(`${what}: ${cmd} ${args.join(' ')}: ${(res.stderr || res.stdout).trim()}`);
  };
  for (const m of r.mounts) {
    if (spawnSync('umount', [m]).status !== 0) must(`unmount ${m}`, 'umount', ['-l', m]);
  }
  for (const n of r.netns) must(`network namespace ${n}`, 'ip', ['netns', 'del', n]);
  for (const l of r.links) if (run('ip', ['link', 'show', l])) must(`link ${l}`, 'ip', ['link', 'del', l]);
  // Chains in tables that were there before: first the rules that jump to them, then the chains.
  const byTable = new Map<string, string[]>();
  for (const c of r.chains) {
    const [t, chain] = c.split('/') as [string, string];
    byTable.set(t, [...(byTable.get(t) ?? []), chain]);
  }
  for (const [t, chains] of byTable) {
    const bin = t.startsWith('6:') ? 'ip6tables' : 'iptables';
    const table = t.replace(/^6:/, '');
    for (const line of run(bin, ['-w', '-t', table, '-S']).split('\n')) {
      const m = /^-A (\S+) (.*)-j (\S+)/.exec(line);
      if (m && chains.includes(m[3] ?? '') && !chains.includes(m[1] ?? ''))
        spawnSync(bin, ['-w', '-t', table, ...line.replace(/^-A /, '-D ').split(' ')]);
    }
    for (const chain of chains) spawnSync(bin, ['-w', '-t', table, '-F', chain]);
    for (const chain of chains) must(`chain ${t}/${chain}`, bin, ['-w', '-t', table, '-X', chain]);
  }
  for (const t of r.nftTables) must(`nftables table ${t}`, 'nft', ['delete', 'table', ...t.split(' ')]);
  for (const c of r.cgroups) {
    const removed = removeCgroup(join('/sys/fs/cgroup', c));
    if (!removed) failed.push(`cgroup ${c}: still has processes or children`);
  }
  for (const [k, v] of Object.entries(r.sysctls)) {
    try {
      writeFileSync(`/proc/sys/${k}`, v);
    } catch (e) {
      failed.push(`sysctl ${k}: ${(e as Error).message}`);
    }
  }
  for (const p of r.paths) rmSync(p, { recursive: true, force: true });
  return failed;
}

/** Remove a cgroup and its children, deepest first (rmdir: a cgroup holds no files to delete). */
function removeCgroup(dir: string): boolean {
  for (const name of safeList(dir)) {
    const p = join(dir, name);
    if (isDir(p)) removeCgroup(p);
  }
  try {
    rmdirSync(dir);
    return true;
  } catch {
    return !existsSync(dir);
  }
}

/** What the host offers the node, gathered by {@link probeHost}. */
export interface HostFacts {
  uid: number;
  /** Controllers mounted under /sys/fs/cgroup (v1 hierarchies), or 'cgroup2' for a unified mount. */
  cgroupControllers: string[];
  filesystems: string[];
  commands: Record<string, boolean>;
  files: Record<string, boolean>;
}

/** One check: a fact the node needs, and what to do when it is missing. */
interface Need {
  ok: (f: HostFacts) => boolean;
  problem: string;
}

/**
 * The checks `cluster up` makes before it changes anything (pure). Each names what is missing
 * and how to get it.
 */
export function preflight(f: HostFacts, bins: Record<string, string>): string[] {
  const cmd = (c: string, pkg: string): Need => ({
    ok: (x) => x.commands[c] === true,
    problem: `${c} is missing: install the Debian package ${pkg} (make deps does)`,
  });
  const file = (p: string, how: string): Need => ({ ok: (x) => x.files[p] === true, problem: `${p} is missing: ${how}` });
  const needs: Need[] = [
    { ok: (x) => x.uid === 0, problem: 'the node needs root (containerd, runc, network namespaces, iptables): run as root' },
    {
      ok: (x) => ['memory', 'cpu', 'pids'].every((c) => x.cgroupControllers.includes(c)) || x.cgroupControllers.includes('cgroup2'),
      problem:
        'no cgroup hierarchy with the memory, cpu and pids controllers is mounted under /sys/fs/cgroup: mount cgroup v2 (mount -t cgroup2 none /sys/fs/cgroup) or the v1 controllers',
    },
    {
      ok: (x) => x.filesystems.includes('overlay'),
      problem: "the kernel has no overlay file system (containerd's snapshotter needs it): load the overlay module (modprobe overlay)",
    },
    cmd('iptables', 'iptables'),
    cmd('ip6tables', 'iptables'),
    cmd('conntrack', 'conntrack'),
    cmd('ip', 'iproute2'),
    cmd('nft', 'nftables'),
    file('/usr/sbin/runc', 'install the Debian package runc (make deps does)'),
    ...['bridge', 'host-local', 'loopback', 'portmap'].map((p) =>
      file(`/usr/lib/cni/${p}`, 'install the Debian package containernetworking-plugins (make deps does)'),
    ),
    ...Object.entries(bins).map(([, p]) =>
      file(p, 'run `make control-plane` (it builds Kubernetes, containerd, CoreDNS and crictl from their Go modules, once)'),
    ),
  ];
  return needs.filter((n) => !n.ok(f)).map((n) => n.problem);
}

/** Gather {@link HostFacts} (the edge). */
export function probeHost(files: string[]): HostFacts {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n');
  const controllers = new Set<string>();
  for (const line of mounts) {
    const [pre, post] = line.split(' - ');
    const mountPoint = pre?.split(' ')[4] ?? '';
    const [fstype, , opts] = (post ?? '').split(' ');
    if (!mountPoint.startsWith('/sys/fs/cgroup')) continue;
    if (fstype === 'cgroup2' && mountPoint === '/sys/fs/cgroup') controllers.add('cgroup2');
    if (fstype === 'cgroup') for (const o of (opts ?? '').split(',')) controllers.add(o);
  }
  const has = (c: string) => spawnSync('sh', ['-c', `command -v ${c}`]).status === 0;
  return {
    uid: process.getuid?.() ?? -1,
    cgroupControllers: [...controllers],
    filesystems: readFileSync('/proc/filesystems', 'utf8')
      .split('\n')
      .map((l) => l.split('\t').pop() ?? '')
      .filter(Boolean),
    commands: Object.fromEntries(['iptables', 'ip6tables', 'conntrack', 'ip', 'nft'].map((c) => [c, has(c)])),
    files: Object.fromEntries(
      ['/usr/sbin/runc', ...['bridge', 'host-local', 'loopback', 'portmap'].map((p) => `/usr/lib/cni/${p}`), ...files].map((p) => [
        p,
        existsSync(p),
      ]),
    ),
  };
}
