/**
 * Load shedding (pure; time and randomness passed in).
 *
 * AdaptiveLimit: a concurrency limit learned from latency, in the family of TCP Vegas and
 * Netflix's concurrency-limits (gradient). It keeps the lowest round-trip time seen (the
 * no-load RTT). Per window of samples it takes the median RTT: at most no-load + tolerance means
 * no queue, and the limit grows while it is in use; above that, Little's law gives the
 * concurrency the dependency serves without queueing (inflight × no-load / RTT), and the limit
 * moves towards 1.25× that. So admitted requests see close to unloaded latency and the excess
 * is refused at once instead of queueing. The no-load RTT is re-probed now and then (BBR's ProbeRTT): for one limit's worth
 * of samples only half the limit is admitted, so any queue drains, and the lowest RTT seen then
 * becomes the new no-load RTT. (Resetting it to a single sample taken under load, as a plain
 * Vegas does, lets the limit creep up for ever under sustained overload.)
 *
 * Priority classes share the limit: sheddable requests are admitted up to 75% of it, default up
 * to 100%, critical up to 125%; under pressure sheddable work goes first.
 *
 * Shedding follows evidence of overload, not a guess. A window whose median latency shows a
 * clear queue at the dependency (over twice the unloaded latency plus 10 ms), or whose answers
 * say "overloaded", is evidence; it lasts until 20 windows in which demand fit under the limit.
 * With evidence, a request over the limit is shed at once, so admitted requests keep
 * close to unloaded latency. Without it — a cold start, a healthy burst above a limit that was
 * only ever a guess — PooledLimit.acquire lets the request wait for room, in priority order, and
 * sheds it only when that wait outgrows max(250 ms, 4 × the unloaded latency) — queueing here,
 * which is evidence too (the limit keeps the dependency's own latency low, so sustained overload
 * shows up as waits, not as slow answers) — or when more wait than the limit could ever admit
 * (maxLimit). Refusing a
 * healthy burst would turn a dependency's good day into errors; a short wait costs little and
 * teaches the limit to grow.
 *
 * ClientThrottle: adaptive throttling from Google's SRE book (chapter 21). Over a window it counts
 * requests and accepts (answers that were not "overloaded"), and refuses locally with probability
 * max(0, (requests − K·accepts) / (requests + 1)), so a backend that is rejecting gets less
 * traffic from us before the requests ever leave.
 */
import type { Clock, TimerHandle } from '../../lib/clock.ts';
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
  /**
   * Latency above the no-load RTT that is never read as queueing (default 5 ms). A proxy on a
   * busy core, or a burst of simultaneous arrivals, adds a few milliseconds of its own; that
   * is not the dependency queueing, and shedding for it would turn a busy moment into refusals.
   */
  toleranceMs?: number;
  /**
   * Whether the proxy's own event loop is saturated now (lib/event-loop.ts). Its latency then
   * includes the proxy's own delay: the limit may follow it, but it is not evidence that the
   * dependency is queueing, so it never makes requests over the limit be shed at once (they wait).
   */
  proxyBusy?: () => boolean;
}

export class AdaptiveLimit {
  readonly #options: Required<AdaptiveLimitOptions>;
  readonly #random: Random;
  #limit: number;
  #rttNoLoad = 0;
  #inflight = 0;
  #samplesToProbe: number;
  /** Samples left in the current probe (0: not probing), and the lowest RTT it saw. */
  #probing = 0;
  #probeMin = Infinity;
  /** Windows left for which the last evidence of overload counts. */
  #evidence = 0;
  /** Told of every change of the (integer) limit. */
  onLimit: ((limit: number) => void) | undefined;

