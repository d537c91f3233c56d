/**
 * A Jepsen-style run against `ballast store` (or, as the anchor, Debian's etcd): clients doing
 * register operations (get, put, compare-and-set), a set workload (unique adds, one final read),
 * a lease workload, and watchers on every member, while a nemesis injects faults on a random
 * schedule, sometimes two at once. After the faults heal, the checkers decide:
 *   linearizability  Porcupine over the register history, per key (test/lincheck)
 *   set              every acknowledged add is in the final read; nothing appears that no one added
 *   watch            every watcher saw the same revisions in order, without gaps or duplicates,
 *                    each acknowledged write at its revision with its key and value
 *   lease            keys of an expired or revoked lease are gone, keys of a live lease are not,
 *                    and no lease kept alive in time expired
 *   convergence      HashKV equal on every member at one revision
 * The report (operations by outcome, faults with timestamps, verdicts, how long writes were
 * unavailable per fault kind) goes to the run's directory as report.json and report.md, with
 * Porcupine's HTML and the members' logs on failure.
 */
import * as grpc from '@grpc/grpc-js';
import { spawnSync } from 'node:child_process';
import { KvClient, checkLinearizable, runRegisterWorkload } from '../support/linearizability.ts';
import type { StoreCluster } from '../support/store-cluster.ts';
import { type TimedOp, availability, checkLeases, checkSet, checkWatchers, operationCounts, timeline } from './checks.ts';
import type { ChaosNet } from './net.ts';
import { type FaultKind, Nemesis, networkFaults } from './nemesis.ts';
import { type ChaosReport, writeReport } from './report.ts';
import { LeaseWorkload, Rng, type Wire, mono, runSetWorkload, service, sleep, unary, watcher } from './workloads.ts';

export type { ChaosReport, Fault } from './report.ts';
export { summarize } from './report.ts';

export { type FaultKind, allFaults, diskFaults, membershipFaults, networkFaults, processFaults } from './nemesis.ts';
export interface ChaosOptions {
  cluster: StoreCluster;
  net: ChaosNet;
  durationMs: number;
  seed: number;
  faults: FaultKind[];
  /** Where the report goes (the history stays in the cluster's scratch directory: it is large). */
  dir: string;
  /** Begin with one of every kind (in random order), then choose at random. */
  coverAll?: boolean;
  /** The disk-space reserve the members run with (disk-full fills past it). */
  diskReserveBytes?: number;
}

// ---- the run ---------------------------------------------------------------------------------

