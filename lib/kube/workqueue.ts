/**
 * A rate-limited work queue with client-go's semantics: a key is queued at most once however
 * often it is added; a key being processed is never handed to a second worker, and if it is
 * added meanwhile it is queued again when the first worker is done; failures back off per key
 * (5 ms doubling to 1000 s) and, across keys, a token bucket (10/s, burst 100) spaces retries.
 * Time comes from the injected clock, so tests run on virtual time.
 */
import type { Clock, TimerHandle } from '../clock.ts';

export interface RateLimiterOptions {
  baseDelayMs: number;
  maxDelayMs: number;
  /** Overall rate (tokens per second) and burst of the shared bucket. */
  qps: number;
  burst: number;
}

export const defaultRateLimits: RateLimiterOptions = { baseDelayMs: 5, maxDelayMs: 1_000_000, qps: 10, burst: 100 };

/** Per-item exponential back-off combined with an overall token bucket (the max of the two). */
export class RateLimiter {
  readonly #options: RateLimiterOptions;
  readonly #clock: Clock;
  readonly #failures = new Map<string, number>();
  #tokens: number;
  #last: number;

  constructor(clock: Clock, o: Partial<RateLimiterOptions> = {}) {
    this.#options = { ...defaultRateLimits, ...o };
    this.#clock = clock;
    this.#tokens = this.#options.burst;
    this.#last = clock.now();
  }

  /** How long `key` should wait before its next try; counts a failure. */
  when(key: string): number {
    const n = this.#failures.get(key) ?? 0;
    this.#failures.set(key, n + 1);
    const backoff = Math.min(this.#options.baseDelayMs * 2 ** n, this.#options.maxDelayMs);
    return Math.max(backoff, this.#reserve());
  }

  /** The key succeeded: its back-off starts over. */
  forget(key: string): void {
    this.#failures.delete(key);
  }

  retries(key: string): number {
    return this.#failures.get(key) ?? 0;
  }

  /** Take a token; the delay until it is available (tokens may go negative: a reservation). */
  #reserve(): number {
    const now = this.#clock.now();
    this.#tokens = Math.min(this.#options.burst, this.#tokens + ((now - this.#last) / 1000) * this.#options.qps);
    this.#last = now;
    this.#tokens -= 1;
    return this.#tokens >= 0 ? 0 : (-this.#tokens / this.#options.qps) * 1000;
  }
}

export class WorkQueue {
  readonly #clock: Clock;
  readonly #limiter: RateLimiter;
  readonly #queue: string[] = [];
  /** Keys that need processing (queued, or re-added while processing). */
  readonly #dirty = new Set<string>();
  readonly #processing = new Set<string>();
  readonly #waiting = new Map<string, TimerHandle>();
  readonly #getters: Array<(key: string | undefined) => void> = [];
  readonly #addedAt = new Map<string, number>();
  #shutdown = false;
  /** Observers for metrics: time a key waited, and queue depth changes. */
  onDequeue: ((key: string, waitedMs: number) => void) | undefined;

  constructor(clock: Clock, limits: Partial<RateLimiterOptions> = {}) {
    this.#clock = clock;
    this.#limiter = new RateLimiter(clock, limits);
  }

  get length(): number {
    return this.#queue.length;
  }

  /** Queue `key` (once, however often it is added before a worker takes it). */
  add(key: string): void {
    if (this.#shutdown || this.#dirty.has(key)) return;
    this.#dirty.add(key);
    if (this.#processing.has(key)) return; // re-queued when its worker is done
    this.#push(key);
  }

  /** Queue `key` after `ms` (a timed revisit: requeueAfter). */
  addAfter(key: string, ms: number): void {
    if (this.#shutdown) return;
    if (ms <= 0) return this.add(key);
    // The earliest revisit wins.
    if (this.#waiting.has(key)) return;
    this.#waiting.set(
      key,
      this.#clock.setTimeout(() => {
        this.#waiting.delete(key);
        this.add(key);
      }, ms),
    );
  }

  /** Queue `key` after its back-off (a failed reconcile). */
  addRateLimited(key: string): void {
    this.addAfter(key, this.#limiter.when(key));
  }

  /** `key` succeeded: reset its back-off. */
  forget(key: string): void {
    this.#limiter.forget(key);
  }

  retries(key: string): number {
    return this.#limiter.retries(key);
  }

  /** The next key to process, waiting for one; undefined once shut down. */
  get(): Promise<string | undefined> {
    const key = this.#queue.shift();
    if (key !== undefined) return Promise.resolve(this.#take(key));
    if (this.#shutdown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.#getters.push(resolve));
  }

  /** The worker finished `key`; if it was added meanwhile, it goes back in the queue. */
  done(key: string): void {
    this.#processing.delete(key);
    if (this.#dirty.has(key)) this.#push(key);
  }

  shutdown(): void {
    this.#shutdown = true;
    for (const t of this.#waiting.values()) t.cancel();
    this.#waiting.clear();
    for (const g of this.#getters.splice(0)) g(undefined);
  }

  #push(key: string): void {
    this.#addedAt.set(key, this.#clock.now());
    const getter = this.#getters.shift();
    if (getter) getter(this.#take(key));
    else this.#queue.push(key);
  }

  #take(key: string): string {
    this.#dirty.delete(key);
    this.#processing.add(key);
    const at = this.#addedAt.get(key);
    this.#addedAt.delete(key);
    if (at !== undefined) this.onDequeue?.(key, this.#clock.now() - at);
    return key;
  }
}
