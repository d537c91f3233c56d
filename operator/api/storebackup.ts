/**
 * `StoreBackup` (ballast.dev/v1alpha1): one backup of a StoreCluster into S3-compatible object
 * storage. The operator runs it as a Job (`ballast backup save`, streamed from a follower), which
 * the Job controller retries with back-off; status carries what the backup's manifest says.
 */
import { conditionsSchema, type CrdDefinition, openapi } from '../../api/schema.ts';
import type { V1Condition } from '@kubernetes/client-node';
import { group, version } from './storecluster.ts';

export interface BackupStorage {
  endpoint: string;
  bucket: string;
  prefix?: string;
  region: string;
  credentialsSecret: string;
  caSecret?: string;
}

/** A schedule's retention, as its backups carry it to their Job (see lib/retention.ts). */
export interface BackupRetention {
  /** Successful backups to keep. */
  keep?: number;
  /** Successful backups older than this go (30d, 168h, 90m). */
  maxAge?: string;
}

export interface StoreBackupSpec {
  cluster: string;
  storage: BackupStorage;
  /**
   * Set by a StoreBackupSchedule on the backups it makes: after this backup succeeds, its Job
   * deletes the schedule's older backups from the bucket as the retention says.
   */
  retention?: BackupRetention & { schedule: string };
  /** Once it succeeds, restore it into a throw-away member and compare HashKV (ballast backup verify). */
  verify?: boolean;
}

export interface BackupVerification {
  phase: 'Running' | 'Verified' | 'Failed' | 'NotVerifiable';
  job?: string;
  /** The restored member's HashKV at the backup's revision. */
  hashKV?: number;
  reason?: string;
  message?: string;
  completedAt?: string;
}

export interface StoreBackupStatus {
  observedGeneration?: number;
  phase?: 'Pending' | 'Running' | 'Succeeded' | 'Failed';
  job?: string;
  attempts?: number;
  objectKey?: string;
  revision?: number;
  sizeBytes?: number;
  sha256?: string;
  member?: string;
  startedAt?: string;
  completedAt?: string;
  durationSeconds?: number;
  verification?: BackupVerification;
  reason?: string;
  message?: string;
  conditions?: V1Condition[];
}

export interface StoreBackup {
  apiVersion: string;
  kind: 'StoreBackup';
  metadata: {
    name: string;
    namespace: string;
    uid?: string;
    generation?: number;
    creationTimestamp?: Date;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    resourceVersion?: string;
  };
  spec: StoreBackupSpec;
  status?: StoreBackupStatus;
}

/**
 * A good backup: Succeeded, and not found wanting by its verification (a restore that did not
 * hash as the source). What retention keeps, what a lost cluster is pointed at.
 */
export const isGoodBackup = (b: StoreBackup): boolean => b.status?.phase === 'Succeeded' && b.status.verification?.phase !== 'Failed';

/** Good backups, newest completed first. */
export const goodBackupsNewestFirst = (all: readonly StoreBackup[]): StoreBackup[] =>
  all.filter(isGoodBackup).sort((a, b) => String(b.status?.completedAt ?? '').localeCompare(String(a.status?.completedAt ?? '')));

const immutable = (what: string) => [
  { rule: 'self == oldSelf', message: `${what} cannot change: a backup is taken once; create another StoreBackup` },
];

export const storageSchema = (description: string) =>
  openapi.object(
    description,
    {
      endpoint: openapi.string('The S3 endpoint, http(s)://host:port.', { pattern: '^https?://[^/]+$' }),
      bucket: openapi.string('The bucket; it must exist.', { minLength: 3, maxLength: 63 }),
      prefix: openapi.string("Key prefix of this cluster's backups; default <namespace>/<cluster>/."),
      region: openapi.string('The S3 region.', { default: 'us-east-1' }),
      credentialsSecret: openapi.string('Secret (same namespace) with keys accessKeyId and secretAccessKey.', { minLength: 1 }),
      caSecret: openapi.string("Secret with key ca.crt: the CA that signed the endpoint's certificate (https with a private CA)."),
    },
    { required: ['endpoint', 'bucket', 'credentialsSecret'] },
  );

