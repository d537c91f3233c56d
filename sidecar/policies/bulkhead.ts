/**
 * Bulkhead with a bounded queue (pure; time from an injected clock). At most `maxConcurrent`
 * calls run at once; the next `queueLength` wait, each for at most `queueWaitMs`, and are
 * served in priority order (critical, default, sheddable), first come first served within a
 * class. A full queue refuses at once, so a slow dependency costs a caller a fast 503 instead of
 * a thread of memory and an unbounded wait (SIDECAR_ERR_BULKHEAD_FULL). When a higher-priority
 * call finds the queue full, the newest waiting sheddable call is dropped to make room.
 */
import type { Clock, TimerHandle } from '../../lib/clock.ts';

export interface BulkheadOptions {
  maxConcurrent: number;
  queueLength: number;
  queueWaitMs: number;
}

export type Priority = 0 | 1 | 2; // 0 critical, 1 default, 2 sheddable
export const priorityNames = ['critical', 'default', 'sheddable'] as const;

export type Refusal = 'full' | 'timeout' | 'evicted';

interface Waiter {
  priority: Priority;
  enqueuedAt: number;
  timer: TimerHandle;
  done: (ok: boolean, refusal?: Refusal) => void;
}

export class Bulkhead {
  readonly #options: BulkheadOptions;
  readonly #clock: Clock;
  #running = 0;
  /** One FIFO per priority class. */
  readonly #queues: [Waiter[], Waiter[], Waiter[]] = [[], [], []];
  #queued = 0;
  /** Told the wait of every call that left the queue with a slot (for metrics). */
  onDequeue: ((waitedMs: number) => void) | undefined;

  constructor(o: BulkheadOptions, clock: Clock) {
    this.#options = o;
    this.#clock = clock;
  }

  get running(): number {
    return this.#running;
  }

  get queued(): number {
    return this.#queued;
  }

  /** Take a slot now if one is free (the fast path: no promise, no timer). */
  tryAcquire(): boolean {
    if (this.#running < this.#options.maxConcurrent && this.#queued === 0) {
      this.#running++;
      return true;
    }
    return false;
  }

  /**
   * Wait for a slot. `done(true)` runs when the call holds a slot (call {@link release} after);
   * `done(false, why)` when it was refused: queue full, waited too long, or evicted by a more
   * important call.
   */
  enqueue(priority: Priority, done: (ok: boolean, refusal?: Refusal) => void): void {
    if (this.tryAcquire()) return done(true);
    if (this.#queued >= this.#options.queueLength) {
      // Make room by dropping the newest waiter of a less important class, if any.
      let victim: Waiter | undefined;
      for (let p = 2; p > priority && victim === undefined; p--) victim = this.#queues[p as Priority].pop();
      if (victim === undefined) return done(false, 'full');
      this.#queued--;
      victim.timer.cancel();
      victim.done(false, 'evicted');
    }
    const w: Waiter = {
      priority,
      enqueuedAt: this.#clock.now(),
      done,
      timer: this.#clock.setTimeout(() => {
        const q = this.#queues[priority];
        const i = q.indexOf(w);
        if (i >= 0) {
          q.splice(i, 1);
          this.#queued--;
          done(false, 'timeout');
        }
      }, this.#options.queueWaitMs),
    };
    this.#queues[priority].push(w);
    this.#queued++;
  }

  /** A call that held a slot finished: hand the slot to the first waiter. */
  release(): void {
    for (const q of this.#queues) {
      const w = q.shift();
      if (w) {
        this.#queued--;
        w.timer.cancel();
        this.onDequeue?.(this.#clock.now() - w.enqueuedAt);
        w.done(true);
        return;
      }
    }
    this.#running = Math.max(0, this.#running - 1);
  }
}
