/**
 * Who votes, who learns, what each member holds, and what a quorum of them decides: the
 * membership and quorum bookkeeping of the Raft core (as etcd's tracker package).
 */
import { Progress } from './progress.ts';
import type { ConfChange, ConfState, NodeId } from './types.ts';

export type TallyResult = 'won' | 'lost' | 'pending';

export class ProgressTracker {
  voters = new Set<NodeId>();
  learners = new Set<NodeId>();
  /** The leader's view of every member (itself included). */
  progress = new Map<NodeId, Progress>();
  #votes = new Map<NodeId, boolean>();

  setConf(conf: ConfState): void {
    this.voters = new Set(conf.voters);
    this.learners = new Set(conf.learners);
  }

  conf(): ConfState {
    return { voters: [...this.voters].sort(), learners: [...this.learners].sort() };
  }

  quorum(): number {
    return Math.floor(this.voters.size / 2) + 1;
  }

  /** Fresh progress for every member, all expected to need entries from `next`. */
  resetProgress(next: number, self: NodeId, selfMatch: number): void {
    this.progress = new Map();
    for (const id of this.voters) this.progress.set(id, new Progress(next, false));
    for (const id of this.learners) this.progress.set(id, new Progress(next, true));
    const mine = this.progress.get(self);
    if (mine) mine.match = selfMatch;
  }

  /** Bring progress in line with the membership (after a change), new members starting at `next`. */
  syncProgress(next: number): void {
    for (const id of [...this.voters, ...this.learners]) {
      const pr = this.progress.get(id);
      if (!pr) this.progress.set(id, new Progress(next, this.learners.has(id)));
      else pr.isLearner = this.learners.has(id);
    }
    for (const id of [...this.progress.keys()]) if (!this.voters.has(id) && !this.learners.has(id)) this.progress.delete(id);
  }

  /** Apply a committed single-server membership change. */
  applyConfChange(cc: ConfChange): void {
    switch (cc.type) {
      case 'addLearner':
        if (!this.voters.has(cc.id)) this.learners.add(cc.id);
        break;
      case 'addVoter':
      case 'promote':
        this.learners.delete(cc.id);
        this.voters.add(cc.id);
        break;
      case 'remove':
        this.voters.delete(cc.id);
        this.learners.delete(cc.id);
        break;
    }
  }

  resetVotes(self?: NodeId): void {
    this.#votes = self === undefined ? new Map() : new Map([[self, true]]);
  }

  recordVote(id: NodeId, granted: boolean): void {
    this.#votes.set(id, granted);
  }

  /** Whether the votes so far win or lose the election, or cannot tell yet. */
  tally(): TallyResult {
    let granted = 0;
    let rejected = 0;
    for (const id of this.voters) {
      const v = this.#votes.get(id);
      if (v === true) granted++;
      else if (v === false) rejected++;
    }
    const q = this.quorum();
    if (granted >= q) return 'won';
    if (rejected > this.voters.size - q) return 'lost';
    return 'pending';
  }

  /** Whether a quorum (self included) was heard from since the last check; clears the marks. */
  quorumActive(self: NodeId): boolean {
    let active = 0;
    for (const id of this.voters) {
      const pr = this.progress.get(id);
      if (id === self || pr?.recentActive) active++;
      if (pr) pr.recentActive = false;
    }
    return active >= this.quorum();
  }

  /** The highest index a quorum of voters holds. */
  quorumMatch(): number {
    const matches = [...this.voters].map((id) => this.progress.get(id)?.match ?? 0).sort((a, b) => b - a);
    return matches[this.quorum() - 1] ?? 0;
  }
}
