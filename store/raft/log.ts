/**
 * The in-memory Raft log: a snapshot point followed by entries. The core owns it; the driver
 * persists what `ready()` hands out and reloads it on restart. `stable` marks how far entries
 * are durable (the driver has persisted them and called advance).
 */
import type { Entry, Snapshot } from './types.ts';

export class RaftLog {
  /** Index and term of the entry just before `entries[0]` (the snapshot point, or 0/0). */
  snapIndex = 0;
  snapTerm = 0;
  entries: Entry[] = [];
  committed = 0;
  applied = 0;
  /** Entries at indices <= stable are durable. */
  stable = 0;
  /** Snapshot received from a leader that the driver has yet to persist and apply. */
  pendingSnapshot: Snapshot | undefined;

  firstIndex(): number {
    return this.snapIndex + 1;
  }

  lastIndex(): number {
    return this.snapIndex + this.entries.length;
  }

  lastTerm(): number {
    return this.term(this.lastIndex()) ?? 0;
  }

  /** Term at `index`, or undefined if compacted away or beyond the end. */
  term(index: number): number | undefined {
    if (index === this.snapIndex) return this.snapTerm;
    if (index < this.snapIndex || index > this.lastIndex()) return undefined;
    return (this.entries[index - this.snapIndex - 1] as Entry).term;
  }

  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term;
  }

  /** True if a log ending at (lastTerm, lastIndex) is at least as up to date as ours (§5.4.1). */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const ourTerm = this.lastTerm();
    return lastTerm > ourTerm || (lastTerm === ourTerm && lastIndex >= this.lastIndex());
  }

  /** Entries in [lo, hi) capped at `maxBytes` (at least one entry is returned). */
  slice(lo: number, hi: number, maxBytes = Infinity): Entry[] {
    if (lo <= this.snapIndex) throw new Error(`raft log: entries from ${lo} are compacted (first is ${this.firstIndex()})`);
    const out: Entry[] = [];
    let size = 0;
    for (let i = lo; i < hi && i <= this.lastIndex(); i++) {
      const e = this.entries[i - this.snapIndex - 1] as Entry;
      size += e.data.byteLength + 24;
      if (out.length > 0 && size > maxBytes) break;
      out.push(e);
    }
    return out;
  }

  /** Append after truncating any conflicting suffix; returns the new last index. */
  append(entries: Entry[]): number {
    if (entries.length === 0) return this.lastIndex();
    const first = (entries[0] as Entry).index;
    if (first <= this.committed) throw new Error(`raft log: refusing to overwrite committed entry ${first} (committed ${this.committed})`);
    if (first <= this.lastIndex()) {
      this.entries.length = first - this.snapIndex - 1;
      this.stable = Math.min(this.stable, first - 1);
    }
    for (const e of entries) this.entries.push(e);
    return this.lastIndex();
  }

  /**
   * Follower side of AppendEntries: if (prevIndex, prevTerm) matches, append the entries that are
   * new, truncating at the first conflict. Returns the last index now known to match, or
   * undefined when prev does not match.
   */
  maybeAppend(prevIndex: number, prevTerm: number, commit: number, entries: Entry[]): number | undefined {
    if (!this.matchTerm(prevIndex, prevTerm)) return undefined;
    const lastNew = prevIndex + entries.length;
    let conflictAt = -1;
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i] as Entry;
      if (e.index <= this.snapIndex) continue;
      if (!this.matchTerm(e.index, e.term)) {
        conflictAt = i;
        break;
      }
    }
    if (conflictAt >= 0) this.append(entries.slice(conflictAt));
    this.commitTo(Math.min(commit, lastNew));
    return lastNew;
  }

  /**
   * The follower's hint when rejecting an append: the largest index <= `index` whose term is
   * <= `term`, so the leader skips a whole divergent term per round trip (fast back-up).
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    let i = Math.min(index, this.lastIndex());
    for (; i > this.snapIndex; i--) {
      const t = this.term(i) as number;
      if (t <= term) break;
    }
    return { index: i, term: this.term(i) ?? 0 };
  }

  commitTo(index: number): void {
    if (index > this.committed) {
      if (index > this.lastIndex()) throw new Error(`raft log: commit ${index} beyond last index ${this.lastIndex()}`);
      this.committed = index;
    }
  }

  /** Committed entries not yet handed to the driver, up to `maxBytes`. */
  nextCommitted(maxBytes: number): Entry[] {
    // Only durable entries are applied: a member must not apply what it could lose.
    const hi = Math.min(this.committed, this.stable);
    if (this.applied >= hi || this.applied < this.snapIndex) return [];
    return this.slice(this.applied + 1, hi + 1, maxBytes);
  }

  /** Reset the log to a snapshot (follower receiving InstallSnapshot, or restart). */
  restore(snap: Snapshot): void {
    this.snapIndex = snap.meta.index;
    this.snapTerm = snap.meta.term;
    this.entries = [];
    this.committed = Math.max(this.committed, snap.meta.index);
    this.stable = snap.meta.index;
  }

  /** Drop entries up to and including `index` (they are in a snapshot now). */
  compact(index: number): void {
    if (index <= this.snapIndex) return;
    if (index > this.applied) throw new Error(`raft log: cannot compact ${index} beyond applied ${this.applied}`);
    const term = this.term(index) as number;
    this.entries = this.entries.slice(index - this.snapIndex);
    this.snapIndex = index;
    this.snapTerm = term;
  }
}
