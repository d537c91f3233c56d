/**
 * The StoreBackupSchedule reconciler: observe (the schedule, the StoreBackups it made, its
 * StoreCluster, from the informers' caches), decide (operator/plan/storebackupschedule.ts), act
 * (create the due StoreBackup, delete those the retention lets go, run or remove the archiver of
 * pointInTime, record Events, write status, set the gauges the backup-age alert reads). It wakes
 * just after the next scheduled time, and every 10 s while the archiver is not running yet.
 */
import type { AppsV1Api, CustomObjectsApi, KubernetesObjectApi, V1Deployment } from '@kubernetes/client-node';
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { Gauge } from 'prom-client';
import type { Clock } from '../../lib/clock.ts';
import { statusSignature } from '../../lib/kube/conditions.ts';
import type { SharedInformer } from '../../lib/kube/informer.ts';
import type { Metrics } from '../../lib/metrics.ts';
import type { StoreBackup } from '../api/storebackup.ts';
import type { StoreBackupSchedule } from '../api/storebackupschedule.ts';
import { group, version, type StoreCluster } from '../api/storecluster.ts';
import { planSchedule } from '../plan/storebackupschedule.ts';
import { archiverName } from '../specs/storebackup.ts';
import { fieldManager } from '../specs/storecluster.ts';

export interface StoreBackupScheduleMetrics {
  /** When the schedule's newest successful backup completed (seconds since the epoch). */
  lastSuccess: Gauge<'namespace' | 'schedule' | 'cluster'>;
  /** Seconds between the schedule's runs (the alert allows two of them). */
  interval: Gauge<'namespace' | 'schedule' | 'cluster'>;
}

/** The StoreBackupSchedule controller's series, registered on the operator's registry. */
export function storeBackupScheduleMetrics(m: Metrics): StoreBackupScheduleMetrics {
  return {
    lastSuccess: m.gauge(
      'ballast_operator_backup_schedule_last_success_timestamp_seconds',
      "When the schedule's newest successful backup completed (seconds since the epoch); its creation time until one has.",
      ['namespace', 'schedule', 'cluster'],
    ),
    interval: m.gauge(
      'ballast_operator_backup_schedule_interval_seconds',
      "Seconds between the schedule's runs (absent while suspended).",
      ['namespace', 'schedule', 'cluster'],
    ),
  };
}

export interface StoreBackupScheduleControllerDeps {
  custom: CustomObjectsApi;
  /** The archiver's Deployment (pointInTime): read, applied (server-side), deleted. */
  apps: AppsV1Api;
  objects: KubernetesObjectApi;
  schedules: SharedInformer<StoreBackupSchedule>;
  backups: SharedInformer<StoreBackup>;
  clusters: SharedInformer<StoreCluster>;
  clock: Clock;
  event(obj: StoreBackupSchedule, type: 'Normal' | 'Warning', reason: string, message: string): void;
  metrics: StoreBackupScheduleMetrics;
}

export class StoreBackupScheduleController {
  readonly #deps: StoreBackupScheduleControllerDeps;
  readonly #written = new Map<string, string>();
  readonly #labels = new Map<string, { namespace: string; schedule: string; cluster: string }>();
  /** What was applied last per archiver, and when: unchanged ones are applied again after 10 min. */
  readonly #applied = new Map<string, { body: string; at: number }>();

  constructor(d: StoreBackupScheduleControllerDeps) {
    this.#deps = d;
  }

  /** Returns when to look again (ms), or undefined for "when something changes". */
  async reconcile(key: string): Promise<number | undefined> {
    const s = this.#deps.schedules.get(key);
    const old = this.#labels.get(key);
    if (!s || (s as { metadata: { deletionTimestamp?: unknown } }).metadata.deletionTimestamp) {
      this.#written.delete(key);
      if (old) {
        this.#deps.metrics.lastSuccess.remove(old);
        this.#deps.metrics.interval.remove(old);
        this.#labels.delete(key);
      }
      return undefined;
    }
    const ns = s.metadata.namespace;
    const backups = this.#deps.backups.list().filter((b) => b.metadata.namespace === ns);
    // A schedule that has not succeeded yet counts its age from its creation, so the alert fires
    // for one that never works, too.
    const cluster = this.#deps.clusters.get(`${ns}/${s.spec.cluster}`);
    const archiver = await this.#deps.apps.readNamespacedDeployment({ namespace: ns, name: archiverName(s) }).catch((err: unknown) => {
      if ((err as { code?: number }).code === 404) return undefined;
      throw err;
    });
    const step = planSchedule(s, { backups, clusterExists: Boolean(cluster), cluster, archiver, now: this.#deps.clock.wallNow() });
    if (step.applyArchiver) await this.#apply(step.applyArchiver);
    if (step.deleteArchiver) {
      await this.#deps.apps.deleteNamespacedDeployment({ namespace: ns, name: step.deleteArchiver }).catch((err: unknown) => {
        if ((err as { code?: number }).code !== 404) throw err;
      });
      this.#applied.delete(`${ns}/${step.deleteArchiver}`);
    }
    if (step.create) {
      await this.#deps.custom
        .createNamespacedCustomObject({ group, version, namespace: ns, plural: 'storebackups', body: step.create })
        .catch((err: unknown) => {
          if ((err as { code?: number }).code !== 409) throw err; // made already (a cache behind): fine
        });
    }
    for (const name of step.delete) {
      await this.#deps.custom
        .deleteNamespacedCustomObject({ group, version, namespace: ns, plural: 'storebackups', name })
        .catch((err: unknown) => {
          if ((err as { code?: number }).code !== 404) throw err;
        });
    }
    for (const e of step.events) this.#deps.event(s, e.type, e.reason, e.message);
    const labels = { namespace: ns, schedule: s.metadata.name, cluster: s.spec.cluster };
    if (old && old.cluster !== labels.cluster) {
      this.#deps.metrics.lastSuccess.remove(old);
      this.#deps.metrics.interval.remove(old);
    }
    this.#labels.set(key, labels);
    const createdAt = s.metadata.creationTimestamp
      ? new Date(s.metadata.creationTimestamp).getTime() / 1000
      : this.#deps.clock.wallNow() / 1000;
    this.#deps.metrics.lastSuccess.set(labels, step.lastSuccessSeconds ?? createdAt);
    if (step.intervalSeconds !== undefined && !s.spec.suspend) this.#deps.metrics.interval.set(labels, step.intervalSeconds);
    else this.#deps.metrics.interval.remove(labels);
    const sig = statusSignature(step.status);
    if (sig !== statusSignature(s.status) && this.#written.get(key) !== sig) {
      await this.#deps.custom.patchNamespacedCustomObjectStatus(
        { group, version, namespace: ns, plural: 'storebackupschedules', name: s.metadata.name, body: { status: step.status } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
      this.#written.set(key, sig);
    }
    return step.requeueMs;
  }

  async #apply(d: V1Deployment): Promise<void> {
    const key = `${d.metadata?.namespace}/${d.metadata?.name}`;
    const body = JSON.stringify(d);
    const last = this.#applied.get(key);
    const now = this.#deps.clock.now();
    if (last && last.body === body && now - last.at < 10 * 60_000) return;
    await this.#deps.objects.patch(d as never, undefined, undefined, fieldManager, true, PatchStrategy.ServerSideApply);
    this.#applied.set(key, { body, at: now });
  }
}
