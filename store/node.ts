/**
 * The driver: owns the Raft core, the WAL, snapshots, the peer transport and the state machine,
 * and runs the loop persist → send → apply → advance. The gRPC layer calls `write()`,
 * `linearizableRead()` and the membership methods; everything else is internal.
 */
import type { Logger } from 'pino';
import type { StoreNodeConfig } from './node-config.ts';
import type { TimerHandle } from '../lib/clock.ts';
import { BallastError } from '../lib/errors.ts';
import { AppliedWaiters } from './applied-waiters.ts';
import { bootMember } from './boot.ts';
import { decodeEnvelope, encodeEnvelope } from './format/codec.ts';
import { supportedFormats } from './format/formats.ts';
import { decodeState } from './format/state-codec.ts';
import { BackgroundSnapshots, pause } from './snapshot/background.ts';
import { FormatRecord } from './format/data-dir.ts';
import { asEtcd, catalogue } from './errors.ts';
import { clusterId as clusterIdOf, publishRequest } from './members.ts';
import { Membership } from './membership.ts';
import type { Raft } from './raft/raft.ts';
import { type Entry, EntryType, type Message, type NodeId, type Ready, type Snapshot, decodeConfChange } from './raft/types.ts';
import { LeaseTracker } from './lease-tracker.ts';
import { ReadBatcher } from './read-batcher.ts';
import { WatchHub } from './mvcc/watch.ts';
import type { Snapshotter } from './snapshot/snapshotter.ts';
import type { AuthInfo } from './auth/auth-store.ts';
import { type ApplyResult, type ConfContext, StateMachine, type StoreRequest } from './state-machine.ts';
import { Proposals } from './proposals.ts';
import { PeerTransport } from './transport/peer.ts';
import type { RpcHandler } from './transport/rpc.ts';
import type { Wal } from './wal/wal.ts';

export class StoreNode {
  readonly id: NodeId;
  readonly clusterId: string;
  readonly sm = new StateMachine();
  /** Watchers on this member, fed in apply order. */
  readonly watchHub = new WatchHub(() => this.sm.mvcc);
  /** Lease deadlines (meaningful while this member leads). */
  readonly leases: LeaseTracker;
  /** Membership changes and leadership transfer (store/membership.ts). */
  readonly membership: Membership;
  #watchTimer: TimerHandle | undefined;
  #progressTimer: TimerHandle | undefined;
  #leaseTimer: TimerHandle | undefined;
  readonly #cfg: StoreNodeConfig;
  readonly #log: Logger;
  readonly #raft: Raft;
  readonly #wal: Wal;
  readonly #snap: Snapshotter;
  readonly #transport: PeerTransport;
  readonly #proposals: Proposals;
  readonly #reads: ReadBatcher;
  readonly #applied: AppliedWaiters;
  readonly #format2: FormatRecord;
  #ticker: TimerHandle | undefined;
  #processing = false;
  #processingDone: Promise<void> = Promise.resolve();
  #scheduled = false;
  #stopped = false;
  #removed = false;
  #lastSnapIndex = 0;
  readonly #snapshots: BackgroundSnapshots;
  #lastLead: NodeId | '' | undefined;
  #leaderChangeListeners: Array<() => void> = [];
  #publishTimer: TimerHandle | undefined;
  /** Called when this member learns it was removed from the cluster. */
  onRemoved: (() => void) | undefined;
  /** Called when storage fails and the member stopped itself. */
  onFatal: ((err: Error) => void) | undefined;

