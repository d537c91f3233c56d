/**
 * Pod networking for the process kubelet: one Linux network namespace per pod, joined to a
 * host bridge by a veth pair, with an address from the node's pod CIDR, so a pod's containers
 * share `localhost` and every pod has its own IP, as in a real cluster. Uses iproute2 (`ip`).
 *
 * Where namespaces cannot be made (no privilege), pods fall back to distinct 127.0.0.x
 * addresses in the host's namespace: each still has its own IP (`POD_IP`), but they share
 * ports and the host's /etc/hosts, so a pod must bind its POD_IP. The node says so in its
 * `BallastPodNetwork` condition.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';

const ip = (...args: string[]): void => {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
};
const tryIp = (...args: string[]): boolean => {
  try {
    ip(...args);
    return true;
  } catch {
    return false;
  }
};

export interface PodNetworkOptions {
  /** Bridge name and the node's /24 (the bridge takes .1, pods .2 to .254). */
  bridge: string;
  prefix: string;
  /** auto: namespaces when they can be made, else loopback addresses; or force one. */
  mode?: 'auto' | 'netns' | 'loopback';
  /**
   * Namespaces are `<prefix>-<uid>`, host veths `<vethPrefix><uid>` (default blst / bv, which
   * `ballast cluster up|down` sweeps; other users, like the chaos suite, take their own).
   */
  names?: { prefix: string; vethPrefix: string };
}

export interface PodSandbox {
  /** The pod's network namespace; empty in the loopback fallback. */
  netns: string;
  ip: string;
}

/** spawn()'s first two arguments from an argv. */
export function argvOf(argv: string[]): [string, string[]] {
  return [argv[0] ?? 'false', argv.slice(1)];
}

/** `argv` run inside the pod's network namespace (and its hosts file), when it has one. */
export function inSandbox(s: PodSandbox, argv: string[]): string[] {
  return s.netns ? ['ip', 'netns', 'exec', s.netns, ...argv] : argv;
}

export class PodNetwork {
  readonly #o: PodNetworkOptions;
  readonly #ns: (short: string) => string;
  readonly #veth: (short: string) => string;
  readonly #used = new Map<string, number>();
  #next = 2;
  /** Why pods use loopback addresses instead of namespaces; undefined when they do not. */
  fallback: string | undefined;

  constructor(o: PodNetworkOptions) {
    this.#o = o;
    const names = o.names ?? { prefix: 'blst', vethPrefix: 'bv' };
    this.#ns = (short) => `${names.prefix}-${short}`;
    this.#veth = (short) => `${names.vethPrefix}${short}`;
  }

  /** The node's address as pods see it. */
  get gateway(): string {
    return this.fallback === undefined ? `${this.#o.prefix}.1` : '127.0.0.1';
  }

