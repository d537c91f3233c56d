/**
 * Pod networking for the process kubelet: one Linux network namespace per pod, joined to a
 * host bridge by a veth pair, with an address from the node's pod CIDR, so a pod's containers
 * share `localhost` and every pod has its own IP, as in a real cluster. Uses iproute2 (`ip`).
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
}

export interface PodSandbox {
  netns: string;
  ip: string;
}

export class PodNetwork {
  readonly #o: PodNetworkOptions;
  readonly #used = new Map<string, number>();

  constructor(o: PodNetworkOptions) {
    this.#o = o;
  }

  get gateway(): string {
    return `${this.#o.prefix}.1`;
  }

  /** Create the bridge if it is not there (idempotent). */
  setup(): void {
    if (!tryIp('link', 'show', this.#o.bridge)) {
      ip('link', 'add', this.#o.bridge, 'type', 'bridge');
      ip('addr', 'add', `${this.gateway}/24`, 'dev', this.#o.bridge);
    }
    ip('link', 'set', this.#o.bridge, 'up');
  }

  /** A namespace for the pod (by uid), its veth on the bridge, its address and routes. */
  create(uid: string, hosts: (podIp: string) => string): PodSandbox {
    const short = uid.replace(/-/g, '').slice(0, 8);
    const netns = `blst-${short}`;
    const octet = this.#allocate(uid);
    const podIp = `${this.#o.prefix}.${octet}`;
    const hostVeth = `bv${short}`;
    this.destroy(uid);
    ip('netns', 'add', netns);
    ip('link', 'add', hostVeth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns);
    ip('link', 'set', hostVeth, 'master', this.#o.bridge, 'up');
    ip('-n', netns, 'addr', 'add', `${podIp}/24`, 'dev', 'eth0');
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
    const short = uid.replace(/-/g, '').slice(0, 8);
    tryIp('link', 'del', `bv${short}`);
    tryIp('netns', 'del', `blst-${short}`);
    rmSync(`/etc/netns/blst-${short}`, { recursive: true, force: true });
  }

  release(uid: string): void {
    this.destroy(uid);
    this.#used.delete(uid);
  }

  /** Remove the bridge (cluster down). */
  teardown(): void {
    tryIp('link', 'del', this.#o.bridge);
  }

  #allocate(uid: string): number {
    const have = this.#used.get(uid);
    if (have !== undefined) return have;
    const taken = new Set(this.#used.values());
    for (let o = 2; o < 255; o++) {
      if (!taken.has(o)) {
        this.#used.set(uid, o);
        return o;
      }
    }
    throw new Error(`pod network ${this.#o.prefix}.0/24 is full`);
  }
}
