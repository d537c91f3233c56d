/**
 * The circuit breaker's state machine (pure; time is passed in). Closed: calls go through and
 * their outcomes are counted. The breaker opens when any rule trips:
 *   consecutive failures  n failures in a row
 *   failure rate          ≥ threshold of the calls in a sliding time window (with a minimum of calls)
 *   slow-call rate        ≥ threshold of the calls slower than `slowMs`, in the same window
 * Open: calls fail fast for `openMs`. Half-open: up to `halfOpenTrials` calls go through at
 * once; if they all succeed the breaker closes, and any failure opens it again.
 * (opossum's half-open admits exactly one trial and has no slow-call rule; this does both.)
 */

export interface BreakerRules {
  consecutiveFailures?: number;
  failureRate?: { threshold: number; minCalls: number };
  slowCallRate?: { threshold: number; slowMs: number; minCalls: number };
  /** The sliding window for the rate rules. */
  windowMs: number;
  openMs: number;
  halfOpenTrials: number;
}

export type BreakerState = 'closed' | 'open' | 'halfOpen';

/** A call admitted by the breaker: report its outcome with the same ticket. */
export interface Ticket {
  readonly state: BreakerState;
}

const buckets = 10;

interface Bucket {
  start: number;
  calls: number;
  failures: number;
  slow: number;
}

export class Breaker {
  readonly #rules: BreakerRules;
  #state: BreakerState = 'closed';
  #openedAt = 0;
  #consecutive = 0;
  #window: Bucket[] = [];
  #trialsInFlight = 0;
  #trialsSucceeded = 0;
  /** Told of every state change (for metrics and logs). */
  onChange: ((from: BreakerState, to: BreakerState) => void) | undefined;

  constructor(rules: BreakerRules) {
    if (rules.halfOpenTrials < 1) throw new Error(`halfOpenTrials must be at least 1: got ${rules.halfOpenTrials}`);
    this.#rules = rules;
  }

  state(now: number): BreakerState {
    if (this.#state === 'open' && now - this.#openedAt >= this.#rules.openMs) this.#to('halfOpen');
    return this.#state;
  }

  /** Admit a call, or say how long until the breaker may let one through. */
  tryAcquire(now: number): { ok: true; ticket: Ticket } | { ok: false; retryAfterMs: number } {
    const s = this.state(now);
    if (s === 'open') return { ok: false, retryAfterMs: this.#openedAt + this.#rules.openMs - now };
    if (s === 'halfOpen') {
      if (this.#trialsInFlight + this.#trialsSucceeded >= this.#rules.halfOpenTrials) return { ok: false, retryAfterMs: 0 };
      this.#trialsInFlight++;
    }
    return { ok: true, ticket: { state: s } };
  }

  /** An admitted call that was never made (refused further on): frees a half-open trial slot, counts nothing. */
  onCancel(ticket: Ticket): void {
    if (ticket.state === 'halfOpen' && this.#state === 'halfOpen') this.#trialsInFlight = Math.max(0, this.#trialsInFlight - 1);
  }

  /** The outcome of an admitted call. */
  onResult(ticket: Ticket, now: number, ok: boolean, latencyMs: number): void {
    if (ticket.state === 'halfOpen') {
      this.#trialsInFlight = Math.max(0, this.#trialsInFlight - 1);
      if (this.#state !== 'halfOpen') return; // a sibling trial already decided
      if (!ok) return this.#open(now);
      this.#trialsSucceeded++;
      if (this.#trialsSucceeded >= this.#rules.halfOpenTrials) this.#close();
      return;
    }
    if (this.#state !== 'closed') return;
    const slow = this.#rules.slowCallRate !== undefined && latencyMs >= this.#rules.slowCallRate.slowMs;
    const b = this.#bucket(now);
    b.calls++;
    if (!ok) b.failures++;
    if (slow) b.slow++;
    this.#consecutive = ok ? 0 : this.#consecutive + 1;
    if (this.#trips(now)) this.#open(now);
  }

  #trips(now: number): boolean {
    const r = this.#rules;
    if (r.consecutiveFailures !== undefined && this.#consecutive >= r.consecutiveFailures) return true;
    if (!r.failureRate && !r.slowCallRate) return false;
    let calls = 0;
    let failures = 0;
    let slow = 0;
    for (const b of this.#window) {
      if (b.start <= now - r.windowMs) continue;
      calls += b.calls;
      failures += b.failures;
      slow += b.slow;
    }
    if (r.failureRate && calls >= r.failureRate.minCalls && failures / calls >= r.failureRate.threshold) return true;
    if (r.slowCallRate && calls >= r.slowCallRate.minCalls && slow / calls >= r.slowCallRate.threshold) return true;
    return false;
  }

  #bucket(now: number): Bucket {
    const width = this.#rules.windowMs / buckets;
    const start = Math.floor(now / width) * width;
    let b = this.#window.at(-1);
    if (!b || b.start !== start) {
      // A new bucket: the only time old ones need pruning.
      this.#window = this.#window.filter((x) => x.start > now - this.#rules.windowMs);
      b = { start, calls: 0, failures: 0, slow: 0 };
      this.#window.push(b);
    }
    return b;
  }

  #open(now: number): void {
    this.#openedAt = now;
    this.#to('open');
  }

  #close(): void {
    this.#window = [];
    this.#consecutive = 0;
    this.#to('closed');
  }

  #to(next: BreakerState): void {
    if (next === this.#state) return;
    const from = this.#state;
    this.#state = next;
    this.#trialsInFlight = 0;
    this.#trialsSucceeded = 0;
    this.onChange?.(from, next);
  }
}
