/**
 * Callers waiting until this member has applied a given log index (a simple auth token issued by
 * another member is known here only once its entry is applied). The driver tells it each new
 * applied index; a waiter gives up after its own timeout.
 */
import type { Clock, TimerHandle } from '../lib/clock.ts';

interface Waiter {
  index: number;
  done: (ok: boolean) => void;
  timer: TimerHandle;
}

export class AppliedWaiters {
  readonly #clock: Clock;
  readonly #waiters = new Set<Waiter>();

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** Resolves true once `index` is applied (now, if `applied` is there); false after `timeoutMs`. */
  wait(index: number, applied: number, timeoutMs: number): Promise<boolean> {
    if (applied >= index) return Promise.resolve(true);
    return new Promise((resolve) => {
      const w: Waiter = {
        index,
        done: resolve,
        timer: this.#clock.setTimeout(() => {
          this.#waiters.delete(w);
          resolve(false);
        }, timeoutMs),
      };
      this.#waiters.add(w);
    });
  }

  /** The member has applied every entry up to `applied`. */
  notify(applied: number): void {
    for (const w of this.#waiters) {
      if (w.index > applied) continue;
      w.timer.cancel();
      this.#waiters.delete(w);
      w.done(true);
    }
  }
}
