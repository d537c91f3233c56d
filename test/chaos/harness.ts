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
import { readFileSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { KvClient, checkLinearizable, runRegisterWorkload } from '../support/linearizability.ts';
import { fillVolume } from '../support/disk.ts';
import type { MemberSpec, StoreCluster } from '../support/store-cluster.ts';
import type { ChaosNet } from './net.ts';
import { type ChaosReport, type Fault, writeReport } from './report.ts';
import { LeaseWorkload, Rng, type WatchEvent, type Wire, mono, runSetWorkload, service, sleep, unary, watcher } from './workloads.ts';

export type { ChaosReport, Fault } from './report.ts';
export { summarize } from './report.ts';

export const processFaults = ['kill-random', 'kill-leader', 'kill-majority', 'pause-leader', 'pause-follower'] as const;
export const networkFaults = ['partition-leader', 'partition-majority', 'partition-bridge', 'drop-one-way', 'slow-network'] as const;
export const membershipFaults = ['add-learner', 'promote-learner', 'remove-member', 'replace-member', 'transfer-leader'] as const;
export const diskFaults = ['disk-lose-unsynced', 'disk-slow-fsync', 'disk-full'] as const;
export type FaultKind = typeof processFaults[number] | typeof networkFaults[number] | typeof membershipFaults[number] | typeof diskFaults[number];
export const allFaults: FaultKind[] = [...processFaults, ...networkFaults, ...membershipFaults, ...diskFaults];
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
  const at = () => Math.round(mono() - t0);
  const removed = new Set<string>();
  const live = (): MemberSpec[] => c.members.filter((m) => !removed.has(m.name));
  const running = (): MemberSpec[] => live().filter((m) => c.procs.has(m.name));
  const endpoints = (): string[] => {
    const r = running().map((m) => c.addr(m));
    return r.length > 0 ? r : live().map((m) => c.addr(m));
  };
  /** The member table (the simple format: JSON would round 64-bit ids through float64). */
  // A learner that has not published its name yet is listed without one: its name is ours,
  // found by its peer URL.
  const memberIds = async (): Promise<Array<{ id: string; name: string; learner: boolean }>> => {
    const r = await c.etcdctlAsync(['member', 'list'], { endpoints: endpoints().join(',') });
    if (r.status !== 0) return [];
    return r.stdout.split('\n').filter((l) => l.includes(',')).map((l) => {
      const f = l.split(',').map((x) => x.trim());
      const byUrl = c.members.find((m) => (f[3] ?? '').includes(`//${m.host}:${m.peerPort}`));
      return { id: f[0] as string, name: byUrl?.name ?? f[2] ?? '', learner: f[5] === 'true' };
    });
  };
  const watchers = c.members.map((home) => watcher(() => {
    const here = running().find((m) => m.name === home.name);
    return c.addr(here ?? (crng.pick(running()) ?? home));
  }));
  const faults: Fault[] = [];
  const stopAt = t0 + o.durationMs;
  const paused = new Set<number>();
  const fillers: string[] = [];
  const reserve = o.diskReserveBytes ?? 16 * 1024 * 1024;
  let nextName = c.members.length + 1;

  const failpoint = async (m: MemberSpec, term: string | undefined): Promise<void> => {
    const url = `http://${m.host}:${m.metricsPort + 1}/walBeforeSync`;
    const res = await fetch(url, term === undefined ? { method: 'DELETE' } : { method: 'PUT', body: term });
    if (!res.ok) throw new Error(`failpoint ${url}: ${res.status} ${await res.text()}`);
  };

  const spawnJoin = async (name: string): Promise<{ m: MemberSpec; id: string } | undefined> => {
    const m = await c.addSpec(name);
    const url = `http://${m.host}:${m.peerPort}`;
    // Retried: right after a removal the change may still be applying, or the leader may be
    // moving; a timed-out add may have happened anyway, so look for the URL in the table too.
    let id: string | undefined;
    for (let i = 0; i < 20 && !id; i++) {
      const added = await c.etcdctlAsync(['member', 'add', name, '--learner', `--peer-urls=${url}`], { endpoints: endpoints().join(',') });
      id = /Member ([0-9a-f]+) added/.exec(added.stdout)?.[1];
      if (!id) {
        const table = await c.etcdctlAsync(['member', 'list'], { endpoints: endpoints().join(',') });
        id = table.stdout.split('\n').find((l) => l.includes(url))?.split(',')[0]?.trim();
      }
      if (!id) await sleep(500);
    }
    if (!id) {
      removed.add(name);
      return undefined;
    }
    c.spawn(m, 'existing', [...live()]);
    return { m, id };
  };

  /** Remove a member, retrying while the cluster has no leader or another change is applying. */
  const removeMember = async (id: string): Promise<{ status: number | null; stderr: string }> => {
    let r = { status: -1 as number | null, stderr: '' };
    for (let i = 0; i < 20; i++) {
      r = await c.etcdctlAsync(['member', 'remove', id], { endpoints: endpoints().join(',') });
      if (r.status === 0) return r;
      // A timed-out removal may have happened anyway.
      const table = await memberIds();
      if (table.length > 0 && !table.some((x) => x.id === id)) return { status: 0, stderr: '' };
      if (/member not found|unhealthy cluster/.test(r.stderr)) return r;
      await sleep(500);
    }
    return r;
  };

  const promote = async (id: string): Promise<boolean> => {
    for (let i = 0; i < 60; i++) {
      if ((await c.etcdctlAsync(['member', 'promote', id], { endpoints: endpoints().join(',') })).status === 0) return true;
      await sleep(250);
    }
    return false;
  };

  /** Inject one fault, hold it, heal it. */
  const inject = async (kind: FaultKind): Promise<void> => {
    const lead = await c.leaderAsync();
    const followers = running().filter((m) => m.name !== lead).map((m) => m.name);
    const members = running().map((m) => m.name);
    // The fault begins when it is applied (after the look at the cluster above); cases that
    // look again first move the mark with begin().
    const f: Fault = { kind, target: '', at: at(), healedAt: 0 };
    const begin = () => {
      f.at = at();
    };
    faults.push(f);
    const hold = () => sleep(1500 + rng.int(2500));
    try {
      switch (kind) {
        case 'kill-random':
        case 'kill-leader':
        case 'kill-majority': {
          const victims = kind === 'kill-majority'
            ? rng.shuffle([...members]).slice(0, Math.floor(live().length / 2) + 1)
            : [kind === 'kill-leader' && lead ? lead : (rng.pick(members) as string)];
          f.target = victims.join(',');
          for (const v of victims) await c.kill9(v);
          await hold();
          for (const v of victims) c.restart(v);
          break;
        }
        case 'pause-leader':
        case 'pause-follower': {
          const v = kind === 'pause-leader' ? lead : rng.pick(followers);
          const pid = v ? c.procs.get(v)?.pid : undefined;
          if (!v || !pid) {
            f.note = 'skipped: no such member running';
            break;
          }
          f.target = v;
          process.kill(pid, 'SIGSTOP');
          paused.add(pid);
          await hold();
          process.kill(pid, 'SIGCONT');
          paused.delete(pid);
          break;
        }
        case 'partition-leader': {
          const l = lead ?? (rng.pick(members) as string);
          f.target = `${l} | ${live().filter((m) => m.name !== l).map((m) => m.name).join(',')}`;
          const healNet = net.partition([[l], live().map((m) => m.name).filter((n) => n !== l)]);
          await hold();
          healNet();
          break;
        }
        case 'partition-majority': {
          const all = rng.shuffle(live().map((m) => m.name));
          const minority = all.slice(0, Math.floor((all.length - 1) / 2) || 1);
          const majority = all.filter((n) => !minority.includes(n));
          f.target = `${minority.join(',')} | ${majority.join(',')}`;
          const healNet = net.partition([minority, majority]);
          await hold();
          healNet();
          break;
        }
        case 'partition-bridge': {
          // Two halves that cannot see each other, and one member both can see.
          const all = rng.shuffle(live().map((m) => m.name));
          const bridge = all[0] as string;
          const rest = all.slice(1);
          const left = rest.slice(0, Math.ceil(rest.length / 2));
          const right = rest.slice(Math.ceil(rest.length / 2));
          f.target = `${left.join(',')} <${bridge}> ${right.join(',')}`;
          const healNet = net.partition([left, right]);
          await hold();
          healNet();
          break;
        }
        case 'drop-one-way': {
          const l = lead ?? (rng.pick(members) as string);
          const healers: Array<() => void> = [];
          if (rng.int(2) === 0) {
            // The leader hears nobody: its heartbeats arrive, the answers do not.
            for (const m of live()) if (m.name !== l) healers.push(net.drop(m.name, l));
            f.target = `* -> ${l} dropped`;
          } else {
            const to = rng.pick(live().map((m) => m.name).filter((n) => n !== l)) as string;
            healers.push(net.drop(l, to));
            f.target = `${l} -> ${to} dropped`;
          }
          await hold();
          healers.forEach((h) => h());
          break;
        }
        case 'slow-network': {
          const v = rng.int(2) === 0 && lead ? lead : (rng.pick(members) as string);
          f.target = `${v} at 200 kbit/s`;
          const healNet = net.slow(v, 200);
          await hold();
          healNet();
          break;
        }
        case 'transfer-leader': {
          const table = await memberIds();
          const to = rng.pick(followers.filter((n) => table.some((x) => x.name === n && !x.learner)));
          if (!lead || !to) {
            f.note = 'skipped: no leader or no voter to move to';
            break;
          }
          f.target = `${lead} -> ${to}`;
          const id = table.find((x) => x.name === to)?.id;
          begin();
          const r = id ? await c.etcdctlAsync(['move-leader', id], { endpoints: c.addr(c.member(lead)) }) : undefined;
          if (r?.status !== 0) f.note = `move-leader failed: ${(r?.stderr ?? 'no id').trim().split('\n').at(-1)}`;
          break;
        }
        case 'add-learner':
        case 'promote-learner':
        case 'remove-member': {
          const ids = await memberIds();
          const learner = ids.find((x) => x.learner);
          const voters = ids.filter((x) => !x.learner);
          // Do the asked change when it makes sense now; otherwise the one that does (the
          // membership walks 3 voters -> + learner -> 4 voters -> 3 voters).
          let what: 'add-learner' | 'promote-learner' | 'remove-member' = kind;
          if (what === 'add-learner' && (learner || voters.length >= 5)) what = learner ? 'promote-learner' : 'remove-member';
          if (what === 'promote-learner' && !learner) what = voters.length > 3 ? 'remove-member' : 'add-learner';
          if (what === 'remove-member' && voters.length <= 3 && !learner) what = 'add-learner';
          if (what !== kind) {
            // Recorded as what was done, so the report counts real changes.
            f.note = `asked for ${kind}; membership was ${voters.length} voters${learner ? ' + a learner' : ''}`;
            f.kind = what;
          }
          if (ids.length === 0) {
            f.note = 'skipped: member list failed';
            break;
          }
          begin();
          if (what === 'add-learner') {
            const name = `m${nextName++}`;
            const j = await spawnJoin(name);
            f.target = j ? `${name} (${j.id})` : `${name}: member add failed`;
          } else if (what === 'promote-learner') {
            f.target = `${learner?.name} (${learner?.id})`;
            if (!(await promote(learner?.id as string))) f.note = `${f.note ?? ''} promote did not succeed within 15 s`.trim();
          } else {
            const victim = learner ?? voters.find((x) => x.name !== lead && x.name !== '');
            if (!victim) break;
            f.target = victim.name;
            const r = await removeMember(victim.id);
            if (r.status === 0) {
              removed.add(victim.name);
              await c.kill9(victim.name);
            } else f.note = `member remove failed: ${r.stderr.trim().split('\n').at(-1)}`;
          }
          break;
        }
        case 'replace-member': {
          // Remove a follower, wipe its data, and bring a new member up in its place (learner, then voter).
          const ids = await memberIds();
          const victim = ids.find((x) => x.name !== lead && !x.learner && x.name !== '');
          if (!victim || ids.some((x) => x.learner)) {
            f.note = 'skipped: no follower to replace, or a learner is still joining';
            break;
          }
          begin();
          const r = await removeMember(victim.id);
          if (r.status !== 0) {
            f.note = `member remove failed: ${r.stderr.trim().split('\n').at(-1)}`;
            break;
          }
          removed.add(victim.name);
          await c.kill9(victim.name);
          rmSync(c.member(victim.name).dataDir, { recursive: true, force: true });
          const name = `m${nextName++}`;
          const j = await spawnJoin(name);
          f.target = `${victim.name} -> ${name}`;
          if (j && !(await promote(j.id))) f.note = 'promote did not succeed within 15 s';
          break;
        }
        case 'disk-lose-unsynced': {
          const v = rng.int(2) === 0 && lead ? lead : (rng.pick(members) as string);
          const m = c.member(v);
          f.target = v;
          const p = c.procs.get(v);
          const exited = p ? new Promise<void>((r) => p.once('exit', () => r())) : Promise.resolve();
          begin();
          await failpoint(m, '1*crash');
          const crashed = await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)]);
          if (!crashed) {
            f.note = 'no WAL sync within 10 s; failpoint turned off';
            await failpoint(m, undefined).catch(() => undefined);
            break;
          }
          f.note = 'crashed between WAL write and fsync, unsynced bytes cut';
          await sleep(500 + rng.int(1000));
          c.restart(v);
          break;
        }
        case 'disk-slow-fsync': {
          const v = rng.int(2) === 0 && lead ? lead : (rng.pick(members) as string);
          const ms = 100 + rng.int(400);
          f.target = `${v} +${ms} ms per fsync`;
          await failpoint(c.member(v), `sleep(${ms})`);
          await hold();
          await failpoint(c.member(v), undefined).catch(() => undefined);
          break;
        }
        case 'disk-full': {
          const v = rng.pick(members) as string;
          const m = c.member(v);
          const volume = join(m.dataDir, '..');
          const filler = join(volume, `filler-${f.at}`);
          fillers.push(filler);
          const toZero = rng.int(2) === 0;
          f.target = `${v}${toZero ? ' (to ENOSPC)' : ` (below the ${reserve >> 20} MiB reserve)`}`;
          const p = c.procs.get(v);
          let exited = false;
          p?.once('exit', () => { exited = true; });
          begin();
          fillVolume(filler, toZero ? 0 : reserve / 2);
          const began = mono();
          let raised = -1;
          while (mono() - began < 6000) {
            const r = await c.etcdctlAsync(['alarm', 'list'], { endpoints: endpoints().join(',') });
            if (/NOSPACE/.test(r.stdout)) {
              raised = Math.round(mono() - began);
              break;
            }
            if (exited) break;
            await sleep(100);
          }
          await hold();
          rmSync(filler, { force: true });
          const notes = [raised >= 0 ? `NOSPACE alarm raised after ${raised} ms` : 'no alarm seen before the member stopped'];
          if (exited) {
            const log = readFileSync(join(c.dir, `${v}.log`), 'utf8');
            notes.push(/STORE_ERR_NO_DISK_SPACE|no space left/.test(log) ? 'member stopped on ENOSPC (partial record cut), restarted' : 'member exited, restarted');
            if (/raised the NOSPACE alarm through another member/.test(log)) notes.push('it raised NOSPACE through another member before stopping');
            c.restart(v);
          }
          // The member clears its own alarm once space is back; after a restart a person would
          // disarm it, as with etcd (the new process did not raise it).
          const clearBy = mono() + 5000;
          while (mono() < clearBy && /NOSPACE/.test((await c.etcdctlAsync(['alarm', 'list'], { endpoints: endpoints().join(',') })).stdout)) await sleep(200);
          if (/NOSPACE/.test((await c.etcdctlAsync(['alarm', 'list'], { endpoints: endpoints().join(',') })).stdout)) {
            await c.etcdctlAsync(['alarm', 'disarm'], { endpoints: endpoints().join(',') });
            notes.push('alarm disarmed with etcdctl');
          } else if (raised >= 0) notes.push('alarm cleared by the member');
          f.note = notes.join('; ');
          break;
        }
      }
    } catch (err) {
      f.note = `${f.note ? `${f.note}; ` : ''}nemesis error: ${(err as Error).message.split('\n')[0]}`;
    }
    f.healedAt = at();
  };

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
  const nemesis = (async () => {
    await sleep(1500);
    while (mono() < stopAt - 4000) {
      const kind = schedule.shift() ?? (rng.pick(o.faults) as FaultKind);
      const second = schedule.length === 0 && rng.int(4) === 0 && (networkFaults as readonly string[]).includes(kind) ? rng.pick(combinable.filter((k) => k !== kind)) : undefined;
      await Promise.all([inject(kind), second ? sleep(300).then(() => inject(second)) : undefined]);
      await sleep(700 + rng.int(1300));
    }
  })();

  const leases = new LeaseWorkload(endpoints, crng);
  const [history, sets] = await Promise.all([
    runRegisterWorkload({ endpoints, clients: 5, keys: ['x', 'y', 'z'], durationMs: o.durationMs, seed: o.seed, keyLifetimeMs: 20_000 }),
    runSetWorkload(endpoints, 2, stopAt, crng),
    leases.run(stopAt - 3000),
    nemesis,
  ]);

  try {
    return await check();
  } finally {
    for (const w of watchers) w.close();
    await leases.stop();
  }

  async function check(): Promise<ChaosReport> {
    // Heal everything: network, pauses, disks, processes. Only members the table lists are
    // restarted; one that is not there was removed (or never added) and is done.
    net.heal();
    for (const pid of paused) try { process.kill(pid, 'SIGCONT'); } catch { /* gone */ }
    for (const fl of fillers) rmSync(fl, { force: true });
    let table = await memberIds();
    for (let i = 0; i < 20 && table.length === 0; i++) {
      await sleep(1000);
      for (const m of live()) if (!c.procs.has(m.name)) c.restart(m.name);
      table = await memberIds();
    }
    for (const m of live()) if (table.length > 0 && !table.some((x) => x.name === m.name)) {
      removed.add(m.name);
      await c.kill9(m.name);
    }
    for (const m of live()) if (!c.procs.has(m.name)) c.restart(m.name);
    // A learner left by the last membership fault is promoted (or removed): etcd's learners
    // refuse the health check and HashKV, and the final checks want every member a voter.
    for (const x of await memberIds()) {
      if (!x.learner) continue;
      if (await promote(x.id)) continue;
      await removeMember(x.id);
      removed.add(x.name);
      await c.kill9(x.name);
    }
    await c.waitHealthy(60_000).catch(() => undefined);
    if (/NOSPACE/.test((await c.etcdctlAsync(['alarm', 'list'], { endpoints: endpoints().join(',') })).stdout)) await c.etcdctlAsync(['alarm', 'disarm'], { endpoints: endpoints().join(',') });
    // After the faults heal the cluster must recover: if it does not, that is the finding.
    const healthy = await c.waitHealthy(60_000).then(() => '', (err: Error) => err.message.split('\n')[0] as string);
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
    const finalSet = setKvs ? new Set(setKvs.map((x) => Buffer.from(x['value']).toString())) : undefined;
    const finalSetNames = finalSet ?? new Set<string>();
    const lost = [...sets.acked].filter((e) => !finalSetNames.has(e));
    const unexpected = [...finalSetNames].filter((e) => !sets.acked.has(e) && !sets.unknown.has(e));
    const setOk = finalSet !== undefined && lost.length === 0 && unexpected.length === 0;

    // Leases: wait until every lease no longer kept has had time to expire (a full TTL from the
    // heal, since a new leader gives every lease a fresh TTL, plus an election), then look.
    const leaseProblems: string[] = [];
    const electionMs = 1000;
    await sleep(Math.max(0, 3000 + 2 * electionMs + 1500 - (mono() - healedAt)));
    const keptNow = leases.leases.filter((l) => l.kept && l.alive);
    const leaseKvs = await readPrefix('lease/');
    const present = leaseKvs ? new Set(leaseKvs.map((x) => Buffer.from(x['key']).toString())) : undefined;
    await leases.stop();
    if (!present) leaseProblems.push('could not read the lease keys after healing');
    for (const l of leases.leases) {
      if (l.expiredEarly) leaseProblems.push(l.expiredEarly);
      const isKept = keptNow.includes(l);
      if (isKept && l.putAcked && present && !present.has(l.key)) leaseProblems.push(`lease ${l.id} is alive (renewed in time until the end) but its key ${l.key} is gone`);
      if (!isKept && present?.has(l.key)) leaseProblems.push(`lease ${l.id} (${l.fate}) is no longer kept alive and has expired, but its key ${l.key} is still there`);
    }

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
    for (let i = 0; i < 10 && head === 0; i++) head = await headRev().catch(async () => { await sleep(500); return 0; });
    const catchUpBy = mono() + 20_000;
    while (mono() < catchUpBy && watchers.some((w) => w.lastRev() < head)) await sleep(200);
    for (const w of watchers) w.close();
    const problems: string[] = [];
    const acked = history.filter((h) => h.revision > 0 && h.revision <= head);
    const seqs = watchers.map((w) => w.events.filter((e) => e.rev <= head));
    seqs.forEach((seq, i) => {
      for (let j = 1; j < seq.length; j++) {
        const a = seq[j - 1] as WatchEvent;
        const b = seq[j] as WatchEvent;
        if (b.rev < a.rev) problems.push(`watcher ${i}: revision ${b.rev} after ${a.rev}`);
        if (b.rev === a.rev && b.key === a.key) problems.push(`watcher ${i}: revision ${b.rev} key ${b.key} delivered twice`);
      }
      if (i > 0) {
        const s0 = seqs[0] as WatchEvent[];
        const same = seq.length === s0.length && seq.every((e, k) => e.rev === s0[k]?.rev && e.key === s0[k]?.key && e.value === s0[k]?.value);
        if (!same) problems.push(`watcher ${i} saw ${seq.length} events up to revision ${head}, watcher 0 saw ${s0.length} (or different ones)`);
      }
      const byRev = new Map<number, WatchEvent[]>();
      for (const e of seq) byRev.set(e.rev, [...(byRev.get(e.rev) ?? []), e]);
      const missing = acked.filter((h) => !(byRev.get(h.revision) ?? []).some((e) => e.key === h.key && e.value === h.value));
      if (missing.length > 0) problems.push(`watcher ${i} missed or garbled ${missing.length} acknowledged writes (first: ${missing[0]?.key}=${missing[0]?.value} at revision ${missing[0]?.revision})`);
    });
    if (seqs[0] && seqs[0].length > 0) {
      // No gaps: every revision from the first seen to the head was delivered (each is one write here).
      const revs = new Set(seqs[0].map((e) => e.rev));
      const first = seqs[0][0]?.rev ?? 1;
      let gaps = 0;
      for (let r = first; r <= head; r++) if (!revs.has(r)) gaps++;
      if (gaps > 0) problems.push(`watcher 0 has ${gaps} revisions missing between ${first} and ${head}`);
    }

    // Convergence: HashKV at one revision on every member.
    const hashes: Record<string, number> = {};
    let hashRev = 0;
    for (let attempt = 0; attempt < 10; attempt++) {
      hashRev = await headRev().catch(() => 0);
      for (const m of running()) {
        const M = service('Maintenance');
        const cl = new M(c.addr(m), grpc.credentials.createInsecure());
        hashes[m.name] = await unary(cl, 'HashKV', { revision: String(hashRev) }, 5000).then((r) => Number(r['hash']), () => -1);
        cl.close();
      }
      if (new Set(Object.values(hashes)).size === 1 && !Object.values(hashes).includes(-1)) break;
      await sleep(1000);
    }
    const hashOk = new Set(Object.values(hashes)).size === 1 && !Object.values(hashes).includes(-1);

    const lin = checkLinearizable(history, c.dir, 'chaos');
    const ops: Record<string, number> = {};
    for (const h of history) {
      const k = `${h.op} ${h.unknown ? 'unknown' : h.op === 'cas' && !h.ok ? 'failed' : 'ok'}`;
      ops[k] = (ops[k] ?? 0) + 1;
    }
    const causes: Record<string, number> = {};
    for (const h of history) if (h.error) causes[h.error] = (causes[h.error] ?? 0) + 1;
    const unknownCauses = Object.fromEntries(Object.entries(causes).sort((a, b) => b[1] - a[1]).slice(0, 8));
    ops['set-add ok'] = sets.acked.size;
    ops['set-add unknown'] = sets.unknown.size;
    ops['lease-grant ok'] = leases.leases.length;

    // Availability, from the history's successful writes (register puts and CAS, set adds):
    //   while on: the longest stretch between the fault's start and its heal in which no write
    //     completed (from the start to the first completion, between completions, from the last
    //     completion to the heal);
    //   after heal: from the heal to the completion of the first write invoked after it.
    const writesDone = [
      ...history.filter((h) => !h.unknown && (h.op === 'put' || (h.op === 'cas' && h.ok))).map((h) => ({ call: h.call / 1000 - t0, ret: h.return / 1000 - t0 })),
      ...sets.done.map((d) => ({ call: d.call - t0, ret: d.ret - t0 })),
    ].sort((a, b) => a.ret - b.ret);
    const longestGap = (from: number, to: number): number => {
      let prev = from;
      let worst = 0;
      for (const w of writesDone) {
        if (w.ret < from) continue;
        if (w.ret > to) break;
        worst = Math.max(worst, w.ret - prev);
        prev = w.ret;
      }
      return Math.round(Math.max(worst, to - prev));
    };
    const firstWriteAfter = (t: number): number | undefined => {
      let best: number | undefined;
      for (const w of writesDone) if (w.call >= t && (best === undefined || w.ret < best)) best = w.ret;
      return best === undefined ? undefined : Math.round(best - t);
    };
    for (const f of faults) {
      f.unavailableWhileOnMs = longestGap(f.at, f.healedAt);
      f.unavailableAfterHealMs = firstWriteAfter(f.healedAt);
    }
    const stats = (xs: number[]) => {
      const s = [...xs].sort((a, b) => a - b);
      return { median: s.length ? (s[Math.floor((s.length - 1) / 2)] as number) : 0, worst: s.at(-1) ?? 0 };
    };
    const availability: ChaosReport['availability'] = {};
    const faultsByKind: Record<string, number> = {};
    for (const k of [...new Set(faults.map((f) => f.kind))].sort()) {
      const fs = faults.filter((f) => f.kind === k);
      faultsByKind[k] = fs.length;
      availability[k] = {
        count: fs.length,
        whileOn: stats(fs.map((f) => f.unavailableWhileOnMs).filter((x): x is number => x !== undefined)),
        afterHeal: stats(fs.map((f) => f.unavailableAfterHealMs).filter((x): x is number => x !== undefined)),
      };
    }

    const report: ChaosReport = {
      target: c.binary, seed: o.seed, durationMs: o.durationMs, members: c.members.map((m) => `${m.name}${removed.has(m.name) ? ' (removed)' : ''}`),
      operations: ops, unknownCauses, faults, faultsByKind, availability,
      linearizable: lin.linearizable, lincheck: lin.output.trim(),
      set: { ok: setOk, acked: sets.acked.size, unknown: sets.unknown.size, final: finalSetNames.size, lost, unexpected, recovered: [...sets.unknown].filter((e) => finalSetNames.has(e)).length },
      watch: { ok: problems.length === 0, watchers: watchers.length, revisions: head, problems },
      lease: { ok: leaseProblems.length === 0, granted: leases.leases.length, keptLive: keptNow.length, gone: leases.leases.filter((l) => !present?.has(l.key)).length, problems: leaseProblems },
      hashKV: { ok: hashOk, revision: hashRev, hashes },
      unhealthyAfterHeal: healthy,
      ok: lin.linearizable && setOk && problems.length === 0 && leaseProblems.length === 0 && hashOk && healthy === '',
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
