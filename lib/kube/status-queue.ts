/**
 * The loop both status writers run (ResiliencePolicy, Gateway API routes): while this replica
 * leads, a change to any cache queues every object's key after a short pause (a burst of changes
 * is one pass); a worker syncs one key at a time, and a failed sync is retried with that key's
 * back-off (the work queue's per-key exponential back-off: 500 ms doubling to a minute), never
 * blocking the others.
 */
import type { Clock } from '../clock.ts';
import type { Logger } from '../log.ts';
import { WorkQueue } from './workqueue.ts';

const coalesceMs = 200;

export class StatusQueue {
  readonly #queue: WorkQueue;
  readonly #keys: () => string[];
  readonly #sync: (key: string) => Promise<void>;
  readonly #log: Logger;
  readonly #what: string;
  #leading = false;

  /** `what`: the kind of object, for the log line of a failed write. */
  constructor(o: { clock: Clock; log: Logger; what: string; keys: () => string[]; sync: (key: string) => Promise<void> }) {
    this.#queue = new WorkQueue(o.clock, { baseDelayMs: 500, maxDelayMs: 60_000 });
    this.#keys = o.keys;
    this.#sync = o.sync;
    this.#log = o.log;
    this.#what = o.what;
  }

  get leading(): boolean {
    return this.#leading;
  }

  /** Writing starts when this replica leads (and every object is looked at then). */
  set leading(v: boolean) {
    if (v === this.#leading) return;
    this.#leading = v;
    if (v) {
      void this.#work();
      this.schedule();
    }
  }

  /** Look at every object again shortly (the earliest pending look wins). */
  schedule(): void {
    if (!this.#leading) return;
    for (const k of this.#keys()) this.#queue.addAfter(k, coalesceMs);
  }

  stop(): void {
    this.#leading = false;
    this.#queue.shutdown();
  }

  /** Failed writes so far for a key (its back-off step). */
  retries(key: string): number {
    return this.#queue.retries(key);
  }

  async #work(): Promise<void> {
    for (;;) {
      const key = await this.#queue.get();
      if (key === undefined) return;
      try {
        await this.#sync(key);
        this.#queue.forget(key);
      } catch (err) {
        this.#log.warn(
          { err, [this.#what]: key, retries: this.#queue.retries(key) },
          `${this.#what} status not written; retrying after a back-off`,
        );
        this.#queue.addRateLimited(key);
      } finally {
        this.#queue.done(key);
      }
    }
  }
}
