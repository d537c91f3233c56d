/**
 * The write-ahead log: Raft's hard state and entries, durable before anything that depends on
 * them is sent. Segmented files of framed records:
 *
 *   u32 length of (type + payload) | u32 crc32 of (type + payload) | u8 type | payload
 *
 * One `save()` writes every record of a Ready and ends with one fdatasync (group commit: all
 * proposals batched into that Ready share the sync). Recovery reads every segment in order; a
 * bad or short record at the very end of the last segment is a torn write and is truncated; a
 * bad record anywhere else is corruption and the member refuses to start, naming file and offset,
 * as does a log with entries missing between two segments.
 *
 * A segment is made at its full size (`segmentBytes`, as etcd preallocates its 64 MiB segments):
 * appends then write inside the file, so an fdatasync has no file size to commit, only the data
 * (a growing file's fdatasync also commits its new size: 0.18–0.22 ms against 0.12–0.16 per
 * 350-byte append here, docs/store.md). Node has no fallocate, so the size is set by ftruncate:
 * a sparse file, whose unwritten part reads as zeros and uses no disk. The records end where the
 * zeros begin. When the log rolls on, the segment it leaves is trimmed to its records, so only the
 * segment being written has a zero tail (which a build without preallocation cuts as a torn tail).
 */
import {
  close,
  closeSync,
  fdatasync,
  fdatasyncSync,
  fsync,
  fsyncSync,
  open,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  ftruncateSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { catalogue } from '../errors.ts';
import type { Entry, EntryType, HardState } from '../raft/types.ts';

const RecordType = { entry: 1, hardState: 2, snapshot: 3, meta: 4 } as const;
const headerSize = 9;

/** Who this log belongs to; written first in the first segment. */
export interface WalMeta {
  memberId: string;
  clusterId: string;
}

export interface WalContents {
  meta: WalMeta | undefined;
  hardState: HardState | undefined;
  /** Entries after the last snapshot marker, in index order. */
  entries: Entry[];
  /** The last snapshot marker: entries up to here live in a snapshot file. */
  snapshot: { index: number; term: number } | undefined;
}

export interface WalOptions {
  /** Roll to a new segment once the current one passes this size. */
  segmentBytes?: number;
  /**
   * Test-only failpoint hook (store/failpoints.ts), called before the fdatasync of each save
   * that needs one; the save waits for a returned promise (a slow disk).
   */
  beforeSync?: (wal: Wal) => Promise<void> | void;
}

/** Observed fsync durations go here (for etcd_disk_wal_fsync_duration_seconds). */
export type SyncObserver = (seconds: number) => void;

function segmentName(seq: number): string {
  return `${seq.toString(16).padStart(16, '0')}.wal`;
}

export class Wal {
  readonly dir: string;
  readonly #segmentBytes: number;
  /** A roll made a segment whose directory entry is not yet fsynced (the next sync does it). */
  #dirSyncPending = false;
  #fd = -1;
  #seq = 0;
  #size = 0;
  /** Bytes of the current segment known durable (the size at the last completed fdatasync). */
  #synced = 0;
  #lastHard: HardState | undefined;
  #meta: WalMeta | undefined;
  /** Per segment: highest entry index written there (for release after snapshots). */
  readonly #segmentLast = new Map<number, number>();
  onSync: SyncObserver | undefined;
  readonly #beforeSync: ((wal: Wal) => Promise<void> | void) | undefined;

  private constructor(dir: string, o: WalOptions) {
    this.dir = dir;
    this.#segmentBytes = o.segmentBytes ?? 64 << 20;
    this.#beforeSync = o.beforeSync;
  }

  /** True if `dir` holds a WAL. */
  static exists(dir: string): boolean {
    try {
      return readdirSync(dir).some((f) => f.endsWith('.wal'));
    } catch {
      return false;
    }
  }

  /** Create a new, empty WAL for this member. */
  static create(dir: string, meta: WalMeta, o: WalOptions = {}): Wal {
    mkdirSync(dir, { recursive: true });
    if (Wal.exists(dir)) throw catalogue.error('STORE_ERR_DATA_DIR', `${dir} already holds a WAL; refusing to overwrite it`);
    const w = new Wal(dir, o);
    w.#meta = meta;
    w.#openSegment(0);
    w.#write([[RecordType.meta, Buffer.from(JSON.stringify(meta))]]);
    w.#sync();
    fsyncDir(dir);
    return w;
  }

  /** Open an existing WAL, recover it (truncating a torn tail), and return its contents. */
  static open(dir: string, o: WalOptions = {}): { wal: Wal; contents: WalContents } {
    const w = new Wal(dir, o);
    const segments = readdirSync(dir)
      .filter((f) => /^[0-9a-f]{16}\.wal$/.test(f))
      .sort();
    if (segments.length === 0) throw catalogue.error('STORE_ERR_DATA_DIR', `${dir} holds no WAL segments`);
    const contents: WalContents = { meta: undefined, hardState: undefined, entries: [], snapshot: undefined };
    for (let i = 0; i < segments.length; i++) {
      const name = segments[i] as string;
      const seq = parseInt(name.slice(0, 16), 16);
      const path = join(dir, name);
      const data = readFileSync(path);
      const isLast = i === segments.length - 1;
      const end = readSegment(data, path, isLast, contents, (index) =>
        w.#segmentLast.set(seq, Math.max(w.#segmentLast.get(seq) ?? 0, index)),
      );
      if (isLast) {
        w.#seq = seq;
        w.#fd = openSync(path, 'r+');
        if (!zeroFrom(data, end)) {
          // Torn write at the tail: the record was never acknowledged (no sync finished). Cut it.
          ftruncateSync(w.#fd, end);
          fdatasyncSync(w.#fd);
        }
        w.#size = end;
        w.#synced = end;
        // A segment written before preallocation, or cut above: made full size again.
        w.#preallocate();
      }
    }
    w.#meta = contents.meta;
    w.#lastHard = contents.hardState;
    return { wal: w, contents };
  }

  /**
   * Record a Ready's hard state and entries, with one fdatasync when anything in them must be
   * durable. Entries overwrite any earlier entries at the same or later indices (truncation).
   */
  save(hardState: HardState | undefined, entries: readonly Entry[]): void {
    if (this.#append(hardState, entries)) this.#sync();
  }

  /**
   * As {@link save}, but the fdatasync runs on libuv's thread pool, so the event loop keeps
   * serving requests and peers while the disk syncs. The write itself (into the page cache) is
   * synchronous, so records stay in order. Callers must not save again until it resolves.
   * Returns undefined when nothing needed a sync.
   */
  saveAsync(hardState: HardState | undefined, entries: readonly Entry[]): Promise<void> | undefined {
    if (!this.#append(hardState, entries)) return undefined;
    const sync = (): Promise<void> => {
      const start = performance.now();
      const size = this.#size;
      // A segment made by a roll in this save: its directory entry is synced with it.
      const dir = this.#dirSyncPending ? fsyncDirAsync(this.dir) : undefined;
      this.#dirSyncPending = false;
      const data = new Promise<void>((resolve, reject) => {
        fdatasync(this.#fd, (err) => {
          if (err) return reject(err);
          this.#synced = Math.max(this.#synced, size);
          this.onSync?.((performance.now() - start) / 1000);
          resolve();
        });
      });
      return dir ? Promise.all([data, dir]).then(() => undefined) : data;
    };
    const delay = this.#beforeSync?.(this);
    return delay ? delay.then(sync) : sync();
  }

  /**
   * TEST ONLY (the `crash` failpoint): cut every byte written since the last completed
   * fdatasync, as a power cut loses what was only in the page cache.
   */
  loseUnsynced(): void {
    ftruncateSync(this.#fd, this.#synced);
    this.#size = this.#synced;
    this.#preallocate();
    fdatasyncSync(this.#fd);
  }

  /** Write the records; true when they must be synced before anything depends on them. */
  #append(hardState: HardState | undefined, entries: readonly Entry[]): boolean {
    const records: Array<[number, Buffer]> = [];
    for (const e of entries) records.push([RecordType.entry, encodeEntry(e)]);
    if (hardState) records.push([RecordType.hardState, Buffer.from(JSON.stringify(hardState))]);
    if (records.length === 0) return false;
    // As etcd's raft.MustSync: entries, a new term or a vote must be durable before anything
    // depends on them; a commit index alone need not be (it is recovered from the leader).
    const mustSync =
      entries.length > 0 ||
      (hardState !== undefined && (hardState.term !== this.#lastHard?.term || hardState.vote !== this.#lastHard?.vote));
    if (this.#size >= this.#segmentBytes) this.#roll();
    this.#write(records);
    if (entries.length > 0)
      this.#segmentLast.set(this.#seq, Math.max(this.#segmentLast.get(this.#seq) ?? 0, (entries[entries.length - 1] as Entry).index));
    if (hardState) this.#lastHard = hardState;
    return mustSync;
  }

  /**
   * Record that a snapshot at (index, term) is durable, and delete segments holding only
   * entries it covers. With `sync` false the marker is not fdatasynced here (the next save's
   * sync carries it): the snapshot file is durable already, and a marker lost to a crash only
   * means those entries are read again at start (a background snapshot must not stall the
   * event loop on an fsync behind its own 100 MB write).
   */
  saveSnapshot(index: number, term: number, sync = true): void {
    const payload = Buffer.alloc(16);
    payload.writeDoubleLE(index, 0);
    payload.writeDoubleLE(term, 8);
    this.#write([[RecordType.snapshot, payload]]);
    if (sync) this.#sync();
    for (const [seq, last] of [...this.#segmentLast]) {
      if (seq < this.#seq && last <= index) {
        unlinkSync(join(this.dir, segmentName(seq)));
        this.#segmentLast.delete(seq);
      }
    }
  }

  close(): void {
    if (this.#fd >= 0) closeSync(this.#fd);
    this.#fd = -1;
  }

  /**
   * Continue in a new segment. Its directory entry is fsynced with the save that rolled (on
   * libuv's threads in saveAsync), not here: two synchronous fsyncs on the event loop behind a
   * busy disk were a stall every 64 MiB of log. Nothing in the new segment is acknowledged before
   * that save's sync, directory included, completes.
   */
  #roll(): void {
    // The segment left behind holds its records and nothing after them (see the file's comment).
    ftruncateSync(this.#fd, this.#size);
    closeSync(this.#fd);
    this.#openSegment(this.#seq + 1);
    // Each segment starts self-describing, so older ones can be deleted after a snapshot.
    const first: Array<[number, Buffer]> = [];
    if (this.#meta) first.push([RecordType.meta, Buffer.from(JSON.stringify(this.#meta))]);
    if (this.#lastHard) first.push([RecordType.hardState, Buffer.from(JSON.stringify(this.#lastHard))]);
    this.#write(first);
    this.#dirSyncPending = true;
  }

  #openSegment(seq: number): void {
    const path = join(this.dir, segmentName(seq));
    const tmp = `${path}.tmp`;
    const fd = openSync(tmp, 'w+');
    this.#fd = fd;
    this.#seq = seq;
    this.#size = 0;
    this.#synced = 0;
    this.#preallocate();
    renameSync(tmp, path);
  }

  /** The current segment at its full size past its records (zeros: sparse, nothing written). */
  #preallocate(): void {
    if (this.#size < this.#segmentBytes) ftruncateSync(this.#fd, this.#segmentBytes);
  }

  #write(records: Array<[number, Buffer]>): void {
    let total = 0;
    for (const [, p] of records) total += headerSize + p.length;
    const buf = Buffer.allocUnsafe(total);
    let off = 0;
    for (const [type, payload] of records) {
      buf.writeUInt32LE(payload.length + 1, off);
      buf[off + 8] = type;
      payload.copy(buf, off + headerSize);
      buf.writeUInt32LE(crc32(buf.subarray(off + 8, off + headerSize + payload.length)), off + 4);
      off += headerSize + payload.length;
    }
    let written = 0;
    try {
      while (written < buf.length) written += writeSync(this.#fd, buf, written, buf.length - written, this.#size + written);
    } catch (err) {
      // Cut what part of the records did reach the file, so the log ends on a whole record
      // (recovery would cut a torn tail too; this keeps the open file consistent as well).
      try {
        ftruncateSync(this.#fd, this.#size);
      } catch {
        /* the next start cuts it */
      }
      if ((err as NodeJS.ErrnoException).code === 'ENOSPC') {
        throw catalogue.error(
          'STORE_ERR_NO_DISK_SPACE',
          `no space left on the device holding ${this.dir}: a WAL write of ${buf.length} bytes failed and was cut back to the last whole record; nothing was lost or acknowledged. Free space on the volume (or grow it) and restart the member`,
          { cause: err },
        );
      }
      throw err;
    }
    this.#size += buf.length;
  }

  #sync(): void {
    const start = performance.now();
    const size = this.#size;
    if (this.#dirSyncPending) fsyncDir(this.dir);
    this.#dirSyncPending = false;
    fdatasyncSync(this.#fd);
    this.#synced = Math.max(this.#synced, size);
    this.onSync?.((performance.now() - start) / 1000);
  }
}

function readSegment(data: Buffer, path: string, isLast: boolean, out: WalContents, sawEntry: (index: number) => void): number {
  let off = 0;
  while (off < data.length) {
    // Nothing but zeros from here: the unwritten part of a preallocated segment.
    if (data[off] === 0 && zeroFrom(data, off)) return off;
    const bad = (why: string): number => {
      // Only the tail of the last segment may be torn; anything else is corruption.
      if (isLast && isTail(data, off)) return off;
      throw catalogue.error(
        'STORE_ERR_WAL_CORRUPT',
        `WAL corrupt: ${path} at offset ${off}: ${why}; the member will not start on a damaged log (restore this member from a snapshot, or remove and re-add it)`,
      );
    };
    if (data.length - off < headerSize) return bad('short record header');
    const len = data.readUInt32LE(off);
    const crc = data.readUInt32LE(off + 4);
    if (len === 0 || off + 8 + len > data.length) return bad(`record length ${len} runs past the end of the file`);
    const body = data.subarray(off + 8, off + 8 + len);
    if (crc32(body) !== crc) return bad('CRC mismatch');
    const type = body[0];
    const payload = body.subarray(1);
    switch (type) {
      case RecordType.entry: {
        const e = decodeEntry(payload);
        // Each entry follows the one before it (or the snapshot marker): a gap is a segment cut
        // short, and acknowledged writes would be missing from the log.
        const prev = out.entries.at(-1)?.index ?? out.snapshot?.index;
        if (prev !== undefined && e.index > prev + 1) {
          throw catalogue.error(
            'STORE_ERR_WAL_CORRUPT',
            `WAL corrupt: ${path} at offset ${off}: entry ${e.index} follows entry ${prev}, so entries ${prev + 1}–${e.index - 1} are missing (an earlier segment was cut short); the member will not start on a damaged log (restore this member from a snapshot, or remove and re-add it)`,
          );
        }
        // A later record at the same index replaces the earlier one and everything after it.
        const last = out.entries[out.entries.length - 1];
        if (last && e.index <= last.index)
          out.entries.length = Math.max(
            0,
            out.entries.findIndex((x) => x.index >= e.index),
          );
        out.entries.push(e);
        sawEntry(e.index);
        break;
      }
      case RecordType.hardState:
        out.hardState = JSON.parse(payload.toString()) as HardState;
        break;
      case RecordType.snapshot: {
        const index = payload.readDoubleLE(0);
        out.snapshot = { index, term: payload.readDoubleLE(8) };
        out.entries = out.entries.filter((e) => e.index > index);
        break;
      }
      case RecordType.meta:
        out.meta = JSON.parse(payload.toString()) as WalMeta;
        break;
      default:
        return bad(`unknown record type ${type}`);
    }
    off += 8 + len;
  }
  return off;
}

/**
 * Whether the damage at `off` can be a torn final write: a crash mid-write leaves a prefix of
 * the last record followed by nothing but zeros or the end of the file. If a valid record
 * follows, the damage is in the middle and is corruption.
 */
function isTail(data: Buffer, off: number): boolean {
  // A record after `off` starts before the last non-zero byte (its length is not zero).
  const limit = lastNonZero(data);
  for (let p = off + 1; p <= limit && p + headerSize <= data.length; p++) {
    const len = data.readUInt32LE(p);
    if (len === 0 || p + 8 + len > data.length) continue;
    if (crc32(data.subarray(p + 8, p + 8 + len)) === data.readUInt32LE(p + 4)) return false;
  }
  return true;
}

const zeros = Buffer.alloc(64 << 10);

/** Whether every byte of `data` from `off` on is zero. */
function zeroFrom(data: Buffer, off: number): boolean {
  for (let p = off; p < data.length; p += zeros.length) {
    const n = Math.min(zeros.length, data.length - p);
    if (data.compare(zeros, 0, n, p, p + n) !== 0) return false;
  }
  return true;
}

/** The offset of the last non-zero byte of `data` (-1 if none). */
function lastNonZero(data: Buffer): number {
  let end = data.length;
  while (end > 0) {
    const start = Math.max(0, end - zeros.length);
    if (data.compare(zeros, 0, end - start, start, end) !== 0) {
      for (let p = end - 1; p >= start; p--) if (data[p] !== 0) return p;
    }
    end = start;
  }
  return -1;
}

function encodeEntry(e: Entry): Buffer {
  const b = Buffer.allocUnsafe(17 + e.data.byteLength);
  b.writeDoubleLE(e.term, 0);
  b.writeDoubleLE(e.index, 8);
  b[16] = e.type;
  b.set(e.data, 17);
  return b;
}

function decodeEntry(p: Buffer): Entry {
  return { term: p.readDoubleLE(0), index: p.readDoubleLE(8), type: p[16] as EntryType, data: Uint8Array.prototype.slice.call(p, 17) };
}

/** fsync a directory so a created or renamed file's name is durable too. */
/** fsyncDir on libuv's threads. */
export function fsyncDirAsync(dir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    open(dir, 'r', (err, fd) => {
      if (err) return reject(err);
      fsync(fd, (syncErr) => close(fd, (closeErr) => (syncErr || closeErr ? reject(syncErr ?? closeErr) : resolve())));
    });
  });
}

export function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
