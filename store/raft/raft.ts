/**
 * The Raft consensus core. Pure: no I/O, no timers, no real randomness. The driver calls
 * `tick()` on a clock, feeds peers' messages to `step()`, and performs each `ready()` batch in
 * order (persist → send → apply) before calling `advance()`.
 *
 * Implements leader election with randomized timeouts, pre-vote and check-quorum; pipelined,
 * batched log replication with flow control; commit on quorum (current-term entries only);
 * snapshots and log compaction; learners and single-server membership changes; leadership
 * transfer; ReadIndex reads. The shape follows etcd's raft package.
 */
import type { Random } from '../../lib/random.ts';
import { RaftError } from './raft-error.ts';
import { RaftLog } from './log.ts';
import type { Progress } from './progress.ts';
import { ReadOnly } from './read-only.ts';
import { ProgressTracker } from './tracker.ts';
import {
  type ConfChange,
  type ConfState,
  type Entry,
  EntryType,
  type HardState,
  type Message,
  type NodeId,
  type Ready,
  type ReadState,
  type Role,
  type Snapshot,
  type SoftState,
  decodeConfChange,
  emptyBytes,
  encodeConfChange,
} from './types.ts';

export interface RaftConfig {
  id: NodeId;
  /** Ticks without a leader before campaigning; randomized in [electionTick, 2*electionTick). */
  electionTick: number;
  heartbeatTick: number;
  random: Random;
  preVote?: boolean;
  checkQuorum?: boolean;
  /** Largest batch of entries in one append message, in bytes. */
  maxSizePerMsg?: number;
  maxInflightMsgs?: number;
  maxInflightBytes?: number;
  /** Largest batch of committed entries handed out in one Ready, in bytes. */
  maxCommittedSizePerReady?: number;
  /** A learner within this fraction of the leader's last index may be promoted (etcd: 0.9). */
  learnerReadyFraction?: number;
}

/** What a member starts from: its durable state (empty on first boot). */
export interface RaftBoot {
  hardState?: HardState;
  /** The snapshot the log starts after (restart), or the initial configuration (first boot). */
  snapshot?: Snapshot;
  conf?: ConfState;
  entries?: Entry[];
  /** Index the state machine has applied (the snapshot's, after a restart). */
  applied?: number;
}

export interface RaftStatus {
  id: NodeId;
  term: number;
  vote: NodeId | '';
  lead: NodeId | '';
  role: Role;
  commit: number;
  applied: number;
  lastIndex: number;
  firstIndex: number;
  conf: ConfState;
  transferee: NodeId | '';
  progress: Record<NodeId, { match: number; next: number; state: string; learner: boolean; active: boolean }>;
}

const none = '' as const;

export class Raft {
  readonly id: NodeId;
  term = 0;
  vote: NodeId | '' = none;
  lead: NodeId | '' = none;
  role: Role = 'follower';
  readonly log = new RaftLog();

  readonly #cfg: Required<RaftConfig>;
  readonly #tracker = new ProgressTracker();
  readonly #reads = new ReadOnly();
  #msgs: Message[] = [];
  #readStates: ReadState[] = [];
  #electionElapsed = 0;
  #heartbeatElapsed = 0;
  #randomizedElectionTimeout = 0;
  #transferee: NodeId | '' = none;
  #pendingConfIndex = 0;
  #snapshot: Snapshot | undefined;
  #prevHard: HardState = { term: 0, vote: none, commit: 0 };
  #prevSoft: SoftState = { lead: none, role: 'follower' };

