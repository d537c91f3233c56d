/**
 * `StoreBackupSchedule` (ballast.dev/v1alpha1): backups of a StoreCluster on a cron schedule,
 * kept by count and age. At each scheduled time the operator creates a StoreBackup named
 * `<schedule>-<UTC time>`; one still running when the next is due makes the next one skipped
 * (as a CronJob's Forbid). Backups outlive their schedule: deleting it deletes no backup.
 */
import { conditionsSchema, type CrdDefinition, openapi } from '../../api/schema.ts';
import type { V1Condition } from '@kubernetes/client-node';
import { type BackupRetention, type BackupStorage, retentionSchema, storageSchema } from './storebackup.ts';
import { group, version } from './storecluster.ts';

export interface StoreBackupScheduleSpec {
  cluster: string;
  /** Cron: five fields (minute hour day month weekday), six with seconds first, or @hourly, @daily, @weekly. */
  schedule: string;
  /** IANA time zone the schedule is read in; default UTC. */
  timeZone?: string;
  storage: BackupStorage;
  retention?: BackupRetention;
  /** Verify each backup by restoring it (StoreBackup spec.verify). */
  verify?: boolean;
  suspend?: boolean;
  /** Archive every change between backups, for restores to any revision or time (store/archive.ts). */
  pointInTime?: { enabled?: boolean; segmentSeconds?: number };
}

export interface StoreBackupScheduleStatus {
  observedGeneration?: number;
  lastScheduleTime?: string;
  nextScheduleTime?: string;
  lastBackup?: string;
  lastSuccessfulBackup?: string;
  lastSuccessfulTime?: string;
  /** Successful backups it keeps now. */
  backups?: number;
  /** The archiver's Deployment, while pointInTime is enabled, and whether it runs. */
  archiver?: { name: string; ready: boolean };
  conditions?: V1Condition[];
}

export interface StoreBackupSchedule {
  apiVersion: string;
  kind: 'StoreBackupSchedule';
  metadata: {
    name: string;
    namespace: string;
    uid?: string;
    generation?: number;
    creationTimestamp?: Date;
    labels?: Record<string, string>;
    resourceVersion?: string;
  };
  spec: StoreBackupScheduleSpec;
  status?: StoreBackupScheduleStatus;
}

/** The label on the StoreBackups a schedule made: the schedule's name. */
export const scheduleLabel = 'ballast.dev/storebackupschedule';

export const storeBackupScheduleCrd: CrdDefinition = {
  group,
  version,
  kind: 'StoreBackupSchedule',
  plural: 'storebackupschedules',
  singular: 'storebackupschedule',
  shortNames: ['stbs'],
  categories: ['ballast'],
  description:
    'A StoreBackupSchedule backs up a StoreCluster on a cron schedule: at each time it creates a StoreBackup named <schedule>-<UTC time> (skipped while the previous one still runs), and deletes the backups its retention no longer keeps, objects and StoreBackups both; the newest successful backup is always kept. Deleting the schedule deletes no backup.',
  spec: openapi.object(
    'When to back up, where, and what to keep.',
    {
      cluster: openapi.string('The StoreCluster to back up, in the same namespace.', { minLength: 1 }),
      schedule: openapi.string(
        'Cron: five fields (minute hour day-of-month month day-of-week), six with seconds first, or @hourly, @daily, @weekly, @monthly.',
        { minLength: 1 },
      ),
      timeZone: openapi.string('The IANA time zone the schedule is read in (Europe/Berlin); default UTC.'),
      storage: storageSchema("The object storage, as a StoreBackup's spec.storage."),
      retention: retentionSchema('What to keep. Without it every backup is kept.'),
      verify: openapi.bool(
        "Verify each backup: restore it into a throw-away one-member cluster (a Job) and compare its HashKV at the backup's revision with the source's; a backup that fails verification does not count as a good one for retention.",
        { default: false },
      ),
      suspend: openapi.bool('Make no new backups while true (retention still applies).', { default: false }),
      pointInTime: openapi.object(
        "Point-in-time recovery: a Deployment (<schedule>-archiver) watches the cluster and archives every change to the same storage (under wal/), so a StoreCluster can be restored to any revision or time after the oldest kept backup (spec.restore.toRevision, toTime), not only to a backup. The archive's segments older than the oldest kept backup are deleted with it.",
        {
          enabled: openapi.bool('Run the archiver.', { default: false }),
          segmentSeconds: openapi.int(
            'Write the archive at least this often while changes wait: about how much of the newest data a restore can miss (the recovery point objective).',
            { minimum: 1, maximum: 3600, default: 5 },
          ),
        },
      ),
    },
    { required: ['cluster', 'schedule', 'storage'] },
  ),
  status: openapi.object('What the schedule did.', {
    observedGeneration: openapi.int('The .metadata.generation the status describes.'),
    lastScheduleTime: openapi.string('The last scheduled time a backup was made or skipped for (RFC 3339).'),
    nextScheduleTime: openapi.string('The next scheduled time (RFC 3339).'),
    lastBackup: openapi.string('The StoreBackup made last.'),
    lastSuccessfulBackup: openapi.string('The newest StoreBackup of this schedule that succeeded.'),
    lastSuccessfulTime: openapi.string('When it completed (RFC 3339).'),
    backups: openapi.int('Successful backups of this schedule kept now.'),
    archiver: openapi.object('The archiver of pointInTime.', {
      name: openapi.string('Its Deployment.'),
      ready: openapi.bool('Whether it runs (an available replica).'),
    }),
    conditions: conditionsSchema,
  }),
  columns: [
    { name: 'Cluster', type: 'string', jsonPath: '.spec.cluster' },
    { name: 'Schedule', type: 'string', jsonPath: '.spec.schedule' },
    { name: 'Last Success', type: 'date', jsonPath: '.status.lastSuccessfulTime' },
    { name: 'Next', type: 'string', jsonPath: '.status.nextScheduleTime' },
    { name: 'Backups', type: 'integer', jsonPath: '.status.backups' },
  ],
};
