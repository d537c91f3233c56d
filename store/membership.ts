/**
 * Membership changes, made by the leader through the log (add a member as a learner or a voter,
 * promote a learner, remove a member), and leadership transfer. What is allowed is decided by the
 * pure rules of store/members.ts; the driver (store/node.ts) lends what acting on them takes as
 * functions (`MembershipPort`), so none of its state is shared.
 */
import type { Logger } from 'pino';
import type { Clock } from '../lib/clock.ts';
import { asEtcd, catalogue } from './errors.ts';
import { idForNewMember, learnerToPromote, memberToRemove, transferTarget } from './members.ts';
import type { RaftStatus } from './raft/raft.ts';
import type { ConfChange, NodeId } from './raft/types.ts';
import type { Member } from './state-machine.ts';

export interface MembershipPort {
  clock: Clock;
  token: string;
  electionMs: number;
  heartbeatMs: number;
  members(): ReadonlyMap<NodeId, Member>;
  removed(): ReadonlySet<NodeId>;
  raftStatus(): RaftStatus;
  leader(): NodeId | '';
  /** Propose the change (with the member it concerns) and resolve once applied; a refusal throws. */
  confChange(cc: Omit<ConfChange, 'context'>, member: Member): Promise<void>;
  /** Ask Raft to hand leadership to `target` (throws if it cannot start). */
  transferLeadership(target: NodeId): void;
  /** Resolves when the leader changes, or after `ms`. */
  waitLeaderChange(ms: number): Promise<void>;
}

export class Membership {
  readonly #p: MembershipPort;

  constructor(port: MembershipPort) {
    this.#p = port;
  }

  /** Add a member (as a learner or a voter); resolves with the new member once applied. */
  async add(peerURLs: string[], isLearner: boolean): Promise<Member> {
    const p = this.#p;
    const id = idForNewMember(p.members(), p.removed(), peerURLs, isLearner, p.token, (n) => `${p.clock.wallNow()}.${n}`);
    const member: Member = { id, name: '', peerURLs, clientURLs: [], isLearner };
    await p.confChange({ type: isLearner ? 'addLearner' : 'addVoter', id }, member);
    return member;
  }

  async remove(id: NodeId): Promise<void> {
    await this.#p.confChange({ type: 'remove', id }, memberToRemove(this.#p.members(), this.#p.raftStatus(), id));
  }

  async promote(id: NodeId): Promise<void> {
    await this.#p.confChange({ type: 'promote', id }, learnerToPromote(this.#p.members(), id));
  }

  /** Hand leadership to `target`; resolves when it leads. */
  async moveLeader(target: NodeId): Promise<void> {
    const p = this.#p;
    asEtcd(() => p.transferLeadership(target));
    const deadline = p.clock.now() + p.electionMs * 2;
    while (p.leader() !== target) {
      if (p.clock.now() > deadline) throw catalogue.error('STORE_ERR_LEADER_TRANSFER', 'etcdserver: leadership transfer failed');
      await p.waitLeaderChange(p.heartbeatMs);
    }
  }

  /** A leader about to stop hands leadership to the most caught-up voter first, so clients see no election gap. */
  async handOver(self: NodeId, log: Logger): Promise<void> {
    const target = transferTarget(this.#p.raftStatus(), self);
    if (!target) return;
    try {
      await this.moveLeader(target);
      log.info({ member: self, to: target }, 'transferred leadership before stopping');
    } catch (err) {
      log.warn({ member: self, err }, 'leadership transfer before stopping failed; stopping anyway');
    }
  }
}
