/**
 * The StoreBackup reconciler's decisions, pure: from the StoreBackup, its StoreCluster, its Job
 * and the Job's pods, the status to write, the Job to create (at most once) and the Events. A
 * backup in a final phase (Succeeded, Failed) is never looked at again: a new backup is a new
 * StoreBackup.
 */
import type { V1Condition, V1Job, V1Pod } from '@kubernetes/client-node';
import { condition } from '../../lib/kube/conditions.ts';
import type { StoreBackup, StoreBackupStatus } from '../api/storebackup.ts';
import type { StoreCluster } from '../api/storecluster.ts';
import { backupAttempts, backupJob, jobName } from '../specs/storebackup.ts';
import type { StepEvent } from './types.ts';

export interface BackupStep {
  status: StoreBackupStatus;
  /** Create this Job (it does not exist yet). */
  createJob?: V1Job;
  events: StepEvent[];
  requeueMs?: number;
  /** The phase became final in this step (for the metrics). */
  finished?: 'Succeeded' | 'Failed';
}

interface Manifest { key: string; revision: number; size: number; sha256: string; member: string; startedAt: string; finishedAt: string }

/** What a pod's store container said when it stopped (the manifest, or the log's last lines). */
const terminated = (p: V1Pod) => p.status?.containerStatuses?.[0]?.state?.terminated;

/** The line that names the failure (`ballast backup save: CODE: message`), or the last one. */
export function failureOf(message: string | undefined): { reason: string; message: string } {
  const lines = (message ?? '').split('\n').map((l) => l.trim()).filter(Boolean);
  const line = [...lines].reverse().find((l) => /[A-Z]+_ERR_[A-Z0-9_]+: /.test(l)) ?? lines[lines.length - 1] ?? 'the backup Job\'s pod failed without a message';
  const code = /([A-Z]+_ERR_[A-Z0-9_]+): /.exec(line)?.[1];
  // STORE_ERR_BACKUP_STORAGE_CREDENTIALS → BackupStorageCredentials (a condition reason is CamelCase).
  const reason = code ? code.replace(/^[A-Z]+_ERR_/, '').toLowerCase().replace(/(^|_)([a-z0-9])/g, (_m, _s: string, c: string) => c.toUpperCase()) : 'JobFailed';
  return { reason, message: line.replace(/^ballast backup save: /, '') };
}

