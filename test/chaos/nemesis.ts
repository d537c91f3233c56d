/**
 * The nemesis: injects one fault at a time (the run may overlap two), holds it, heals it, and
 * records it; and at the end heals whatever is left. Faults by group: processes (kill -9,
 * SIGSTOP), the network (partitions, one-way drops, a slow link: test/chaos/net.ts), membership
 * (learners added, promoted, removed, members replaced, leadership moved), disks (failpoints:
 * a crash losing unsynced WAL bytes, slow fsync; a full volume).
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fillVolume } from '../support/disk.ts';
import type { MemberSpec, StoreCluster } from '../support/store-cluster.ts';
import type { ChaosNet } from './net.ts';
import type { Fault } from './report.ts';
import { type Rng, mono, sleep } from './workloads.ts';

export const processFaults = ['kill-random', 'kill-leader', 'kill-majority', 'pause-leader', 'pause-follower'] as const;
export const networkFaults = ['partition-leader', 'partition-majority', 'partition-bridge', 'drop-one-way', 'slow-network'] as const;
export const membershipFaults = ['add-learner', 'promote-learner', 'remove-member', 'replace-member', 'transfer-leader'] as const;
export const diskFaults = ['disk-lose-unsynced', 'disk-slow-fsync', 'disk-full'] as const;
export type FaultKind =
  (typeof processFaults)[number] | (typeof networkFaults)[number] | (typeof membershipFaults)[number] | (typeof diskFaults)[number];
export const allFaults: FaultKind[] = [...processFaults, ...networkFaults, ...membershipFaults, ...diskFaults];

/** The cluster as the nemesis saw it just before a fault; how long to hold it; begin() moves the fault's start to now. */
interface Look {
  lead: string | undefined;
  followers: string[];
  members: string[];
  hold: () => Promise<void>;
  begin: () => void;
}

export class Nemesis {
  readonly c: StoreCluster;
  readonly net: ChaosNet;
  readonly rng: Rng;
  readonly faults: Fault[] = [];
  /** Members taken out of the cluster (removed, replaced, or never added). */
  readonly removed = new Set<string>();
  readonly paused = new Set<number>();
  readonly fillers: string[] = [];
  /** The disk-space reserve the members run with (disk-full fills past it). */
  readonly reserve: number;
  nextName: number;
  readonly #t0: number;

  constructor(c: StoreCluster, net: ChaosNet, rng: Rng, t0: number, reserve: number) {
    this.c = c;
    this.net = net;
    this.rng = rng;
    this.#t0 = t0;
    this.reserve = reserve;
    this.nextName = c.members.length + 1;
  }

