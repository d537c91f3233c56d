/**
 * Proposals waiting to be applied: each gets a request id (unique to this process), and its
 * caller a promise that the apply loop resolves with the result, or that fails when it times
 * out, when the Raft core refuses the proposal, or when the member stops.
 */
import { randomBytes } from 'node:crypto';
import type { Clock, TimerHandle } from '../lib/clock.ts';
import { catalogue, fromRaft } from './errors.ts';
import type { StoreMetrics } from './metrics.ts';
import type { ApplyResult } from './state-machine.ts';

interface Waiter {
  resolve(r: ApplyResult): void;
  reject(e: Error): void;
  timer: TimerHandle;
}

export class Proposals {
  readonly #nonce = randomBytes(6).toString('hex');
  #seq = 0;
  readonly #waiters = new Map<string, Waiter>();
  readonly #clock: Clock;
  readonly #timeoutMs: number;
  readonly #metrics: Pick<StoreMetrics, 'proposalsPending' | 'proposalsFailed'>;

  constructor(clock: Clock, timeoutMs: number, metrics: Pick<StoreMetrics, 'proposalsPending' | 'proposalsFailed'>) {
    this.#clock = clock;
    this.#timeoutMs = timeoutMs;
    this.#metrics = metrics;
  }

  /** A fresh request id; `kind` tells proposals from reads in logs. */
  nextId(kind = ''): string {
    return `${this.#nonce}.${kind}${++this.#seq}`;
  }

  /** Propose (`propose` may throw: the core refused) and wait until `rid` is applied. */
  wait(rid: string, propose: () => void): Promise<ApplyResult> {
    return new Promise<ApplyResult>((resolve, reject) => {
      const timer = this.#clock.setTimeout(() => {
        this.#waiters.delete(rid);
        this.#metrics.proposalsFailed.inc();
        reject(catalogue.error('STORE_ERR_TIMEOUT', 'etcdserver: request timed out'));
      }, this.#timeoutMs);
      this.#waiters.set(rid, { resolve, reject, timer });
      try {
        propose();
      } catch (err) {
        timer.cancel();
        this.#waiters.delete(rid);
        this.#metrics.proposalsFailed.inc();
        reject(fromRaft(err) as Error);
        return;
      }
      this.#metrics.proposalsPending.set(this.#waiters.size);
    });
  }

  /** `rid` was applied with result `r` (a no-op for another member's proposal). */
  resolve(rid: string, r: ApplyResult): void {
    const w = this.#waiters.get(rid);
    if (!w) return;
    this.#waiters.delete(rid);
    w.timer.cancel();
    w.resolve(r);
    this.#metrics.proposalsPending.set(this.#waiters.size);
  }

  /** Fail every waiting proposal (the member stops). */
  failAll(err: Error): void {
    for (const [rid, w] of this.#waiters) {
      w.timer.cancel();
      w.reject(err);
      this.#waiters.delete(rid);
    }
    this.#metrics.proposalsPending.set(0);
  }
}
