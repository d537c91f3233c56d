/**
 * The chaos suite's clients besides the register workload (test/support/linearizability.ts):
 * watchers on every member, the set workload, the lease workload, and the small gRPC and
 * randomness helpers they and the nemesis share.
 */
import * as grpc from '@grpc/grpc-js';
import { SeededRandom } from '../../lib/random.ts';
import { loadProtos } from '../../store/api/server.ts';
import { KvClient, definitelyNotApplied } from '../support/linearizability.ts';

/* eslint-disable @typescript-eslint/no-explicit-any -- wire objects */
export type Wire = Record<string, any>;

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const mono = () => performance.now();

export function service(name: string): grpc.ServiceClientConstructor {
  return (loadProtos()['etcdserverpb'] as Record<string, grpc.ServiceClientConstructor>)[name] as grpc.ServiceClientConstructor;
}

export function unary(client: grpc.Client, method: string, req: Wire, timeoutMs = 3000): Promise<Wire> {
  const fn = (
    client as unknown as Record<
      string,
      (r: Wire, md: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: Wire) => void) => void
    >
  )[method];
  return new Promise((resolve, reject) =>
    fn!.call(client, req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (e, r) => (e ? reject(e) : resolve(r))),
  );
}

/** lib/random's seeded generator, with the picks the nemesis needs. */
export class Rng {
  readonly #r: SeededRandom;
  constructor(seed: number) {
    this.#r = new SeededRandom(seed);
  }
  int(n: number): number {
    return this.#r.int(Math.max(1, n));
  }
  pick<T>(xs: readonly T[]): T | undefined {
    return xs.length === 0 ? undefined : xs[this.int(xs.length)];
  }
  shuffle<T>(xs: T[]): T[] {
    for (let i = xs.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [xs[i], xs[j]] = [xs[j] as T, xs[i] as T];
    }
    return xs;
  }
}

// ---- watchers --------------------------------------------------------------------------------

export interface WatchEvent {
  rev: number;
  key: string;
  value: string;
  type: number;
}

/** A watcher of the whole key space, resuming after its last revision when its member is gone. */
export function watcher(endpointOf: () => string): { events: WatchEvent[]; lastRev(): number; close(): void } {
  const events: WatchEvent[] = [];
  let closed = false;
  let stream: grpc.ClientDuplexStream<Wire, Wire> | undefined;
  let client: grpc.Client | undefined;
  const lastRev = () => events.at(-1)?.rev ?? 0;
  const open = () => {
    if (closed) return;
    client?.close();
    const W = service('Watch');
    client = new W(endpointOf(), grpc.credentials.createInsecure());
    stream = (client as unknown as { Watch(): grpc.ClientDuplexStream<Wire, Wire> }).Watch();
    let done = false;
    const retry = () => {
      if (done) return;
      done = true;
      setTimeout(open, 300);
    };
    stream.on('data', (r: Wire) => {
      if (r['canceled']) return retry();
      for (const e of (r['events'] ?? []) as Wire[]) {
        events.push({
          rev: Number(e['kv'].mod_revision),
          key: Buffer.from(e['kv'].key).toString(),
          value: Buffer.from(e['kv'].value ?? '').toString(),
          type: Number(e['type'] === 'DELETE' || e['type'] === 1 ? 1 : 0),
        });
      }
    });
    stream.on('error', retry);
    stream.on('end', retry);
    // Resume after the last revision seen: a reconnect must cause neither a gap nor a repeat.
    stream.write({ create_request: { key: Buffer.from('\0'), range_end: Buffer.from('\0'), start_revision: String(lastRev() + 1) } });
  };
  open();
  return {
    events,
    lastRev,
    close: () => {
      closed = true;
      stream?.cancel();
      client?.close();
    },
  };
}

// ---- set workload ----------------------------------------------------------------------------

export interface SetResult {
  acked: Set<string>;
  unknown: Set<string>;
  done: Array<{ call: number; ret: number }>;
}

export async function runSetWorkload(endpoints: () => string[], clients: number, until: number, rng: Rng): Promise<SetResult> {
  const acked = new Set<string>();
  const unknown = new Set<string>();
  const done: SetResult['done'] = [];
  const kvs = new Map<string, KvClient>();
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      for (let n = 0; mono() < until; n++) {
        const ep = rng.pick(endpoints()) as string;
        let kv = kvs.get(ep);
        if (!kv) kvs.set(ep, (kv = new KvClient(ep)));
        const el = `s${c}-${n}`;
        const call = mono();
        try {
          await kv.call('Put', { key: Buffer.from(`set/${el}`), value: Buffer.from(el) });
          acked.add(el);
          done.push({ call, ret: mono() });
        } catch (err) {
          if (!definitelyNotApplied(err as grpc.ServiceError)) unknown.add(el);
          await sleep(50);
        }
        await sleep(20);
      }
    }),
  );
  for (const k of kvs.values()) k.close();
  return { acked, unknown, done };
}

// ---- lease workload --------------------------------------------------------------------------