  /** ms since the run began. */
  at(): number {
    return Math.round(mono() - this.#t0);
  }

  live(): MemberSpec[] {
    return this.c.members.filter((m) => !this.removed.has(m.name));
  }

  running(): MemberSpec[] {
    return this.live().filter((m) => this.c.procs.has(m.name));
  }

  endpoints(): string[] {
    const r = this.running().map((m) => this.c.addr(m));
    return r.length > 0 ? r : this.live().map((m) => this.c.addr(m));
  }

  /**
   * The member table (the simple format: JSON would round 64-bit ids through float64). A
   * learner that has not published its name yet is listed without one: its name is ours, found
   * by its peer URL.
   */
  async memberIds(): Promise<Array<{ id: string; name: string; learner: boolean }>> {
    const c = this.c;
    // Asked of the leader: etcdctl 3.4 does not ask for a linearizable list, and a follower
    // that has not applied the latest change yet lists the membership before it (a CI run
    // turned a promote into a second add because a learner added 1.5 s earlier was missing).
    const lead = await c.leaderAsync();
    const from = lead && this.running().some((m) => m.name === lead) ? c.addr(c.member(lead)) : this.endpoints().join(',');
    const r = await c.etcdctlAsync(['member', 'list'], { endpoints: from });
    if (r.status !== 0) return [];
    return r.stdout
      .split('\n')
      .filter((l) => l.includes(','))
      .map((l) => {
        const f = l.split(',').map((x) => x.trim());
        const byUrl = c.members.find((m) => (f[3] ?? '').includes(`//${m.host}:${m.peerPort}`));
        return { id: f[0] as string, name: byUrl?.name ?? f[2] ?? '', learner: f[5] === 'true' };
      });
  }

  /** Inject one fault, hold it, heal it; recorded in {@link faults}. */
  async inject(kind: FaultKind): Promise<void> {
    const lead = await this.c.leaderAsync();
    // The fault begins when it is applied (after this look at the cluster); faults that look
    // again first move the mark with begin().
    const f: Fault = { kind, target: '', at: this.at(), healedAt: 0 };
    const look: Look = {
      lead,
      followers: this.running()
        .filter((m) => m.name !== lead)
        .map((m) => m.name),
      members: this.running().map((m) => m.name),
      hold: async () => {
        await sleep(1500 + this.rng.int(2500));
      },
      begin: () => {
        f.at = this.at();
      },
    };
    this.faults.push(f);
    try {
      const group = (processFaults as readonly string[]).includes(kind)
        ? processFault
        : (networkFaults as readonly string[]).includes(kind)
          ? networkFault
          : (membershipFaults as readonly string[]).includes(kind)
            ? membershipFault
            : diskFault;
      await group(this, kind, f, look);
    } catch (err) {
      f.note = `${f.note ? `${f.note}; ` : ''}nemesis error: ${(err as Error).message.split('\n')[0]}`;
    }
    f.healedAt = this.at();
  }

  /**
   * Heal everything: network, pauses, disks, processes. Only members the table lists are
   * restarted; one that is not there was removed (or never added) and is done. A learner left by
   * the last membership fault is promoted (or removed): etcd's learners refuse the health check
   * and HashKV, and the final checks want every member a voter.
   */
  async healAll(): Promise<void> {
    const c = this.c;
    this.net.heal();
    for (const pid of this.paused)
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        /* gone */
      }
    for (const fl of this.fillers) rmSync(fl, { force: true });
    let table = await this.memberIds();
    for (let i = 0; i < 20 && table.length === 0; i++) {
      await sleep(1000);
      for (const m of this.live()) if (!c.procs.has(m.name)) c.restart(m.name);
      table = await this.memberIds();
    }
    for (const m of this.live())
      if (table.length > 0 && !table.some((x) => x.name === m.name)) {
        this.removed.add(m.name);
        await c.kill9(m.name);
      }
    for (const m of this.live()) if (!c.procs.has(m.name)) c.restart(m.name);
    for (const x of await this.memberIds()) {
      if (!x.learner) continue;
      if (await this.promote(x.id)) continue;
      await this.removeMember(x.id);
      this.removed.add(x.name);
      await c.kill9(x.name);
    }
    await c.waitHealthy(60_000).catch(() => undefined);
    if (/NOSPACE/.test((await c.etcdctlAsync(['alarm', 'list'], { endpoints: this.endpoints().join(',') })).stdout))
      await c.etcdctlAsync(['alarm', 'disarm'], { endpoints: this.endpoints().join(',') });
  }

  /** Set (or, with no term, clear) a member's walBeforeSync failpoint over its failpoint HTTP endpoint. */
  async failpoint(m: MemberSpec, term: string | undefined): Promise<void> {
    const url = `http://${m.host}:${m.metricsPort + 1}/walBeforeSync`;
    const res = await fetch(url, term === undefined ? { method: 'DELETE' } : { method: 'PUT', body: term });
    if (!res.ok) throw new Error(`failpoint ${url}: ${res.status} ${await res.text()}`);
  }

  /** Add a new member as a learner (retried) and start it; undefined if the add never succeeded. */
  async spawnJoin(name: string): Promise<{ m: MemberSpec; id: string } | undefined> {
    const c = this.c;
    const endpoints = () => this.endpoints();
    const live = () => this.live();
    const m = await c.addSpec(name);
    const url = `http://${m.host}:${m.peerPort}`;
    // Retried: right after a removal the change may still be applying, or the leader may be
    // moving; a timed-out add may have happened anyway, so look for the URL in the table too.
    let id: string | undefined;
    for (let i = 0; i < 20 && !id; i++) {
      const added = await c.etcdctlAsync(['member', 'add', name, '--learner', `--peer-urls=${url}`], { endpoints: endpoints().join(',') });
      id = /Member +([0-9a-f]+) added/.exec(added.stdout)?.[1];
      if (!id) {
        const table = await c.etcdctlAsync(['member', 'list'], { endpoints: endpoints().join(',') });
        id = table.stdout
          .split('\n')
          .find((l) => l.includes(url))
          ?.split(',')[0]
          ?.trim();
      }
      if (!id) await sleep(500);
    }
    if (!id) {
      this.removed.add(name);
      return undefined;
    }
    c.spawn(m, 'existing', [...live()]);
    return { m, id };
  }

