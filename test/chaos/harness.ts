/**
 * A Jepsen-style run against `ballast store`: a register workload (get, put, compare-and-set)
 * with every operation recorded, watchers on every member, and a nemesis that injects faults on
 * a random schedule. After the faults heal, the checkers decide:
 *   linearizability  Porcupine over the history (test/lincheck)
 *   watch            every watcher saw revisions in order, without gaps or duplicates, and every
 *                    acknowledged write's revision appears in every watcher's stream
 *   convergence      HashKV equal on every member
 * The report (operations by outcome, faults with timestamps, verdicts) goes to the run's
 * directory, with Porcupine's HTML and the members' logs on failure.
 */
import * as grpc from '@grpc/grpc-js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadProtos } from '../../store/api/server.ts';
import { type HistoryOp, checkLinearizable, runRegisterWorkload } from '../support/linearizability.ts';
import type { StoreCluster } from '../support/store-cluster.ts';

/* eslint-disable @typescript-eslint/no-explicit-any -- wire objects */
type Wire = Record<string, any>;

export type FaultKind = 'kill-random' | 'kill-leader' | 'kill-majority' | 'pause-leader' | 'pause-follower' | 'transfer-leader' | 'replace-member';

export interface Fault {
  at: number;
  kind: FaultKind;
  target: string;
  healedAt?: number;
}

export interface ChaosReport {
  durationMs: number;
  operations: Record<string, number>;
  faults: Fault[];
  linearizable: boolean;
  lincheck: string;
  watch: { ok: boolean; watchers: number; problems: string[] };
  hashKV: { ok: boolean; hashes: Record<string, number> };
  ok: boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A watcher on one member of the whole test prefix, recording mod revisions as delivered. */
function watchMember(endpoint: string): { revs: number[]; close(): void } {
  const Watch = (loadProtos()['etcdserverpb'] as Record<string, grpc.ServiceClientConstructor>)['Watch'] as grpc.ServiceClientConstructor;
  const client = new Watch(endpoint, grpc.credentials.createInsecure());
  const revs: number[] = [];
  let stream: grpc.ClientDuplexStream<Wire, Wire> | undefined;
  let closed = false;
  const open = () => {
    if (closed) return;
    // Resume after the last revision seen, so a member restart cannot cause a gap or a repeat.
    const start = revs.length > 0 ? (revs.at(-1) as number) + 1 : 1;
    stream = (client as unknown as { Watch(): grpc.ClientDuplexStream<Wire, Wire> }).Watch();
    stream.on('data', (r: Wire) => {
      for (const e of (r['events'] ?? []) as Wire[]) revs.push(Number(e['kv'].mod_revision));
    });
    stream.on('error', () => setTimeout(open, 200));
    stream.write({ create_request: { key: Buffer.from('\0'), range_end: Buffer.from('\0'), start_revision: String(start) } });
  };
  open();
  return { revs, close: () => { closed = true; stream?.cancel(); client.close(); } };
}

function hashKv(endpoint: string): Promise<number> {
  const Maintenance = (loadProtos()['etcdserverpb'] as Record<string, grpc.ServiceClientConstructor>)['Maintenance'] as grpc.ServiceClientConstructor;
  const c = new Maintenance(endpoint, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) => {
    (c as unknown as Record<string, (req: Wire, opts: grpc.CallOptions, cb: (e: Error | null, r: Wire) => void) => void>)['HashKV']!.call(c, { revision: '0' }, { deadline: Date.now() + 5000 }, (e, r) => {
      c.close();
      if (e) reject(e);
      else resolve(Number(r['hash']));
    });
  });
}

export interface ChaosOptions {
  cluster: StoreCluster;
  durationMs: number;
  seed: number;
  faults: FaultKind[];
  /** Where the report goes. */
  dir: string;
}