export interface LeaseRecord {
  id: string;
  key: string;
  ttl: number;
  fate: 'keep' | 'abandon' | 'revoke';
  grantSentAt: number;
  putAcked: boolean;
  /** Still being kept alive (a 'keep' lease not yet retired). */
  kept: boolean;
  /** Send time of the last keep-alive that was answered with TTL > 0 (or of the grant). */
  lastRenewSentAt: number;
  /** The last keep-alive answered TTL > 0. */
  alive: boolean;
  /** A keep-alive found the lease gone although every renewal came within its TTL. */
  expiredEarly?: string;
}

export class LeaseWorkload {
  readonly leases: LeaseRecord[] = [];
  readonly #endpoints: () => string[];
  readonly #rng: Rng;
  readonly #ttl = 3;
  #stopped = false;

  constructor(endpoints: () => string[], rng: Rng) {
    this.#endpoints = endpoints;
    this.#rng = rng;
  }

  #client(name: string): grpc.Client {
    const C = service(name);
    return new C(this.#rng.pick(this.#endpoints()) as string, grpc.credentials.createInsecure());
  }

  /** Grant a lease every 2 s until `until`, with a key on it and a fate; keep up to 4 alive at once. */
  readonly #keepers: Array<Promise<void>> = [];

  async run(until: number): Promise<void> {
    const keepers = this.#keepers;
    for (let n = 0; mono() < until; n++) {
      const fate = (['keep', 'abandon', 'revoke'] as const)[n % 3] as LeaseRecord['fate'];
      const lease = this.#client('Lease');
      const kv = this.#client('KV');
      const sent = mono();
      try {
        const g = await unary(lease, 'LeaseGrant', { TTL: String(this.#ttl), ID: '0' });
        const id = String(g['ID']);
        const rec: LeaseRecord = {
          id,
          key: `lease/${id}`,
          ttl: this.#ttl,
          fate,
          grantSentAt: sent,
          putAcked: false,
          kept: fate === 'keep',
          lastRenewSentAt: sent,
          alive: true,
        };
        this.leases.push(rec);
        try {
          await unary(kv, 'Put', { key: Buffer.from(rec.key), value: Buffer.from(fate), lease: id });
          rec.putAcked = true;
        } catch {
          /* unknown: the key may or may not be there; no claim about it while the lease lives */
        }
        if (fate === 'keep') {
          const kept = this.leases.filter((l) => l.kept);
          if (kept.length > 4) (kept[0] as LeaseRecord).kept = false; // retire the oldest: it must expire
          keepers.push(this.#keep(rec));
        } else if (fate === 'revoke') {
          await sleep(500);
          await unary(lease, 'LeaseRevoke', { ID: id }).then(
            () => {
              rec.alive = false;
            },
            () => undefined,
          );
        }
      } catch {
        /* grant failed or unknown: an unknown grant has no key of ours on it */
      }
      lease.close();
      kv.close();
      await sleep(2000);
    }
    // The kept leases stay kept (through the heal and the final look) until stop().
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all(this.#keepers.map((k) => k.catch(() => undefined)));
  }

  /** Keep a lease alive with one keep-alive per second, each awaited, while it is kept. */
  async #keep(rec: LeaseRecord): Promise<void> {
    let client: grpc.Client | undefined;
    let stream: grpc.ClientDuplexStream<Wire, Wire> | undefined;
    let pending: ((r: Wire | undefined) => void) | undefined;
    const reopen = () => {
      // A late answer on the old stream must not count for a keep-alive sent on the new one.
      stream?.removeAllListeners('data');
      stream?.removeAllListeners('error');
      stream?.on('error', () => undefined);
      stream?.cancel();
      client?.close();
      client = this.#client('Lease');
      stream = (client as unknown as { LeaseKeepAlive(): grpc.ClientDuplexStream<Wire, Wire> }).LeaseKeepAlive();
      stream.on('data', (r: Wire) => pending?.(r));
      stream.on('error', () => pending?.(undefined));
    };
    reopen();
    while (rec.kept && !this.#stopped) {
      const sent = mono();
      const res = await new Promise<Wire | undefined>((resolve) => {
        const t = setTimeout(() => resolve(undefined), 1500);
        pending = (r) => {
          clearTimeout(t);
          resolve(r);
        };
        stream?.write({ ID: rec.id });
      });
      pending = undefined;
      if (!res) {
        reopen();
      } else if (Number(res['TTL']) > 0) {
        rec.lastRenewSentAt = sent;
        rec.alive = true;
      } else {
        // The lease is gone. Fine if a renewal came too late; a violation if every one was in time.
        rec.alive = false;
        rec.kept = false;
        if (mono() - rec.lastRenewSentAt < rec.ttl * 1000 - 250)
          rec.expiredEarly = `lease ${rec.id} answered TTL 0 ${Math.round(mono() - rec.lastRenewSentAt)} ms after a renewal was sent (TTL ${rec.ttl} s)`;
        break;
      }
      if (mono() - rec.lastRenewSentAt >= rec.ttl * 1000) rec.alive = false; // may have lapsed: no claim either way
      await sleep(Math.max(0, 1000 - (mono() - sent)));
    }
    stream?.cancel();
    client?.close();
  }
}
