/**
 * The StoreBackupSchedule reconciler's decisions, pure: from the schedule, the StoreBackups it
 * made and the time, whether a backup is due (and its StoreBackup), which of its backups the
 * retention lets go, the status and the Events. Level-triggered: a missed time (the operator
 * was down) is caught up once, with the latest time missed, as a CronJob does; a backup still
 * running when the next is due makes that one skipped.
 */
import type { V1Condition, V1Deployment } from '@kubernetes/client-node';
import { Cron } from 'croner';
import { condition } from '../../lib/kube/conditions.ts';
import { expired, parseAge } from '../../lib/retention.ts';
export { backupNamePattern } from '../../lib/retention.ts';
import { goodBackupsNewestFirst, isGoodBackup, type StoreBackup } from '../api/storebackup.ts';
import { scheduleLabel, type StoreBackupSchedule, type StoreBackupScheduleStatus } from '../api/storebackupschedule.ts';
import type { StoreCluster } from '../api/storecluster.ts';
import { archiverDeployment, archiverName } from '../specs/storebackup.ts';
import type { StepEvent } from './types.ts';

export interface ScheduleStep {
  status: StoreBackupScheduleStatus;
  create?: StoreBackup;
  /** StoreBackups the retention lets go. */
  delete: string[];
  /** pointInTime: the archiver's Deployment to apply, or the name of one to delete. */
  applyArchiver?: V1Deployment;
  deleteArchiver?: string;
  events: StepEvent[];
  requeueMs?: number;
  /** For the metrics: the newest successful backup's completion and the schedule's period (seconds). */
  lastSuccessSeconds?: number;
  intervalSeconds?: number;
}

/** Longest schedule name: <name>-<14 digits> must fit a label value (63). */
export const maxScheduleName = 48;

/** 2026-12-02T14:05:00Z → 20261202140500: the backup's name suffix, sortable, lowercase-safe. */
export const stamp = (d: Date) => d.toISOString().replace(/[-:T]/g, '').slice(0, 14);

/** The cron expression read, or why not. */
export function parseSchedule(expr: string, timeZone: string | undefined): Cron | string {
  try {
    const cron = new Cron(expr, {
      paused: true,
      timezone: timeZone ?? 'UTC',
      mode: expr.trim().split(/\s+/).length === 6 ? '6-part' : 'auto',
    });
    cron.nextRun(new Date(0)); // a time zone is checked only when a time is computed
    return cron;
  } catch (err) {
    return (err as Error).message;
  }
}

const finished = (b: StoreBackup) => b.status?.phase === 'Succeeded' || b.status?.phase === 'Failed';
/** Creation time in ms (the cache holds the API's string; the type says Date). */
const created = (b: { metadata: { creationTimestamp?: Date | undefined } }) =>
  b.metadata.creationTimestamp ? new Date(b.metadata.creationTimestamp).getTime() || 0 : 0;

