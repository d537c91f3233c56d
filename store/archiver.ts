/**
 * The archiver: watches every key of a cluster and writes what it sees to object storage as the
 * point-in-time archive (store/archive.ts). `ballast backup archive` runs one per cluster (a
 * Deployment the operator makes for a schedule with pointInTime).
 *
 * - It resumes after the archive's last revision (or the newest backup's, or the cluster's
 *   current revision for a new archive), so a restart loses nothing the cluster still holds.
 * - A segment is written every `segmentMs`, or sooner when `segmentBytes` of changes wait; then
 *   `wal/progress.json`. The recovery point a restore can miss is about `segmentMs` plus an
 *   upload.
 * - A failed upload keeps its changes and is tried again at the next tick; past four segments'
 *   worth waiting, the watch is paused (the member buffers, then replays from its history), so
 *   memory stays bounded while storage is down.
 * - When the cluster has compacted revisions the archiver never saw (it was stopped too long),
 *   it says so (log, ballast_archive_gaps_total) and continues after the compaction revision:
 *   a restore cannot cross the gap, and says so.
 *
 * Two archivers on one archive (a rolling update) write overlapping segments of the same
 * revisions, which a restore reads once.
 */
import * as grpc from '@grpc/grpc-js';
import type { Clock } from '../lib/clock.ts';
import type { Logger } from '../lib/log.ts';
import type { Metrics } from '../lib/metrics.ts';
import {
  type ArchiveProgress,
  type ArchivedChange,
  type ArchivedRevision,
  type SegmentRef,
  encodeSegment,
  parseSegmentKey,
  segmentName,
} from './archive.ts';
import { ctor, pickSource, token, type SourceOptions } from './backup-s3.ts';
import type { ObjectStore } from './object-store.ts';

type Wire = Record<string, unknown>;
interface WireKv {
  key: Buffer;
  value: Buffer;
  create_revision: string;
  mod_revision: string;
  version: string;
  lease: string;
}
interface WatchResponse {
  header?: { revision?: string };
  created?: boolean;
  canceled?: boolean;
  compact_revision?: string;
  cancel_reason?: string;
  events?: Array<{ type: number; kv: WireKv }>;
}
interface StatusClient extends grpc.Client {
  Status(r: Wire, md: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: Wire) => void): void;
}
interface LeaseClient extends grpc.Client {
  LeaseTimeToLive(r: Wire, md: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: Wire) => void): void;
}
interface WatchClient extends grpc.Client {
  Watch(md: grpc.Metadata): grpc.ClientDuplexStream<Wire, WatchResponse>;
}

export interface ArchiverOptions {
  source: SourceOptions;
  /** Write a segment at least this often while changes wait (ms). */
  segmentMs: number;
  /** ... and as soon as this many bytes of changes wait. */
  segmentBytes: number;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
}

/** What the archive holds: its segments (by name) and how far it reaches. */
export async function readArchive(store: ObjectStore): Promise<{ segments: SegmentRef[]; progress?: ArchiveProgress }> {
  const objects = await store.list('wal/');
  const segments = objects.map((o) => parseSegmentKey(o.key)).filter((s): s is SegmentRef => s !== undefined);
  let progress: ArchiveProgress | undefined;
  if (objects.some((o) => o.key === store.key('wal/progress.json'))) {
    try {
      progress = JSON.parse(await store.getText(store.key('wal/progress.json'))) as ArchiveProgress;
    } catch {
      // Unreadable progress: the segments alone say how far the archive reaches.
    }
  }
  return { segments, ...(progress ? { progress } : {}) };
}

export class Archiver {
  readonly #store: ObjectStore;
  readonly #options: ArchiverOptions;
  #pending: ArchivedRevision[] = [];
  #pendingBytes = 0;
  /** The next revision to archive (0: not decided yet). */
  #next = 0;
  readonly #ttls = new Map<string, number>();
  #flushing: Promise<void> = Promise.resolve();
  #call: grpc.ClientDuplexStream<Wire, WatchResponse> | undefined;
  #paused = false;
  readonly #metrics;