export function planBackup(sb: StoreBackup, o: { cluster: StoreCluster | undefined; job: V1Job | undefined; pods: V1Pod[]; now: number }): BackupStep {
  const prev = sb.status ?? {};
  if (prev.phase === 'Succeeded' || prev.phase === 'Failed') return { status: prev, events: [] };
  const now = new Date(o.now).toISOString();
  const gen = sb.metadata.generation ?? 0;
  const conds = (phase: StoreBackupStatus['phase'], reason: string, message: string): V1Condition[] => [
    condition(prev.conditions, { type: 'Complete', status: phase === 'Succeeded' ? 'True' : 'False', reason, message }, gen, now),
    condition(prev.conditions, { type: 'Failed', status: phase === 'Failed' ? 'True' : 'False', reason, message }, gen, now),
  ] as unknown as V1Condition[];
  const status = (phase: NonNullable<StoreBackupStatus['phase']>, reason: string, message: string, more: Partial<StoreBackupStatus> = {}): StoreBackupStatus => ({
    ...prev, observedGeneration: gen, phase, reason, message, ...more, conditions: conds(phase, reason, message),
  });
  const once = (reason: string, e: StepEvent): StepEvent[] => (prev.reason === reason ? [] : [e]);

  if (!o.job) {
    const sc = o.cluster;
    if (!sc) {
      const message = `StoreCluster ${sb.spec.cluster} does not exist in namespace ${sb.metadata.namespace}; create it, or fix spec.cluster`;
      return { status: status('Pending', 'ClusterNotFound', message), events: once('ClusterNotFound', { type: 'Warning', reason: 'ClusterNotFound', message }), requeueMs: 15_000 };
    }
    if (!sc.status?.leader || sc.status.phase === 'QuorumLost' || sc.status.phase === 'Recovering') {
      const message = `waiting for StoreCluster ${sc.metadata.name} to have a leader (phase ${sc.status?.phase ?? 'unknown'})`;
      return { status: status('Pending', 'WaitingForCluster', message), events: [], requeueMs: 10_000 };
    }
    const job = backupJob(sb, sc);
    const message = `Job ${jobName(sb)} streams a snapshot of ${sc.metadata.name} from a follower to ${sb.spec.storage.endpoint}, bucket ${sb.spec.storage.bucket}`;
    return { status: status('Running', 'Started', message, { job: jobName(sb), attempts: 1, startedAt: now }), createJob: job, events: [{ type: 'Normal', reason: 'BackupStarted', message }] };
  }

  const pods = [...o.pods].sort((a, b) => String(a.metadata?.creationTimestamp ?? '').localeCompare(String(b.metadata?.creationTimestamp ?? '')));
  const failedPods = pods.filter((p) => p.status?.phase === 'Failed');
  const attempts = Math.max(prev.attempts ?? 1, pods.length, (o.job.status?.failed ?? 0) + (o.job.status?.active ?? 0) + (o.job.status?.succeeded ?? 0));
  const done = pods.find((p) => p.status?.phase === 'Succeeded');
  if (done || (o.job.status?.succeeded ?? 0) > 0) {
    let m: Manifest;
    try {
      m = JSON.parse(terminated(done ?? ({} as V1Pod))?.message ?? '') as Manifest;
    } catch {
      const message = `Job ${jobName(sb)} succeeded but its pod's termination message is not a backup manifest; the backup's object may exist without being recorded here`;
      return { status: status('Failed', 'ResultUnreadable', message, { attempts }), events: [{ type: 'Warning', reason: 'BackupFailed', message }], finished: 'Failed' };
    }
    const duration = Math.max(0, Math.round((Date.parse(m.finishedAt) - Date.parse(m.startedAt)) / 1000));
    const message = `backed up revision ${m.revision} (${m.size} bytes, sha256 ${m.sha256.slice(0, 16)}…) to ${m.key} in ${duration} s`;
    return {
      status: status('Succeeded', 'Completed', message, { attempts, objectKey: m.key, revision: m.revision, sizeBytes: m.size, sha256: m.sha256, member: m.member, startedAt: m.startedAt, completedAt: m.finishedAt, durationSeconds: duration }),
      events: [{ type: 'Normal', reason: 'BackupSucceeded', message }], finished: 'Succeeded',
    };
  }
  const last = failedPods[failedPods.length - 1];
  const failure = last ? failureOf(terminated(last)?.message) : undefined;
  const jobFailed = o.job.status?.conditions?.some((c) => c.type === 'Failed' && c.status === 'True') === true;
  if (jobFailed) {
    const why = o.job.status?.conditions?.find((c) => c.type === 'Failed')?.reason;
    const message = failure ? `${failure.message} (after ${failedPods.length} attempt${failedPods.length === 1 ? '' : 's'})` : `Job ${jobName(sb)} failed (${why ?? 'no reason given'})`;
    return { status: status('Failed', failure?.reason ?? (why || 'JobFailed'), message, { attempts }), events: [{ type: 'Warning', reason: 'BackupFailed', message }], finished: 'Failed' };
  }
  if (failure && failedPods.length < backupAttempts) {
    const message = `attempt ${failedPods.length} of ${backupAttempts} failed: ${failure.message}; the Job retries with back-off`;
    const events: StepEvent[] = prev.message === message ? [] : [{ type: 'Warning', reason: 'BackupRetrying', message }];
    return { status: status('Running', 'Retrying', message, { attempts: failedPods.length + 1 }), events, requeueMs: 5_000 };
  }
  return { status: status('Running', prev.reason ?? 'Started', prev.message ?? `Job ${jobName(sb)} runs`, { attempts }), events: [], requeueMs: 5_000 };
}
