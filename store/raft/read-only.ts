/**
 * ReadIndex bookkeeping (Raft thesis §6.4): reads wait for a quorum to confirm that this
 * member still leads at the read's commit index; one confirmation releases every earlier read.
 */
import type { Message, NodeId } from './types.ts';

export interface PendingRead {
  index: number;
  context: string;
  from: NodeId;
  acks: Set<NodeId>;
}

export class ReadOnly {
  #pending: PendingRead[] = [];
  /** Reads that arrived before this leader committed an entry of its own term. */
  #deferred: Message[] = [];

  add(read: PendingRead): void {
    this.#pending.push(read);
  }

  defer(m: Message): void {
    this.#deferred.push(m);
  }

  /** Take the deferred reads (to be looked at again now that the leader has committed). */
  takeDeferred(): Message[] {
    const out = this.#deferred;
    this.#deferred = [];
    return out;
  }

  /** A heartbeat answer for `context` from `from`; returns the reads now confirmed, in order. */
  ack(context: string, from: NodeId, isVoter: boolean, quorum: number): PendingRead[] {
    const i = this.#pending.findIndex((r) => r.context === context);
    if (i < 0) return [];
    const read = this.#pending[i] as PendingRead;
    if (isVoter) read.acks.add(from);
    if (read.acks.size < quorum) return [];
    return this.#pending.splice(0, i + 1);
  }

  reset(): void {
    this.#pending = [];
    this.#deferred = [];
  }
}