export const retentionSchema = (description: string, more: Record<string, ReturnType<typeof openapi.string>> = {}) =>
  openapi.object(description, {
    keep: openapi.int(
      'Successful backups to keep; older ones are deleted (the objects and the StoreBackups). The newest successful backup is always kept.',
      { minimum: 1 },
    ),
    maxAge: openapi.string(
      'Successful backups older than this are deleted: a number and s, m, h or d (30d, 168h). The newest successful backup is always kept, however old.',
      { pattern: '^[0-9]+(s|m|h|d)$' },
    ),
    ...more,
  });

export const storeBackupCrd: CrdDefinition = {
  group,
  version,
  kind: 'StoreBackup',
  plural: 'storebackups',
  singular: 'storebackup',
  shortNames: ['stb'],
  categories: ['ballast'],
  description:
    'A StoreBackup is one backup of a StoreCluster in S3-compatible object storage: a snapshot streamed from a follower into <bucket>/<prefix><name>.snap, with its manifest (revision, size, sha256) in <name>.json once complete. The operator runs it as a Job, retried with back-off; a backup without a manifest is never listed or restored.',
  spec: openapi.object(
    'What to back up, and where.',
    {
      cluster: openapi.string('The StoreCluster to back up, in the same namespace.', {
        minLength: 1,
        'x-kubernetes-validations': immutable('spec.cluster'),
      }),
      storage: { ...storageSchema('The object storage.'), 'x-kubernetes-validations': immutable('spec.storage') },
      retention: {
        ...retentionSchema(
          "Set by a StoreBackupSchedule on the backups it makes: once this one succeeds, its Job deletes the schedule's older backups from the bucket as this says.",
          {
            schedule: openapi.string('The StoreBackupSchedule whose backups (named <schedule>-<time>) this prunes.', { minLength: 1 }),
          },
        ),
        required: ['schedule'],
        'x-kubernetes-validations': immutable('spec.retention'),
      },
      verify: openapi.bool(
        "Once the backup succeeds, verify it: a Job restores it into a throw-away one-member cluster and compares its HashKV at the backup's revision with the one the source member gave (status.verification, the Verified condition).",
        { default: false },
      ),
    },
    { required: ['cluster', 'storage'] },
  ),
  status: openapi.object('How the backup went.', {
    observedGeneration: openapi.int('The .metadata.generation the status describes.'),
    phase: openapi.string('Pending (waiting for the cluster), Running (its Job runs or retries), Succeeded or Failed.', {
      enum: ['Pending', 'Running', 'Succeeded', 'Failed'],
    }),
    job: openapi.string('The Job that takes the backup.'),
    attempts: openapi.int("Attempts so far (the Job's pods)."),
    objectKey: openapi.string("The snapshot's object key in the bucket."),
    revision: openapi.int('The store revision the backup holds.'),
    sizeBytes: openapi.int("The snapshot's size in bytes."),
    sha256: openapi.string("The snapshot's sha256 (hex), as its manifest records it."),
    member: openapi.string('The member (id, hex) it was streamed from.'),
    startedAt: openapi.string('When the snapshot started streaming (RFC 3339).'),
    completedAt: openapi.string('When its manifest was written (RFC 3339).'),
    durationSeconds: openapi.int('From start to manifest, in seconds.'),
    verification: openapi.object('With spec.verify: the restore test of the backup.', {
      phase: openapi.string(
        'Running, Verified (the restore hashes as the source did), Failed (it does not, or the restore failed) or NotVerifiable (nothing to compare with).',
        { enum: ['Running', 'Verified', 'Failed', 'NotVerifiable'] },
      ),
      job: openapi.string('The Job that verifies it.'),
      hashKV: openapi.int("The restored member's HashKV at the backup's revision."),
      reason: openapi.string("A CamelCase word: Verified, or the failure's error code."),
      message: openapi.string('What the verification found.'),
      completedAt: openapi.string('When it finished (RFC 3339).'),
    }),
    reason: openapi.string(
      "A CamelCase word for the phase: WaitingForCluster, ClusterNotFound, Started, Retrying, Completed, or the failure's error code.",
    ),
    message: openapi.string('What happened, and for a failure what to fix.'),
    conditions: conditionsSchema,
  }),
  columns: [
    { name: 'Cluster', type: 'string', jsonPath: '.spec.cluster' },
    { name: 'Phase', type: 'string', jsonPath: '.status.phase' },
    { name: 'Revision', type: 'integer', jsonPath: '.status.revision' },
    { name: 'Size', type: 'integer', jsonPath: '.status.sizeBytes' },
    { name: 'Verified', type: 'string', jsonPath: '.status.verification.phase' },
    { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
  ],
};
