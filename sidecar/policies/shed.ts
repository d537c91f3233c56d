/**
 * Load shedding (pure; time and randomness passed in).
 *
 * AdaptiveLimit: a concurrency limit learned from latency, TCP Vegas style (Netflix's
 * concurrency-limits VegasLimit). It keeps the lowest round-trip time seen (the no-load RTT)
 * and estimates the queue in front of the dependency as inflight × (1 − rttNoLoad / rtt). A small
 * queue means headroom: the limit grows; a large one means requests are waiting: it shrinks.
 * So admitted requests see close to unloaded latency and the excess is refused at once instead
 * of queueing. The no-load RTT is re-probed now and then (BBR's ProbeRTT): for one limit's worth
 * of samples only half the limit is admitted, so any queue drains, and the lowest RTT seen then
 * becomes the new no-load RTT. (Resetting it to a single sample taken under load, as a plain
 * Vegas does, lets the limit creep up for ever under sustained overload.)
 *
 * Priority classes share the limit: sheddable requests are admitted up to 75% of it, default up
 * to 100%, critical up to 125%; under pressure sheddable work goes first.
 *
 * ClientThrottle: adaptive throttling from Google's SRE book (chapter 21). Over a window it counts
 * requests and accepts (answers that were not "overloaded"), and refuses locally with probability
 * max(0, (requests − K·accepts) / (requests + 1)), so a backend that is rejecting gets less
 * traffic from us before the requests ever leave.
 */
import type { Random } from '../../lib/random.ts';
import type { Priority } from './bulkhead.ts';
import { WindowCounter } from './window.ts';

export interface AdaptiveLimitOptions {
  initialLimit: number;
  minLimit: number;
  maxLimit: number;
  /** Samples between re-probes of the no-load RTT (scaled by the limit). */
  probeMultiplier?: number;
  /** Smoothing of limit changes, 0 < s ≤ 1. */
  smoothing?: number;
}

export class AdaptiveLimit {
  readonly #o: Required<AdaptiveLimitOptions>;
  readonly #random: Random;
  #limit: number;
  #rttNoLoad = 0;
  #inflight = 0;
  #samplesToProbe: number;
  /** Samples left in the current probe (0: not probing), and the lowest RTT it saw. */
  #probing = 0;
  #probeMin = Infinity;
  /** Told of every change of the (integer) limit. */
  onLimit: ((limit: number) => void) | undefined;

  constructor(o: AdaptiveLimitOptions, random: Random) {
    this.#o = { probeMultiplier: 30, smoothing: 1, ...o };
    this.#random = random;
    this.#limit = o.initialLimit;
    this.#samplesToProbe = this.#nextProbe();
  }