  /** Remove a member, retrying while the cluster has no leader or another change is applying. */
  async removeMember(id: string): Promise<{ status: number | null; stderr: string }> {
    const c = this.c;
    const endpoints = () => this.endpoints();
    let r = { status: -1 as number | null, stderr: '' };
    for (let i = 0; i < 20; i++) {
      r = await c.etcdctlAsync(['member', 'remove', id], { endpoints: endpoints().join(',') });
      if (r.status === 0) return r;
      // A timed-out removal may have happened anyway.
      const table = await this.memberIds();
      if (table.length > 0 && !table.some((x) => x.id === id)) return { status: 0, stderr: '' };
      if (/member not found|unhealthy cluster/.test(r.stderr)) return r;
      await sleep(500);
    }
    return r;
  }

  /** Promote a learner, retrying until it has caught up (15 s at most). */
  async promote(id: string): Promise<boolean> {
    const c = this.c;
    const endpoints = () => this.endpoints();
    for (let i = 0; i < 60; i++) {
      if ((await c.etcdctlAsync(['member', 'promote', id], { endpoints: endpoints().join(',') })).status === 0) return true;
      await sleep(250);
    }
    return false;
  }
}

/** kill -9 (a random member, the leader, a majority) and SIGSTOP (the leader, a follower). */
async function processFault(n: Nemesis, kind: FaultKind, f: Fault, look: Look): Promise<void> {
  const { c, rng } = n;
  const { lead, followers, members, hold } = look;
  const live = () => n.live();
  switch (kind) {
    case 'kill-random':
    case 'kill-leader':
    case 'kill-majority': {
      const victims =
        kind === 'kill-majority'
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
      n.paused.add(pid);
      await hold();
      process.kill(pid, 'SIGCONT');
      n.paused.delete(pid);
      break;
    }
    default:
      throw new Error(`processFault: not one of its faults: ${kind}`);
  }
}

/** Partitions (the leader alone, a majority from a minority, two halves with a bridge), one-way drops, a slow link. */
async function networkFault(n: Nemesis, kind: FaultKind, f: Fault, look: Look): Promise<void> {
  const { net, rng } = n;
  const { lead, members, hold } = look;
  const live = () => n.live();
  switch (kind) {
    case 'partition-leader': {
      const l = lead ?? (rng.pick(members) as string);
      f.target = `${l} | ${live()
        .filter((m) => m.name !== l)
        .map((m) => m.name)
        .join(',')}`;
      const healNet = net.partition([
        [l],
        live()
          .map((m) => m.name)
          .filter((n) => n !== l),
      ]);
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
        const to = rng.pick(
          live()
            .map((m) => m.name)
            .filter((n) => n !== l),
        ) as string;
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
    default:
      throw new Error(`networkFault: not one of its faults: ${kind}`);
  }
}

/** Leadership moved; learners added, promoted, members removed (the walk 3 voters -> + learner -> 4 voters -> 3); a member replaced. */
async function membershipFault(n: Nemesis, kind: FaultKind, f: Fault, look: Look): Promise<void> {
  const { c, rng } = n;
  const { lead, followers, begin } = look;
  switch (kind) {
    case 'transfer-leader': {
      const table = await n.memberIds();
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
      const ids = await n.memberIds();
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
        const name = `m${n.nextName++}`;
        const j = await n.spawnJoin(name);
        f.target = j ? `${name} (${j.id})` : `${name}: member add failed`;
      } else if (what === 'promote-learner') {
        f.target = `${learner?.name} (${learner?.id})`;
        if (!(await n.promote(learner?.id as string))) f.note = `${f.note ?? ''} promote did not succeed within 15 s`.trim();
      } else {
        const victim = learner ?? voters.find((x) => x.name !== lead && x.name !== '');
        if (!victim) break;
        f.target = victim.name;
        const r = await n.removeMember(victim.id);
        if (r.status === 0) {
          n.removed.add(victim.name);
          await c.kill9(victim.name);
        } else f.note = `member remove failed: ${r.stderr.trim().split('\n').at(-1)}`;
      }
      break;
    }
    case 'replace-member': {
      // Remove a follower, wipe its data, and bring a new member up in its place (learner, then voter).
      const ids = await n.memberIds();
      const victim = ids.find((x) => x.name !== lead && !x.learner && x.name !== '');
      if (!victim || ids.some((x) => x.learner)) {
        f.note = 'skipped: no follower to replace, or a learner is still joining';
        break;
      }
      begin();
      const r = await n.removeMember(victim.id);
      if (r.status !== 0) {
        f.note = `member remove failed: ${r.stderr.trim().split('\n').at(-1)}`;
        break;
      }
      n.removed.add(victim.name);
      await c.kill9(victim.name);
      rmSync(c.member(victim.name).dataDir, { recursive: true, force: true });
      const name = `m${n.nextName++}`;
      const j = await n.spawnJoin(name);
      f.target = `${victim.name} -> ${name}`;
      if (j && !(await n.promote(j.id))) f.note = 'promote did not succeed within 15 s';
      break;
    }
    default:
      throw new Error(`membershipFault: not one of its faults: ${kind}`);
  }
}

