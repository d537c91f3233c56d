/**
 * The StoreBackup reconciler's decisions, pure: from the StoreBackup, its StoreCluster, its Job
 * and the Job's pods, the status to write, the Job to create (at most once) and the Events. A
 * Failed backup is never looked at again (a new backup is a new StoreBackup); a Succeeded one
 * with spec.verify is verified once (planVerification), then never looked at again either.
 */
import type { V1Condition, V1Job, V1Pod } from '@kubernetes/client-node';
import { condition } from '../../lib/kube/conditions.ts';
import type { StoreBackup, StoreBackupStatus } from '../api/storebackup.ts';
import type { StoreCluster } from '../api/storecluster.ts';
import { backupAttempts, backupJob, jobName, verifyJob, verifyJobName } from '../specs/storebackup.ts';
import type { StepEvent } from './types.ts';

export interface BackupStep {
  status: StoreBackupStatus;
  /** Create this Job (it does not exist yet). */
  createJob?: V1Job;
  events: StepEvent[];
  requeueMs?: number;
  /** The phase became final in this step (for the metrics). */
  finished?: 'Succeeded' | 'Failed';
  /** The verification ended in this step (for the metrics). */
  verified?: 'verified' | 'failed' | 'not_verifiable';
}

export interface BackupObserved {
  cluster: StoreCluster | undefined;
  job: V1Job | undefined;
  pods: V1Pod[];
  /** The verification Job and its pods (spec.verify). */
  verifyJob?: V1Job | undefined;
  verifyPods?: V1Pod[];
  now: number;
}

interface Manifest {
  key: string;
  revision: number;
  size: number;
  sha256: string;
  member: string;
  startedAt: string;
  finishedAt: string;
}

/** What a pod's store container said when it stopped (the manifest, or the log's last lines). */
const terminated = (p: V1Pod) => p.status?.containerStatuses?.[0]?.state?.terminated;

/** The line that names the failure (`ballast backup save: CODE: message`), or the last one. */
export function failureOf(message: string | undefined): { reason: string; message: string } {
  const lines = (message ?? '')
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const line =
    [...lines].reverse().find((l) => /[A-Z]+_ERR_[A-Z0-9_]+: /.test(l)) ??
    lines[lines.length - 1] ??
    "the backup Job's pod failed without a message";
  const code = /([A-Z]+_ERR_[A-Z0-9_]+): /.exec(line)?.[1];
  // STORE_ERR_BACKUP_STORAGE_CREDENTIALS → BackupStorageCredentials (a condition reason is CamelCase).
  const reason = code
    ? code
        .replace(/^[A-Z]+_ERR_/, '')
        .toLowerCase()
        .replace(/(^|_)([a-z0-9])/g, (_m, _s: string, c: string) => c.toUpperCase())
    : 'JobFailed';
  return { reason, message: line.replace(/^ballast backup save: /, '') };
}

