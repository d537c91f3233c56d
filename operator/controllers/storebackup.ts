/**
 * The StoreBackup reconciler: observe (the StoreBackup, its StoreCluster, its Job and the Job's
 * pods, from the informers' caches), decide (operator/plan/storebackup.ts), act (create the Job,
 * record Events, write status, count the outcome).
 */
import type { BatchV1Api, CustomObjectsApi, V1Job, V1Pod } from '@kubernetes/client-node';
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { Clock } from '../../lib/clock.ts';
import { statusSignature } from '../../lib/kube/conditions.ts';
import type { SharedInformer } from '../../lib/kube/informer.ts';
import type { Metrics } from '../../lib/metrics.ts';
import type { Counter, Gauge, Histogram } from 'prom-client';
import type { StoreBackup } from '../api/storebackup.ts';
import { group, version, type StoreCluster } from '../api/storecluster.ts';
import { planBackup } from '../plan/storebackup.ts';
import { backupComponent, backupLabel, jobName, verifyComponent, verifyJobName } from '../specs/storebackup.ts';
import { labels } from '../specs/storecluster.ts';

export interface StoreBackupMetrics {
  /** Backups by outcome, per cluster. */
  results: Counter<'namespace' | 'cluster' | 'result'>;
  /** When the cluster's last backup succeeded (seconds since the epoch). */
  lastSuccess: Gauge<'namespace' | 'cluster'>;
  duration: Histogram<'namespace' | 'cluster'>;
  /** Verifications by outcome (verified, failed, not_verifiable). */
  verifications: Counter<'namespace' | 'cluster' | 'result'>;
}

/** The StoreBackup controller's series, registered on the operator's registry. */
export function storeBackupMetrics(m: Metrics): StoreBackupMetrics {
  return {
    results: m.counter('ballast_operator_backups_total', 'StoreBackups that finished, by cluster and result (success, failure).', [
      'namespace',
      'cluster',
      'result',
    ]),
    lastSuccess: m.gauge(
      'ballast_operator_backup_last_success_timestamp_seconds',
      "When the cluster's last successful backup completed (seconds since the epoch).",
      ['namespace', 'cluster'],
    ),
    verifications: m.counter(
      'ballast_operator_backup_verifications_total',
      'Backups restored into a throw-away member to compare HashKV, by cluster and result (verified, failed, not_verifiable).',
      ['namespace', 'cluster', 'result'],
    ),
    duration: m.histogram(
      'ballast_operator_backup_duration_seconds',
      'How long a successful backup took, from the first byte streamed to its manifest.',
      ['namespace', 'cluster'],
      [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600],
    ),
  };
}

export interface StoreBackupControllerDeps {
  custom: CustomObjectsApi;
  batch: BatchV1Api;
  backups: SharedInformer<StoreBackup>;
  clusters: SharedInformer<StoreCluster>;
  jobs: SharedInformer<V1Job>;
  pods: SharedInformer<V1Pod>;
  clock: Clock;
  event(obj: StoreBackup, type: 'Normal' | 'Warning', reason: string, message: string): void;
  metrics: StoreBackupMetrics;
}

export class StoreBackupController {
  readonly #deps: StoreBackupControllerDeps;
  readonly #written = new Map<string, string>();

  constructor(d: StoreBackupControllerDeps) {
    this.#deps = d;
  }

  /** Returns when to look again (ms), or undefined for "when something changes". */
  async reconcile(key: string): Promise<number | undefined> {
    const sb = this.#deps.backups.get(key);
    if (!sb || (sb as { metadata: { deletionTimestamp?: unknown } }).metadata.deletionTimestamp) {
      this.#written.delete(key);
      return undefined;
    }
    const ns = sb.metadata.namespace;
    const job = this.#deps.jobs.get(`${ns}/${jobName(sb)}`);
    const mine = this.#deps.pods
      .list()
      .filter((p) => p.metadata?.namespace === ns && p.metadata.labels?.[backupLabel] === sb.metadata.name);
    const of = (component: string) => mine.filter((p) => (p.metadata?.labels?.[labels.component] ?? backupComponent) === component);
    const step = planBackup(sb, {
      cluster: this.#deps.clusters.get(`${ns}/${sb.spec.cluster}`),
      job,
      pods: of(backupComponent),
      verifyJob: this.#deps.jobs.get(`${ns}/${verifyJobName(sb)}`),
      verifyPods: of(verifyComponent),
      now: this.#deps.clock.wallNow(),
    });
    if (step.createJob) {
      await this.#deps.batch.createNamespacedJob({ namespace: ns, body: step.createJob }).catch((err: unknown) => {
        if ((err as { code?: number }).code !== 409) throw err; // made already (a cache behind): fine
      });
    }
    for (const e of step.events) this.#deps.event(sb, e.type, e.reason, e.message);
    if (step.verified) this.#deps.metrics.verifications.inc({ namespace: ns, cluster: sb.spec.cluster, result: step.verified });
    if (step.finished) {
      const labels = { namespace: ns, cluster: sb.spec.cluster };
      this.#deps.metrics.results.inc({ ...labels, result: step.finished === 'Succeeded' ? 'success' : 'failure' });
      if (step.finished === 'Succeeded') this.#deps.metrics.duration.observe(labels, step.status.durationSeconds ?? 0);
    }
    // The cluster's newest successful backup, from every StoreBackup of it (so the gauge is right
    // after the operator restarts, and when the newest one is deleted).
    const completed = [
      step.status,
      ...this.#deps.backups
        .list()
        .filter((b) => b.metadata.namespace === ns && b.spec.cluster === sb.spec.cluster && b.metadata.name !== sb.metadata.name)
        .map((b) => b.status ?? {}),
    ]
      .filter((st) => st.phase === 'Succeeded')
      .map((st) => Date.parse(st.completedAt ?? '') / 1000)
      .filter((t) => t > 0);
    if (completed.length > 0) this.#deps.metrics.lastSuccess.set({ namespace: ns, cluster: sb.spec.cluster }, Math.max(...completed));
    const sig = statusSignature(step.status);
    if (sig !== statusSignature(sb.status) && this.#written.get(key) !== sig) {
      await this.#deps.custom.patchNamespacedCustomObjectStatus(
        { group, version, namespace: ns, plural: 'storebackups', name: sb.metadata.name, body: { status: step.status } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
      this.#written.set(key, sig);
    }
    return step.requeueMs;
  }
}
