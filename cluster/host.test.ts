import assert from 'node:assert/strict';
import { it } from 'node:test';
import { type HostFacts, type HostState, diffHostState, planRestore, preflight } from './host.ts';

const facts = (over: Partial<HostFacts> = {}): HostFacts => ({
  uid: 0,
  cgroupControllers: ['cpu', 'cpuacct', 'memory', 'pids', 'cpuset', 'devices', 'freezer', 'blkio'],
  filesystems: ['ext4', 'tmpfs', 'overlay', 'cgroup', 'cgroup2'],
  commands: { iptables: true, ip6tables: true, conntrack: true, ip: true, nft: true },
  files: {
    '/usr/sbin/runc': true,
    '/usr/lib/cni/bridge': true,
    '/usr/lib/cni/host-local': true,
    '/usr/lib/cni/loopback': true,
    '/usr/lib/cni/portmap': true,
    '/cache/kubelet': true,
  },
  ...over,
});
const bins = { kubelet: '/cache/kubelet' };

it('preflight: a host with everything passes; cgroup v2 alone passes too', () => {
  assert.deepEqual(preflight(facts(), bins), []);
  assert.deepEqual(preflight(facts({ cgroupControllers: ['cgroup2'] }), bins), []);
});

it('preflight names every missing piece with how to get it, all at once', () => {
  const problems = preflight(
    facts({
      uid: 1000,
      cgroupControllers: ['cpu'],
      filesystems: ['ext4'],
      commands: { iptables: false, ip6tables: true, conntrack: false, ip: true, nft: true },
      files: {
        '/usr/sbin/runc': false,
        '/usr/lib/cni/bridge': true,
        '/usr/lib/cni/host-local': true,
        '/usr/lib/cni/loopback': true,
        '/usr/lib/cni/portmap': false,
        '/cache/kubelet': false,
      },
    }),
    bins,
  );
  assert.deepEqual(problems, [
    'the node needs root (containerd, runc, network namespaces, iptables): run as root',
    'no cgroup hierarchy with the memory, cpu and pids controllers is mounted under /sys/fs/cgroup: mount cgroup v2 (mount -t cgroup2 none /sys/fs/cgroup) or the v1 controllers',
    "the kernel has no overlay file system (containerd's snapshotter needs it): load the overlay module (modprobe overlay)",
    'iptables is missing: install the Debian package iptables (make deps does)',
    'conntrack is missing: install the Debian package conntrack (make deps does)',
    '/usr/sbin/runc is missing: install the Debian package runc (make deps does)',
    '/usr/lib/cni/portmap is missing: install the Debian package containernetworking-plugins (make deps does)',
    '/cache/kubelet is missing: run `make control-plane` (it builds Kubernetes, containerd, CoreDNS and crictl from their Go modules, once)',
  ]);
});

const state = (over: Partial<HostState> = {}): HostState => ({
  netns: [],
  links: ['eth0', 'lo'],
  chains: ['filter/FORWARD', 'filter/INPUT', 'filter/OUTPUT'],
  nftTables: ['ip filter'],
  mounts: ['/', '/proc'],
  cgroups: ['memory/user.slice'],
  sysctls: { 'net/ipv4/ip_forward': '0' },
  paths: { '/var/lib/kubelet': false, '/var/lib/cni': true },
  ...over,
});

it('diffHostState: nothing when equal; each addition, removal and change on its own line', () => {
  assert.deepEqual(diffHostState(state(), state()), []);
  const after = state({
    links: ['eth0', 'lo', 'ballast0'],
    sysctls: { 'net/ipv4/ip_forward': '1' },
    paths: { '/var/lib/kubelet': true, '/var/lib/cni': true },
    mounts: ['/'],
  });
  assert.deepEqual(diffHostState(state(), after), [
    'links: ballast0 was added',
    'mounts: /proc was removed',
    'sysctl net/ipv4/ip_forward: 0 became 1',
    'path /var/lib/kubelet: was created',
  ]);
});

it("planRestore undoes only what is new and of the node's kinds, never what was there before", () => {
  const before = state({ netns: ['mine'], links: ['eth0', 'lo', 'vethmine'] });
  const after = state({
    netns: ['mine', 'cni-1234', 'other'],
    links: ['eth0', 'lo', 'vethmine', 'ballast0', 'veth9f', 'docker0'],
    chains: [
      'filter/FORWARD',
      'filter/INPUT',
      'filter/OUTPUT',
      'filter/KUBE-FIREWALL',
      'filter/MYCHAIN',
      'nat/KUBE-SERVICES',
      'nat/PREROUTING',
    ],
    nftTables: ['ip filter', 'ip nat'],
    mounts: ['/', '/proc', '/tmp/s/kubelet/pods/x/volumes/secret', '/tmp/s/kubelet/pods/x', '/mnt/other'],
    cgroups: ['memory/user.slice', 'memory/ballast-node', 'cpu/ballast-node', 'memory/docker'],
    sysctls: { 'net/ipv4/ip_forward': '1' },
    paths: { '/var/lib/kubelet': true, '/var/lib/cni': true },
  });
  const plan = planRestore(before, after, { mountRoots: ['/tmp/s'], cgroupRoot: 'ballast-node', bridge: 'ballast0' });
  assert.deepEqual(plan, {
    mounts: ['/tmp/s/kubelet/pods/x/volumes/secret', '/tmp/s/kubelet/pods/x'],
    netns: ['cni-1234'],
    links: ['ballast0', 'veth9f'],
    // filter existed before: its new KUBE- chain goes one by one; nat is a new table and goes whole.
    chains: ['filter/KUBE-FIREWALL'],
    nftTables: ['ip nat'],
    cgroups: ['memory/ballast-node', 'cpu/ballast-node'],
    sysctls: { 'net/ipv4/ip_forward': '0' },
    paths: ['/var/lib/kubelet'],
  });
});