export async function runChaos(o: ChaosOptions): Promise<ChaosReport> {
  const c = o.cluster;
  const net = o.net;
  // The nemesis draws from its own generator, so a seed repeats the sequence of fault kinds and
  // (cluster state permitting) their targets; clients draw from another.
  const rng = new Rng(o.seed);
  const crng = new Rng(o.seed + 7919);
  const t0 = mono();
  const nemesis = new Nemesis(c, net, rng, t0, o.diskReserveBytes ?? 16 * 1024 * 1024);
  const { faults, removed } = nemesis;
  const running = () => nemesis.running();
  const endpoints = () => nemesis.endpoints();
  const watchers = c.members.map((home) =>
    watcher(() => {
      const here = running().find((m) => m.name === home.name);
      return c.addr(here ?? crng.pick(running()) ?? home);
    }),
  );
  const stopAt = t0 + o.durationMs;
  const inject = (kind: FaultKind) => nemesis.inject(kind);

  // The schedule: one of each kind first (membership in the order it can happen), then random;
  // now and then a second fault (network or pause) joins the first.
  const schedule: FaultKind[] = [];
  if (o.coverAll) {
    const walk = ['add-learner', 'promote-learner', 'remove-member'].filter((k) => o.faults.includes(k as FaultKind)) as FaultKind[];
    const rest = rng.shuffle(o.faults.filter((k) => !walk.includes(k)));
    const pos = rng.int(rest.length + 1);
    schedule.push(...rest.slice(0, pos), ...walk, ...rest.slice(pos));
  }
  const combinable = o.faults.filter((k) => (networkFaults as readonly string[]).includes(k) || k === 'pause-follower');
  const faulting = (async () => {
    await sleep(1500);
    while (mono() < stopAt - 4000) {
      const kind = schedule.shift() ?? (rng.pick(o.faults) as FaultKind);
      const second =
        schedule.length === 0 && rng.int(4) === 0 && (networkFaults as readonly string[]).includes(kind)
          ? rng.pick(combinable.filter((k) => k !== kind))
          : undefined;
      await Promise.all([inject(kind), second ? sleep(300).then(() => inject(second)) : undefined]);
      await sleep(700 + rng.int(1300));
    }
  })();

  const leases = new LeaseWorkload(endpoints, crng);
  const [history, sets] = await Promise.all([
    runRegisterWorkload({ endpoints, clients: 5, keys: ['x', 'y', 'z'], durationMs: o.durationMs, seed: o.seed, keyLifetimeMs: 20_000 }),
    runSetWorkload(endpoints, 2, stopAt, crng),
    leases.run(stopAt - 3000),
    faulting,
  ]);

  try {
    return await check();
  } finally {
    for (const w of watchers) w.close();
    await leases.stop();
  }

  async function check(): Promise<ChaosReport> {
    await nemesis.healAll();
    // After the faults heal the cluster must recover: if it does not, that is the finding.
    const healthy = await c.waitHealthy(60_000).then(
      () => '',
      (err: Error) => err.message.split('\n')[0] as string,
    );
    const healedAt = mono();

    /** A linearizable read of every key under `prefix` (which ends in '/'), retried; undefined if it never succeeds. */
    const readPrefix = async (prefix: string): Promise<Wire[] | undefined> => {
      const end = `${prefix.slice(0, -1)}0`; // '/' + 1
      for (let i = 0; i < 20; i++) {
        const kv = new KvClient(crng.pick(endpoints()) as string, 5000);
        try {
          return (await kv.call('Range', { key: Buffer.from(prefix), range_end: Buffer.from(end) }))['kvs'] as Wire[];
        } catch {
          await sleep(500);
        } finally {
          kv.close();
        }
      }
      return undefined;
    };

    // Set: one final linearizable read.
    const setKvs = await readPrefix('set/');
    const set = checkSet(sets, setKvs ? new Set(setKvs.map((x) => Buffer.from(x['value']).toString())) : undefined);

    // Leases: wait until every lease no longer kept has had time to expire (a full TTL from the
    // heal, since a new leader gives every lease a fresh TTL, plus an election), then look.
    const electionMs = 1000;
    await sleep(Math.max(0, 3000 + 2 * electionMs + 1500 - (mono() - healedAt)));
    const keptNow = leases.leases.filter((l) => l.kept && l.alive);
    const leaseKvs = await readPrefix('lease/');
    const present = leaseKvs ? new Set(leaseKvs.map((x) => Buffer.from(x['key']).toString())) : undefined;
    await leases.stop();
    const leaseProblems = checkLeases(leases.leases, keptNow, present);

    // Watchers: catch up to the current revision, then compare.
    const headRev = async (): Promise<number> => {
      const kv = new KvClient(crng.pick(endpoints()) as string, 5000);
      try {
        return Number(((await kv.call('Range', { key: Buffer.from('set/'), limit: 1 }))['header'] as Wire)['revision']);
      } finally {
        kv.close();
      }
    };
    let head = 0;
    for (let i = 0; i < 10 && head === 0; i++)
      head = await headRev().catch(async () => {
        await sleep(500);
        return 0;
      });
    const catchUpBy = mono() + 20_000;
    while (mono() < catchUpBy && watchers.some((w) => w.lastRev() < head)) await sleep(200);
    for (const w of watchers) w.close();
    const problems = checkWatchers(
      watchers.map((w) => w.events),
      history,
      head,
    );

    // Convergence: HashKV at one revision on every member.
    const hashes: Record<string, number> = {};
    let hashRev = 0;
    for (let attempt = 0; attempt < 10; attempt++) {
      hashRev = await headRev().catch(() => 0);
      for (const m of running()) {
        const M = service('Maintenance');
        const cl = new M(c.addr(m), grpc.credentials.createInsecure());
        hashes[m.name] = await unary(cl, 'HashKV', { revision: String(hashRev) }, 5000).then(
          (r) => Number(r['hash']),
          () => -1,
        );
        cl.close();
      }
      if (new Set(Object.values(hashes)).size === 1 && !Object.values(hashes).includes(-1)) break;
      await sleep(1000);
    }
    const hashOk = new Set(Object.values(hashes)).size === 1 && !Object.values(hashes).includes(-1);

    const lin = checkLinearizable(history, c.dir, 'chaos');
    const { ops, unknownCauses } = operationCounts(history, sets, leases.leases.length);
    const writesDone = [
      ...history
        .filter((h) => !h.unknown && (h.op === 'put' || (h.op === 'cas' && h.ok)))
        .map((h) => ({ call: h.call / 1000 - t0, ret: h.return / 1000 - t0 })),
      ...sets.done.map((d) => ({ call: d.call - t0, ret: d.ret - t0 })),
    ];
    const { byKind: availabilityByKind, counts: faultsByKind } = availability(faults, writesDone);
    const timed: TimedOp[] = [
      ...history.map((h) => ({ op: h.op, call: h.call / 1000 - t0, ret: h.return / 1000 - t0, unknown: h.unknown })),
      ...sets.done.map((d) => ({ op: 'set add', call: d.call - t0, ret: d.ret - t0, unknown: false })),
    ];

    const report: ChaosReport = {
      target: c.binary,
      seed: o.seed,
      durationMs: o.durationMs,
      members: c.members.map((m) => `${m.name}${removed.has(m.name) ? ' (removed)' : ''}`),
      operations: ops,
      unknownCauses,
      faults,
      faultsByKind,
      availability: availabilityByKind,
      linearizable: lin.linearizable,
      lincheck: lin.output.trim(),
      set,
      watch: { ok: problems.length === 0, watchers: watchers.length, revisions: head, problems },
      lease: {
        ok: leaseProblems.length === 0,
        granted: leases.leases.length,
        keptLive: keptNow.length,
        gone: leases.leases.filter((l) => !present?.has(l.key)).length,
        problems: leaseProblems,
      },
      hashKV: { ok: hashOk, revision: hashRev, hashes },
      unhealthyAfterHeal: healthy,
      ok: lin.linearizable && set.ok && problems.length === 0 && leaseProblems.length === 0 && hashOk && healthy === '',
      timeline: timeline(timed, writesDone, o.durationMs),
    };
    writeReport(report, o.dir, c.dir, lin.html);
    return report;
  }
}

/** Make sure iproute2 and mount work here (root, namespaces); the reason if not. */
export function chaosPrerequisites(): string | undefined {
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  if (r.status !== 0) return `ip netns does not work here: ${r.stderr}`;
  if (process.getuid?.() !== 0) return 'the chaos suite needs root (network namespaces, tmpfs mounts)';
  return undefined;
}