export function planBackup(sb: StoreBackup, o: BackupObserved): BackupStep {
  const prev = sb.status ?? {};
  if (prev.phase === 'Failed') return { status: prev, events: [] };
  if (prev.phase === 'Succeeded') return planVerification(sb, prev, o);
  const now = new Date(o.now).toISOString();
  const gen = sb.metadata.generation ?? 0;
  const conds = (phase: StoreBackupStatus['phase'], reason: string, message: string): V1Condition[] =>
    [
      condition(prev.conditions, { type: 'Complete', status: phase === 'Succeeded' ? 'True' : 'False', reason, message }, gen, now),
      condition(prev.conditions, { type: 'Failed', status: phase === 'Failed' ? 'True' : 'False', reason, message }, gen, now),
    ] as unknown as V1Condition[];
  const status = (
    phase: NonNullable<StoreBackupStatus['phase']>,
    reason: string,
    message: string,
    more: Partial<StoreBackupStatus> = {},
  ): StoreBackupStatus => ({
    ...prev,
    observedGeneration: gen,
    phase,
    reason,
    message,
    ...more,
    conditions: conds(phase, reason, message),
  });
  const once = (reason: string, e: StepEvent): StepEvent[] => (prev.reason === reason ? [] : [e]);

  if (!o.job) {
    const sc = o.cluster;
    if (!sc) {
      const message = `StoreCluster ${sb.spec.cluster} does not exist in namespace ${sb.metadata.namespace}; create it, or fix spec.cluster`;
      return {
        status: status('Pending', 'ClusterNotFound', message),
        events: once('ClusterNotFound', { type: 'Warning', reason: 'ClusterNotFound', message }),
        requeueMs: 15_000,
      };
    }
    if (!sc.status?.leader || sc.status.phase === 'QuorumLost' || sc.status.phase === 'Recovering') {
      const message = `waiting for StoreCluster ${sc.metadata.name} to have a leader (phase ${sc.status?.phase ?? 'unknown'})`;
      return { status: status('Pending', 'WaitingForCluster', message), events: [], requeueMs: 10_000 };
    }
    const job = backupJob(sb, sc);
    const message = `Job ${jobName(sb)} streams a snapshot of ${sc.metadata.name} from a follower to ${sb.spec.storage.endpoint}, bucket ${sb.spec.storage.bucket}`;
    return {
      status: status('Running', 'Started', message, { job: jobName(sb), attempts: 1, startedAt: now }),
      createJob: job,
      events: [{ type: 'Normal', reason: 'BackupStarted', message }],
    };
  }

  const pods = [...o.pods].sort((a, b) =>
    String(a.metadata?.creationTimestamp ?? '').localeCompare(String(b.metadata?.creationTimestamp ?? '')),
  );
  const failedPods = pods.filter((p) => p.status?.phase === 'Failed');
  const attempts = Math.max(
    prev.attempts ?? 1,
    pods.length,
    (o.job.status?.failed ?? 0) + (o.job.status?.active ?? 0) + (o.job.status?.succeeded ?? 0),
  );
  const done = pods.find((p) => p.status?.phase === 'Succeeded');
  if (done || (o.job.status?.succeeded ?? 0) > 0) {
    let m: Manifest;
    try {
      m = JSON.parse(terminated(done ?? ({} as V1Pod))?.message ?? '') as Manifest;
    } catch {
      const message = `Job ${jobName(sb)} succeeded but its pod's termination message is not a backup manifest; the backup's object may exist without being recorded here`;
      return {
        status: status('Failed', 'ResultUnreadable', message, { attempts }),
        events: [{ type: 'Warning', reason: 'BackupFailed', message }],
        finished: 'Failed',
      };
    }
    const duration = Math.max(0, Math.round((Date.parse(m.finishedAt) - Date.parse(m.startedAt)) / 1000));
    const message = `backed up revision ${m.revision} (${m.size} bytes, sha256 ${m.sha256.slice(0, 16)}…) to ${m.key} in ${duration} s`;
    return {
      status: status('Succeeded', 'Completed', message, {
        attempts,
        objectKey: m.key,
        revision: m.revision,
        sizeBytes: m.size,
        sha256: m.sha256,
        member: m.member,
        startedAt: m.startedAt,
        completedAt: m.finishedAt,
        durationSeconds: duration,
      }),
      events: [{ type: 'Normal', reason: 'BackupSucceeded', message }],
      finished: 'Succeeded',
    };
  }
  const last = failedPods[failedPods.length - 1];
  const failure = last ? failureOf(terminated(last)?.message) : undefined;
  const jobFailed = o.job.status?.conditions?.some((c) => c.type === 'Failed' && c.status === 'True') === true;
  if (jobFailed) {
    const why = o.job.status?.conditions?.find((c) => c.type === 'Failed')?.reason;
    const message = failure
      ? `${failure.message} (after ${failedPods.length} attempt${failedPods.length === 1 ? '' : 's'})`
      : `Job ${jobName(sb)} failed (${why ?? 'no reason given'})`;
    return {
      status: status('Failed', failure?.reason ?? (why || 'JobFailed'), message, { attempts }),
      events: [{ type: 'Warning', reason: 'BackupFailed', message }],
      finished: 'Failed',
    };
  }
  if (failure && failedPods.length < backupAttempts) {
    const message = `attempt ${failedPods.length} of ${backupAttempts} failed: ${failure.message}; the Job retries with back-off`;
    const events: StepEvent[] = prev.message === message ? [] : [{ type: 'Warning', reason: 'BackupRetrying', message }];
    return { status: status('Running', 'Retrying', message, { attempts: failedPods.length + 1 }), events, requeueMs: 5_000 };
  }
  return {
    status: status('Running', prev.reason ?? 'Started', prev.message ?? `Job ${jobName(sb)} runs`, { attempts }),
    events: [],
    requeueMs: 5_000,
  };
}

/** The pods of a Job, oldest first. */
const byAge = (pods: V1Pod[]) =>
  [...pods].sort((a, b) => String(a.metadata?.creationTimestamp ?? '').localeCompare(String(b.metadata?.creationTimestamp ?? '')));

