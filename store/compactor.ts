/**
 * Auto-compaction, as etcd's --auto-compaction-mode/--auto-compaction-retention. Only the
 * leader compacts (the compaction is a log entry, applied by every member at once).
 *   periodic: keep history for `retention` ms; every retention/10 (at least 1 s, at most 1 h)
 *             the revision current `retention` ago becomes the compaction point.
 *   revision: keep the last `retention` revisions; checked every 5 s.
 */
import type { Clock, TimerHandle } from '../lib/clock.ts';

export interface CompactorTarget {
  readonly isLeader: boolean;
  readonly revision: number;
  readonly compactRevision: number;
  compact(revision: number): Promise<void>;
}

export class Compactor {
  readonly #mode: 'periodic' | 'revision';
  readonly #retention: number;
  readonly #clock: Clock;
  readonly #target: CompactorTarget;
  readonly #onCompacted: (revision: number) => void;
  /** (time, revision) samples, oldest first (periodic mode). */
  #samples: Array<{ at: number; rev: number }> = [];
  #timer: TimerHandle | undefined;
  #busy = false;

  constructor(
    mode: 'periodic' | 'revision',
    retention: number,
    clock: Clock,
    target: CompactorTarget,
    onCompacted: (revision: number) => void = () => undefined,
  ) {
    this.#mode = mode;
    this.#retention = retention;
    this.#clock = clock;
    this.#target = target;
    this.#onCompacted = onCompacted;
  }

  /** How often it looks. */
  get interval(): number {
    return this.#mode === 'revision' ? 5000 : Math.min(3_600_000, Math.max(1000, this.#retention / 10));
  }

  start(): void {
    this.#samples.push({ at: this.#clock.now(), rev: this.#target.revision });
    this.#timer = this.#clock.setInterval(() => void this.check(), this.interval, { unref: true });
  }

  stop(): void {
    this.#timer?.cancel();
  }

  /** One look: compact if this member leads and the retention allows it. */
  async check(): Promise<void> {
    const t = this.#target;
    const now = this.#clock.now();
    this.#samples.push({ at: now, rev: t.revision });
    let to = 0;
    if (this.#mode === 'revision') {
      to = t.revision - this.#retention;
      this.#samples = [];
    } else {
      // The newest sample at least `retention` old: everything before it may go.
      while (this.#samples.length > 1 && now - (this.#samples[1] as { at: number }).at >= this.#retention) this.#samples.shift();
      const oldest = this.#samples[0] as { at: number; rev: number };
      if (now - oldest.at >= this.#retention) to = oldest.rev;
    }
    if (!t.isLeader || this.#busy || to <= t.compactRevision) return;
    this.#busy = true;
    try {
      await t.compact(to);
      this.#onCompacted(to);
    } catch {
      // Lost leadership or already compacted: the next look tries again.
    } finally {
      this.#busy = false;
    }
  }
}
