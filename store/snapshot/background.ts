/**
 * Snapshots made in the background. Every `snapshotCount` applied entries the member takes the
 * state as it is (an O(1) copy-on-write view, StateMachine.view()), encodes it a slice at a time
 * between events, writes and fsyncs the file on libuv's threads, and only then tells the member
 * (`saved`: the WAL marker, the Raft log's compaction). Made in one piece on the event loop, a
 * 100,000-key snapshot blocked a member for over a second and a million keys for 7 s: long
 * enough to lose the leader (`etcdctl check perf --load=l` stalled 5 s).
 */
import type { Logger } from 'pino';
import type { Clock } from '../../lib/clock.ts';
import type { Failpoints } from '../failpoints.ts';
import { encodeState, encodeStateAsync } from '../format/state-codec.ts';
import type { Snapshot } from '../raft/types.ts';
import type { StateView } from '../state-machine.ts';
import type { Snapshotter } from './snapshotter.ts';

/** Lets the event loop run (timers, sockets) between slices of a long job. */
export function pause(): Promise<void> {
  return new Promise<void>((resolve) => setImmediate(resolve));
}

export interface BackgroundSnapshotDeps {
  snap: Snapshotter;
  log: Logger;
  member: string;
  clock: Clock;
  snapshotCount: number;
  failpoints?: Failpoints | undefined;
  /** The index of the newest snapshot saved or restored: a newer one makes a save in flight moot. */
  lastIndex(): number;
  stopped(): boolean;
  /** The snapshot's file is durable: write the WAL marker, compact the Raft log, note the index. */
  saved(snap: Snapshot): void;
}

export class BackgroundSnapshots {
  readonly #d: BackgroundSnapshotDeps;
  #inFlight: Promise<void> | undefined;
  /** After a failed snapshot: the applied index before which no new one is tried. */
  #retryAt = 0;

  constructor(deps: BackgroundSnapshotDeps) {
    this.#d = deps;
  }

  /** The snapshot being made, if one is (a stopping member waits for it). */
  get inFlight(): Promise<void> | undefined {
    return this.#inFlight;
  }

  /** Whether one should start now that `applied` entries are applied. */
  due(applied: number): boolean {
    return !this.#inFlight && applied - this.#d.lastIndex() >= this.#d.snapshotCount && applied >= this.#retryAt;
  }

  /** Make a snapshot of `view` (the state at `meta.index`) in the background. */
  start(meta: Snapshot['meta'], view: StateView, format: 1 | 2): void {
    this.#inFlight = this.#make(meta, view, format).finally(() => {
      this.#inFlight = undefined;
    });
  }

  async #make(meta: Snapshot['meta'], view: StateView, format: 1 | 2): Promise<void> {
    const d = this.#d;
    const started = d.clock.now();
    try {
      // Format 1 (only while a 0.1.0 member is in the cluster) is a v8 clone: one piece.
      const snap: Snapshot = { meta, data: format === 2 ? await encodeStateAsync(view, pause) : encodeState(view, 1) };
      const current = (): boolean => !d.stopped() && d.lastIndex() < meta.index;
      await this.#failpoint(meta.index);
      if (!current() || !(await d.snap.saveAsync(snap, { pause, proceed: current })) || !current()) return;
      d.saved(snap);
      const ms = Math.round(d.clock.now() - started);
      d.log.info(
        { member: d.member, index: meta.index, term: meta.term, bytes: snap.data.byteLength, ms },
        'saved snapshot and compacted the raft log',
      );
    } catch (err) {
      if (d.stopped()) return;
      this.#retryAt = meta.index + Math.max(1, Math.floor(d.snapshotCount / 10));
      d.log.error(
        { member: d.member, index: meta.index, err },
        'saving a snapshot failed; the raft log is kept and it is tried again later',
      );
    }
  }

  /** TEST ONLY (store/failpoints.ts): hold or crash a snapshot before its file is written. */
  async #failpoint(index: number): Promise<void> {
    const t = this.#d.failpoints?.take('raftBeforeSaveSnap');
    if (!t) return;
    this.#d.log.warn(
      { member: this.#d.member, failpoint: 'raftBeforeSaveSnap', index, action: t.action },
      'failpoint: before saving a snapshot',
    );
    if (t.action === 'crash') process.kill(process.pid, 'SIGKILL');
    else await new Promise<void>((resolve) => this.#d.clock.setTimeout(resolve, t.ms));
  }
}
