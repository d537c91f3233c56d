/**
 * Snapshot files: the state machine at a Raft index, written atomically (temporary file, fsync,
 * rename, directory fsync) so a crash leaves either the old snapshot or the new one, never half.
 * Each file is `u32 crc32 | payload`; a file failing its CRC is skipped for an older one.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { deserialize, serialize } from 'node:v8';
import { crc32 } from 'node:zlib';
import type { Snapshot } from '../raft/types.ts';
import { fsyncDir } from '../wal/wal.ts';

const keep = 3;

function fileName(term: number, index: number): string {
  return `${term.toString(16).padStart(16, '0')}-${index.toString(16).padStart(16, '0')}.snap`;
}

export class Snapshotter {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
    mkdirSync(dir, { recursive: true });
  }

  save(snap: Snapshot): void {
    const payload = serialize({ meta: snap.meta, data: snap.data });
    const header = Buffer.allocUnsafe(4);
    header.writeUInt32LE(crc32(payload), 0);
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
        const data = readFileSync(join(this.dir, f));
        if (data.length < 4 || crc32(data.subarray(4)) !== data.readUInt32LE(0)) {
          onSkip(f, 'CRC mismatch');
          continue;
        }
        return deserialize(data.subarray(4)) as Snapshot;
      } catch (err) {
        onSkip(f, (err as Error).message);
      }
    }
    return undefined;
  }

  #files(): string[] {
    return readdirSync(this.dir).filter((f) => /^[0-9a-f]{16}-[0-9a-f]{16}\.snap$/.test(f)).sort();
  }
}

function writeAll(fd: number, buf: Buffer): void {
  let off = 0;
  while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
}
