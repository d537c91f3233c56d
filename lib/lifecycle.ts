/**
 * Start and stop of long-running components, and the process's answer to SIGTERM/SIGINT.
 *
 * Components start in the order added and stop in reverse. The first signal starts a graceful
 * drain bounded by a deadline (a timer on the injected clock); a second signal forces exit.
 *
 * Exit codes (docs/operations.md):
 *   0   stopped cleanly
 *   1   a component failed (at start or while running)
 *   2   bad command line or configuration (never reaches here: the CLI exits first)
 *   3   the drain deadline passed before every component stopped
 *   130 a second SIGTERM/SIGINT forced exit during the drain
 */
import type { Logger } from 'pino';
import { type Clock, realClock } from './clock.ts';
import { BallastError } from './errors.ts';
import { silentLogger } from './log.ts';

export const ExitCode = { ok: 0, failure: 1, usage: 2, drainTimeout: 3, dataLost: 4, forced: 130 } as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** Something that runs until told to stop. */
export interface Component {
  readonly name: string;
  start(): Promise<void> | void;
  /** Stop gracefully; `signal` aborts when the drain deadline passes: finish up at once then. */
  stop(signal: AbortSignal): Promise<void> | void;
}

/** The process's signal surface, injectable for tests. */
export interface SignalTarget {
  on(event: 'SIGTERM' | 'SIGINT', fn: () => void): unknown;
  off(event: 'SIGTERM' | 'SIGINT', fn: () => void): unknown;
}

export interface LifecycleOptions {
  clock?: Clock;
  log?: Logger;
  /** How long a graceful stop may take before exit code 3 (default 30 s). */
  drainTimeoutMs?: number;
}

/** Owns components' start/stop order and the shutdown sequence. */
export class Lifecycle {
  readonly #components: Component[] = [];
  readonly #started: Component[] = [];
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #drainTimeoutMs: number;
  #stopping: Promise<ExitCode> | undefined;
  #signalled = 0;

  constructor(o: LifecycleOptions = {}) {
    this.#clock = o.clock ?? realClock;
    this.#log = o.log ?? silentLogger;
    this.#drainTimeoutMs = o.drainTimeoutMs ?? 30_000;
  }

  add(component: Component): this {
    this.#components.push(component);
    return this;
  }

  /** Start every component in order; on failure stop those started, in reverse, and throw. */
  async start(): Promise<void> {
    for (const c of this.#components) {
      try {
        await c.start();
        this.#started.push(c);
        this.#log.debug({ component: c.name }, 'component started');
      } catch (cause) {
        this.#log.error({ component: c.name, err: cause }, 'component failed to start');
        await this.stop();
        throw new BallastError('BALLAST_ERR_START_FAILED', `${c.name} failed to start: ${(cause as Error).message}`, { cause });
      }
    }
  }

  /**
   * Stop started components in reverse order within the drain deadline. Returns
   * {@link ExitCode.ok}, or {@link ExitCode.drainTimeout} when the deadline passed first.
   * Calling it again returns the same drain.
   */
  stop(): Promise<ExitCode> {
    this.#stopping ??= this.#drain();
    return this.#stopping;
  }

  async #drain(): Promise<ExitCode> {
    const deadline = new AbortController();
    let timedOut = false;
    const timer = this.#clock.setTimeout(
      () => {
        timedOut = true;
        deadline.abort(new BallastError('BALLAST_ERR_DRAIN_TIMEOUT', `shutdown did not finish within ${this.#drainTimeoutMs}ms`));
      },
      this.#drainTimeoutMs,
      { unref: true },
    );
    const expired = new Promise<void>((resolve) => deadline.signal.addEventListener('abort', () => resolve(), { once: true }));
    const stopAll = (async () => {
      for (const c of [...this.#started].reverse()) {
        try {
          await c.stop(deadline.signal);
          this.#log.debug({ component: c.name }, 'component stopped');
        } catch (err) {
          this.#log.warn({ component: c.name, err }, 'component failed to stop cleanly');
        }
      }
    })();
    await Promise.race([stopAll, expired]);
    timer.cancel();
    if (timedOut) {
      this.#log.error({ drainTimeoutMs: this.#drainTimeoutMs }, 'drain deadline passed; exiting');
      return ExitCode.drainTimeout;
    }
    return ExitCode.ok;
  }

  /**
   * Handle SIGTERM/SIGINT: the first drains then calls `exit` with the drain's code; a second
   * calls `exit(130)` at once. Returns a function that removes the handlers.
   */
  handleSignals(exit: (code: ExitCode) => void, target: SignalTarget = process): () => void {
    const onSignal = (name: 'SIGTERM' | 'SIGINT') => () => {
      this.#signalled++;
      if (this.#signalled > 1) {
        this.#log.warn({ signal: name }, 'second signal: forcing exit');
        exit(ExitCode.forced);
        return;
      }
      this.#log.info({ signal: name, drainTimeoutMs: this.#drainTimeoutMs }, 'signal received: draining');
      void this.stop().then(exit);
    };
    const term = onSignal('SIGTERM');
    const int = onSignal('SIGINT');
    target.on('SIGTERM', term);
    target.on('SIGINT', int);
    return () => {
      target.off('SIGTERM', term);
      target.off('SIGINT', int);
    };
  }
}
