/**
 * Point-in-time recovery: the archive of committed changes (pure; the archiver that writes it is
 * store/archiver.ts, the restore that reads it cli/backup.ts).
 *
 * The archiver watches every key of a cluster from a revision on and writes what it sees to
 * object storage in segments: `<prefix>wal/<first>-<last>-<fromMs>-<toMs>.seg`, the first and last
 * revision it holds (16 digits each, so names sort by revision) and when the archiver received
 * them (ms since the epoch). Each revision is one write of the cluster (a put, a delete, a txn or
 * a lease's expiry), with its changes in the order the cluster applied them, and every revision
 * is there: a write that changes a key always takes the next revision, so the revisions of an
 * archive without gaps are consecutive. A segment also carries the granted TTL of every lease
 * its changes attach keys to (leases are not part of a watch; the archiver asks for them).
 *
 * A restore to revision R (or to time T: the last revision received at or before T) starts from
 * the newest good backup at or below R and replays the segments after it, one write per revision,
 * each checked against what the cluster recorded (create revision, version): a segment that does
 * not continue the backup is refused, never applied. `wal/progress.json` says how far the archive
 * reaches: every change received before `at` is in a segment, up to `revision`.
 *
 * What a watch does not show is not archived: users and roles (a point-in-time restore has the
 * base backup's), and leases' deadlines (a restored lease gets its whole TTL again, as in any
 * etcd restore). A lease revoked after the base backup keeps no keys (their deletions are
 * archived) and expires on its own in the restored cluster.
 *
 * Format: "BALLASTWAL1\n" | gzip of the segment's JSON | sha256 of everything before it. Keys and
 * values are binary strings (store/mvcc/types.ts), which JSON carries exactly.
 */
import { createHash } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import { catalogue } from './errors.ts';
import type { StateMachine } from './state-machine.ts';

/** One change of a revision: a put (the key's new record) or a deletion. */
export interface ArchivedChange {
  /** 0: put, 1: delete. */
  t: 0 | 1;
  k: string;
  /** Put only: value, create revision, version, lease ('0': none). */
  v?: string;
  c?: number;
  n?: number;
  l?: string;
}

/** One write of the cluster: its revision, when the archiver received it, its changes. */
export interface ArchivedRevision {
  rev: number;
  at: number;
  changes: ArchivedChange[];
}

export interface Segment {
  revisions: ArchivedRevision[];
  /** Granted TTL (seconds) of each lease a put of this segment attaches a key to. */
  leases: Array<{ id: string; ttl: number }>;
}

/** What a segment's object name says of it. */
export interface SegmentRef {
  key: string;
  first: number;
  last: number;
  fromMs: number;
  toMs: number;
}

/** How far the archive reaches: every change received before `at` is archived, up to `revision`. */
export interface ArchiveProgress {
  revision: number;
  at: number;
}

const magic = Buffer.from('BALLASTWAL1\n');
const pad = (n: number) => String(n).padStart(16, '0');

export function segmentName(seg: Segment): string {
  const first = seg.revisions[0] as ArchivedRevision;
  const last = seg.revisions[seg.revisions.length - 1] as ArchivedRevision;
  return `wal/${pad(first.rev)}-${pad(last.rev)}-${first.at}-${last.at}.seg`;
}

const namePattern = /(?:^|\/)wal\/(\d{16})-(\d{16})-(\d+)-(\d+)\.seg$/;

/** The segment an object key names (undefined: not a segment). */
export function parseSegmentKey(key: string): SegmentRef | undefined {
  const m = namePattern.exec(key);
  if (!m) return undefined;
  return { key, first: Number(m[1]), last: Number(m[2]), fromMs: Number(m[3]), toMs: Number(m[4]) };
}

export function encodeSegment(seg: Segment): Buffer {
  const body = Buffer.concat([magic, gzipSync(JSON.stringify(seg))]);
  return Buffer.concat([body, createHash('sha256').update(body).digest()]);
}