  get limit(): number {
    return Math.floor(this.#limit);
  }

  get inflight(): number {
    return this.#inflight;
  }

  /** Admit a request of a priority class, or refuse it (shed). Call {@link onSample} or {@link onDrop} after an admitted one. */
  tryAcquire(priority: Priority): boolean {
    const cap = this.#limit * (priority === 0 ? 1.25 : priority === 1 ? 1 : 0.75) * (this.#probing > 0 ? 0.5 : 1);
    if (this.#inflight >= Math.max(1, Math.floor(cap))) return false;
    this.#inflight++;
    return true;
  }

  /** An admitted request ended without a usable latency (cancelled, or failed before the dependency answered). */
  onDrop(): void {
    this.#inflight = Math.max(0, this.#inflight - 1);
  }

  /**
   * An admitted request ended after `rttMs`. `overloaded` marks an answer that says the dependency
   * is overloaded (503, 429, RESOURCE_EXHAUSTED, a timeout): treated as a large queue.
   */
  onSample(rttMs: number, overloaded = false, inflightAtStart = this.#inflight): void {
    this.#inflight = Math.max(0, this.#inflight - 1);
    const rtt = Math.max(rttMs, 0.001);
    if (this.#probing > 0) {
      this.#probeMin = Math.min(this.#probeMin, rtt);
      if (--this.#probing === 0) {
        this.#rttNoLoad = this.#probeMin;
        this.#samplesToProbe = this.#nextProbe();
      }
      return;
    }
    if (--this.#samplesToProbe <= 0) {
      this.#probing = Math.max(this.limit, 10);
      this.#probeMin = Infinity;
      this.#resetWindow();
      return;
    }
    if (this.#rttNoLoad === 0 || rtt < this.#rttNoLoad) this.#rttNoLoad = rtt;
    // Samples are averaged over a window of about half the limit, and the limit moves once per
    // window: a burst of answers from one slow moment must not move it a hundred times.
    const w = this.#w;
    w.n++;
    w.rttSum += rtt;
    w.maxInflight = Math.max(w.maxInflight, inflightAtStart);
    if (overloaded) w.overloaded++;
    if (w.n < Math.max(10, Math.floor(this.#limit / 2))) return;
    const avg = w.rttSum / w.n;
    const inflight = w.maxInflight;
    const dropped = w.overloaded * 20 > w.n; // more than 5% said "overloaded"
    this.#resetWindow();
    const limit = this.#limit;
    const log = Math.max(1, Math.log10(limit));
    let next = limit;
    if (dropped) next = limit * 0.9;
    else {
      // The queue by Little's law, from the requests actually in flight (an idle path's latency
      // noise is not a queue); grow only when the limit is in use.
      const queue = inflight * (1 - this.#rttNoLoad / avg);
      const alpha = 3 * log;
      const beta = 6 * log;
      if (queue <= log && inflight * 2 >= limit) next = limit + beta;
      else if (queue < alpha && inflight * 2 >= limit) next = limit + log;
      else if (queue > beta) next = limit - Math.max(log, (queue - beta) / 2);
    }
    next = Math.min(this.#o.maxLimit, Math.max(this.#o.minLimit, next));
    next = limit * (1 - this.#o.smoothing) + next * this.#o.smoothing;
    const before = Math.floor(this.#limit);
    this.#limit = next;
    if (Math.floor(next) !== before) this.onLimit?.(Math.floor(next));
  }

  #w = { n: 0, rttSum: 0, maxInflight: 0, overloaded: 0 };

  #resetWindow(): void {
    this.#w = { n: 0, rttSum: 0, maxInflight: 0, overloaded: 0 };
  }

  #nextProbe(): number {
    return Math.ceil(this.#o.probeMultiplier * Math.max(this.#limit, 10) * (1 + this.#random.next()));
  }
}

export interface ThrottleOptions {
  /** Accepts multiplier K: 2 lets through about twice what the backend accepts. */
  k: number;
  windowMs: number;
}

export class ClientThrottle {
  readonly #k: number;
  readonly #w: WindowCounter<'requests' | 'accepts'>;

  constructor(o: ThrottleOptions) {
    this.#k = o.k;
    this.#w = new WindowCounter(o.windowMs, ['requests', 'accepts']);
  }

  /** The probability a new request is refused locally now. */
  rejectProbability(now: number): number {
    const requests = this.#w.sum(now, 'requests');
    const accepts = this.#w.sum(now, 'accepts');
    return Math.max(0, (requests - this.#k * accepts) / (requests + 1));
  }

  /**
   * Decide for one request. A refused request counts as a request at once (as in the SRE book:
   * that is what drives the probability towards 1 − K·accepts/requests); an admitted one is
   * counted when its answer comes ({@link onResult}), so requests still in flight do not look
   * like rejections (the second request of a cold start must not be refused).
   */
  admit(now: number, random: Random): boolean {
    const p = this.rejectProbability(now);
    if (p > 0 && random.next() < p) {
      this.#w.add(now, 'requests');
      return false;
    }
    return true;
  }

  /** An admitted request's answer: accepted (anything but "overloaded") or not. */
  onResult(now: number, accepted: boolean): void {
    this.#w.add(now, 'requests');
    if (accepted) this.#w.add(now, 'accepts');
  }
}
