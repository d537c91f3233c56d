/**
 * Snapshot files: the state machine at a Raft index, written atomically (temporary file, fsync,
 * rename, directory fsync) so a crash leaves either the old snapshot or the new one, never half.
 * Format 2 (state data in format 2): `"BSNP" | u8 2 | u32 crc32 | protobuf Snapshot` (store/
 * format/internal.proto). Format 1 (0.1.0, and while a 0.1.0 member is in the cluster):
 * `u32 crc32 | v8 clone of {meta, data}`. A file failing its CRC is skipped for an older one.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, unlinkSync, writeSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { deserialize, serialize } from 'node:v8';
import { crc32 } from 'node:zlib';
import { decodeSnapshotFile, encodeSnapshotFile, snapshotFileParts, stateFormat } from '../format/state-codec.ts';
import type { Snapshot } from '../raft/types.ts';
import { fsyncDir, fsyncDirAsync } from '../wal/wal.ts';

const keep = 3;
/** Bytes of CRC between pauses in saveAsync (zlib's crc32 does ~1 GB/s: a few ms). */
const crcSlice = 4 << 20;
const magic = Buffer.from('BSNP');

function fileName(term: number, index: number): string {
  return `${term.toString(16).padStart(16, '0')}-${index.toString(16).padStart(16, '0')}.snap`;
}

export class Snapshotter {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
    mkdirSync(dir, { recursive: true });
    // A save cut short by a crash leaves its temporary file: never read, removed here.
    for (const f of readdirSync(dir)) if (f.endsWith('.snap.tmp')) rmSync(join(dir, f), { force: true });
  }

  /**
   * save()'s file, written without blocking the event loop: the CRC a slice at a time with
   * `pause()` awaited between slices, the writes and fsyncs on libuv's threads. Before the
   * rename that makes the file count, `proceed()` is asked (false: the member is stopping or a
   * newer snapshot was saved meanwhile), and the temporary file is removed instead. Resolves
   * to whether the snapshot was saved. Not concurrent with another saveAsync of the same index.
   */
  async saveAsync(snap: Snapshot, o: { pause: () => Promise<void>; proceed: () => boolean }): Promise<boolean> {
    const v2 = stateFormat(snap.data) === 2;
    const parts = v2 ? snapshotFileParts(snap.meta, snap.data) : [serialize({ meta: snap.meta, data: snap.data })];
    let crc = 0;
    for (const part of parts)
      for (let off = 0; off < part.length; off += crcSlice) {
        crc = crc32(part.subarray(off, off + crcSlice), crc);
        await o.pause();
      }
    const sum = Buffer.allocUnsafe(4);
    sum.writeUInt32LE(crc, 0);
    const header = v2 ? Buffer.concat([magic, Buffer.from([2]), sum]) : sum;
    const path = join(this.dir, fileName(snap.meta.term, snap.meta.index));
    const tmp = `${path}.tmp`;
    const fh = await open(tmp, 'w');
    try {
      for (const buf of [header, ...parts]) {
        let off = 0;
        while (off < buf.length) off += (await fh.write(buf, off, Math.min(buf.length - off, 64 << 20))).bytesWritten;
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    if (!o.proceed()) {
      rmSync(tmp, { force: true });
      return false;
    }
    await rename(tmp, path);
    await fsyncDirAsync(this.dir);
    for (const old of this.#files().slice(0, -keep)) unlinkSync(join(this.dir, old));
    return true;
  }

  save(snap: Snapshot): void {
    // The file's format follows its data's: a format-1 cluster's snapshot stays readable by 0.1.0.
    const v2 = stateFormat(snap.data) === 2;
    const payload = v2 ? Buffer.from(encodeSnapshotFile(snap.meta, snap.data)) : serialize({ meta: snap.meta, data: snap.data });
    const crc = Buffer.allocUnsafe(4);
    crc.writeUInt32LE(crc32(payload), 0);
    const header = v2 ? Buffer.concat([magic, Buffer.from([2]), crc]) : crc;
    const path = join(this.dir, fileName(snap.meta.term, snap.meta.index));
    const tmp = `${path}.tmp`;
    const fd = openSync(tmp, 'w');
    try {
      writeAll(fd, header);
      writeAll(fd, payload);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
    fsyncDir(this.dir);
    for (const old of this.#files().slice(0, -keep)) unlinkSync(join(this.dir, old));
  }

  /** The newest intact snapshot, or undefined. `onSkip` hears about damaged files. */
  loadNewest(onSkip: (file: string, why: string) => void = () => undefined): Snapshot | undefined {
    for (const f of this.#files().reverse()) {
      try {
        const file = readFileSync(join(this.dir, f));
        const v2 = file.subarray(0, 4).equals(magic);
        if (v2 && file[4] !== 2) {
          onSkip(f, `snapshot file format ${file[4]}, which this build does not read`);
          continue;
        }
        const data = v2 ? file.subarray(5) : file;
        if (data.length < 4 || crc32(data.subarray(4)) !== data.readUInt32LE(0)) {
          onSkip(f, 'CRC mismatch');
          continue;
        }
        return v2 ? decodeSnapshotFile(data.subarray(4)) : (deserialize(data.subarray(4)) as Snapshot);
      } catch (err) {
        onSkip(f, (err as Error).message);
      }
    }
    return undefined;
  }

  #files(): string[] {
    return readdirSync(this.dir)
      .filter((f) => /^[0-9a-f]{16}-[0-9a-f]{16}\.snap$/.test(f))
      .sort();
  }
}

function writeAll(fd: number, buf: Buffer): void {
  let off = 0;
  while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
}