export async function runChaos(o: ChaosOptions): Promise<ChaosReport> {
  const c = o.cluster;
  const t0 = Date.now();
  let rng = o.seed;
  const rand = (n: number) => {
    rng = (rng * 1103515245 + 12345) & 0x7fffffff;
    return rng % n;
  };
  const watchers = c.members.map((m) => watchMember(`127.0.0.1:${m.clientPort}`));
  const faults: Fault[] = [];
  const stopAt = t0 + o.durationMs;
  const running = () => c.members.filter((m) => c.procs.has(m.name)).map((m) => m.name);

  const nemesis = (async () => {
    await sleep(1000);
    while (Date.now() < stopAt - 2500) {
      const kind = o.faults[rand(o.faults.length)] as FaultKind;
      const lead = c.leader();
      const followers = running().filter((n) => n !== lead);
      const f: Fault = { at: Date.now() - t0, kind, target: '' };
      faults.push(f);
      switch (kind) {
        case 'kill-random':
        case 'kill-leader':
        case 'kill-majority': {
          const victims = kind === 'kill-majority' ? running().slice(0, 2) : [kind === 'kill-leader' && lead ? lead : (running()[rand(running().length)] as string)];
          f.target = victims.join(',');
          for (const v of victims) await c.kill9(v);
          await sleep(800 + rand(800));
          for (const v of victims) c.restart(v);
          break;
        }
        case 'pause-leader':
        case 'pause-follower': {
          const v = kind === 'pause-leader' ? lead : followers[rand(Math.max(1, followers.length))];
          const p = v ? c.procs.get(v) : undefined;
          if (!v || !p?.pid) break;
          f.target = v;
          process.kill(p.pid, 'SIGSTOP');
          await sleep(1000 + rand(1500));
          process.kill(p.pid, 'SIGCONT');
          break;
        }
        case 'transfer-leader': {
          const to = followers[rand(Math.max(1, followers.length))];
          if (!lead || !to) break;
          f.target = `${lead}->${to}`;
          const id = c.etcdctl(['member', 'list']).stdout.split('\n').find((l) => l.includes(`, ${to}, `))?.split(',')[0];
          if (id) c.etcdctl(['move-leader', id], { endpoints: `127.0.0.1:${c.member(lead).clientPort}` });
          break;
        }
        case 'replace-member': {
          // Remove a follower, wipe it, add it back as a learner and promote it: a member replacement.
          const v = followers[rand(Math.max(1, followers.length))];
          if (!v) break;
          f.target = v;
          const list = c.etcdctl(['member', 'list']).stdout.split('\n');
          const id = list.find((l) => l.includes(`, ${v}, `))?.split(',')[0];
          if (!id) break;
          if (c.etcdctl(['member', 'remove', id]).status !== 0) break;
          await c.kill9(v);
          const m = c.member(v);
          const fresh = `${m.dataDir}-r${f.at}`;
          m.dataDir = fresh;
          // New peer URL too: a removed member's id is never reused.
          m.peerPort += 1;
          const added = c.etcdctl(['member', 'add', v, '--learner', `--peer-urls=http://127.0.0.1:${m.peerPort}`]);
          const newId = /Member ([0-9a-f]+) added/.exec(added.stdout)?.[1];
          c.spawn(m, 'existing');
          for (let i = 0; i < 50 && newId; i++) {
            await sleep(200);
            if (c.etcdctl(['member', 'promote', newId]).status === 0) break;
          }
          break;
        }
      }
      f.healedAt = Date.now() - t0;
      await sleep(500 + rand(1000));
    }
  })();

  const endpoints = c.members.map((m) => `127.0.0.1:${m.clientPort}`);
  const history: HistoryOp[] = await runRegisterWorkload({ endpoints, clients: 6, keys: ['x', 'y', 'z'], durationMs: o.durationMs, seed: o.seed });
  await nemesis;
  // Heal: everyone up, then let the watchers and members catch up.
  for (const m of c.members) if (!c.procs.has(m.name)) c.restart(m.name);
  await c.waitHealthy(30_000);
  await sleep(2000);
  for (const w of watchers) w.close();

  const lin = checkLinearizable(history, o.dir, 'chaos');
  // Watch checker: revisions never go back; every member's watcher saw the same revisions; and
  // every acknowledged write's revision is in every stream.
  const problems: string[] = [];
  watchers.forEach((w, i) => {
    for (let j = 1; j < w.revs.length; j++) {
      // Several events of one transaction share a revision; a smaller one is a regression.
      if ((w.revs[j] as number) < (w.revs[j - 1] as number)) problems.push(`watcher ${i}: revision ${w.revs[j]} after ${w.revs[j - 1]}`);
    }
  });
  const lastRev = Math.min(...watchers.map((w) => w.revs.at(-1) ?? 0));
  const seqs = watchers.map((w) => [...new Set(w.revs)].filter((r) => r <= lastRev));
  seqs.forEach((seq, i) => {
    if (i > 0 && seq.join(',') !== (seqs[0] as number[]).join(',')) problems.push(`watcher ${i} saw ${seq.length} revisions up to ${lastRev}, watcher 0 saw ${(seqs[0] as number[]).length}`);
  });
  const acked = history.filter((h) => h.revision > 0 && h.revision <= lastRev).map((h) => h.revision);
  seqs.forEach((seq, i) => {
    const have = new Set(seq);
    const missing = acked.filter((r) => !have.has(r));
    if (missing.length > 0) problems.push(`watcher ${i} missed ${missing.length} acknowledged writes (first: revision ${missing[0]})`);
  });
  const hashes: Record<string, number> = {};
  for (const m of c.members) hashes[m.name] = await hashKv(`127.0.0.1:${m.clientPort}`).catch(() => -1);
  const ops: Record<string, number> = {};
  for (const h of history) {
    const k = `${h.op} ${h.unknown ? 'unknown' : 'ok'}`;
    ops[k] = (ops[k] ?? 0) + 1;
  }
  const hashOk = new Set(Object.values(hashes)).size === 1 && !Object.values(hashes).includes(-1);
  const report: ChaosReport = {
    durationMs: o.durationMs, operations: ops, faults, linearizable: lin.linearizable, lincheck: lin.output.trim(),
    watch: { ok: problems.length === 0, watchers: watchers.length, problems }, hashKV: { ok: hashOk, hashes },
    ok: lin.linearizable && problems.length === 0 && hashOk,
  };
  writeFileSync(join(o.dir, 'chaos-report.json'), `${JSON.stringify(report, null, 2)}\n`);
  return report;
}
