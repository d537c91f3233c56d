/**
 * The format a member's data directory holds, in `member/format` (JSON: the highest format
 * written into it, and by which version). A build refuses a directory in a format it cannot read,
 * naming both versions, instead of misreading it; a directory with no such file was written by
 * 0.1.0, in format 1, which this build reads (and migrates: what it writes from then on is in the
 * format every member reads).
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { catalogue } from '../errors.ts';
import { fsyncDir } from '../wal/wal.ts';
import { latestFormat } from './formats.ts';

export interface DataDirFormat {
  format: number;
  writtenBy: string;
}

const file = (dataDir: string) => join(dataDir, 'member', 'format');

/** The directory's format (1 when it has no record: written by 0.1.0). */
export function readFormat(dataDir: string): DataDirFormat {
  const p = file(dataDir);
  if (!existsSync(p)) return { format: 1, writtenBy: '0.1.0' };
  try {
    const f = JSON.parse(readFileSync(p, 'utf8')) as DataDirFormat;
    if (typeof f.format !== 'number') throw new Error('no format field');
    return f;
  } catch (cause) {
    throw catalogue.error('STORE_ERR_DATA_DIR', `${p} is damaged (${(cause as Error).message}); it records the data directory's format`, {
      cause,
    });
  }
}

/** Refuse a directory in a format this build does not read. */
export function checkFormat(dataDir: string, version: string): DataDirFormat {
  const f = readFormat(dataDir);
  if (f.format > latestFormat) {
    throw catalogue.error(
      'STORE_ERR_FORMAT_TOO_NEW',
      `${dataDir} is in format ${f.format}, written by ballast ${f.writtenBy}; this ballast (${version}) reads formats up to ${latestFormat}: run ballast ${f.writtenBy} or newer on it`,
    );
  }
  return f;
}

/** Record that the directory now holds `format` (atomically; only ever raised). */
export function recordFormat(dataDir: string, format: number, version: string): void {
  if (readFormat(dataDir).format >= format) return;
  const dir = join(dataDir, 'member');
  mkdirSync(dir, { recursive: true });
  const tmp = `${file(dataDir)}.tmp`;
  writeFileSync(tmp, `${JSON.stringify({ format, writtenBy: version } satisfies DataDirFormat)}\n`);
  renameSync(tmp, file(dataDir));
  fsyncDir(dir);
}

/** Records, once, that a directory now holds `format` (before the first thing in that format lands in it). */
export class FormatRecord {
  recorded = false;
  readonly #dataDir: string;
  readonly #format: number;
  readonly #version: string;

  constructor(dataDir: string, format: number, version: string) {
    this.#dataDir = dataDir;
    this.#format = format;
    this.#version = version;
  }

  record(): void {
    if (this.recorded) return;
    recordFormat(this.#dataDir, this.#format, this.#version);
    this.recorded = true;
  }
}
