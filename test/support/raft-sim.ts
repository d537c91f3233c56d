/**
 * A deterministic simulation of a Raft cluster for tests: in-memory "disks", a seeded network
 * with drops, delays, reordering and partitions, crashes that lose everything not persisted,
 * and safety checkers that run on every step. Same seed, same run.
 */
import { SeededRandom } from '../../lib/random.ts';
import { bootstrapEntries } from '../../store/raft/bootstrap.ts';
import { Raft, type RaftConfig } from '../../store/raft/raft.ts';
import { type ConfState, type Entry, EntryType, type HardState, type Message, type NodeId, type Snapshot } from '../../store/raft/types.ts';

interface Disk {
  hardState: HardState | undefined;
  entries: Entry[];
  snapshot: Snapshot | undefined;
}

interface SimNode {
  id: NodeId;
  raft: Raft | undefined;
  disk: Disk;
  /** The state machine: applied proposals, in order. */
  applied: string[];
  appliedIndex: number;
  paused: boolean;
  reads: Array<{ index: number; context: string }>;
}

interface InFlight {
  at: number;
  seq: number;
  msg: Message;
}

export interface SimOptions {
  seed: number;
  ids: NodeId[];
  learners?: NodeId[];
  electionTick?: number;
  /** Make a snapshot and compact every this many applied entries (0: never). */
  snapshotEvery?: number;
  raft?: Partial<RaftConfig>;
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

export class SimCluster {
  readonly random: SeededRandom;
  readonly nodes = new Map<NodeId, SimNode>();
  readonly #opts: SimOptions;
  #time = 0;
  #seq = 0;
  #inflight: InFlight[] = [];
  /** Probability a message is lost. */
  dropRate = 0;
  /** Extra delivery delay, in ticks, chosen uniformly in [0, maxDelay]. */
  maxDelay = 0;
  /** Links that are cut, as "from>to". */
  readonly #cut = new Set<string>();
  /** Messages delivered, by type (for tests that count round trips). */
  readonly delivered = new Map<string, number>();
  /** Checker state: the leader of each term, and the entry committed at each index. */
  readonly #leaders = new Map<number, NodeId>();
  readonly #committed = new Map<number, string>();

  constructor(opts: SimOptions) {
    this.#opts = opts;
    this.random = new SeededRandom(opts.seed);
    const conf: ConfState = { voters: opts.ids.filter((id) => !(opts.learners ?? []).includes(id)), learners: opts.learners ?? [] };
    const boot = bootstrapEntries(conf);
    for (const id of opts.ids) {
      const node: SimNode = {
        id,
        raft: undefined,
        disk: { hardState: { ...boot.hardState }, entries: boot.entries.map((e) => ({ ...e })), snapshot: undefined },
        applied: [],
        appliedIndex: 0,
        paused: false,
        reads: [],
      };
      this.nodes.set(id, node);
      this.#boot(node);
    }
  }

  get time(): number {
    return this.#time;
  }

  node(id: NodeId): SimNode {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  raft(id: NodeId): Raft {
    const r = this.node(id).raft;
    if (!r) throw new Error(`node ${id} is down`);
    return r;
  }

  /** Add a node that is not yet in any configuration (it will be added as a learner). */
  addNode(id: NodeId): void {
    const node: SimNode = {
      id,
      raft: undefined,
      disk: { hardState: undefined, entries: [], snapshot: undefined },
      applied: [],
      appliedIndex: 0,
      paused: false,
      reads: [],
    };
    this.nodes.set(id, node);
    this.#boot(node);
  }

  #boot(node: SimNode): void {
    const snap = node.disk.snapshot;
    node.applied = snap ? (JSON.parse(decoder.decode(snap.data)) as string[]) : [];
    node.appliedIndex = snap?.meta.index ?? 0;
    node.raft = new Raft(
      {
        id: node.id,
        electionTick: this.#opts.electionTick ?? 10,
        heartbeatTick: 1,
        random: new SeededRandom(this.random.int(2 ** 31)),
        ...this.#opts.raft,
      },
      {
        ...(node.disk.hardState ? { hardState: node.disk.hardState } : {}),
        ...(snap ? { snapshot: snap } : {}),
        conf: { voters: [], learners: [] },
        entries: node.disk.entries.map((e) => ({ ...e })),
        applied: node.appliedIndex,
      },
    );
  }

