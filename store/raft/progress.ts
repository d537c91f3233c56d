/**
 * The leader's view of each follower: how far it matches, what to send next, and flow control.
 * Probe: one append in flight until the follower answers (used after a rejection or restart).
 * Replicate: appends are pipelined up to the in-flight message and byte limits.
 * Snapshot: a snapshot is on its way; appends wait for it.
 */
export type ProgressState = 'probe' | 'replicate' | 'snapshot';

export interface FlowLimits {
  /** Appends in flight per follower (etcd: MaxInflightMsgs, 256). */
  maxInflightMsgs: number;
  /** Bytes of entries in flight per follower (0 = unlimited). */
  maxInflightBytes: number;
}

export class Progress {
  match = 0;
  next: number;
  state: ProgressState = 'probe';
  /** In probe state: an append was sent and we are waiting for its answer or a heartbeat. */
  probeSent = false;
  pendingSnapshot = 0;
  /** Heard from since the last check-quorum round. */
  recentActive = false;
  isLearner: boolean;
  /** In-flight appends, as [last index, bytes], in send order. */
  readonly #inflight: Array<[number, number]> = [];
  #inflightBytes = 0;

  constructor(next: number, isLearner: boolean) {
    this.next = next;
    this.isLearner = isLearner;
  }

  becomeProbe(): void {
    if (this.state === 'snapshot') {
      const pending = this.pendingSnapshot;
      this.#reset('probe');
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.#reset('probe');
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.#reset('replicate');
    this.next = this.match + 1;
  }

  becomeSnapshot(index: number): void {
    this.#reset('snapshot');
    this.pendingSnapshot = index;
  }

  #reset(state: ProgressState): void {
    this.state = state;
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.#inflight.length = 0;
    this.#inflightBytes = 0;
  }

  /** The follower acknowledged `n`; returns true if that was news. */
  maybeUpdate(n: number): boolean {
    let updated = false;
    if (this.match < n) {
      this.match = n;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, n + 1);
    this.freeLE(n);
    return updated;
  }

  /** Record an append of entries ending at `last` (with `bytes` of data) as sent. */
  sentEntries(last: number, bytes: number): void {
    if (this.state === 'replicate') {
      this.next = last + 1;
      this.#inflight.push([last, bytes]);
      this.#inflightBytes += bytes;
    } else if (this.state === 'probe') {
      this.probeSent = true;
    }
  }

  /** A rejected append: move `next` back using the follower's hint; false if stale. */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === 'replicate') {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1, 1);
    this.probeSent = false;
    return true;
  }

  freeLE(index: number): void {
    while (this.#inflight.length > 0 && (this.#inflight[0] as [number, number])[0] <= index) {
      this.#inflightBytes -= (this.#inflight.shift() as [number, number])[1];
    }
  }

  /** Whether the leader should hold back appends to this follower. */
  isPaused(limits: FlowLimits): boolean {
    switch (this.state) {
      case 'probe':
        return this.probeSent;
      case 'replicate':
        return (
          this.#inflight.length >= limits.maxInflightMsgs || (limits.maxInflightBytes > 0 && this.#inflightBytes >= limits.maxInflightBytes)
        );
      case 'snapshot':
        return true;
    }
  }

  inflightCount(): number {
    return this.#inflight.length;
  }
}