export function planSchedule(
  s: StoreBackupSchedule,
  o: {
    backups: StoreBackup[];
    clusterExists: boolean;
    now: number;
    cluster?: StoreCluster | undefined;
    archiver?: V1Deployment | undefined;
  },
): ScheduleStep {
  const prev = s.status ?? {};
  const gen = s.metadata.generation ?? 0;
  const nowIso = new Date(o.now).toISOString();
  const mine = o.backups.filter((b) => b.metadata.labels?.[scheduleLabel] === s.metadata.name);
  const events: StepEvent[] = [];
  const conds: V1Condition[] = [];
  const set = (type: string, status: 'True' | 'False', reason: string, message: string) =>
    conds.push(condition(prev.conditions, { type, status, reason, message }, gen, nowIso) as unknown as V1Condition);

  // What the backups say, whatever happens next.
  // A backup whose restore did not hash as the source is not a good one (isGoodBackup).
  const succeeded = goodBackupsNewestFirst(mine);
  const newestGood = succeeded[0];
  const newestDone = mine.filter(finished).sort((a, b) => created(b) - created(a))[0];
  const retention = { keep: s.spec.retention?.keep, maxAgeMs: s.spec.retention?.maxAge ? parseAge(s.spec.retention.maxAge) : undefined };
  const retained = mine.filter(finished).map((b) => ({
    name: b.metadata.name,
    ok: isGoodBackup(b),
    at: isGoodBackup(b) ? Date.parse(b.status?.completedAt ?? '') || created(b) : created(b),
  }));
  const drop = s.spec.retention ? expired(retained, retention, o.now) : [];
  const status: StoreBackupScheduleStatus = {
    ...prev,
    observedGeneration: gen,
    ...(newestGood ? { lastSuccessfulBackup: newestGood.metadata.name, lastSuccessfulTime: newestGood.status?.completedAt } : {}),
    backups: succeeded.filter((b) => !drop.includes(b.metadata.name)).length,
  };
  if (drop.length > 0)
    events.push({
      type: 'Normal',
      reason: 'BackupsPruned',
      message: `retention (${describe(s)}) let ${drop.length} backup${drop.length === 1 ? '' : 's'} go: ${drop.join(', ')}`,
    });
  if (newestDone?.status?.phase === 'Failed')
    set(
      'LastBackupSucceeded',
      'False',
      'BackupFailed',
      `${newestDone.metadata.name} failed: ${newestDone.status.message ?? 'see its status'}`,
    );
  else if (newestDone?.status?.verification?.phase === 'Failed')
    set(
      'LastBackupSucceeded',
      'False',
      'VerificationFailed',
      `${newestDone.metadata.name} was saved, but restored it does not hash as the cluster did: ${newestDone.status.verification.message ?? 'see its status'}`,
    );
  else if (newestDone) set('LastBackupSucceeded', 'True', 'BackupSucceeded', `${newestDone.metadata.name} succeeded`);
  // Point in time: the archiver runs while enabled and the cluster exists, whatever the cron says.
  const archiving = s.spec.pointInTime?.enabled === true;
  let archiver: Partial<ScheduleStep> = {};
  delete status.archiver;
  if (archiving && o.cluster) {
    const ready = (o.archiver?.status?.availableReplicas ?? 0) > 0;
    archiver = { applyArchiver: archiverDeployment(s, o.cluster) };
    status.archiver = { name: archiverName(s), ready };
    set(
      'Archiving',
      ready ? 'True' : 'False',
      ready ? 'Archiving' : 'ArchiverStarting',
      ready
        ? `${archiverName(s)} archives every change of ${s.spec.cluster} (a segment at least every ${s.spec.pointInTime?.segmentSeconds ?? 5} s): a new StoreCluster can be restored to any revision or time after the oldest kept backup`
        : `${archiverName(s)} is not running yet (see its pod); changes made meanwhile are archived when it starts, as long as the cluster has not compacted them`,
    );
  } else if (archiving) {
    set(
      'Archiving',
      'False',
      'ClusterNotFound',
      `StoreCluster ${s.spec.cluster} does not exist in namespace ${s.metadata.namespace}; nothing to archive`,
    );
    if (o.archiver) archiver = { deleteArchiver: archiverName(s) };
  } else if (o.archiver) {
    archiver = { deleteArchiver: archiverName(s) };
  }
  // An archiver not running yet is looked at every 10 s (its Deployment's changes wake nothing here).
  const requeue = (ms: number | undefined) => {
    const at = archiving && !status.archiver?.ready ? Math.min(ms ?? Infinity, 10_000) : ms;
    return at !== undefined ? { requeueMs: at } : {};
  };
  const done = (requeueMs?: number, more: Partial<ScheduleStep> = {}): ScheduleStep => ({
    ...archiver,
    status: { ...status, conditions: conds },
    delete: drop,
    events,
    ...requeue(requeueMs),
    ...(newestGood?.status?.completedAt ? { lastSuccessSeconds: Date.parse(newestGood.status.completedAt) / 1000 } : {}),
    ...more,
  });

  if (s.metadata.name.length > maxScheduleName) {
    set(
      'Ready',
      'False',
      'NameTooLong',
      `a schedule's name has at most ${maxScheduleName} characters (its backups are named <schedule>-<14 digits>, a label value); recreate it with a shorter name`,
    );
    return done();
  }
  const cron = parseSchedule(s.spec.schedule, s.spec.timeZone);
  if (typeof cron === 'string') {
    const message = `spec.schedule "${s.spec.schedule}"${s.spec.timeZone ? ` in ${s.spec.timeZone}` : ''} cannot be read (${cron}); give five cron fields (minute hour day month weekday), six with seconds first, or @hourly/@daily/@weekly`;
    if (prev.conditions?.find((c) => c.type === 'Ready')?.reason !== 'InvalidSchedule')
      events.push({ type: 'Warning', reason: 'InvalidSchedule', message });
    set('Ready', 'False', 'InvalidSchedule', message);
    return done();
  }
  const now = new Date(o.now);
  const next = cron.nextRun(now);
  const after = next ? cron.nextRun(next) : null;
  const intervalSeconds = next && after ? (after.getTime() - next.getTime()) / 1000 : undefined;
  status.nextScheduleTime = next?.toISOString();
  const wake = next ? Math.min(3_600_000, Math.max(1000, next.getTime() - o.now + 250)) : undefined;
  const result = (more: Partial<ScheduleStep> = {}) => done(wake, { ...(intervalSeconds ? { intervalSeconds } : {}), ...more });

  // The latest time at or before now (croner counts a run in the reference's second when the
  // reference is later in that second).
  const due = cron.previousRuns(1, new Date(Math.floor(o.now / 1000) * 1000 + 999))[0];
  const last = Date.parse(prev.lastScheduleTime ?? '') || created(s);
  if (s.spec.suspend) {
    set('Ready', 'True', 'Suspended', 'suspended: no new backups until spec.suspend is false (retention still applies)');
    if (due && due.getTime() > last) status.lastScheduleTime = due.toISOString();
    return result();
  }
  if (!due || due.getTime() <= last) {
    set('Ready', 'True', 'Scheduled', `next backup at ${status.nextScheduleTime ?? 'never (the schedule has no future time)'}`);
    return result();
  }
  status.lastScheduleTime = due.toISOString();
  const running = mine.find((b) => !finished(b));
  if (running) {
    const message = `skipped the backup due at ${due.toISOString()}: ${running.metadata.name} still runs`;
    events.push({ type: 'Warning', reason: 'BackupSkipped', message });
    set('Ready', 'True', 'Skipped', message);
    return result();
  }
  if (!o.clusterExists) {
    const message = `StoreCluster ${s.spec.cluster} does not exist in namespace ${s.metadata.namespace}; no backup made at ${due.toISOString()}`;
    events.push({ type: 'Warning', reason: 'ClusterNotFound', message });
    set('Ready', 'False', 'ClusterNotFound', message);
    return result();
  }
  const name = `${s.metadata.name}-${stamp(due)}`;
  const backup: StoreBackup = {
    apiVersion: s.apiVersion,
    kind: 'StoreBackup',
    metadata: { name, namespace: s.metadata.namespace, labels: { [scheduleLabel]: s.metadata.name } },
    spec: {
      cluster: s.spec.cluster,
      storage: s.spec.storage,
      ...(s.spec.retention ? { retention: { schedule: s.metadata.name, ...s.spec.retention } } : {}),
      ...(s.spec.verify ? { verify: true } : {}),
    },
  };
  status.lastBackup = name;
  events.push({ type: 'Normal', reason: 'BackupCreated', message: `created StoreBackup ${name} for ${due.toISOString()}` });
  set('Ready', 'True', 'Scheduled', `made ${name}; next backup at ${status.nextScheduleTime ?? 'never'}`);
  return result({ create: backup });
}

function describe(s: StoreBackupSchedule): string {
  const r = s.spec.retention ?? {};
  return [r.keep !== undefined ? `keep ${r.keep}` : '', r.maxAge ? `max age ${r.maxAge}` : ''].filter(Boolean).join(', ');
}
