/**
 * Hedging delay (pure). After a delay an idempotent request is also sent to a different endpoint,
 * and the first answer wins. The delay is fixed, or a percentile of recent latencies (so only the
 * slowest few percent are hedged), never below `minDelayMs`. Hedges spend the retry budget.
 *
 * LatencyTracker keeps the last `size` latencies in a ring and recomputes its percentile every
 * `size / 2` samples (a typed-array sort of 512 numbers), so a request pays O(1) amortised.
 */
export class LatencyTracker {
  readonly #ring: Float64Array;
  readonly #quantile: number;
  #samples = 0;
  #since = 0;
  #cached: number | undefined;

  constructor(percentile: number, size = 512) {
    this.#ring = new Float64Array(size);
    this.#quantile = percentile / 100;
  }

  record(ms: number): void {
    this.#ring[this.#samples % this.#ring.length] = ms;
    this.#samples++;
    if (++this.#since >= this.#ring.length / 2) this.#cached = undefined;
  }

  /** The percentile of the window, or undefined before `min` samples. */
  value(min = 20): number | undefined {
    const count = Math.min(this.#samples, this.#ring.length);
    if (count < min) return undefined;
    if (this.#cached === undefined) {
      const xs = this.#ring.slice(0, count).sort();
      this.#cached = xs[Math.min(count - 1, Math.floor(this.#quantile * count))] as number;
      this.#since = 0;
    }
    return this.#cached;
  }
}

export interface HedgeOptions {
  /** A fixed delay; or */
  delayMs?: number;
  /** a percentile of recent latency (e.g. 95); */
  percentile?: number;
  /** until the percentile is known, this delay (a cold start must not go unhedged). */
  initialDelayMs?: number;
  minDelayMs: number;
  /** Extra attempts in flight per request at most. */
  maxHedges: number;
}

/** The delay before the next hedge, or undefined when there are too few samples to tell. */
export function hedgeDelay(o: HedgeOptions, tracker: LatencyTracker | undefined): number | undefined {
  if (o.delayMs !== undefined) return Math.max(o.minDelayMs, o.delayMs);
  const p = tracker?.value() ?? o.initialDelayMs;
  return p === undefined ? undefined : Math.max(o.minDelayMs, p);
}
