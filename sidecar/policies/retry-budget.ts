/**
 * Retry budget and back-off (pure; time and randomness passed in). Retries and hedges draw from
 * one budget: over a sliding window, at most `ratio` extra attempts per request, plus
 * `minPerSecond` always allowed (so a quiet upstream can still be retried). When the budget is
 * spent, a failure is returned as it is instead of adding load to a struggling upstream
 * (Finagle's and Linkerd's retry budgets).
 */
import type { Random } from '../../lib/random.ts';
import { WindowCounter } from './window.ts';

export interface RetryBudgetOptions {
  /** Extra attempts allowed per request, e.g. 0.2 = 20%. */
  ratio: number;
  /** Extra attempts allowed per second regardless of traffic. */
  minPerSecond: number;
  /** The window requests and retries are counted over. */
  windowMs: number;
}

export class RetryBudget {
  readonly #options: RetryBudgetOptions;
  readonly #window: WindowCounter<'requests' | 'extra'>;

  constructor(o: RetryBudgetOptions) {
    this.#options = o;
    this.#window = new WindowCounter(o.windowMs, ['requests', 'extra']);
  }

  /** A request started (its first attempt). */
  onRequest(now: number): void {
    this.#window.add(now, 'requests');
  }

  /** Extra attempts still allowed in the window now. */
  remaining(now: number): number {
    const allowed = this.#window.sum(now, 'requests') * this.#options.ratio + (this.#options.minPerSecond * this.#options.windowMs) / 1000;
    return Math.max(0, Math.floor(allowed - this.#window.sum(now, 'extra')));
  }

  /** Take one extra attempt (a retry or a hedge) if the budget allows. */
  tryWithdraw(now: number): boolean {
    if (this.remaining(now) < 1) return false;
    this.#window.add(now, 'extra');
    return true;
  }
}

/** Exponential back-off with full jitter: uniform in [0, min(cap, base × 2^attempt)). */
export function backoffDelay(attempt: number, baseMs: number, capMs: number, random: Random): number {
  return random.next() * Math.min(capMs, baseMs * 2 ** attempt);
}

/**
 * The delay a server asked for, if any: `Retry-After` (seconds or an HTTP date) or gRPC's
 * `grpc-retry-pushback-ms`. A negative or malformed pushback means "do not retry" ('stop').
 */
export function serverPushbackMs(
  headers: Readonly<Record<string, string | string[] | undefined>>,
  nowWallMs: number,
): number | 'stop' | undefined {
  const grpc = headers['grpc-retry-pushback-ms'];
  if (typeof grpc === 'string') {
    const n = Number(grpc);
    return Number.isFinite(n) && n >= 0 ? n : 'stop';
  }
  const ra = headers['retry-after'];
  if (typeof ra !== 'string') return undefined;
  if (/^\d+$/.test(ra.trim())) return Number(ra.trim()) * 1000;
  const at = Date.parse(ra);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowWallMs);
}
