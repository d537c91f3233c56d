/**
 * The free-space guard. A member whose volume runs low raises the NOSPACE alarm through the log
 * while there is still room to write it, so the whole cluster refuses writes (reads, deletes and
 * compaction go on, as under etcd's quota alarm) before any member's WAL write can fail with
 * ENOSPC. Once free space is back above twice the reserve, the member clears the alarm it
 * raised itself; an alarm raised for the quota, or by an earlier run, is left for a person to
 * disarm (`etcdctl alarm disarm`), as etcd does.
 *
 * If the volume fills faster than the guard looks (every second), the WAL write fails, the
 * partial record is cut and the member stops (STORE_ERR_NO_DISK_SPACE): nothing acknowledged is
 * lost, and the member recovers when it restarts with space.
 */
import type { Logger } from 'pino';
import type { Clock, TimerHandle } from '../lib/clock.ts';

export interface DiskGuardDeps {
  clock: Clock;
  log: Logger;
  /** Bytes free for this process on the data directory's volume. */
  freeBytes(): Promise<number>;
  raise(): Promise<void>;
  clear(): Promise<void>;
}

export class DiskSpaceGuard {
  readonly #reserve: number;
  readonly #deps: DiskGuardDeps;
  #timer: TimerHandle | undefined;
  #raised = false;
  #busy = false;

  constructor(reserveBytes: number, deps: DiskGuardDeps) {
    this.#reserve = reserveBytes;
    this.#deps = deps;
  }

  /** True while this member holds the alarm it raised for low space. */
  get raised(): boolean {
    return this.#raised;
  }

  start(intervalMs = 1000): void {
    this.#timer = this.#deps.clock.setInterval(() => void this.check(), intervalMs, { unref: true });
  }

  stop(): void {
    this.#timer?.cancel();
  }

  /** One look at the volume (raise or clear as needed). A failed raise or clear is retried next time. */
  async check(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    try {
      const free = await this.#deps.freeBytes();
      if (!this.#raised && free < this.#reserve) {
        await this.#deps.raise();
        this.#raised = true;
        this.#deps.log.error(
          { freeBytes: free, reserveBytes: this.#reserve },
          "the data directory's volume is nearly full: raised the NOSPACE alarm, the cluster refuses writes until space is freed (delete or move files, or grow the volume)",
        );
      } else if (this.#raised && free >= 2 * this.#reserve) {
        await this.#deps.clear();
        this.#raised = false;
        this.#deps.log.warn(
          { freeBytes: free, reserveBytes: this.#reserve },
          "free space is back on the data directory's volume: cleared the NOSPACE alarm this member raised",
        );
      }
    } catch (err) {
      this.#deps.log.warn({ err }, 'disk space check could not raise or clear the alarm; retrying');
    } finally {
      this.#busy = false;
    }
  }
}
