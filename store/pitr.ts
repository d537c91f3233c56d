/**
 * A point-in-time restore's state (store/archive.ts): resolve the target (a time becomes the last
 * revision archived at or before it), plan the base backup and segments, download and check
 * them, and replay the segments onto the base. Used by `ballast backup restore --to-revision`
 * and `--to-time`; every member of a new cluster restoring the same target gets the same state.
 */
import { readFileSync, rmSync } from 'node:fs';
import { decodeBackup } from './backup.ts';
import { fetchBackup } from './backup-s3.ts';
import {
  type ArchiveProgress,
  type RestorePlan,
  type Segment,
  type SegmentRef,
  decodeSegment,
  planRestore,
  replay,
  revisionAtTime,
  segmentsUpToTime,
} from './archive.ts';
import { readArchive } from './archiver.ts';
import { catalogue } from './errors.ts';
import type { BackupManifest, ObjectStore } from './object-store.ts';
import { StateMachine, type StateMachineState } from './state-machine.ts';

export interface PointInTime {
  plan: RestorePlan;
  state: StateMachineState;
  /** For a time target: the time asked for. */
  time?: number;
}

/**
 * The state at `target`. `backups` are the usable base backups (good ones); `base`, when given,
 * is the backup to start from. `scratch` is a file the base backup is downloaded to (removed).
 */
export async function pointInTimeState(
  store: ObjectStore,
  backups: BackupManifest[],
  target: { revision?: number; time?: number },
  scratch: string,
  base?: BackupManifest,
): Promise<PointInTime> {
  const { segments, progress } = await readArchive(store);
  // A segment a time target was found in is replayed too: downloaded and checked once.
  const fetched = new Map<string, Segment>();
  const segment = async (key: string): Promise<Segment> => {
    const seg = fetched.get(key) ?? decodeSegment(await store.getBytes(key), key);
    fetched.set(key, seg);
    return seg;
  };
  const revision =
    target.time !== undefined ? await revisionForTime(segments, progress, backups, target.time, segment) : (target.revision ?? 0);
  const candidates = base ? [base] : backups;
  const plan = planRestore(
    candidates.map((b) => ({ name: b.name, revision: b.revision, finishedMs: Date.parse(b.finishedAt) })),
    segments,
    revision,
    progress,
  );
  const manifest = candidates.find((b) => b.name === plan.base) as BackupManifest;
  try {
    await fetchBackup(store, manifest, scratch);
    const sm = new StateMachine();
    sm.restore(decodeBackup(readFileSync(scratch), manifest.key).state);
    rmSync(scratch, { force: true });
    for (const ref of plan.segments) {
      replay(sm, await segment(ref.key), ref.key, plan.revision);
    }
    if (sm.mvcc.revision !== plan.revision) {
      throw catalogue.error(
        'STORE_ERR_ARCHIVE_GAP',
        `the archive's segments reached revision ${sm.mvcc.revision}, not ${plan.revision}; nothing was restored`,
      );
    }
    return { plan, state: sm.state(), ...(target.time !== undefined ? { time: target.time } : {}) };
  } finally {
    rmSync(scratch, { force: true });
  }
}

/** The last revision received at or before `time`; refuses a time the archive has not reached. */
async function revisionForTime(
  segments: SegmentRef[],
  progress: ArchiveProgress | undefined,
  backups: BackupManifest[],
  time: number,
  segment: (key: string) => Promise<Segment>,
): Promise<number> {
  const reach = progress?.at ?? Math.max(0, ...segments.map((s) => s.toMs));
  if (time > reach) {
    throw catalogue.error(
      'STORE_ERR_ARCHIVE_NOT_COVERED',
      `${new Date(time).toISOString()} is after the archive's newest point (${reach ? `${new Date(reach).toISOString()}, revision ${progress?.revision ?? Math.max(...segments.map((s) => s.last))}` : 'nothing is archived'}); restore to a time at or before it, or wait for the archiver (it writes a segment every few seconds)`,
    );
  }
  const earlier = segmentsUpToTime(segments, time);
  // Only the segments that straddle the time need reading: those wholly before it end at their last revision.
  const whole = earlier.filter((s) => s.toMs <= time);
  let rev = Math.max(0, ...whole.map((s) => s.last));
  for (const s of earlier.filter((x) => x.toMs > time)) rev = Math.max(rev, revisionAtTime([await segment(s.key)], time));
  if (rev === 0) {
    // Nothing archived at or before the time: the newest backup finished by then, if any, is the point.
    const b = backups
      .filter((x) => Date.parse(x.startedAt) <= time)
      .sort((x, y) => x.revision - y.revision)
      .pop();
    if (!b)
      throw catalogue.error(
        'STORE_ERR_ARCHIVE_NOT_COVERED',
        `nothing was archived or backed up at or before ${new Date(time).toISOString()}; restore to a later time`,
      );
    return b.revision;
  }
  return rev;
}
