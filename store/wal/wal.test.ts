import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { isBallastError } from '../../lib/errors.ts';
import { type Entry, EntryType } from '../raft/types.ts';
import { Wal } from './wal.ts';

const meta = { memberId: 'a1', clusterId: 'c1' };
const entry = (index: number, term = 1, data = `v${index}`): Entry => ({
  index,
  term,
  type: EntryType.normal,
  data: new TextEncoder().encode(data),
});
const dirOf = () => join(mkdtempSync(join(tmpdir(), 'wal-')), 'wal');
const segment = (dir: string) =>
  join(
    dir,
    readdirSync(dir)
      .filter((f) => f.endsWith('.wal'))
      .sort()
      .at(-1)!,
  );

/** Where a segment's records end: after its last non-zero byte (the rest is preallocated zeros). */
const written = (path: string): number => {
  const data = readFileSync(path);
  let end = data.length;
  while (end > 0 && data[end - 1] === 0) end--;
  return end;
};
/** The start offset of each record in a segment (u32 length of type + payload, u32 crc, type, payload). */
const recordStarts = (path: string): number[] => {
  const data = readFileSync(path);
  const starts: number[] = [];
  for (let off = 0; off + 9 <= data.length && data.readUInt32LE(off) !== 0; off += 8 + data.readUInt32LE(off)) starts.push(off);
  return starts;
};
const segments = (dir: string) =>
  readdirSync(dir)
    .filter((f) => f.endsWith('.wal'))
    .sort()
    .map((f) => join(dir, f));

/** A log of entries 1–20 rolled over several 300-byte segments, closed. */
const rolledLog = (dir: string): void => {
  const w = Wal.create(dir, meta, { segmentBytes: 300 });
  for (let i = 1; i <= 20; i++) w.save({ term: 1, vote: '', commit: i - 1 }, [entry(i, 1, 'x'.repeat(20))]);
  w.close();
};

