/**
 * Real network faults for the chaos suite: every member runs in its own Linux network namespace
 * on a bridge (./netns.ts), and its data
 * directory sits on its own small tmpfs, so "the disk is full" is a real ENOSPC.
 *
 * This kernel has neither netem nor tc's classifiers, so faults are made from what it has:
 *   partitions and one-way drops  policy-routing rules in the receiving member's namespace that
 *                                 blackhole packets from the other side (silently: the sender
 *                                 sees timeouts, as with a pulled cable, not refusals)
 *   slow network                  an htb qdisc on the member's interface at a low rate: every
 *                                 packet it sends waits behind the ones before it
 * The test process (the clients) stays reachable from every member, as Jepsen's control node is.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { NamespaceNetwork, type Sandbox } from './netns.ts';
import type { MemberSpec } from '../support/store-cluster.ts';

const run = (argv: string[]): void => {
  execFileSync(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
};
const tryRun = (argv: string[]): boolean => {
  try {
    run(argv);
    return true;
  } catch {
    return false;
  }
};

/** Rules the faults add sit at this preference; the local table moves behind them. */
const faultPref = '100';

export class ChaosNet {
  readonly #net: NamespaceNetwork;
  readonly #sandboxes = new Map<string, Sandbox>();
  readonly #mounts: string[] = [];
  readonly diskBytes: number;
  readonly #uids: string[] = [];

  constructor(o: { bridge?: string; prefix?: string; diskBytes?: number } = {}) {
    this.#net = new NamespaceNetwork({
      bridge: o.bridge ?? 'blchaos0',
      prefix: o.prefix ?? '10.251.77',
      names: { prefix: 'blch', vethPrefix: 'bc' },
    });
    this.#net.setup();
    this.diskBytes = o.diskBytes ?? 96 * 1024 * 1024;
  }

  /** A placement for StoreCluster: a namespace and a tmpfs data volume per member. */
  place = async (name: string, dir: string): Promise<Omit<MemberSpec, 'name'>> => {
    // The network names a namespace by the first 8 characters of the uid.
    const uid = `${randomBytes(4).toString('hex')}-${name}`;
    const sb = this.#net.create(uid, (ip) => `127.0.0.1 localhost\n${ip} ${name}\n`);
    this.#sandboxes.set(name, sb);
    this.#uids.push(uid);
    // Incoming packets meet the fault rules before the local table delivers them.
    run(['ip', '-n', sb.netns, 'rule', 'add', 'pref', '1000', 'lookup', 'local']);
    run(['ip', '-n', sb.netns, 'rule', 'del', 'pref', '0']);
    const volume = join(dir, `${name}-disk`);
    mkdirSync(volume, { recursive: true });
    run(['mount', '-t', 'tmpfs', '-o', `size=${this.diskBytes}`, 'tmpfs', volume]);
    this.#mounts.push(volume);
    return {
      host: sb.ip,
      clientPort: 2379,
      peerPort: 2380,
      metricsPort: 9379,
      dataDir: join(volume, 'data'),
      wrap: (argv) => ['ip', 'netns', 'exec', sb.netns, ...argv],
      // Failpoints (ballast store only; etcd ignores the variable) next to the metrics port.
      env: { BALLAST_FAILPOINTS_HTTP: `${sb.ip}:9380` },
    };
  };

  ipOf(name: string): string {
    return this.#sb(name).ip;
  }

  #sb(name: string): Sandbox {
    const sb = this.#sandboxes.get(name);
    if (!sb) throw new Error(`no namespace for member ${name}`);
    return sb;
  }

  /** Rules in force, counted: two faults may cut the same link, and each heals only its own. */
  readonly #rules = new Map<string, number>();

  /** Drop, silently, every packet `to` receives from `from` (one direction). Returns the healer. */
  drop(from: string, to: string): () => void {
    const ns = this.#sb(to).netns;
    const spec = ['pref', faultPref, 'from', `${this.ipOf(from)}/32`, 'iif', 'eth0', 'blackhole'];
    const key = `${ns} ${spec.join(' ')}`;
    const n = this.#rules.get(key) ?? 0;
    if (n === 0) run(['ip', '-n', ns, 'rule', 'add', ...spec]);
    this.#rules.set(key, n + 1);
    let healed = false;
    return () => {
      if (healed) return;
      healed = true;
      const left = (this.#rules.get(key) ?? 1) - 1;
      if (left > 0) return void this.#rules.set(key, left);
      this.#rules.delete(key);
      tryRun(['ip', '-n', ns, 'rule', 'del', ...spec]);
    };
  }

  /** Cut every link between members of different groups (both ways). Returns the healer. */
  partition(groups: string[][]): () => void {
    const healers: Array<() => void> = [];
    for (const [i, g] of groups.entries()) {
      for (const [j, h] of groups.entries()) {
        if (i === j) continue;
        for (const a of g) for (const b of h) healers.push(this.drop(a, b));
      }
    }
    return () => healers.forEach((h) => h());
  }

  /** Throttle everything `name` sends to `kbit` kbit/s. Returns the healer. */
  slow(name: string, kbit: number): () => void {
    const ns = this.#sb(name).netns;
    run(['ip', 'netns', 'exec', ns, 'tc', 'qdisc', 'replace', 'dev', 'eth0', 'root', 'handle', '1:', 'htb', 'default', '1']);
    run([
      'ip',
      'netns',
      'exec',
      ns,
      'tc',
      'class',
      'replace',
      'dev',
      'eth0',
      'parent',
      '1:',
      'classid',
      '1:1',
      'htb',
      'rate',
      `${kbit}kbit`,
      'ceil',
      `${kbit}kbit`,
    ]);
    return () => void tryRun(['ip', 'netns', 'exec', ns, 'tc', 'qdisc', 'del', 'dev', 'eth0', 'root']);
  }

  /** Remove every network fault from every member. */
  heal(): void {
    this.#rules.clear();
    for (const sb of this.#sandboxes.values()) {
      while (tryRun(['ip', '-n', sb.netns, 'rule', 'del', 'pref', faultPref]));
      tryRun(['ip', 'netns', 'exec', sb.netns, 'tc', 'qdisc', 'del', 'dev', 'eth0', 'root']);
    }
  }

  /** Namespaces, volumes and the bridge go (data directories with them). */
  teardown(): void {
    for (const v of this.#mounts) tryRun(['umount', '-l', v]);
    for (const uid of this.#uids) this.#net.release(uid);
    this.#net.teardown();
  }
}