  /** kill -9: everything not on the disk is lost. */
  crash(id: NodeId): void {
    const n = this.node(id);
    n.raft = undefined;
    this.#inflight = this.#inflight.filter((f) => f.msg.to !== id);
  }

  restart(id: NodeId): void {
    const n = this.node(id);
    if (!n.raft) this.#boot(n);
  }

  isUp(id: NodeId): boolean {
    return this.node(id).raft !== undefined;
  }

  /** Cut both directions between each pair across the groups. */
  partition(...groups: NodeId[][]): void {
    this.heal();
    for (const a of groups) for (const b of groups) if (a !== b) for (const x of a) for (const y of b) this.#cut.add(`${x}>${y}`);
  }

  isolate(id: NodeId): void {
    for (const other of this.nodes.keys())
      if (other !== id) {
        this.#cut.add(`${id}>${other}`);
        this.#cut.add(`${other}>${id}`);
      }
  }

  cutOneWay(from: NodeId, to: NodeId): void {
    this.#cut.add(`${from}>${to}`);
  }

  heal(): void {
    this.#cut.clear();
  }

  /** Propose on `id`; false if it refused (no leader, transfer in progress). */
  propose(id: NodeId, value: string): boolean {
    try {
      this.raft(id).propose(encoder.encode(value));
      return true;
    } catch {
      return false;
    }
  }

  leaders(): NodeId[] {
    return [...this.nodes.values()].filter((n) => n.raft?.role === 'leader').map((n) => n.id);
  }

  /** The single leader that a majority of live nodes follow, if any. */
  leader(): NodeId | undefined {
    const ls = this.leaders();
    let best: NodeId | undefined;
    let bestTerm = -1;
    for (const l of ls) {
      const t = this.raft(l).term;
      if (t > bestTerm) [best, bestTerm] = [l, t];
    }
    return best;
  }

  /** Run `ticks` rounds: deliver due messages, tick every live node, process ready. */
  run(ticks: number): void {
    for (let i = 0; i < ticks; i++) this.#round();
  }

  /** Run until `cond` holds (checked each round) or `maxTicks` pass; returns whether it held. */
  runUntil(cond: () => boolean, maxTicks = 1000): boolean {
    for (let i = 0; i < maxTicks; i++) {
      if (cond()) return true;
      this.#round();
    }
    return cond();
  }

  #round(): void {
    this.#time++;
    const due = this.#inflight.filter((f) => f.at <= this.#time).sort((a, b) => a.at - b.at || a.seq - b.seq);
    this.#inflight = this.#inflight.filter((f) => f.at > this.#time);
    for (const f of due) this.#deliver(f.msg);
    for (const n of this.nodes.values()) if (n.raft && !n.paused) n.raft.tick();
    for (let settled = false, k = 0; !settled && k < 50; k++) {
      settled = true;
      for (const n of this.nodes.values())
        if (n.raft && !n.paused && n.raft.hasReady()) {
          settled = false;
          this.#process(n);
        }
    }
    this.#checkSafety();
  }