/**
 * A crash between WAL write and fsync losing the unsynced bytes, slow fsync (failpoints), a volume
 * filled past the reserve or to ENOSPC.
 */
async function diskFault(n: Nemesis, kind: FaultKind, f: Fault, look: Look): Promise<void> {
  const { c, rng } = n;
  const { lead, members, hold, begin } = look;
  const endpoints = () => n.endpoints();
  switch (kind) {
    case 'disk-lose-unsynced': {
      const v = rng.int(2) === 0 && lead ? lead : (rng.pick(members) as string);
      const m = c.member(v);
      f.target = v;
      const p = c.procs.get(v);
      const exited = p ? new Promise<void>((r) => p.once('exit', () => r())) : Promise.resolve();
      begin();
      await n.failpoint(m, '1*crash');
      const crashed = await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)]);
      if (!crashed) {
        f.note = 'no WAL sync within 10 s; failpoint turned off';
        await n.failpoint(m, undefined).catch(() => undefined);
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
      await n.failpoint(c.member(v), `sleep(${ms})`);
      await hold();
      await n.failpoint(c.member(v), undefined).catch(() => undefined);
      break;
    }
    case 'disk-full': {
      const v = rng.pick(members) as string;
      const m = c.member(v);
      const volume = join(m.dataDir, '..');
      const filler = join(volume, `filler-${f.at}`);
      n.fillers.push(filler);
      const toZero = rng.int(2) === 0;
      f.target = `${v}${toZero ? ' (to ENOSPC)' : ` (below the ${n.reserve >> 20} MiB reserve)`}`;
      const p = c.procs.get(v);
      let exited = false;
      p?.once('exit', () => {
        exited = true;
      });
      begin();
      fillVolume(filler, toZero ? 0 : n.reserve / 2);
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
        notes.push(
          /STORE_ERR_NO_DISK_SPACE|no space left/.test(log)
            ? 'member stopped on ENOSPC (partial record cut), restarted'
            : 'member exited, restarted',
        );
        if (/raised the NOSPACE alarm through another member/.test(log))
          notes.push('it raised NOSPACE through another member before stopping');
        c.restart(v);
      }
      // The member clears its own alarm once space is back; after a restart a person would
      // disarm it, as with etcd (the new process did not raise it).
      const clearBy = mono() + 5000;
      while (mono() < clearBy && /NOSPACE/.test((await c.etcdctlAsync(['alarm', 'list'], { endpoints: endpoints().join(',') })).stdout))
        await sleep(200);
      if (/NOSPACE/.test((await c.etcdctlAsync(['alarm', 'list'], { endpoints: endpoints().join(',') })).stdout)) {
        await c.etcdctlAsync(['alarm', 'disarm'], { endpoints: endpoints().join(',') });
        notes.push('alarm disarmed with etcdctl');
      } else if (raised >= 0) notes.push('alarm cleared by the member');
      f.note = notes.join('; ');
      break;
    }
    default:
      throw new Error(`diskFault: not one of its faults: ${kind}`);
  }
}