export function decodeSegment(buf: Buffer, key: string): Segment {
  if (buf.length < magic.length + 32 || !buf.subarray(0, magic.length).equals(magic)) {
    throw catalogue.error(
      'STORE_ERR_ARCHIVE_DAMAGED',
      `archive segment ${key} is not a ballast archive segment; nothing was restored. Delete it, or restore to a revision before it`,
    );
  }
  const body = buf.subarray(0, buf.length - 32);
  if (
    !createHash('sha256')
      .update(body)
      .digest()
      .equals(buf.subarray(buf.length - 32))
  ) {
    throw catalogue.error(
      'STORE_ERR_ARCHIVE_DAMAGED',
      `archive segment ${key} fails its sha256 check (truncated or damaged); nothing was restored. Restore to a revision before it`,
    );
  }
  const seg = JSON.parse(gunzipSync(body.subarray(magic.length)).toString()) as Segment;
  const ref = parseSegmentKey(key);
  const revs = seg.revisions;
  const consecutive = revs.every((r, i) => i === 0 || r.rev === (revs[i - 1] as ArchivedRevision).rev + 1);
  if (!ref || revs.length === 0 || !consecutive || revs[0]?.rev !== ref.first || revs[revs.length - 1]?.rev !== ref.last) {
    throw catalogue.error(
      'STORE_ERR_ARCHIVE_DAMAGED',
      `archive segment ${key} does not hold the revisions its name says (${revs[0]?.rev ?? 'none'}..${revs[revs.length - 1]?.rev ?? 'none'}, consecutive: ${consecutive}); nothing was restored`,
    );
  }
  return seg;
}

/** A base backup, as the restore plan sees it. */
export interface BaseBackup {
  name: string;
  revision: number;
  /** When it finished (ms): with equal revisions, the newer one is taken. */
  finishedMs: number;
}

export interface RestoreTarget {
  revision?: number;
  /** ms since the epoch. */
  time?: number;
}

/**
 * Which segments a restore reads to find the revision a time names: those whose changes were
 * received at or before it. Empty when the time is before the archive.
 */
export function segmentsUpToTime(segments: SegmentRef[], time: number): SegmentRef[] {
  return sortRefs(segments).filter((s) => s.fromMs <= time);
}

/** The last revision received at or before `time` in these segments (0: none). */
export function revisionAtTime(segments: Segment[], time: number): number {
  let rev = 0;
  for (const s of segments) for (const r of s.revisions) if (r.at <= time && r.rev > rev) rev = r.rev;
  return rev;
}

/** The contiguous spans of revisions the archive holds, oldest first (a gap between two spans). */
export function archiveSpans(segments: SegmentRef[]): Array<{ first: number; last: number; fromMs: number; toMs: number }> {
  const spans: Array<{ first: number; last: number; fromMs: number; toMs: number }> = [];
  for (const s of sortRefs(segments)) {
    const cur = spans[spans.length - 1];
    if (cur && s.first <= cur.last + 1) {
      if (s.last > cur.last) {
        cur.last = s.last;
        cur.toMs = Math.max(cur.toMs, s.toMs);
      }
    } else {
      spans.push({ first: s.first, last: s.last, fromMs: s.fromMs, toMs: s.toMs });
    }
  }
  return spans;
}

export interface RestorePlan {
  base: string;
  baseRevision: number;
  /** The revision the restore reaches. */
  revision: number;
  /** The segments to replay after the base, in order (they may overlap: replay skips what it has). */
  segments: SegmentRef[];
}

/**
 * Plan a restore to `revision` (pure): the newest backup at or below it, then segments covering
 * every revision after the backup's up to it. Refuses, naming what exists, when no backup is old
 * enough, when the archive does not reach the revision, or when it has a gap on the way.
 */
