/**
 * Linearizable reads, batched: every read that arrives while a ReadIndex round is in flight
 * shares the next round, so a burst of reads costs one heartbeat round, not one each. A read
 * resolves once the member has applied up to the index its round confirmed.
 */
import type { Clock, TimerHandle } from '../lib/clock.ts';
import { catalogue } from './errors.ts';

interface Waiter {
  resolve(): void;
  reject(e: Error): void;
}

export interface ReadBatcherOptions {
  clock: Clock;
  /** A round that gets no answer (a lost message) fails its reads after this long. */
  timeoutMs: number;
  /** A fresh, unique context for a round. */
  nextContext(): string;
  /** Ask the consensus core for a read index under `context`; throws when it cannot (no leader). */
  requestReadIndex(context: string): void;
}

export class ReadBatcher {
  readonly #options: ReadBatcherOptions;
  /** Reads waiting for the next round. */
  #next: Waiter[] = [];
  /** Rounds asked for and not yet answered, by context. */
  readonly #inFlight = new Map<string, { waiters: Waiter[]; timer: TimerHandle }>();
  /** Rounds answered at an index, waiting for apply to reach it. */
  #awaitingApply: Array<{ index: number; waiters: Waiter[] }> = [];

  constructor(o: ReadBatcherOptions) {
    this.#options = o;
  }

  /** Resolves once the member's state reflects every write acknowledged before the call. */
  wait(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#next.push({ resolve, reject });
      if (this.#inFlight.size === 0) this.#sendRound();
    });
  }

  /** The core answered the round `context` with `index`. */
  onReadState(context: string, index: number): void {
    const round = this.#inFlight.get(context);
    if (!round) return;
    this.#inFlight.delete(context);
    round.timer.cancel();
    this.#awaitingApply.push({ index, waiters: round.waiters });
  }

  /** The member applied up to `applied`: release the reads it covers, start the next round. */
  onApplied(applied: number): void {
    const still: Array<{ index: number; waiters: Waiter[] }> = [];
    for (const r of this.#awaitingApply) {
      if (r.index <= applied) for (const w of r.waiters) w.resolve();
      else still.push(r);
    }
    this.#awaitingApply = still;
    if (this.#next.length > 0 && this.#inFlight.size === 0) this.#sendRound();
  }

  /** Fail every read waiting anywhere (leader lost, member stopping). */
  failAll(err: Error): void {
    for (const r of this.#inFlight.values()) {
      r.timer.cancel();
      for (const w of r.waiters) w.reject(err);
    }
    this.#inFlight.clear();
    for (const r of this.#awaitingApply) for (const w of r.waiters) w.reject(err);
    this.#awaitingApply = [];
    for (const w of this.#next) w.reject(err);
    this.#next = [];
  }

  #sendRound(): void {
    const waiters = this.#next;
    if (waiters.length === 0) return;
    this.#next = [];
    const context = this.#options.nextContext();
    try {
      this.#options.requestReadIndex(context);
    } catch (err) {
      for (const w of waiters) w.reject(err as Error);
      return;
    }
    const timer = this.#options.clock.setTimeout(
      () => {
        if (!this.#inFlight.delete(context)) return;
        for (const w of waiters) w.reject(catalogue.error('STORE_ERR_TIMEOUT', 'etcdserver: request timed out'));
        if (this.#next.length > 0) this.#sendRound();
      },
      this.#options.timeoutMs,
      { unref: true },
    );
    this.#inFlight.set(context, { waiters, timer });
  }
}