/**
 * A Succeeded backup with spec.verify: run the verification Job once (`ballast backup verify`)
 * and record what it found in status.verification and the Verified condition.
 */
export function planVerification(sb: StoreBackup, prev: StoreBackupStatus, o: BackupObserved): BackupStep {
  const v = prev.verification;
  if (!sb.spec.verify || (v && v.phase !== 'Running')) return { status: prev, events: [] };
  const now = new Date(o.now).toISOString();
  const gen = sb.metadata.generation ?? 0;
  const record = (
    verification: NonNullable<StoreBackupStatus['verification']>,
    status: 'True' | 'False' | 'Unknown',
  ): StoreBackupStatus => ({
    ...prev,
    verification,
    conditions: [
      ...(prev.conditions ?? []).filter((c) => c.type !== 'Verified'),
      condition(
        prev.conditions,
        { type: 'Verified', status, reason: verification.reason ?? verification.phase, message: verification.message ?? '' },
        gen,
        now,
      ) as unknown as V1Condition,
    ],
  });
  const job = verifyJobName(sb);
  if (!o.verifyJob) {
    if (v?.phase === 'Running') return { status: prev, events: [], requeueMs: 5_000 }; // made; the cache is behind
    if (!o.cluster) {
      const message = `StoreCluster ${sb.spec.cluster} is gone: its image runs the verification`;
      return {
        status: record({ phase: 'NotVerifiable', reason: 'ClusterNotFound', message, completedAt: now }, 'Unknown'),
        events: [{ type: 'Warning', reason: 'BackupNotVerifiable', message }],
        verified: 'not_verifiable',
      };
    }
    const message = `Job ${job} restores the backup into a throw-away member and compares its HashKV at revision ${prev.revision ?? '?'} with the source's`;
    return {
      status: record({ phase: 'Running', job, reason: 'Started', message }, 'Unknown'),
      createJob: verifyJob(sb, o.cluster),
      events: [{ type: 'Normal', reason: 'VerificationStarted', message }],
      requeueMs: 5_000,
    };
  }
  const pods = byAge(o.verifyPods ?? []);
  const done = pods.find((p) => p.status?.phase === 'Succeeded');
  if (done) {
    let r: { got?: number; message?: string; verified?: boolean };
    try {
      r = JSON.parse(terminated(done)?.message ?? '') as typeof r;
    } catch {
      r = {};
    }
    if (r.verified !== true) {
      const message = `Job ${job} succeeded but its pod's termination message is not a verification result`;
      return {
        status: record({ phase: 'NotVerifiable', job, reason: 'ResultUnreadable', message, completedAt: now }, 'Unknown'),
        events: [{ type: 'Warning', reason: 'BackupNotVerifiable', message }],
        verified: 'not_verifiable',
      };
    }
    const message = r.message ?? `restored and hashed as the source (HashKV ${r.got})`;
    return {
      status: record({ phase: 'Verified', job, hashKV: r.got, reason: 'Verified', message, completedAt: now }, 'True'),
      events: [{ type: 'Normal', reason: 'BackupVerified', message }],
      verified: 'verified',
    };
  }
  const failedPods = pods.filter((p) => p.status?.phase === 'Failed');
  const jobFailed = o.verifyJob.status?.conditions?.some((c) => c.type === 'Failed' && c.status === 'True') === true;
  if (!jobFailed) return { status: prev, events: [], requeueMs: 5_000 };
  const last = failedPods[failedPods.length - 1];
  const failure = last
    ? failureOf(terminated(last)?.message)
    : {
        reason: 'JobFailed',
        message: `Job ${job} failed (${o.verifyJob.status?.conditions?.find((c) => c.type === 'Failed')?.reason ?? 'no reason given'})`,
      };
  const message = failure.message.replace(/^ballast backup verify: /, '');
  if (failure.reason === 'BackupNotVerifiable') {
    return {
      status: record({ phase: 'NotVerifiable', job, reason: failure.reason, message, completedAt: now }, 'Unknown'),
      events: [{ type: 'Warning', reason: 'BackupNotVerifiable', message }],
      verified: 'not_verifiable',
    };
  }
  return {
    status: record({ phase: 'Failed', job, reason: failure.reason, message, completedAt: now }, 'False'),
    events: [{ type: 'Warning', reason: 'BackupVerificationFailed', message }],
    verified: 'failed',
  };
}