export function planRestore(backups: BaseBackup[], segments: SegmentRef[], revision: number, progress?: ArchiveProgress): RestorePlan {
  const usable = backups.filter((b) => b.revision <= revision).sort((a, b) => a.revision - b.revision || a.finishedMs - b.finishedMs);
  const base = usable[usable.length - 1];
  const spans = archiveSpans(segments);
  const window = spans.map((s) => `${s.first}..${s.last}`).join(', ') || 'none';
  if (!base) {
    const oldest = [...backups].sort((a, b) => a.revision - b.revision)[0];
    throw catalogue.error(
      'STORE_ERR_ARCHIVE_NOT_COVERED',
      `no good backup at or below revision ${revision} to start from${oldest ? ` (the oldest is ${oldest.name} at revision ${oldest.revision})` : ''}; choose a revision at or after the oldest backup's (archived revisions: ${window})`,
    );
  }
  const chosen: SegmentRef[] = [];
  let have = base.revision;
  for (const s of sortRefs(segments)) {
    if (have >= revision) break;
    if (s.last <= have) continue;
    if (s.first > have + 1) break;
    chosen.push(s);
    have = s.last;
  }
  if (have < revision) {
    const reach =
      progress && progress.revision >= have
        ? ` the archive reaches revision ${progress.revision}${progress.at ? ` (everything received before ${new Date(progress.at).toISOString()})` : ''};`
        : '';
    const gap = spans.some((s) => s.first > have + 1);
    if (gap) {
      throw catalogue.error(
        'STORE_ERR_ARCHIVE_GAP',
        `revisions ${have + 1}..${Math.min(revision, (spans.find((s) => s.first > have + 1) as { first: number }).first - 1)} are not in the archive (the archiver was stopped while the cluster compacted them away), so revision ${revision} cannot be reached from backup ${base.name} (revision ${base.revision}); restore to revision ${have} or earlier, or to a revision after a backup taken since (archived revisions: ${window})`,
      );
    }
    throw catalogue.error(
      'STORE_ERR_ARCHIVE_NOT_COVERED',
      `revision ${revision} is beyond the archive:${reach || ` from backup ${base.name} the archive reaches revision ${have};`} restore to a revision at or before it, or wait for the archiver (it writes a segment every few seconds) (archived revisions: ${window})`,
    );
  }
  return { base: base.name, baseRevision: base.revision, revision, segments: chosen };
}

/**
 * Replay archived revisions onto a state machine holding the base backup, up to `upTo`. Each
 * revision is one write; what it produced must be what the cluster recorded, or the archive does
 * not continue this state and the restore stops (STORE_ERR_ARCHIVE_DAMAGED). Returns the
 * revision reached.
 */
export function replay(sm: StateMachine, seg: Segment, key: string, upTo: number): number {
  const ttls = new Map(seg.leases.map((l) => [l.id, l.ttl]));
  for (const r of seg.revisions) {
    if (r.rev > upTo) break;
    const at = sm.mvcc.revision;
    if (r.rev <= at) continue;
    if (r.rev !== at + 1)
      throw catalogue.error(
        'STORE_ERR_ARCHIVE_GAP',
        `archive segment ${key} continues at revision ${r.rev}, but the restore has reached ${at}: revisions ${at + 1}..${r.rev - 1} are missing; nothing was restored`,
      );
    const events = sm.applyArchived(
      r.changes.map((c) => (c.t === 0 ? { put: { key: c.k, value: c.v ?? '', lease: c.l ?? '0' } } : { del: c.k })),
      (id) => ttls.get(id),
    );
    const ok =
      events.length === r.changes.length &&
      events.every((e, i) => {
        const c = r.changes[i] as ArchivedChange;
        return (
          e.type === c.t &&
          e.kv.key === c.k &&
          e.kv.modRevision === r.rev &&
          (c.t === 1 || (e.kv.createRevision === c.c && e.kv.version === c.n))
        );
      });
    if (!ok || sm.mvcc.revision !== r.rev) {
      throw catalogue.error(
        'STORE_ERR_ARCHIVE_DAMAGED',
        `archive segment ${key}: replaying revision ${r.rev} gave a different result than the cluster recorded (the archive does not continue this backup's state); nothing was restored. Restore to revision ${at} or earlier`,
      );
    }
  }
  return sm.mvcc.revision;
}

function sortRefs(s: SegmentRef[]): SegmentRef[] {
  return [...s].sort((a, b) => a.first - b.first || b.last - a.last);
}