  private constructor(cfg: StoreNodeConfig, id: NodeId, raft: Raft, wal: Wal, snap: Snapshotter) {
    this.#cfg = cfg;
    this.#log = cfg.log;
    this.id = id;
    this.clusterId = clusterIdOf(cfg.token);
    this.#raft = raft;
    this.#wal = wal;
    this.#snap = snap;
    this.#snapshots = new BackgroundSnapshots({
      snap,
      log: cfg.log,
      member: id,
      clock: cfg.clock,
      snapshotCount: cfg.snapshotCount,
      failpoints: cfg.failpoints,
      lastIndex: () => this.#lastSnapIndex,
      stopped: () => this.#stopped,
      saved: (s) => {
        // The file is durable: its WAL marker needs no fsync of its own (see Wal.saveSnapshot).
        this.#wal.saveSnapshot(s.meta.index, s.meta.term, false);
        this.#raft.snapshotCreated(s, Math.max(0, s.meta.index - this.#cfg.snapshotCatchUpEntries));
        this.#lastSnapIndex = s.meta.index;
      },
    });
    this.leases = new LeaseTracker(cfg.clock);
    this.#applied = new AppliedWaiters(cfg.clock);
    this.#format2 = new FormatRecord(cfg.dataDir, 2, cfg.version);
    this.membership = new Membership({
      clock: cfg.clock,
      token: cfg.token,
      electionMs: cfg.electionMs,
      heartbeatMs: cfg.heartbeatMs,
      members: () => this.sm.members,
      removed: () => this.sm.removed,
      raftStatus: () => this.#raft.status(),
      leader: () => this.#raft.lead,
      confChange: async (cc, member) => {
        const rid = this.#proposals.nextId();
        const r = await this.#await(rid, () => this.#raft.proposeConfChange({ ...cc, context: { rid, member } satisfies ConfContext }));
        if (r.error) throw new BallastError(r.error.code, r.error.message);
      },
      transferLeadership: (target) => {
        this.#raft.transferLeadership(target);
        this.#kick();
      },
      waitLeaderChange: (ms) => this.#waitLeaderChange(ms),
    });
    this.#proposals = new Proposals(cfg.clock, cfg.requestTimeoutMs, cfg.metrics);
    this.#reads = new ReadBatcher({
      clock: cfg.clock,
      timeoutMs: cfg.requestTimeoutMs,
      nextContext: () => this.#proposals.nextId('r'),
      requestReadIndex: (ctx) => {
        asEtcd(() => this.#raft.readIndex(ctx));
        this.#kick();
      },
    });
    this.sm.onLeaseChange = (id, ttl) => this.leases.onLeaseChange(id, ttl);
    wal.onSync = (s) => cfg.metrics.walFsync.observe(s);
    this.#transport = new PeerTransport({
      self: id,
      token: cfg.token,
      log: cfg.log,
      clock: cfg.clock,
      random: cfg.random,
      onMessages: (msgs) => this.#receive(msgs),
      onUnreachable: (peer) => this.#raft.reportUnreachable(peer),
      onSnapshotStatus: (peer, ok) => {
        this.#raft.reportSnapshot(peer, ok);
        this.#kick();
      },
      isRemoved: (peer) => this.sm.removed.has(peer),
      onRemovedFromCluster: () => this.#markRemoved(),
      members: () => [...this.sm.members.values()].map((m) => ({ id: m.id, name: m.name, peerURLs: m.peerURLs, clientURLs: m.clientURLs })),
      tls: cfg.peerTls,
      format: () => this.sm.format,
      onRequest: (from, method, body) => {
        if (!this.#peerRequests) return Promise.reject(catalogue.error('STORE_ERR_STOPPED', 'etcdserver: server stopped'));
        return this.#peerRequests(from, method, body);
      },
    });
  }

  #peerRequests: RpcHandler | undefined;

  /** Serve requests other members forward over the peer channel (the API layer answers them). */
  handlePeerRequests(handler: RpcHandler): void {
    this.#peerRequests = handler;
  }

  /**
   * Ask the leader to do leader-only work (lease keep-alive and time-to-live, a membership
   * change) over the peer channel: the peer URL, the peer TLS and the cluster token, so it works
   * whatever the client URLs' certificates (etcd forwards the same way).
   */
  forwardToLeader(method: string, body: unknown, timeoutMs: number): Promise<unknown> {
    const lead = this.#raft.lead;
    if (!lead) return Promise.reject(catalogue.error('STORE_ERR_NO_LEADER', 'etcdserver: no leader'));
    if (lead === this.id) return Promise.reject(catalogue.error('STORE_ERR_NOT_LEADER', 'etcdserver: not leader'));
    return this.#transport.request(lead, method, body, timeoutMs);
  }

  /** Ask another member over the peer channel. */
  askPeer(to: NodeId, method: string, body: unknown, timeoutMs: number): Promise<unknown> {
    return this.#transport.request(to, method, body, timeoutMs);
  }

  /** Open (or create) the member's data directory and recover its state (store/boot.ts). */
  static async open(cfg: StoreNodeConfig): Promise<StoreNode> {
    const b = await bootMember(cfg);
    const node = new StoreNode(cfg, b.id, b.raft, b.wal, b.snap);
    if (b.snapshot) node.#restoreSnapshot(b.snapshot);
    node.#transport.setPeers(b.peers);
    return node;
  }

  async start(): Promise<void> {
    await this.#transport.listen(this.#cfg.listenPeerUrls);
    this.#ticker = this.#cfg.clock.setInterval(() => {
      this.#raft.tick();
      this.#kick();
    }, this.#cfg.heartbeatMs);
    this.#publishTimer = this.#cfg.clock.setInterval(() => this.#maybePublish(), this.#cfg.heartbeatMs * 5, { unref: true });
    this.#watchTimer = this.#cfg.clock.setInterval(() => this.watchHub.catchUp(), 100, { unref: true });
    this.#progressTimer = this.#cfg.clock.setInterval(() => this.watchHub.notifyProgress(), this.#cfg.watchProgressNotifyMs ?? 600_000, {
      unref: true,
    });
    this.#leaseTimer = this.#cfg.clock.setInterval(() => this.#revokeExpired(), 500, { unref: true });
    this.#kick();
  }

  /**
   * The leader revokes expired leases through the log. Only while Raft says it leads (the
   * tracker learns of a step-down a little later, after the Ready that carries it), and the
   * revocation names the term it was decided in (see StoreRequest).
   */
  #revokeExpired(): void {
    if (this.#raft.role !== 'leader') return;
    this.leases.revokeExpired(
      this.#raft.term,
      (id, term) => this.write({ op: 'leaseRevoke', id, expiredInTerm: term }),
      (id) => this.#log.info({ member: this.id, lease: id }, 'lease expired and was revoked'),
    );
  }

  // ---- what the API layer uses --------------------------------------------------------------

  /**
   * Whether every member reads format 2, waiting up to `ms` for members that have not published
   * what they read yet (a cluster just started: each member publishes once it is up).
   */
  async formatReady(ms: number): Promise<boolean> {
    const clock = this.#cfg.clock;
    const end = clock.now() + ms;
    while (this.sm.format !== 2 && clock.now() < end) await new Promise<void>((r) => clock.setTimeout(r, 50));
    return this.sm.format === 2;
  }

  get term(): number {
    return this.#raft.term;
  }
  get leaderId(): NodeId | '' {
    return this.#raft.lead;
  }
  get isLeader(): boolean {
    return this.#raft.role === 'leader';
  }
  get appliedIndex(): number {
    return this.#raft.log.applied;
  }
  get commitIndex(): number {
    return this.#raft.log.committed;
  }
  get removed(): boolean {
    return this.#removed;
  }
  raftStatus() {
    return this.#raft.status();
  }

  /**
   * Replicate a write and resolve with its result once this member has applied it. `a`: who
   * asks, while auth is on (the state machine checks their permissions when it applies).
   */
  write(r: StoreRequest, a?: AuthInfo): Promise<ApplyResult> {
    const rid = this.#proposals.nextId();
    const data = encodeEnvelope(a ? { rid, r, a } : { rid, r }, this.sm.format);
    if (data.byteLength > this.#cfg.maxRequestBytes)
      return Promise.reject(catalogue.error('STORE_ERR_REQUEST_TOO_LARGE', 'etcdserver: request is too large'));
    return this.#await(rid, () => this.#raft.propose(data));
  }

  /** Resolves true once this member has applied `index`; false if that takes longer than `timeoutMs`. */
  waitApplied(index: number, timeoutMs: number): Promise<boolean> {
    return this.#applied.wait(index, this.#raft.log.applied, timeoutMs);
  }

  /** Resolves once this member's state reflects every write acknowledged before the call. */
  linearizableRead(): Promise<void> {
    this.#checkRunning();
    if (this.#cfg.unsafeStaleReads) return Promise.resolve();
    return this.#reads.wait();
  }

  /** Graceful stop: a leader hands over first (so clients see no election gap), then everything closes. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    if (this.isLeader && !this.#removed) await this.membership.handOver(this.id, this.#log);
    this.#stopped = true;
    this.#ticker?.cancel();
    this.#publishTimer?.cancel();
    this.#watchTimer?.cancel();
    this.#progressTimer?.cancel();
    this.#leaseTimer?.cancel();
    await this.#processingDone; // never close the WAL under an fsync in flight
    await this.#snapshots.inFlight; // nor under a snapshot's (it sees #stopped and leaves no file)
    const stopped = catalogue.error('STORE_ERR_STOPPED', 'etcdserver: server stopped');
    this.#proposals.failAll(stopped);
    this.#reads.failAll(stopped);
    await this.#transport.stop();
    this.#wal.close();
  }

  // ---- internals ----------------------------------------------------------------------------

  #checkRunning(): void {
    if (this.#stopped) throw catalogue.error('STORE_ERR_STOPPED', 'etcdserver: server stopped');
    if (this.#removed) throw catalogue.error('STORE_ERR_STOPPED', 'etcdserver: the member has been permanently removed from the cluster');
  }

  #await(rid: string, propose: () => void): Promise<ApplyResult> {
    this.#checkRunning();
    const applied = this.#proposals.wait(rid, propose);
    this.#kick();
    return applied;
  }

  #receive(msgs: Message[]): void {
    for (const m of msgs) {
      if (this.sm.removed.has(m.from)) continue; // a removed member must not disturb the cluster
      try {
        this.#raft.step(m);
      } catch (err) {
        // A forwarded proposal or read the leader cannot take is dropped; the client times out or retries.
        this.#log.debug({ err, from: m.from, type: m.type }, 'dropped a forwarded request');
      }
    }
    this.#kick();
  }

  #kick(): void {
    if (this.#scheduled || this.#stopped) return;
    this.#scheduled = true;
    // setImmediate: let every request that arrived in this turn of the event loop join the
    // same Ready, so one fsync covers them all (group commit).
    setImmediate(() => {
      this.#scheduled = false;
      this.#process();
    });
  }

  /**
   * Drain the core's Ready batches, one at a time. Each waits for its fsync (off the event
   * loop); peers' messages and proposals keep stepping into the core meanwhile and join the
   * next batch (Raft permits stepping between ready() and advance()).
   */
  #process(): void {
    if (this.#processing || this.#stopped) return;
    this.#processing = true;
    this.#processingDone = (async () => {
      try {
        while (this.#raft.hasReady() && !this.#stopped) await this.#handleReady(this.#raft.ready());
      } catch (err) {
        // A failed fsync or apply leaves no safe way forward: stop rather than risk divergence.
        this.#log.fatal({ err, member: this.id }, 'storage failure; stopping the member');
        this.#stopped = true;
        this.#ticker?.cancel();
        process.exitCode = 1;
        queueMicrotask(() => this.onFatal?.(err as Error));
      } finally {
        this.#processing = false;
      }
    })();
  }

  async #handleReady(rd: Ready): Promise<void> {
    if (rd.softState) this.#onSoftState(rd.softState.lead);
    // A leader's appends and heartbeats do not depend on its own unsynced entries (its own
    // acknowledgement counts only after advance), so they go out before its fsync and the
    // followers write in parallel with it (Raft thesis 10.2.1). Everything else waits.
    const early = this.#raft.role === 'leader' ? rd.messages.filter((m) => m.type === 'app' || m.type === 'heartbeat') : [];
    if (early.length > 0) this.#transport.send(early);
    // 1. persist: the snapshot file before its WAL marker, entries and hard state with one fsync.
    if (rd.snapshot) {
      // Written off the event loop (a large one took seconds): heartbeats go on meanwhile.
      if (!(await this.#snap.saveAsync(rd.snapshot, { pause, proceed: () => !this.#stopped }))) return;
      this.#wal.saveSnapshot(rd.snapshot.meta.index, rd.snapshot.meta.term);
    }
    // The data directory says which format it holds before the first format-2 entry lands in it
    // (a later build reads it; an older one is refused by name rather than misreading).
    if (!this.#format2.recorded && rd.entries.some((e) => e.data[0] === 2)) this.#format2.record();
    const synced = this.#wal.saveAsync(rd.hardState, rd.entries);
    // 3 before 2, while the disk syncs: the core hands out only committed entries that are durable
    // here already (at or below its stable index), never this Ready's own, so applying them need
    // not wait for this sync, and their answers do not wait for an fsync that is not theirs (etcd
    // applies beside its WAL sync the same way). Not with a snapshot in the Ready or a membership
    // change among them: those keep persist, then apply.
    const applyNow = !rd.snapshot && !rd.committedEntries.some((e) => e.type === EntryType.confChange);
    if (applyNow) {
      synced?.catch(() => undefined); // should applying throw, that is the failure reported
      this.#apply(rd.committedEntries);
    }
    if (synced) await synced;
    if (this.#stopped) return;
    // 2. send what depends on the now-durable state (votes, acknowledgements, ...).
    this.#transport.send(early.length > 0 ? rd.messages.filter((m) => !early.includes(m)) : rd.messages);
    // 3. apply
    if (rd.snapshot) this.#restoreSnapshot(rd.snapshot);
    if (!applyNow) this.#apply(rd.committedEntries);
    for (const rs of rd.readStates) this.#reads.onReadState(rs.context, rs.index);
    this.#raft.advance(rd);
    this.#reads.onApplied(this.#raft.log.applied);
    this.#applied.notify(this.#raft.log.applied);
    this.#maybeSnapshot();
  }

  #apply(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const start = performance.now();
    for (const e of entries) this.#applyEntry(e);
    this.#cfg.metrics.applyDuration.observe((performance.now() - start) / 1000);
  }

  #applyEntry(e: Entry): void {
    const m = this.#cfg.metrics;
    if (e.type === EntryType.confChange) {
      const cc = decodeConfChange(e.data);
      this.sm.applyConfChange(cc);
      this.#updatePeers();
      const ctx = cc.context as ConfContext | undefined;
      if (ctx?.rid) this.#proposals.resolve(ctx.rid, { revision: this.sm.mvcc.revision, events: [] });
      if (cc.type === 'remove' && cc.id === this.id) this.#markRemoved();
    } else if (e.data.byteLength > 0) {
      const env = decodeEnvelope(e.data);
      const r = this.sm.apply(env.r, e.term, e.index, env.a);
      if (r.events.length > 0) this.watchHub.onApplied(r.events, r.revision);
      if (env.rid) this.#proposals.resolve(env.rid, r);
    }
    m.proposalsCommitted.inc();
    m.proposalsApplied.inc();
  }

  #markRemoved(): void {
    if (this.#removed) return;
    this.#removed = true;
    this.#log.warn({ member: this.id }, 'the member has been permanently removed from the cluster');
    queueMicrotask(() => this.onRemoved?.());
  }

  #updatePeers(): void {
    const peers = new Map<NodeId, URL>();
    for (const m of this.sm.members.values()) if (m.peerURLs[0]) peers.set(m.id, new URL(m.peerURLs[0]));
    this.#transport.setPeers(peers);
  }

  #onSoftState(lead: NodeId | ''): void {
    // Soft state also changes with the role (pre-candidate, candidate); only a new leader matters here.
    if (lead === this.#lastLead) return;
    this.#lastLead = lead;
    const m = this.#cfg.metrics;
    if (lead === this.id) this.leases.promote();
    else this.leases.demote();
    m.hasLeader.set(lead === '' ? 0 : 1);
    m.isLeader.set(lead === this.id ? 1 : 0);
    if (lead !== '') m.leaderChanges.inc();
    this.#log.info({ member: this.id, term: this.#raft.term, leader: lead }, lead === '' ? 'lost the leader' : 'leader known');
    for (const fn of this.#leaderChangeListeners.splice(0)) fn();
    if (lead !== '') queueMicrotask(() => this.#maybePublish());
    if (lead === '') this.#reads.failAll(catalogue.error('STORE_ERR_NO_LEADER', 'etcdserver: no leader'));
  }

  #waitLeaderChange(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = this.#cfg.clock.setTimeout(resolve, ms);
      this.#leaderChangeListeners.push(() => {
        t.cancel();
        resolve();
      });
    });
  }

  /** Every `snapshotCount` applied entries, a snapshot in the background (store/snapshot/background.ts). */
  #maybeSnapshot(): void {
    const applied = this.#raft.log.applied;
    if (!this.#snapshots.due(applied)) return;
    const term = this.#raft.log.term(applied);
    if (term === undefined) return;
    const format = this.sm.format;
    if (format === 2) this.#format2.record();
    this.#snapshots.start({ index: applied, term, conf: this.#raft.conf() }, this.sm.view(), format);
  }

  #restoreSnapshot(snap: Snapshot): void {
    this.sm.restore(decodeState(snap.data));
    this.#lastSnapIndex = snap.meta.index;
    this.#updatePeers();
    this.watchHub.resyncAll();
  }

  /** Publish this member's name and client URLs into the member table (as etcd does). */
  #maybePublish(): void {
    if (this.#stopped || this.#removed) return;
    if (this.#raft.lead === '') {
      // No leader: make sure every peer has a connection, so a removed member is told.
      this.#transport.probe();
      return;
    }
    const publish = publishRequest(this.sm.members.get(this.id), {
      id: this.id,
      name: this.#cfg.name,
      clientURLs: this.#cfg.advertiseClientUrls,
      formats: supportedFormats,
      version: this.#cfg.version,
    });
    if (publish) this.write(publish).catch(() => undefined);
  }
}