  #deliver(m: Message): void {
    const n = this.nodes.get(m.to);
    if (!n?.raft || n.paused) return;
    this.delivered.set(m.type, (this.delivered.get(m.type) ?? 0) + 1);
    try {
      n.raft.step(m);
    } catch {
      // A refused forwarded proposal or read is dropped, as the real driver does.
    }
  }

  #process(n: SimNode): void {
    const raft = n.raft as Raft;
    const rd = raft.ready();
    // 1. persist
    const snapshot = rd.snapshot;
    if (snapshot) {
      n.disk.snapshot = snapshot;
      n.disk.entries = n.disk.entries.filter((e) => e.index > snapshot.meta.index);
    }
    const first = rd.entries[0]?.index;
    if (first !== undefined) {
      n.disk.entries = n.disk.entries.filter((e) => e.index < first).concat(rd.entries.map((e) => ({ ...e })));
    }
    if (rd.hardState) n.disk.hardState = { ...rd.hardState };
    // 2. send
    for (const m of rd.messages) this.#send(m);
    // 3. apply
    if (rd.snapshot) {
      n.applied = JSON.parse(decoder.decode(rd.snapshot.data)) as string[];
      n.appliedIndex = rd.snapshot.meta.index;
    }
    for (const e of rd.committedEntries) {
      if (e.index !== n.appliedIndex + 1) throw new Error(`${n.id} applied ${e.index} after ${n.appliedIndex}: gap or repeat`);
      n.appliedIndex = e.index;
      const value =
        e.type === EntryType.normal && e.data.byteLength > 0
          ? decoder.decode(e.data)
          : `#${e.type === EntryType.confChange ? 'conf' : 'noop'}`;
      this.#checkCommitted(e.index, `${e.term}:${value}`, n.id);
      if (!value.startsWith('#')) n.applied.push(value);
    }
    n.reads.push(...rd.readStates);
    raft.advance(rd);
    // 4. snapshot and compact, as a driver would
    const every = this.#opts.snapshotEvery ?? 0;
    if (every > 0 && n.appliedIndex - (n.disk.snapshot?.meta.index ?? 0) >= every) {
      const term = raft.log.term(n.appliedIndex) as number;
      const snap: Snapshot = { meta: { index: n.appliedIndex, term, conf: raft.conf() }, data: encoder.encode(JSON.stringify(n.applied)) };
      n.disk.snapshot = snap;
      n.disk.entries = n.disk.entries.filter((e) => e.index > snap.meta.index);
      raft.snapshotCreated(snap, snap.meta.index);
    }
  }

  #send(m: Message): void {
    const lost = this.#cut.has(`${m.from}>${m.to}`) || (this.dropRate > 0 && this.random.next() < this.dropRate);
    // The transport tells the leader whether a snapshot got through, as the real one does.
    if (m.type === 'snap')
      this.#inflight.push({
        at: this.#time + 1,
        seq: this.#seq++,
        msg: { type: 'snapStatus', from: m.to, to: m.from, term: 0, reject: lost },
      });
    if (lost) return;
    const delay = 1 + (this.maxDelay > 0 ? this.random.int(this.maxDelay + 1) : 0);
    this.#inflight.push({ at: this.#time + delay, seq: this.#seq++, msg: m });
  }

  #checkCommitted(index: number, value: string, by: NodeId): void {
    const had = this.#committed.get(index);
    if (had === undefined) this.#committed.set(index, value);
    else if (had !== value) throw new Error(`state machine safety violated at index ${index}: ${had} vs ${value} (applied by ${by})`);
  }

  #checkSafety(): void {
    for (const n of this.nodes.values()) {
      if (n.raft?.role !== 'leader') continue;
      const had = this.#leaders.get(n.raft.term);
      if (had === undefined) this.#leaders.set(n.raft.term, n.id);
      else if (had !== n.id) throw new Error(`election safety violated: ${had} and ${n.id} both lead term ${n.raft.term}`);
    }
  }

  /** Values committed (applied somewhere), in index order. */
  committedValues(): string[] {
    return [...this.#committed.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([, v]) => v.slice(v.indexOf(':') + 1))
      .filter((v) => !v.startsWith('#'));
  }

  /** True when every live node has applied the same values. */
  converged(): boolean {
    const live = [...this.nodes.values()].filter((n) => n.raft);
    const first = live[0];
    return live.every(
      (n) => first !== undefined && n.appliedIndex === first.appliedIndex && n.applied.join('|') === first.applied.join('|'),
    );
  }
}