  constructor(store: ObjectStore, o: ArchiverOptions) {
    this.#store = store;
    this.#options = o;
    this.#metrics = {
      revision: o.metrics.gauge('ballast_archive_revision', 'The last revision written to the point-in-time archive'),
      progressAt: o.metrics.gauge(
        'ballast_archive_progress_timestamp_seconds',
        'When the archive last caught up: every change received before this time is archived',
      ),
      segments: o.metrics.counter('ballast_archive_segments_total', 'Archive segments written'),
      bytes: o.metrics.counter('ballast_archive_segment_bytes_total', 'Bytes of archive segments written'),
      failures: o.metrics.counter(
        'ballast_archive_upload_failures_total',
        'Archive segment or progress uploads that failed (retried at the next tick)',
      ),
      gaps: o.metrics.counter(
        'ballast_archive_gaps_total',
        'Times the cluster had compacted revisions before they were archived (a restore cannot cross them)',
      ),
      pending: o.metrics.gauge('ballast_archive_pending_bytes', 'Bytes of received changes not yet written to the archive'),
    };
  }

  /** The next revision to archive. */
  get next(): number {
    return this.#next;
  }

  /** Archive until `signal` aborts; then write what is waiting and return. */
  async run(signal: AbortSignal): Promise<void> {
    const tick = this.#options.clock.setInterval(() => void this.flush(), this.#options.segmentMs);
    try {
      let backoff = 500;
      while (!signal.aborted) {
        try {
          if (this.#next === 0) this.#next = await this.#resumeAt();
          await this.#watch(signal);
          backoff = 500;
        } catch (err) {
          if (signal.aborted) break;
          this.#options.log.warn({ err: (err as Error).message, next: this.#next }, 'archive watch failed; trying again');
          await this.#options.clock.sleep(backoff, signal).catch(() => undefined);
          backoff = Math.min(backoff * 2, 10_000);
        }
      }
    } finally {
      tick.cancel();
      await this.flush();
    }
  }

  /** Where a (re)started archiver continues. */
  async #resumeAt(): Promise<number> {
    const { segments } = await readArchive(this.#store);
    const last = Math.max(0, ...segments.map((s) => s.last));
    if (last > 0) return last + 1;
    const newest = (await this.#store.backups()).sort((a, b) => a.revision - b.revision).pop();
    if (newest) return newest.revision + 1;
    const src = await pickSource(this.#options.source);
    const c = new (ctor('Maintenance'))(
      src.endpoint,
      this.#options.source.credentials ?? grpc.credentials.createInsecure(),
    ) as unknown as StatusClient;
    try {
      const md = await token(src.endpoint, this.#options.source);
      const st = await new Promise<Wire>((resolve, reject) =>
        c.Status({}, md, { deadline: Date.now() + 5_000 }, (e, r) => (e ? reject(e) : resolve(r ?? {}))),
      );
      return Number((st['header'] as Wire | undefined)?.['revision'] ?? 0) + 1;
    } finally {
      c.close();
    }
  }

  /** One watch from #next until it ends (an error, a compaction, or the signal). */
  async #watch(signal: AbortSignal): Promise<void> {
    const src = await pickSource(this.#options.source);
    const c = new (ctor('Watch'))(src.endpoint, this.#options.source.credentials ?? grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': -1,
    }) as unknown as WatchClient;
    const md = await token(src.endpoint, this.#options.source);
    try {
      await new Promise<void>((resolve, reject) => {
        const call = c.Watch(md);
        this.#call = call;
        const stop = () => {
          call.cancel();
          resolve();
        };
        signal.addEventListener('abort', stop, { once: true });
        call.on('data', (r: WatchResponse) => {
          if (r.canceled) {
            const compacted = Number(r.compact_revision ?? 0);
            // History from the compaction revision on is whole only after it: the changes at
            // that revision itself may be gone (a deletion's tombstone is compacted with it).
            if (compacted >= this.#next) {
              this.#options.log.error(
                { from: this.#next, to: compacted },
                'the cluster compacted revisions before they were archived: a restore cannot cross them; continuing after them (take a backup to start a new window)',
              );
              this.#metrics.gaps.inc();
              this.#next = compacted + 1;
            }
            call.cancel();
            reject(new Error(`watch cancelled: ${r.cancel_reason ?? 'no reason given'}`));
            return;
          }
          if (r.created) this.#options.log.info({ from: this.#next, member: src.endpoint }, 'archiving');
          const wrong = this.#take(r.events ?? []);
          if (wrong) {
            call.cancel();
            reject(new Error(wrong));
          }
        });
        call.on('error', (err) => {
          signal.removeEventListener('abort', stop);
          if ((err as grpc.ServiceError).code === grpc.status.CANCELLED) resolve();
          else reject(err);
        });
        call.on('end', () => {
          signal.removeEventListener('abort', stop);
          reject(new Error('the member ended the watch'));
        });
        call.write({
          create_request: { key: Buffer.from([0]), range_end: Buffer.from([0]), start_revision: String(this.#next), progress_notify: true },
        });
      });
    } finally {
      this.#call = undefined;
      this.#paused = false;
      c.close();
    }
  }

  /**
   * Take a response's events: whole revisions, in order (a response never splits one). Returns
   * what is wrong when they do not continue the archive.
   */
  #take(events: Array<{ type: number; kv: WireKv }>): string | undefined {
    const at = this.#options.clock.wallNow();
    for (let i = 0; i < events.length;) {
      const rev = Number((events[i] as { kv: WireKv }).kv.mod_revision);
      const changes: ArchivedChange[] = [];
      let bytes = 0;
      for (; i < events.length && Number((events[i] as { kv: WireKv }).kv.mod_revision) === rev; i++) {
        const e = events[i] as { type: number; kv: WireKv };
        const k = e.kv.key.toString('latin1');
        bytes += k.length + e.kv.value.length + 48;
        changes.push(
          e.type === 1
            ? { t: 1, k }
            : {
                t: 0,
                k,
                v: e.kv.value.toString('latin1'),
                c: Number(e.kv.create_revision),
                n: Number(e.kv.version),
                l: BigInt(e.kv.lease || '0').toString(),
              },
        );
      }
      if (rev < this.#next) continue;
      // Never expected (every revision has an event); the watch starts again where the archive ends.
      if (rev > this.#next) return `the watch skipped from revision ${this.#next} to ${rev}`;
      this.#pending.push({ rev, at, changes });
      this.#pendingBytes += bytes;
      this.#next = rev + 1;
    }
    this.#metrics.pending.set(this.#pendingBytes);
    if (this.#pendingBytes >= this.#options.segmentBytes) void this.flush();
    if (this.#pendingBytes >= 4 * this.#options.segmentBytes && this.#call && !this.#paused) {
      this.#options.log.warn({ pendingBytes: this.#pendingBytes }, 'archive uploads are behind; pausing the watch');
      this.#call.pause();
      this.#paused = true;
    }
    return undefined;
  }

  /** Write what waits as one segment, then the progress; one flush at a time. */
  flush(): Promise<void> {
    this.#flushing = this.#flushing.then(() => this.#flushOnce());
    return this.#flushing;
  }

  async #flushOnce(): Promise<void> {
    // What this flush covers: everything received until now (changes arriving during the upload
    // wait for the next one).
    const at = this.#options.clock.wallNow();
    const upTo = this.#next - 1;
    const revisions = this.#pending;
    const bytes = this.#pendingBytes;
    this.#pending = [];
    this.#pendingBytes = 0;
    try {
      if (revisions.length > 0) {
        const leases = await this.#leases(revisions);
        const seg = { revisions, leases };
        const buf = encodeSegment(seg);
        await this.#store.putBytes(segmentName(seg), buf);
        this.#metrics.segments.inc();
        this.#metrics.bytes.inc(buf.length);
        this.#metrics.revision.set((revisions[revisions.length - 1] as ArchivedRevision).rev);
      }
      if (upTo > 0) {
        await this.#store.putText('wal/progress.json', `${JSON.stringify({ revision: upTo, at } satisfies ArchiveProgress)}\n`);
        this.#metrics.progressAt.set(at / 1000);
      }
      if (this.#paused && this.#pendingBytes < this.#options.segmentBytes) {
        this.#paused = false;
        this.#call?.resume();
      }
    } catch (err) {
      // Keep the changes (before any received since) for the next tick.
      this.#pending = [...revisions, ...this.#pending];
      this.#pendingBytes += bytes;
      this.#metrics.failures.inc();
      this.#options.log.warn(
        { err: (err as Error).message, waiting: this.#pending.length },
        'archive upload failed; trying again at the next tick',
      );
    }
    this.#metrics.pending.set(this.#pendingBytes);
  }

  /** The granted TTL of each lease these revisions attach keys to (asked once per lease). */
  async #leases(revisions: ArchivedRevision[]): Promise<Array<{ id: string; ttl: number }>> {
    const ids = new Set<string>();
    for (const r of revisions) for (const c of r.changes) if (c.t === 0 && c.l && c.l !== '0') ids.add(c.l);
    const unknown = [...ids].filter((id) => !this.#ttls.has(id));
    if (unknown.length > 0) {
      const src = await pickSource(this.#options.source);
      const c = new (ctor('Lease'))(
        src.endpoint,
        this.#options.source.credentials ?? grpc.credentials.createInsecure(),
      ) as unknown as LeaseClient;
      try {
        const md = await token(src.endpoint, this.#options.source);
        for (const id of unknown) {
          const r = await new Promise<Wire>((resolve, reject) =>
            c.LeaseTimeToLive({ ID: id }, md, { deadline: Date.now() + 5_000 }, (e, res) => (e ? reject(e) : resolve(res ?? {}))),
          );
          // A lease already gone (TTL -1) has no granted TTL to tell; its keys' deletions follow.
          const ttl = Number(r['grantedTTL'] ?? 0);
          if (ttl > 0) this.#ttls.set(id, ttl);
        }
      } finally {
        c.close();
      }
    }
    return [...ids].filter((id) => this.#ttls.has(id)).map((id) => ({ id, ttl: this.#ttls.get(id) as number }));
  }
}
