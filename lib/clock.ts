/**
 * Time for every timer in Ballast. Code takes a {@link Clock} instead of calling `setTimeout`,
 * `Date.now()` or `performance.now()`, so tests run on a {@link VirtualClock} that moves only
 * when the test moves it: no real waiting and no flaky timing.
 */

/** A scheduled callback that can be cancelled; cancelling twice is harmless. */
export interface TimerHandle {
  cancel(): void;
}

export interface TimerOptions {
  /** Real clock only: do not keep the process alive for this timer. */
  unref?: boolean;
}

/** The source of time. `now()` is monotonic; `wallNow()` is for timestamps people read. */
export interface Clock {
  /** Monotonic milliseconds. Only differences between two readings mean anything. */
  now(): number;
  /** Milliseconds since the Unix epoch. */
  wallNow(): number;
  setTimeout(fn: () => void, ms: number, opts?: TimerOptions): TimerHandle;
  setInterval(fn: () => void, ms: number, opts?: TimerOptions): TimerHandle;
  /** Resolves after `ms`; rejects with the signal's reason if it aborts first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

function sleepOn(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(signal.reason as Error);
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      timer.cancel();
      reject(signal?.reason as Error);
    };
    const timer = clock.setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** The process's real clock. */
export class RealClock implements Clock {
  now(): number {
    return performance.now();
  }
  wallNow(): number {
    return Date.now();
  }
  setTimeout(fn: () => void, ms: number, opts?: TimerOptions): TimerHandle {
    const t = globalThis.setTimeout(fn, Math.max(0, ms));
    if (opts?.unref) t.unref();
    return { cancel: () => globalThis.clearTimeout(t) };
  }
  setInterval(fn: () => void, ms: number, opts?: TimerOptions): TimerHandle {
    const t = globalThis.setInterval(fn, Math.max(1, ms));
    if (opts?.unref) t.unref();
    return { cancel: () => globalThis.clearInterval(t) };
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return sleepOn(this, ms, signal);
  }
}

/** The one real clock of the process. */
export const realClock: Clock = new RealClock();

interface VirtualTimer {
  id: number;
  due: number;
  every: number | null;
  fn: () => void;
  cancelled: boolean;
}

/**
 * A clock for tests: time stands still until {@link advance} or {@link advanceAsync} moves it,
 * and timers fire in due order (ties in scheduling order) with `now()` equal to their due time.
 */
export class VirtualClock implements Clock {
  #now: number;
  #wallOffset: number;
  #seq = 0;
  #timers: VirtualTimer[] = [];

  constructor(start = 0, wallStart = Date.UTC(2026, 0, 1)) {
    this.#now = start;
    this.#wallOffset = wallStart - start;
  }

  now(): number {
    return this.#now;
  }
  wallNow(): number {
    return this.#now + this.#wallOffset;
  }
  setTimeout(fn: () => void, ms: number): TimerHandle {
    return this.#schedule(fn, Math.max(0, ms), null);
  }
  setInterval(fn: () => void, ms: number): TimerHandle {
    const every = Math.max(1, ms);
    return this.#schedule(fn, every, every);
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return sleepOn(this, ms, signal);
  }

  /** Timers scheduled and not yet fired or cancelled. */
  pending(): number {
    return this.#timers.filter((t) => !t.cancelled).length;
  }

  /** Move time forward by `ms`, firing every timer that falls due, synchronously. */
  advance(ms: number): void {
    const target = this.#now + ms;
    for (let t = this.#next(target); t; t = this.#next(target)) this.#fire(t);
    this.#now = target;
  }

  /**
   * Move time forward by `ms` like {@link advance}, but let promise callbacks and I/O callbacks
   * run after each timer, so async code driven by timers makes progress as it would for real.
   */
  async advanceAsync(ms: number): Promise<void> {
    const target = this.#now + ms;
    await flush();
    for (let t = this.#next(target); t; t = this.#next(target)) {
      this.#fire(t);
      await flush();
    }
    this.#now = target;
    await flush();
  }

  #schedule(fn: () => void, delay: number, every: number | null): TimerHandle {
    const timer: VirtualTimer = { id: this.#seq++, due: this.#now + delay, every, fn, cancelled: false };
    this.#timers.push(timer);
    return {
      cancel: () => {
        timer.cancelled = true;
      },
    };
  }

  #next(limit: number): VirtualTimer | undefined {
    this.#timers = this.#timers.filter((t) => !t.cancelled);
    let best: VirtualTimer | undefined;
    for (const t of this.#timers) {
      if (t.due > limit) continue;
      if (!best || t.due < best.due || (t.due === best.due && t.id < best.id)) best = t;
    }
    return best;
  }

  #fire(t: VirtualTimer): void {
    this.#now = Math.max(this.#now, t.due);
    if (t.every === null) {
      t.cancelled = true;
    } else {
      t.due += t.every;
      t.id = this.#seq++;
    }
    t.fn();
  }
}

/** Let queued promise callbacks and one turn of the event loop run. */
function flush(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
