/**
 * Network namespaces on a bridge for the chaos suite's members: one namespace per member, joined
 * to a host bridge by a veth pair, with an address from the bridge's /24, so each member has its
 * own IP and faults can be made per member. Uses iproute2 (`ip`). (This was the process kubelet's
 * pod network; the chaos suite is its one user now that pods run on a real node.)
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

export interface NamespaceNetworkOptions {
  /** Bridge name and its /24 (the bridge takes .1, members .2 to .254). */
  bridge: string;
  prefix: string;
  /** Namespaces are `<prefix>-<uid>`, host veths `<vethPrefix><uid>`. */
  names: { prefix: string; vethPrefix: string };
}

export interface Sandbox {
  netns: string;
  ip: string;
}

export class NamespaceNetwork {
  readonly #options: NamespaceNetworkOptions;
  readonly #used = new Map<string, number>();
  #next = 2;

  constructor(o: NamespaceNetworkOptions) {
    this.#options = o;
  }

  #ns(uid: string): string {
    return `${this.#options.names.prefix}-${uid.replace(/-/g, '').slice(0, 8)}`;
  }

  #veth(uid: string): string {
    return `${this.#options.names.vethPrefix}${uid.replace(/-/g, '').slice(0, 8)}`;
  }

  get gateway(): string {
    return `${this.#options.prefix}.1`;
  }

  /** Create the bridge if it is not there (idempotent). */
  setup(): void {
    if (!tryIp('link', 'show', this.#options.bridge)) {
      ip('link', 'add', this.#options.bridge, 'type', 'bridge');
      ip('addr', 'add', `${this.#options.prefix}.1/24`, 'dev', this.#options.bridge);
    }
    ip('link', 'set', this.#options.bridge, 'up');
  }

  /** A namespace (by uid), its veth on the bridge, its address, routes and hosts file. */
  create(uid: string, hosts: (ip: string) => string): Sandbox {
    const netns = this.#ns(uid);
    const addr = `${this.#options.prefix}.${this.#allocate(uid)}`;
    const hostVeth = this.#veth(uid);
    this.destroy(uid);
    ip('netns', 'add', netns);
    ip('link', 'add', hostVeth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns);
    ip('link', 'set', hostVeth, 'master', this.#options.bridge, 'up');
    ip('-n', netns, 'addr', 'add', `${addr}/24`, 'dev', 'eth0');
    // An address can come back on a new interface (another MAC) while the host still caches the
    // old one: announce it (gratuitous ARP when eth0 comes up) and drop the host's stale entry.
    try {
      execFileSync('ip', ['netns', 'exec', netns, 'sh', '-c', 'echo 1 > /proc/sys/net/ipv4/conf/eth0/arp_notify'], { stdio: 'ignore' });
    } catch {
      /* best effort */
    }
    tryIp('neigh', 'flush', 'to', addr, 'dev', this.#options.bridge);
    ip('-n', netns, 'link', 'set', 'eth0', 'up');
    ip('-n', netns, 'link', 'set', 'lo', 'up');
    ip('-n', netns, 'route', 'add', 'default', 'via', this.gateway);
    // `ip netns exec` bind-mounts /etc/netns/<name>/hosts over /etc/hosts for its processes; a
    // name not there fails at once (a nameserver on the namespace's own loopback refuses).
    mkdirSync(`/etc/netns/${netns}`, { recursive: true });
    writeFileSync(`/etc/netns/${netns}/hosts`, hosts(addr));
    writeFileSync(`/etc/netns/${netns}/resolv.conf`, 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n');
    return { netns, ip: addr };
  }

  /** Remove the namespace and its veth (idempotent). */
  destroy(uid: string): void {
    tryIp('link', 'del', this.#veth(uid));
    tryIp('netns', 'del', this.#ns(uid));
    rmSync(`/etc/netns/${this.#ns(uid)}`, { recursive: true, force: true });
  }

  /** Remove the namespace and forget its address everywhere (a dial to it then fails fast). */
  release(uid: string): void {
    this.destroy(uid);
    const octet = this.#used.get(uid);
    if (octet !== undefined) {
      const addr = `${this.#options.prefix}.${octet}`;
      tryIp('neigh', 'flush', 'to', addr, 'dev', this.#options.bridge);
      for (const other of this.#used.keys()) if (other !== uid) tryIp('-n', this.#ns(other), 'neigh', 'flush', 'to', addr);
    }
    this.#used.delete(uid);
  }

  teardown(): void {
    tryIp('link', 'del', this.#options.bridge);
  }

  /** The next free address after the last one handed out, wrapping around. */
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
    throw new Error(`network ${this.#options.prefix}.0/24 is full`);
  }
}
