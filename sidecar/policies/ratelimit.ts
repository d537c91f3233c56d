/**
 * Token-bucket rate limit (pure; time passed in): `perSecond` tokens are added continuously up to
 * `burst`; a call takes one token or is refused with the time until the next token (sent to the
 * caller as Retry-After). Continuous refill, not a per-interval reservoir: a limit of 100/s
 * admits one call every 10 ms rather than 100 at the top of each second.
 *
 * bottleneck was considered (docs/architecture.md): it queues and schedules jobs on its own timers and
 * refreshes its reservoir per interval; a limit that refuses at once, on virtual time, is this
 * small class, which the tests drive directly.
 */
export interface RateLimitOptions {
  perSecond: number;
  burst: number;
}

export class TokenBucket {
  readonly #rate: number;
  readonly #burst: number;
  #tokens: number;
  #at: number;

  constructor(o: RateLimitOptions, now: number) {
    this.#rate = o.perSecond / 1000;
    this.#burst = Math.max(1, o.burst);
    this.#tokens = this.#burst;
    this.#at = now;
  }

  /** Take a token: 0 when admitted, else the milliseconds until one is available. */
  take(now: number): number {
    this.#refill(now);
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return 0;
    }
    return Math.ceil((1 - this.#tokens) / this.#rate);
  }

  available(now: number): number {
    this.#refill(now);
    return Math.floor(this.#tokens);
  }

  #refill(now: number): void {
    if (now > this.#at) {
      this.#tokens = Math.min(this.#burst, this.#tokens + (now - this.#at) * this.#rate);
      this.#at = now;
    }
  }
}