describe('wal', () => {
  it('recovers hard state and entries after reopen', () => {
    const dir = dirOf();
    const w = Wal.create(dir, meta);
    w.save({ term: 1, vote: 'a1', commit: 0 }, [entry(1), entry(2)]);
    w.save({ term: 2, vote: 'b', commit: 2 }, [entry(3, 2)]);
    w.close();
    const { contents } = Wal.open(dir);
    assert.deepEqual(contents.meta, meta);
    assert.deepEqual(contents.hardState, { term: 2, vote: 'b', commit: 2 });
    assert.deepEqual(
      contents.entries.map((e) => [e.index, e.term, new TextDecoder().decode(e.data)]),
      [
        [1, 1, 'v1'],
        [2, 1, 'v2'],
        [3, 2, 'v3'],
      ],
    );
  });

  it('the crash failpoint cuts exactly what was written since the last completed fsync (a power cut), keeping everything synced', async () => {
    const dir = dirOf();
    let crashNext = false;
    const w = Wal.create(dir, meta, { beforeSync: (wal) => (crashNext ? wal.loseUnsynced() : undefined) });
    await w.saveAsync({ term: 1, vote: 'a1', commit: 0 }, [entry(1), entry(2)]);
    crashNext = true;
    // Written to the file, then the "power cut" before its fsync; the sync still runs on a now-cut file.
    await w.saveAsync({ term: 2, vote: 'b', commit: 2 }, [entry(3, 2)]);
    w.close();
    const { contents } = Wal.open(dir);
    assert.deepEqual(
      contents.entries.map((e) => e.index),
      [1, 2],
    );
    assert.deepEqual(contents.hardState, { term: 1, vote: 'a1', commit: 0 });
  });

  it('a slow-disk failpoint delays the fsync, and the save resolves only after it', async () => {
    const dir = dirOf();
    const order: string[] = [];
    const w = Wal.create(dir, meta, {
      beforeSync: () =>
        new Promise<void>((r) =>
          setTimeout(() => {
            order.push('delay');
            r();
          }, 20),
        ),
    });
    await w.saveAsync(undefined, [entry(1)])?.then(() => order.push('synced'));
    assert.deepEqual(order, ['delay', 'synced']);
    w.close();
  });

  it('a later write at an index replaces that entry and everything after it (log truncation)', () => {
    const dir = dirOf();
    const w = Wal.create(dir, meta);
    w.save(undefined, [entry(1), entry(2), entry(3)]);
    w.save(undefined, [entry(2, 2, 'new2')]);
    w.close();
    assert.deepEqual(
      Wal.open(dir).contents.entries.map((e) => new TextDecoder().decode(e.data)),
      ['v1', 'new2'],
    );
  });

  it('a torn last record is truncated and the log stays usable', () => {
    const dir = dirOf();
    const w = Wal.create(dir, meta);
    w.save({ term: 1, vote: '', commit: 1 }, [entry(1), entry(2)]);
    w.close();
    const seg = segment(dir);
    const intact = written(seg);
    // A crash in the middle of writing entry 3: its header and half its body reached the disk.
    const w2 = Wal.open(dir).wal;
    w2.save(undefined, [entry(3, 1, 'x'.repeat(200))]);
    w2.close();
    truncateSync(seg, intact + 50);
    const { wal, contents } = Wal.open(dir);
    assert.deepEqual(
      contents.entries.map((e) => e.index),
      [1, 2],
    );
    assert.equal(written(seg), intact, 'the torn tail was cut off');
    assert.equal(statSync(seg).size, 64 << 20, 'and the segment is full size again');
    wal.save(undefined, [entry(3)]);
    wal.close();
    assert.deepEqual(
      Wal.open(dir).contents.entries.map((e) => e.index),
      [1, 2, 3],
    );
  });

  it('zeros after the last good record (preallocated, never written) are a torn tail too', () => {
    const dir = dirOf();
    const w = Wal.create(dir, meta);
    w.save(undefined, [entry(1)]);
    w.close();
    appendFileSync(segment(dir), Buffer.alloc(64));
    assert.deepEqual(
      Wal.open(dir).contents.entries.map((e) => e.index),
      [1],
    );
  });

  it('a corrupt record in the middle stops the member, naming the file and offset', () => {
    const dir = dirOf();
    const w = Wal.create(dir, meta);
    w.save(undefined, [entry(1), entry(2), entry(3)]);
    w.close();
    const seg = segment(dir);
    const data = readFileSync(seg);
    // Flip a byte inside entry 2's payload.
    const at = data.indexOf(Buffer.from('v2'));
    data[at] = 0x77;
    writeFileSync(seg, data);
    assert.throws(
      () => Wal.open(dir),
      (e: unknown) =>
        isBallastError(e, 'STORE_ERR_WAL_CORRUPT') &&
        (e as Error).message.includes(seg) &&
        /at offset \d+: CRC mismatch/.test((e as Error).message),
    );
  });

  it('rolls segments and deletes those a snapshot covers', () => {
    const dir = dirOf();
    const w = Wal.create(dir, meta, { segmentBytes: 300 });
    for (let i = 1; i <= 40; i++) w.save({ term: 1, vote: '', commit: i - 1 }, [entry(i, 1, 'x'.repeat(20))]);
    const before = readdirSync(dir).length;
    assert.ok(before > 3, `rolled into ${before} segments`);
    w.saveSnapshot(35, 1);
    w.close();
    assert.ok(readdirSync(dir).length < before, 'covered segments were released');
    const { contents } = Wal.open(dir);
    assert.deepEqual(contents.snapshot, { index: 35, term: 1 });
    assert.deepEqual(
      contents.entries.map((e) => e.index),
      [36, 37, 38, 39, 40],
    );
    assert.equal(contents.hardState?.commit, 39);
    assert.deepEqual(contents.meta, meta);
  });

  it('rolls segments during background saves (a new segment is synced with the save that made it); all reads back', async () => {
    const dir = dirOf();
    const w = Wal.create(dir, meta, { segmentBytes: 300 });
    for (let i = 1; i <= 40; i++) await w.saveAsync({ term: 1, vote: '', commit: i - 1 }, [entry(i, 1, 'x'.repeat(20))]);
    assert.ok(readdirSync(dir).length > 3, 'rolled');
    w.saveSnapshot(20, 1, false); // a background snapshot's marker: written, synced by the next save
    await w.saveAsync({ term: 1, vote: '', commit: 40 }, [entry(41, 1)]);
    w.close();
    const { contents } = Wal.open(dir);
    assert.deepEqual(contents.snapshot, { index: 20, term: 1 });
    assert.deepEqual(
      contents.entries.map((e) => e.index),
      Array.from({ length: 21 }, (_, i) => i + 21),
    );
  });

  it('makes each segment at its full size (preallocated, as etcd does) and appends after the records, not at the end of the file', () => {
    const dir = dirOf();
    const w = Wal.create(dir, meta, { segmentBytes: 4096 });
    w.save({ term: 1, vote: 'a1', commit: 0 }, [entry(1)]);
    w.close();
    const seg = segment(dir);
    assert.equal(statSync(seg).size, 4096);
    const w2 = Wal.open(dir, { segmentBytes: 4096 }).wal;
    w2.save(undefined, [entry(2)]);
    w2.close();
    assert.equal(statSync(seg).size, 4096);
    assert.deepEqual(
      Wal.open(dir).contents.entries.map((e) => e.index),
      [1, 2],
    );
  });

  it('a log written before preallocation (segments exactly as long as their records) reads, and its last segment grows to full size', () => {
    const dir = dirOf();
    rolledLog(dir);
    const all = segments(dir);
    assert.ok(all.length > 2, 'rolled');
    truncateSync(all.at(-1)!, written(all.at(-1)!)); // as the build before this one left it
    const { wal, contents } = Wal.open(dir, { segmentBytes: 300 });
    assert.deepEqual(
      contents.entries.map((e) => e.index),
      Array.from({ length: 20 }, (_, i) => i + 1),
    );
    wal.close();
    assert.ok(statSync(all.at(-1)!).size >= 300);
  });

  it('a segment the log rolled past is trimmed to its records, so a build that reads no preallocated segments reads it too', () => {
    const dir = dirOf();
    rolledLog(dir);
    const all = segments(dir);
    for (const seg of all.slice(0, -1)) assert.equal(statSync(seg).size, written(seg), `${seg} ends with its last record`);
    assert.equal(statSync(all.at(-1)!).size, 300, 'the segment being written stays full size');
  });

  it('zeros after the records of an earlier segment (a crash before its trim reached the disk) end that segment; nothing is lost', () => {
    const dir = dirOf();
    rolledLog(dir);
    appendFileSync(segments(dir)[0]!, Buffer.alloc(300));
    assert.deepEqual(
      Wal.open(dir).contents.entries.map((e) => e.index),
      Array.from({ length: 20 }, (_, i) => i + 1),
    );
  });

  it('an earlier segment cut short (entries missing before the next segment) stops the member, naming the missing entries', () => {
    const dir = dirOf();
    rolledLog(dir);
    // Each save wrote an entry and then a hard state: cut the first segment before its last entry.
    const first = segments(dir)[0]!;
    const starts = recordStarts(first);
    truncateSync(first, starts.at(-2)!);
    assert.throws(
      () => Wal.open(dir),
      (e: unknown) => isBallastError(e, 'STORE_ERR_WAL_CORRUPT') && /entries \d+–\d+ are missing/.test((e as Error).message),
    );
  });

  it('after a snapshot marker the next entry may follow the marker; a gap after it is refused too', () => {
    const dir = dirOf();
    const w = Wal.create(dir, meta);
    w.save(undefined, [entry(1), entry(2)]);
    w.saveSnapshot(10, 2); // a snapshot received from the leader: the log continues after 10
    w.save(undefined, [entry(11, 2)]);
    w.close();
    assert.deepEqual(
      Wal.open(dir).contents.entries.map((e) => e.index),
      [11],
    );
    const w2 = Wal.open(dir).wal;
    w2.saveSnapshot(20, 2);
    w2.save(undefined, [entry(22, 2)]);
    w2.close();
    assert.throws(
      () => Wal.open(dir),
      (e: unknown) => isBallastError(e, 'STORE_ERR_WAL_CORRUPT') && /entries 21–21 are missing/.test((e as Error).message),
    );
  });

  it('refuses to create over an existing log', () => {
    const dir = dirOf();
    Wal.create(dir, meta).close();
    assert.throws(
      () => Wal.create(dir, meta),
      (e: unknown) => isBallastError(e, 'STORE_ERR_DATA_DIR'),
    );
  });
});