  constructor(o: AdaptiveLimitOptions, random: Random) {
    this.#options = { probeMultiplier: 30, smoothing: 1, toleranceMs: 5, proxyBusy: () => false, ...o };
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

  /** The lowest round-trip time seen lately (0 before the first sample). */
  get rttNoLoad(): number {
    return this.#rttNoLoad;
  }

  /** Whether a recent window showed overload (a queue, or overloaded answers). */
  get overloaded(): boolean {
    return this.#evidence > 0;
  }

  /** Requests queued in front of this limit longer than the dependency's latency allows: overload. */
  noteQueueing(): void {
    this.#evidence = evidenceWindows;
  }

  /** Admit a request of a priority class, or refuse it (shed). Call {@link onSample} or {@link onDrop} after an admitted one. */
  tryAcquire(priority: Priority): boolean {
    const cap = this.#limit * (priority === 0 ? 1.25 : priority === 1 ? 1 : 0.75) * (this.#probing > 0 ? 0.5 : 1);
    if (this.#inflight >= Math.max(1, Math.floor(cap))) {
      this.#window.refused++;
      return false;
    }
    this.#inflight++;
    return true;
  }

  /** A request was refused for want of room (the limit, not the dependency, may be the bottleneck). */
  noteRefused(): void {
    this.#window.refused++;
  }

  /** Count a request in flight without checking the limit (an attempt the pool already admitted); returns the count. */
  begin(): number {
    return ++this.#inflight;
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
    // Samples are gathered over a window of about half the limit, and the limit moves once per
    // window: a burst of answers from one slow moment must not move it a hundred times. The
    // window's median is the RTT: queueing slows every request, while one slow endpoint of
    // three (or a few cold connections) slows only some, and is not a reason to shed.
    const w = this.#window;
    w.n++;
    w.rtts.push(rtt);
    w.inflightSum += inflightAtStart;
    if (overloaded) w.overloaded++;
    // Windows of half the limit; in a slow start (no evidence of overload yet) windows of ten,
    // so a burst waiting at a cold limit sees it grow within a round trip.
    if (w.n < (this.#evidence > 0 ? Math.max(10, Math.floor(this.#limit / 2)) : 10)) return;
    w.rtts.sort((x, y) => x - y);
    const avg = w.rtts[Math.floor(w.rtts.length / 2)] as number;
    const inflight = w.inflightSum / w.n; // the mean concurrency the window's requests saw
    const dropped = w.overloaded * 20 > w.n; // more than 5% said "overloaded"
    const refused = w.refused;
    this.#resetWindow();
    const limit = this.#limit;
    const ok = this.#rttNoLoad + this.#options.toleranceMs;
    // Evidence for shedding asks for a clear queue: twice the unloaded latency and 10 ms more
    // (gradient2 tolerates 1.5×). A busy machine's own scheduling delays move the median by a
    // few milliseconds; the limit may follow them, but refusing healthy work over them would not
    // be following evidence.
    // Evidence fades only in windows where demand fit under the limit (nothing was turned away
    // or made to wait): under sustained overload the limit keeps the dependency's latency low,
    // so the queue is in front of the limit, and the evidence must not lapse while it is there.
    // A window the proxy itself was saturated in says nothing about the dependency's queue.
    if (dropped || (avg > this.#rttNoLoad * 2 + 10 && !this.#options.proxyBusy())) this.#evidence = evidenceWindows;
    else if (this.#evidence > 0 && refused === 0) this.#evidence--;
    let next = limit;
    if (dropped) next = limit * 0.9;
    else if (avg <= ok) {
      // No queue. Grow when the limit is what held requests back (refusals: a burst, or a
      // limit learned on a cold start) — fast — or when it is at least half in use.
      // Without evidence of overload that is a slow start: double, as TCP does.
      if (refused > 0) next = this.#evidence > 0 ? Math.max(limit + Math.sqrt(limit), limit * 1.5) : limit * 2;
      else if (inflight * 2 >= limit) next = limit + Math.sqrt(limit);
    } else {
      // A queue: by Little's law the dependency serves inflight × ok / RTT at once without
      // queueing; go there, plus a quarter for headroom (admitted requests then see about
      // 1.25× the unloaded latency), halfway per window so one noisy window cannot slam it.
      const target = inflight * (ok / avg);
      next = Math.min(limit, (limit + target * 1.25) / 2);
    }
    next = Math.min(this.#options.maxLimit, Math.max(this.#options.minLimit, next));
    next = limit * (1 - this.#options.smoothing) + next * this.#options.smoothing;
    const before = Math.floor(this.#limit);
    this.#limit = next;
    if (Math.floor(next) !== before) this.onLimit?.(Math.floor(next));
  }

  #window = { n: 0, rtts: [] as number[], inflightSum: 0, overloaded: 0, refused: 0 };

  #resetWindow(): void {
    this.#window = { n: 0, rtts: [], inflightSum: 0, overloaded: 0, refused: 0 };
  }

  #nextProbe(): number {
    return Math.ceil(this.#options.probeMultiplier * Math.max(this.#limit, 10) * (1 + this.#random.next()));
  }
}

/**
 * The adaptive limit of an upstream with several endpoints: one {@link AdaptiveLimit} per
 * endpoint (each endpoint is its own queue, and learns from its own latency), and admission
 * against their sum. One slow endpoint then lowers only its own share — the balancer steers
 * away from it — instead of the whole upstream's limit, and a pool of endpoints grows and
 * shrinks its capacity as endpoints come and go.
 */
interface Waiter {
  priority: Priority;
  timer: TimerHandle;
  done: (ok: boolean) => void;
}

/** Windows for which one sign of overload counts. */
const evidenceWindows = 20;

/** The least a request waits at the limit before it is shed (a busy proxy's own jitter is not overload). */
const minWaitMs = 250;
/** Unloaded service times a request may wait at the limit. */
const waitRtts = 4;

export class PooledLimit {
  readonly #options: AdaptiveLimitOptions;
  readonly #random: Random;
  readonly #clock: Clock;
  readonly #limits = new Map<string, AdaptiveLimit>();
  #inflight = 0;
  #sum = 0;
  /** Requests waiting for room, one FIFO per priority class. */
  readonly #waiting: [Waiter[], Waiter[], Waiter[]] = [[], [], []];
  #queued = 0;
  /** Told of every change of the pooled limit. */
  onLimit: ((limit: number) => void) | undefined;

  constructor(o: AdaptiveLimitOptions, random: Random, clock: Clock) {
    this.#options = o;
    this.#random = random;
    this.#clock = clock;
  }

  /** Keep the limits of endpoints that stay; new ones start at initialLimit. */
  setEndpoints(ids: Iterable<string>): void {
    const keep = new Set(ids);
    for (const id of [...this.#limits.keys()]) if (!keep.has(id)) this.#limits.delete(id);
    for (const id of keep) {
      if (this.#limits.has(id)) continue;
      const l = new AdaptiveLimit(this.#options, this.#random);
      l.onLimit = () => this.#resum();
      this.#limits.set(id, l);
    }
    this.#resum();
  }

  get limit(): number {
    return this.#sum;
  }

  get inflight(): number {
    return this.#inflight;
  }

  get queued(): number {
    return this.#queued;
  }

  endpoint(id: string): AdaptiveLimit | undefined {
    return this.#limits.get(id);
  }

  #cap(priority: Priority): number {
    return Math.max(1, Math.floor(this.#sum * (priority === 0 ? 1.25 : priority === 1 ? 1 : 0.75)));
  }

  /** Admit a request now if there is room (sheddable up to 75% of the pooled limit, default 100%, critical 125%). */
  tryAcquire(priority: Priority): boolean {
    if (this.#inflight >= this.#cap(priority) || this.#queued > 0) {
      for (const l of this.#limits.values()) l.noteRefused();
      return false;
    }
    this.#inflight++;
    return true;
  }

  /**
   * Admit a request, waiting for room if the limit is reached and no endpoint showed overload
   * lately: `done(true)` once admitted (call {@link release} after), `done(false)` when it is
   * shed: at once on evidence of overload, or when the wait outgrew
   * max(250 ms, 4 × the unloaded latency), or more wait than the limit could ever admit (maxLimit).
   */
  acquire(priority: Priority, done: (ok: boolean) => void): void {
    if (this.tryAcquire(priority)) return done(true);
    if (this.overloaded || this.#queued >= Math.max(this.#sum, this.#options.maxLimit)) return done(false);
    const enqueuedAt = this.#clock.now();
    const w: Waiter = { priority, done, timer: undefined as unknown as TimerHandle };
    // The bound is judged against what is known of the upstream's latency when it comes due
    // (a cold limit has no samples when the first waiters arrive).
    const check = (): void => {
      const q = this.#waiting[priority];
      const i = q.indexOf(w);
      if (i < 0) return;
      // Before any answer came back nothing is known of the upstream's latency, so a wait
      // shows nothing yet: keep waiting (the admitted requests are bounded by their own
      // timeouts, and a timeout is a sample).
      const left = this.#rttKnown() ? enqueuedAt + this.#waitBound() - this.#clock.now() : minWaitMs;
      if (left > 0) {
        w.timer = this.#clock.setTimeout(check, left);
        return;
      }
      q.splice(i, 1);
      this.#queued--;
      // Waiting this long is queueing, here rather than at the dependency (the limit keeps its
      // latency low): evidence of overload, so the next request over the limit is shed at once.
      for (const l of this.#limits.values()) l.noteQueueing();
      done(false);
    };
    w.timer = this.#clock.setTimeout(check, this.#waitBound());
    this.#waiting[priority].push(w);
    this.#queued++;
  }

  /** Whether an endpoint showed overload lately: then a request over the limit is shed at once. */
  get overloaded(): boolean {
    for (const l of this.#limits.values()) if (l.overloaded) return true;
    return false;
  }

  #rttKnown(): boolean {
    for (const l of this.#limits.values()) if (l.rttNoLoad > 0) return true;
    return false;
  }

  /** How long a request may wait at the limit: max(250 ms, 4 × the lowest unloaded latency). */
  #waitBound(): number {
    let rtt = 0;
    for (const l of this.#limits.values()) if (l.rttNoLoad > 0) rtt = rtt === 0 ? l.rttNoLoad : Math.min(rtt, l.rttNoLoad);
    return Math.max(minWaitMs, waitRtts * rtt);
  }

  release(): void {
    this.#inflight = Math.max(0, this.#inflight - 1);
    // Requests still waiting: demand is over the limit now (the limit grows on it).
    if (this.#queued > 0) for (const l of this.#limits.values()) l.noteRefused();
    this.#admitWaiting();
  }

  /** Hand free room to waiters, most important class first. */
  #admitWaiting(): void {
    for (let p = 0; p < 3 && this.#queued > 0; p++) {
      const q = this.#waiting[p as Priority];
      while (q.length > 0 && this.#inflight < this.#cap(p as Priority)) {
        const w = q.shift() as Waiter;
        this.#queued--;
        w.timer.cancel();
        this.#inflight++;
        w.done(true);
      }
    }
  }

  #resum(): void {
    let sum = 0;
    for (const l of this.#limits.values()) sum += l.limit;
    if (sum !== this.#sum) {
      this.#sum = sum;
      this.onLimit?.(sum);
      this.#admitWaiting();
    }
  }
}

export interface ThrottleOptions {
  /** Accepts multiplier K: 2 lets through about twice what the backend accepts. */
  k: number;
  windowMs: number;
}

export class ClientThrottle {
  readonly #multiplier: number;
  readonly #window: WindowCounter<'requests' | 'accepts'>;

  constructor(o: ThrottleOptions) {
    this.#multiplier = o.k;
    this.#window = new WindowCounter(o.windowMs, ['requests', 'accepts']);
  }

  /** The probability a new request is refused locally now. */
  rejectProbability(now: number): number {
    const requests = this.#window.sum(now, 'requests');
    const accepts = this.#window.sum(now, 'accepts');
    return Math.max(0, (requests - this.#multiplier * accepts) / (requests + 1));
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
      this.#window.add(now, 'requests');
      return false;
    }
    return true;
  }

  /** An admitted request's answer: accepted (anything but "overloaded") or not. */
  onResult(now: number, accepted: boolean): void {
    this.#window.add(now, 'requests');
    if (accepted) this.#window.add(now, 'accepts');
  }
}