  constructor(cfg: RaftConfig, boot: RaftBoot = {}) {
    this.id = cfg.id;
    this.#cfg = {
      preVote: true,
      checkQuorum: true,
      maxSizePerMsg: 1 << 20,
      maxInflightMsgs: 256,
      maxInflightBytes: 0,
      maxCommittedSizePerReady: 16 << 20,
      learnerReadyFraction: 0.9,
      ...cfg,
    };
    const conf = boot.snapshot?.meta.conf ?? boot.conf ?? { voters: [cfg.id], learners: [] };
    this.#tracker.setConf(conf);
    if (boot.snapshot) {
      this.log.restore(boot.snapshot);
      this.#snapshot = boot.snapshot;
    }
    if (boot.entries?.length) {
      this.log.entries = boot.entries.filter((e) => e.index > this.log.snapIndex);
      this.log.stable = this.log.lastIndex();
    }
    if (boot.hardState) {
      this.term = boot.hardState.term;
      this.vote = boot.hardState.vote;
      this.log.committed = Math.min(Math.max(boot.hardState.commit, this.log.snapIndex), this.log.lastIndex());
      this.#prevHard = { ...boot.hardState, commit: this.log.committed };
    }
    this.log.applied = Math.max(boot.applied ?? this.log.snapIndex, this.log.snapIndex);
    this.#becomeFollower(this.term, none);
    this.#prevSoft = { lead: none, role: 'follower' };
  }

  // ---- inputs -------------------------------------------------------------------------------

  /** Advance logical time by one tick. */
  tick(): void {
    if (this.role === 'leader') this.#tickHeartbeat();
    else this.#tickElection();
  }

  /** Start an election now (if this member may vote). */
  campaign(): void {
    this.step({ type: 'hup', from: this.id, to: this.id, term: 0 });
  }

  /** Propose `data`; a follower forwards it to the leader. Throws when it cannot be accepted. */
  propose(data: Uint8Array): void {
    this.step({ type: 'prop', from: this.id, to: this.id, term: 0, entries: [{ term: 0, index: 0, type: EntryType.normal, data }] });
  }

  /** Propose a membership change. Only the leader takes these, one at a time. */
  proposeConfChange(cc: ConfChange): void {
    if (this.role !== 'leader') throw new RaftError('NOT_LEADER', 'membership changes go to the leader');
    if (this.#pendingConfIndex > this.log.applied)
      throw new RaftError(
        'CONF_CHANGE_PENDING',
        `a membership change (index ${this.#pendingConfIndex}) is still being applied; retry after it commits`,
      );
    if (cc.type === 'promote') {
      if (!this.#tracker.learners.has(cc.id))
        throw this.#tracker.voters.has(cc.id)
          ? new RaftError('MEMBER_NOT_LEARNER', `${cc.id} is a voter already`)
          : new RaftError('MEMBER_NOT_FOUND', `no member ${cc.id}`);
      const pr = this.#tracker.progress.get(cc.id);
      const needed = Math.floor(this.log.lastIndex() * this.#cfg.learnerReadyFraction);
      if (!pr || pr.match < needed) {
        throw new RaftError(
          'LEARNER_NOT_READY',
          `learner ${cc.id} has ${pr?.match ?? 0} of ${this.log.lastIndex()} entries; needs ${needed}`,
        );
      }
    }
    if (cc.type === 'remove' && !this.#tracker.voters.has(cc.id) && !this.#tracker.learners.has(cc.id))
      throw new RaftError('MEMBER_NOT_FOUND', `no member ${cc.id}`);
    this.step({
      type: 'prop',
      from: this.id,
      to: this.id,
      term: 0,
      entries: [{ term: 0, index: 0, type: EntryType.confChange, data: encodeConfChange(cc) }],
    });
  }

  /** Ask for a linearizable read point; answered through `ready().readStates` with `context`. */
  readIndex(context: string): void {
    this.step({ type: 'readIndex', from: this.id, to: this.id, term: 0, context });
  }

  /** Hand leadership to `to` (it must be a caught-up voter). */
  transferLeadership(to: NodeId): void {
    this.step({ type: 'transferLeader', from: to, to: this.id, term: 0 });
  }

  reportUnreachable(id: NodeId): void {
    this.step({ type: 'unreachable', from: id, to: this.id, term: 0 });
  }

  reportSnapshot(id: NodeId, ok: boolean): void {
    this.step({ type: 'snapStatus', from: id, to: this.id, term: 0, reject: !ok });
  }

  /**
   * The driver made a snapshot of the state machine at `snap.meta.index` (<= applied); drop the
   * log up to `compactTo` (keep some entries behind the snapshot for followers that lag a little).
   */
  snapshotCreated(snap: Snapshot, compactTo: number): void {
    if (this.#snapshot && snap.meta.index <= this.#snapshot.meta.index) return;
    this.#snapshot = snap;
    this.log.compact(Math.min(compactTo, snap.meta.index));
  }

  // ---- the message state machine ------------------------------------------------------------

  step(m: Message): void {
    // Term 0 marks a local input or a forwarded request (proposal, read, transfer): no term check.
    if (m.term > this.term) {
      if (m.type === 'vote' || m.type === 'preVote') {
        const force = m.context === 'transfer';
        const inLease = this.#cfg.checkQuorum && this.lead !== none && this.#electionElapsed < this.#cfg.electionTick;
        // A member that hears from a live leader ignores disruptive candidates (thesis §9.6).
        if (!force && inLease) return;
      }
      if (m.type === 'preVote') {
        // never change term on a pre-vote
      } else if (m.type === 'preVoteResp' && !m.reject) {
        // a granted pre-vote carries the future term; counted below
      } else {
        const lead = m.type === 'app' || m.type === 'heartbeat' || m.type === 'snap' ? m.from : none;
        this.#becomeFollower(m.term, lead);
      }
    } else if (m.term !== 0 && m.term < this.term) {
      if ((this.#cfg.checkQuorum || this.#cfg.preVote) && (m.type === 'app' || m.type === 'heartbeat')) {
        // Tell a stale leader about the newer term so it steps down.
        this.#send({ type: 'appResp', to: m.from, term: this.term });
      } else if (m.type === 'preVote') {
        this.#send({ type: 'preVoteResp', to: m.from, term: this.term, reject: true });
      }
      return;
    }

    switch (m.type) {
      case 'hup':
        if (this.role !== 'leader') this.#hup(false);
        return;
      case 'vote':
      case 'preVote':
        this.#handleVoteRequest(m);
        return;
    }
    switch (this.role) {
      case 'leader':
        this.#stepLeader(m);
        break;
      case 'candidate':
      case 'preCandidate':
        this.#stepCandidate(m);
        break;
      case 'follower':
        this.#stepFollower(m);
        break;
    }
  }

  #handleVoteRequest(m: Message): void {
    const canVote = this.vote === m.from || (this.vote === none && this.lead === none) || (m.type === 'preVote' && m.term > this.term);
    const respType = m.type === 'vote' ? 'voteResp' : 'preVoteResp';
    if (canVote && this.log.isUpToDate(m.index ?? 0, m.logTerm ?? 0)) {
      this.#send({ type: respType, to: m.from, term: m.term });
      if (m.type === 'vote') {
        this.#electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.#send({ type: respType, to: m.from, term: this.term, reject: true });
    }
  }

  #stepLeader(m: Message): void {
    switch (m.type) {
      case 'prop': {
        if (!this.#tracker.progress.has(this.id)) throw new RaftError('PROPOSAL_DROPPED', 'this member was removed from the cluster');
        if (this.#transferee !== none)
          throw new RaftError('PROPOSAL_DROPPED', `leadership is moving to ${this.#transferee}; retry shortly`);
        const entries = m.entries ?? [];
        for (const e of entries) {
          if (e.type === EntryType.confChange) {
            if (this.#pendingConfIndex > this.log.applied)
              throw new RaftError('CONF_CHANGE_PENDING', 'a membership change is still being applied; retry after it commits');
            this.#pendingConfIndex = this.log.lastIndex() + 1;
          }
        }
        this.#appendEntries(entries);
        this.#broadcastAppend();
        return;
      }
      case 'readIndex':
        this.#leaderReadIndex(m);
        return;
      case 'appResp':
        this.#handleAppendResponse(m);
        return;
      case 'heartbeatResp':
        this.#handleHeartbeatResponse(m);
        return;
      case 'transferLeader':
        this.#handleTransfer(m.from);
        return;
      case 'snapStatus': {
        const pr = this.#tracker.progress.get(m.from);
        if (!pr || pr.state !== 'snapshot') return;
        if (m.reject) pr.pendingSnapshot = 0;
        pr.becomeProbe();
        // Wait for the follower's answer to the snapshot before probing again.
        pr.probeSent = !m.reject;
        return;
      }
      case 'unreachable': {
        const pr = this.#tracker.progress.get(m.from);
        if (pr?.state === 'replicate') pr.becomeProbe();
        return;
      }
      default:
        return;
    }
  }

  #stepCandidate(m: Message): void {
    switch (m.type) {
      case 'prop':
        throw new RaftError('NO_LEADER', 'no leader');
      case 'app':
      case 'heartbeat':
      case 'snap':
        this.#becomeFollower(m.term, m.from);
        this.#stepFollower(m);
        return;
      case 'voteResp':
      case 'preVoteResp': {
        if ((m.type === 'voteResp') !== (this.role === 'candidate')) return;
        this.#tracker.recordVote(m.from, !m.reject);
        const result = this.#tracker.tally();
        if (result === 'won') {
          if (this.role === 'preCandidate') this.#campaignReal(false);
          else {
            this.#becomeLeader();
            this.#broadcastAppend();
          }
        } else if (result === 'lost') {
          this.#becomeFollower(this.term, none);
        }
        return;
      }
      case 'readIndex':
        throw new RaftError('NO_LEADER', 'no leader');
      default:
        return;
    }
  }

  #stepFollower(m: Message): void {
    switch (m.type) {
      case 'prop':
        if (this.lead === none) throw new RaftError('NO_LEADER', 'no leader');
        this.#send({ ...m, to: this.lead, term: 0 });
        return;
      case 'app':
        this.#electionElapsed = 0;
        this.lead = m.from;
        this.#handleAppend(m);
        return;
      case 'heartbeat':
        this.#electionElapsed = 0;
        this.lead = m.from;
        this.log.commitTo(Math.min(m.commit ?? 0, this.log.lastIndex()));
        this.#send({ type: 'heartbeatResp', to: m.from, term: this.term, ...(m.context ? { context: m.context } : {}) });
        return;
      case 'snap':
        this.#electionElapsed = 0;
        this.lead = m.from;
        this.#handleSnapshot(m);
        return;
      case 'transferLeader':
        if (this.lead !== none) this.#send({ type: 'transferLeader', from: m.from, to: this.lead, term: 0 });
        return;
      case 'timeoutNow':
        // The leader chose us: campaign at once, skipping pre-vote and the lease check.
        if (this.#tracker.voters.has(this.id)) this.#hup(true);
        return;
      case 'readIndex':
        if (this.lead === none) throw new RaftError('NO_LEADER', 'no leader');
        this.#send({ type: 'readIndex', to: this.lead, term: 0, ...(m.context ? { context: m.context } : {}) });
        return;
      case 'readIndexResp':
        this.#readStates.push({ index: m.index ?? 0, context: m.context ?? '' });
        return;
      default:
        return;
    }
  }

  // ---- elections ----------------------------------------------------------------------------

  #tickElection(): void {
    this.#electionElapsed++;
    if (this.#tracker.voters.has(this.id) && this.#electionElapsed >= this.#randomizedElectionTimeout) {
      this.#electionElapsed = 0;
      this.campaign();
    }
  }

  #tickHeartbeat(): void {
    this.#heartbeatElapsed++;
    this.#electionElapsed++;
    if (this.#electionElapsed >= this.#cfg.electionTick) {
      this.#electionElapsed = 0;
      if (this.#cfg.checkQuorum && !this.#tracker.quorumActive(this.id)) {
        this.#becomeFollower(this.term, none);
        return;
      }
      this.#transferee = none; // a transfer that has not finished within an election timeout is abandoned
    }
    if (this.#heartbeatElapsed >= this.#cfg.heartbeatTick) {
      this.#heartbeatElapsed = 0;
      this.#broadcastHeartbeat();
    }
  }

  #hup(transfer: boolean): void {
    if (!this.#tracker.voters.has(this.id)) return;
    // A member with unapplied membership changes must not campaign: its view of the voters may be stale.
    if (this.log.nextCommitted(Infinity).some((e) => e.type === EntryType.confChange)) return;
    if (this.#cfg.preVote && !transfer) this.#campaignPre();
    else this.#campaignReal(transfer);
  }

  #campaignPre(): void {
    this.role = 'preCandidate';
    this.lead = none;
    this.#tracker.resetVotes(this.id);
    if (this.#tracker.tally() === 'won') return this.#campaignReal(false);
    for (const id of this.#tracker.voters) {
      if (id !== this.id)
        this.#send({ type: 'preVote', to: id, term: this.term + 1, index: this.log.lastIndex(), logTerm: this.log.lastTerm() });
    }
  }

  #campaignReal(transfer: boolean): void {
    this.#becomeCandidate();
    if (this.#tracker.tally() === 'won') {
      this.#becomeLeader();
      return;
    }
    for (const id of this.#tracker.voters) {
      if (id !== this.id)
        this.#send({
          type: 'vote',
          to: id,
          term: this.term,
          index: this.log.lastIndex(),
          logTerm: this.log.lastTerm(),
          ...(transfer ? { context: 'transfer' } : {}),
        });
    }
  }

  #becomeFollower(term: number, lead: NodeId | ''): void {
    this.#reset(term);
    this.role = 'follower';
    this.lead = lead;
  }

  #becomeCandidate(): void {
    this.#reset(this.term + 1);
    this.vote = this.id;
    this.role = 'candidate';
    this.#tracker.resetVotes(this.id);
  }

  #becomeLeader(): void {
    this.#reset(this.term);
    this.role = 'leader';
    this.lead = this.id;
    const self = this.#tracker.progress.get(this.id);
    if (self) {
      self.becomeReplicate();
      self.match = this.log.stable;
      self.next = this.log.lastIndex() + 1;
    }
    // Any unapplied conf entry might be a conf change; be conservative.
    this.#pendingConfIndex = this.log.lastIndex();
    // The no-op of the new term: commits the previous terms' entries (§5.4.2) and enables reads.
    this.#appendEntries([{ term: 0, index: 0, type: EntryType.normal, data: emptyBytes }]);
  }

  #reset(term: number): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = none;
    }
    this.lead = none;
    this.#electionElapsed = 0;
    this.#heartbeatElapsed = 0;
    this.#randomizedElectionTimeout = this.#cfg.electionTick + this.#cfg.random.int(this.#cfg.electionTick);
    this.#tracker.resetVotes();
    this.#transferee = none;
    this.#reads.reset();
    this.#resetProgress();
  }

  #resetProgress(): void {
    this.#tracker.resetProgress(this.log.lastIndex() + 1, this.id, this.log.stable);
  }

  // ---- replication --------------------------------------------------------------------------

  #appendEntries(entries: Entry[]): void {
    let index = this.log.lastIndex();
    const stamped = entries.map((e) => ({ ...e, term: this.term, index: ++index }));
    this.log.append(stamped);
    // The leader's own acknowledgement comes when the driver has persisted them (advance()).
  }

  /** Send new entries to every follower; with nothing new, an empty append still carries the commit index. */
  #broadcastAppend(): void {
    for (const id of this.#tracker.progress.keys()) if (id !== this.id) this.#sendAppend(id, true);
  }

  #broadcastHeartbeat(context?: string): void {
    for (const [id, pr] of this.#tracker.progress) {
      if (id === this.id) continue;
      // Never tell a follower to commit past what it is known to hold.
      const commit = Math.min(pr.match, this.log.committed);
      this.#send({ type: 'heartbeat', to: id, term: this.term, commit, ...(context ? { context } : {}) });
    }
  }

  /** Send entries (or a snapshot) to `to`; an empty append still probes. */
  #sendAppend(to: NodeId, allowEmpty = true): boolean {
    const pr = this.#tracker.progress.get(to);
    if (!pr || pr.isPaused({ maxInflightMsgs: this.#cfg.maxInflightMsgs, maxInflightBytes: this.#cfg.maxInflightBytes })) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.log.term(prevIndex);
    if (prevTerm === undefined || pr.next < this.log.firstIndex()) return this.#sendSnapshot(to, pr);
    const entries = pr.next <= this.log.lastIndex() ? this.log.slice(pr.next, this.log.lastIndex() + 1, this.#cfg.maxSizePerMsg) : [];
    if (entries.length === 0 && !allowEmpty && pr.state === 'replicate') return false;
    const bytes = entries.reduce((n, e) => n + e.data.byteLength, 0);
    this.#send({ type: 'app', to, term: this.term, index: prevIndex, logTerm: prevTerm, entries, commit: this.log.committed });
    if (entries.length > 0) pr.sentEntries((entries[entries.length - 1] as Entry).index, bytes);
    else if (pr.state === 'probe') pr.probeSent = true;
    return true;
  }

  #sendSnapshot(to: NodeId, pr: Progress): boolean {
    const snap = this.#snapshot;
    if (!snap) return false; // nothing compacted yet, cannot happen; keep probing
    pr.becomeSnapshot(snap.meta.index);
    this.#send({ type: 'snap', to, term: this.term, snapshot: snap });
    return true;
  }

  #handleAppend(m: Message): void {
    const prevIndex = m.index ?? 0;
    if (prevIndex < this.log.committed) {
      // Already have everything up to our commit; say so.
      this.#send({ type: 'appResp', to: m.from, term: this.term, index: this.log.committed });
      return;
    }
    const last = this.log.maybeAppend(prevIndex, m.logTerm ?? 0, m.commit ?? 0, m.entries ?? []);
    if (last !== undefined) {
      this.#send({ type: 'appResp', to: m.from, term: this.term, index: last });
    } else {
      const hint = this.log.findConflictByTerm(prevIndex, m.logTerm ?? 0);
      this.#send({ type: 'appResp', to: m.from, term: this.term, index: prevIndex, reject: true, logTerm: hint.term, commit: hint.index });
    }
  }

  #handleAppendResponse(m: Message): void {
    const pr = this.#tracker.progress.get(m.from);
    if (!pr) return;
    pr.recentActive = true;
    if (m.reject) {
      // The follower's hint: its largest index <= rejected whose term <= the term we sent.
      let next = m.commit ?? 0;
      if ((m.logTerm ?? 0) > 0) {
        // Skip our own entries of terms the follower does not have (fast back-up).
        const ours = this.log.findConflictByTerm(next, m.logTerm ?? 0);
        next = ours.index;
      }
      if (pr.maybeDecrTo(m.index ?? 0, next)) {
        if (pr.state === 'replicate') pr.becomeProbe();
        this.#sendAppend(m.from);
      }
      return;
    }
    const old = pr.match;
    if (!pr.maybeUpdate(m.index ?? 0)) {
      if (pr.state === 'probe' && old === (m.index ?? 0)) pr.probeSent = false;
      return;
    }
    if (pr.state === 'probe') pr.becomeReplicate();
    else if (pr.state === 'snapshot' && pr.match >= pr.pendingSnapshot) pr.becomeProbe();
    if (this.#maybeCommit()) this.#broadcastAppend();
    else if (pr.match < this.log.lastIndex() || old !== pr.match) this.#sendAppend(m.from, false);
    // Keep filling the pipeline while there is more to send.
    while (this.#sendAppendIfMore(m.from)) {
      /* send until paused or caught up */
    }
    if (m.from === this.#transferee && pr.match === this.log.lastIndex()) this.#send({ type: 'timeoutNow', to: m.from, term: this.term });
  }

  #sendAppendIfMore(to: NodeId): boolean {
    const pr = this.#tracker.progress.get(to);
    if (!pr || pr.state !== 'replicate' || pr.next > this.log.lastIndex()) return false;
    return this.#sendAppend(to, false);
  }

  #handleHeartbeatResponse(m: Message): void {
    const pr = this.#tracker.progress.get(m.from);
    if (!pr) return;
    pr.recentActive = true;
    pr.probeSent = false;
    if (pr.match < this.log.lastIndex()) this.#sendAppend(m.from);
    if (m.context) this.#ackRead(m.context, m.from);
  }

  #maybeCommit(): boolean {
    const index = this.#tracker.quorumMatch();
    // Only entries of the current term commit by counting replicas (Raft §5.4.2, Figure 8).
    if (index > this.log.committed && this.log.term(index) === this.term) {
      this.log.commitTo(index);
      this.#releaseDeferredReads();
      return true;
    }
    return false;
  }

  #handleSnapshot(m: Message): void {
    const snap = m.snapshot as Snapshot;
    if (snap.meta.index <= this.log.committed) {
      this.#send({ type: 'appResp', to: m.from, term: this.term, index: this.log.committed });
      return;
    }
    if (this.log.matchTerm(snap.meta.index, snap.meta.term)) {
      // We already hold the snapshot's last entry: just fast-forward the commit.
      this.log.commitTo(snap.meta.index);
      this.#send({ type: 'appResp', to: m.from, term: this.term, index: this.log.lastIndex() });
      return;
    }
    this.log.restore(snap);
    this.log.pendingSnapshot = snap;
    this.#snapshot = snap;
    this.#tracker.setConf(snap.meta.conf);
    this.#resetProgress();
    this.#send({ type: 'appResp', to: m.from, term: this.term, index: this.log.lastIndex() });
  }

  // ---- reads --------------------------------------------------------------------------------

  #leaderReadIndex(m: Message): void {
    const context = m.context ?? '';
    if (this.log.term(this.log.committed) !== this.term) {
      // Until an entry of this term commits, our commit index may be behind the previous
      // leader's: defer the read (thesis §6.4).
      this.#reads.defer(m);
      return;
    }
    if (this.#tracker.voters.size === 1 && this.#tracker.voters.has(this.id)) {
      this.#answerRead(m.from, this.log.committed, context);
      return;
    }
    this.#reads.add({ index: this.log.committed, context, from: m.from, acks: new Set([this.id]) });
    this.#broadcastHeartbeat(context);
  }

  #ackRead(context: string, from: NodeId): void {
    // A quorum confirmed leadership at a read's time: it and every earlier read are safe.
    for (const r of this.#reads.ack(context, from, this.#tracker.voters.has(from), this.#tracker.quorum()))
      this.#answerRead(r.from, r.index, r.context);
  }

  #answerRead(from: NodeId, index: number, context: string): void {
    if (from === this.id) this.#readStates.push({ index, context });
    else this.#send({ type: 'readIndexResp', to: from, term: this.term, index, context });
  }

  #releaseDeferredReads(): void {
    for (const m of this.#reads.takeDeferred()) this.#leaderReadIndex(m);
  }

  // ---- leadership transfer ------------------------------------------------------------------

  #handleTransfer(to: NodeId): void {
    if (to === this.id) return;
    if (!this.#tracker.voters.has(to)) throw new RaftError('TRANSFEREE_NOT_FOUND', `${to} is not a voting member`);
    if (this.#transferee === to) return;
    this.#transferee = to;
    this.#electionElapsed = 0;
    const pr = this.#tracker.progress.get(to) as Progress;
    if (pr.match === this.log.lastIndex()) this.#send({ type: 'timeoutNow', to, term: this.term });
    else this.#sendAppend(to);
  }

  // ---- membership ---------------------------------------------------------------------------

  /** Apply a committed membership change (called as the driver applies the entry). */
  #applyConfChange(cc: ConfChange): void {
    this.#tracker.applyConfChange(cc);
    if (this.role !== 'leader') return;
    this.#tracker.syncProgress(this.log.lastIndex() + 1);
    if (this.#transferee !== none && !this.#tracker.voters.has(this.#transferee)) this.#transferee = none;
    if (!this.#tracker.voters.has(this.id)) {
      // Removed leader: stop leading; the rest elect a new leader.
      this.#becomeFollower(this.term, none);
      return;
    }
    // A smaller quorum may commit at once; either way the new members need entries.
    this.#maybeCommit();
    this.#broadcastAppend();
  }

  conf(): ConfState {
    return this.#tracker.conf();
  }

  // ---- ready / advance ----------------------------------------------------------------------

  #send(m: Omit<Message, 'from'> & { from?: NodeId }): void {
    this.#msgs.push({ ...m, from: m.from ?? this.id } as Message);
  }

  #hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  hasReady(): boolean {
    const hs = this.#hardState();
    return (
      this.#msgs.length > 0 ||
      this.log.lastIndex() > this.log.stable ||
      this.log.pendingSnapshot !== undefined ||
      this.#readStates.length > 0 ||
      hs.term !== this.#prevHard.term ||
      hs.vote !== this.#prevHard.vote ||
      hs.commit !== this.#prevHard.commit ||
      this.lead !== this.#prevSoft.lead ||
      this.role !== this.#prevSoft.role ||
      Math.min(this.log.committed, this.log.stable) > this.log.applied
    );
  }

  /** The next batch of work for the driver. Call `advance(rd)` once it is done. */
  ready(): Ready {
    const hs = this.#hardState();
    const rd: Ready = {
      entries:
        this.log.lastIndex() > this.log.stable
          ? this.log.slice(Math.max(this.log.stable, this.log.snapIndex) + 1, this.log.lastIndex() + 1)
          : [],
      committedEntries: this.log.pendingSnapshot ? [] : this.log.nextCommitted(this.#cfg.maxCommittedSizePerReady),
      messages: this.#msgs,
      readStates: this.#readStates,
    };
    if (hs.term !== this.#prevHard.term || hs.vote !== this.#prevHard.vote || hs.commit !== this.#prevHard.commit) rd.hardState = hs;
    if (this.lead !== this.#prevSoft.lead || this.role !== this.#prevSoft.role) rd.softState = { lead: this.lead, role: this.role };
    if (this.log.pendingSnapshot) rd.snapshot = this.log.pendingSnapshot;
    this.#msgs = [];
    this.#readStates = [];
    return rd;
  }

  /** The driver finished `rd`: its entries are durable and its committed entries applied. */
  advance(rd: Ready): void {
    if (rd.hardState) this.#prevHard = rd.hardState;
    if (rd.softState) this.#prevSoft = rd.softState;
    if (rd.snapshot) {
      this.log.pendingSnapshot = undefined;
      this.log.applied = Math.max(this.log.applied, rd.snapshot.meta.index);
      this.log.stable = Math.max(this.log.stable, rd.snapshot.meta.index);
    }
    if (rd.entries.length > 0) {
      const last = rd.entries[rd.entries.length - 1] as Entry;
      // Entries may have been replaced while the driver persisted them; only mark what still matches.
      if (this.log.matchTerm(last.index, last.term)) this.log.stable = Math.max(this.log.stable, last.index);
    }
    for (const e of rd.committedEntries) {
      this.log.applied = Math.max(this.log.applied, e.index);
      if (e.type === EntryType.confChange) this.#applyConfChange(decodeConfChange(e.data));
    }
    if (this.role === 'leader') {
      const self = this.#tracker.progress.get(this.id);
      if (self && self.maybeUpdate(this.log.stable) && this.#maybeCommit()) this.#broadcastAppend();
    }
  }

  status(): RaftStatus {
    const progress: RaftStatus['progress'] = {};
    for (const [id, pr] of this.#tracker.progress)
      progress[id] = { match: pr.match, next: pr.next, state: pr.state, learner: pr.isLearner, active: pr.recentActive || id === this.id };
    return {
      id: this.id,
      term: this.term,
      vote: this.vote,
      lead: this.lead,
      role: this.role,
      commit: this.log.committed,
      applied: this.log.applied,
      lastIndex: this.log.lastIndex(),
      firstIndex: this.log.firstIndex(),
      conf: this.conf(),
      transferee: this.#transferee,
      progress: this.role === 'leader' ? progress : {},
    };
  }

  /** The latest snapshot the core knows (to send to lagging followers). */
  snapshot(): Snapshot | undefined {
    return this.#snapshot;
  }
}