  /** Create the bridge if it is not there (idempotent); or settle on the loopback fallback. */
  setup(): void {
    if (this.#o.mode === 'loopback') {
      this.fallback = 'loopback pod addresses were asked for (--pod-network=loopback): pods share the host\'s network on 127.0.0.x addresses and must bind their POD_IP';
      return;
    }
    try {
      if (!tryIp('link', 'show', this.#o.bridge)) {
        ip('link', 'add', this.#o.bridge, 'type', 'bridge');
        ip('addr', 'add', `${this.#o.prefix}.1/24`, 'dev', this.#o.bridge);
      }
      ip('link', 'set', this.#o.bridge, 'up');
      ip('netns', 'add', this.#ns('probe'));
      ip('netns', 'del', this.#ns('probe'));
    } catch (err) {
      if (this.#o.mode === 'netns') throw err;
      const why = String((err as { stderr?: Buffer }).stderr ?? err).trim();
      this.fallback = `network namespaces could not be created (${why}); pods share the host's network on 127.0.0.x addresses and must bind their POD_IP`;
    }
  }

  /** What the node reports about pod networking. */
  get condition(): { status: 'True' | 'False'; reason: string; message: string } {
    return this.fallback === undefined
      ? { status: 'True', reason: 'NetworkNamespaces', message: `each pod has its own network namespace on bridge ${this.#o.bridge} (${this.#o.prefix}.0/24)` }
      : { status: 'False', reason: 'LoopbackFallback', message: this.fallback };
  }

  /** A namespace for the pod (by uid), its veth on the bridge, its address and routes. */
  create(uid: string, hosts: (podIp: string) => string): PodSandbox {
    const short = uid.replace(/-/g, '').slice(0, 8);
    const netns = this.#ns(short);
    const octet = this.#allocate(uid);
    // 127.0.0.1 is the node's own; pods take .2 to .254, as on the bridge.
    if (this.fallback !== undefined) return { netns: '', ip: `127.0.0.${octet}` };
    const podIp = `${this.#o.prefix}.${octet}`;
    const hostVeth = this.#veth(short);
    this.destroy(uid);
    ip('netns', 'add', netns);
    ip('link', 'add', hostVeth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns);
    ip('link', 'set', hostVeth, 'master', this.#o.bridge, 'up');
    ip('-n', netns, 'addr', 'add', `${podIp}/24`, 'dev', 'eth0');
    // An address can come back on a new interface (another MAC) while the host and other pods
    // still cache the old one: announce it (gratuitous ARP when eth0 comes up) and drop the
    // host's stale entry, or the pod is unreachable until those caches expire (~30 s).
    try { execFileSync('ip', ['netns', 'exec', netns, 'sh', '-c', 'echo 1 > /proc/sys/net/ipv4/conf/eth0/arp_notify'], { stdio: 'ignore' }); } catch { /* best effort */ }
    tryIp('neigh', 'flush', 'to', podIp, 'dev', this.#o.bridge);
    ip('-n', netns, 'link', 'set', 'eth0', 'up');
    ip('-n', netns, 'link', 'set', 'lo', 'up');
    ip('-n', netns, 'route', 'add', 'default', 'via', this.gateway);
    // `ip netns exec` bind-mounts /etc/netns/<name>/hosts over /etc/hosts for the pod's processes.
    mkdirSync(`/etc/netns/${netns}`, { recursive: true });
    writeFileSync(`/etc/netns/${netns}/hosts`, hosts(podIp));
    // Cluster names are all in the hosts file, and pods have no way out of this machine: a name
    // that is not there must fail at once, not wait out the host's nameservers (which the pod
    // cannot reach). A nameserver on the pod's own loopback answers "refused" immediately.
    writeFileSync(`/etc/netns/${netns}/resolv.conf`, 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n');
    return { netns, ip: podIp };
  }

  /** Remove the pod's namespace, veth and address (idempotent). */
  destroy(uid: string): void {
    if (this.fallback !== undefined) return;
    const short = uid.replace(/-/g, '').slice(0, 8);
    tryIp('link', 'del', this.#veth(short));
    tryIp('netns', 'del', this.#ns(short));
    rmSync(`/etc/netns/${this.#ns(short)}`, { recursive: true, force: true });
  }

  release(uid: string): void {
    this.destroy(uid);
    // Forget the address's link-layer entry on the host and in every other pod: a dial to it
    // then fails in seconds (no ARP answer) instead of sending SYNs to a MAC that is gone until
    // TCP gives up two minutes later.
    const octet = this.#used.get(uid);
    if (octet !== undefined && this.fallback === undefined) {
      const addr = `${this.#o.prefix}.${octet}`;
      tryIp('neigh', 'flush', 'to', addr, 'dev', this.#o.bridge);
      for (const [other, o] of this.#used) if (other !== uid && o !== undefined) tryIp('-n', this.#ns(other.replace(/-/g, '').slice(0, 8)), 'neigh', 'flush', 'to', addr);
    }
    this.#used.delete(uid);
  }

  /** Remove the bridge (cluster down). */
  teardown(): void {
    if (this.fallback !== undefined) return;
    tryIp('link', 'del', this.#o.bridge);
  }

  /**
   * The next free address after the last one handed out, wrapping around (as host-local IPAM
   * does), so a released address is reused as late as possible.
   */
  #allocate(uid: string): number {
    const have = this.#used.get(uid);
    if (have !== undefined) return have;
    const taken = new Set(this.#used.values());
    for (let i = 0; i < 253; i++) {
      const o = 2 + ((this.#next - 2 + i) % 253);
      if (!taken.has(o)) {
        this.#used.set(uid, o);
        this.#next = o + 1 > 254 ? 2 : o + 1;
        return o;
      }
    }
    throw new Error(`pod network ${this.#o.prefix}.0/24 is full`);
  }
}
