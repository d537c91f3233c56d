import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { StoreBackup } from '../api/storebackup.ts';
import { scheduleLabel, type StoreBackupSchedule } from '../api/storebackupschedule.ts';
import type { StoreCluster } from '../api/storecluster.ts';
import { backupNamePattern, planSchedule, stamp } from './storebackupschedule.ts';

const at = (iso: string) => Date.parse(iso);
const schedule = (
  over: Partial<StoreBackupSchedule['spec']> = {},
  status?: StoreBackupSchedule['status'],
  name = 'nightly',
): StoreBackupSchedule => ({
  apiVersion: 'ballast.dev/v1alpha1',
  kind: 'StoreBackupSchedule',
  metadata: { name, namespace: 'shop', generation: 1, creationTimestamp: '2026-12-01T00:00:30Z' as unknown as Date },
  spec: {
    cluster: 'orders',
    schedule: '0 * * * *',
    storage: { endpoint: 'http://s3:8333', bucket: 'backups', region: 'us-east-1', credentialsSecret: 's3' },
    ...over,
  },
  ...(status ? { status } : {}),
});
const backup = (
  name: string,
  phase: 'Running' | 'Succeeded' | 'Failed' | undefined,
  completedAt?: string,
  createdAt = completedAt ?? '2026-12-01T00:00:00Z',
): StoreBackup => ({
  apiVersion: 'ballast.dev/v1alpha1',
  kind: 'StoreBackup',
  metadata: { name, namespace: 'shop', labels: { [scheduleLabel]: 'nightly' }, creationTimestamp: createdAt as unknown as Date },
  spec: { cluster: 'orders', storage: { endpoint: 'http://s3:8333', bucket: 'backups', region: 'us-east-1', credentialsSecret: 's3' } },
  ...(phase
    ? { status: { phase, ...(completedAt ? { completedAt } : {}), ...(phase === 'Failed' ? { message: 'refused the credentials' } : {}) } }
    : {}),
});

describe('StoreBackupSchedule plan', () => {
  it('makes nothing before the first scheduled time after it was created, and says when that is', () => {
    const s = planSchedule(schedule(), { backups: [], clusterExists: true, now: at('2026-12-01T00:40:00Z') });
    assert.equal(s.create, undefined);
    assert.equal(s.status.nextScheduleTime, '2026-12-01T01:00:00.000Z');
    assert.equal(s.intervalSeconds, 3600);
    // It wakes just after the next time rather than polling.
    assert.ok(s.requeueMs! > 19 * 60_000 && s.requeueMs! <= 20 * 60_000 + 1000, String(s.requeueMs));
  });

  it('at a scheduled time, creates one StoreBackup named for that time, carrying the storage and the retention', () => {
    const s = planSchedule(schedule({ retention: { keep: 3, maxAge: '7d' } }), {
      backups: [],
      clusterExists: true,
      now: at('2026-12-01T01:00:02Z'),
    });
    assert.equal(s.create?.metadata.name, 'nightly-20261201010000');
    assert.match(s.create!.metadata.name, backupNamePattern('nightly'));
    assert.equal(s.create?.metadata.labels?.[scheduleLabel], 'nightly');
    assert.deepEqual(s.create?.spec.retention, { schedule: 'nightly', keep: 3, maxAge: '7d' });
    assert.equal(s.status.lastScheduleTime, '2026-12-01T01:00:00.000Z');
    assert.deepEqual(
      s.events.map((e) => e.reason),
      ['BackupCreated'],
    );
    // The same time again (the status written): nothing new.
    const again = planSchedule(schedule({}, s.status), { backups: [s.create!], clusterExists: true, now: at('2026-12-01T01:00:09Z') });
    assert.equal(again.create, undefined);
  });

  it('after the operator was down for several times, catches up once, with the latest time missed', () => {
    const s = planSchedule(schedule({}, { lastScheduleTime: '2026-12-01T01:00:00.000Z' }), {
      backups: [],
      clusterExists: true,
      now: at('2026-12-01T05:30:00Z'),
    });
    assert.equal(s.create?.metadata.name, 'nightly-20261201050000');
  });

  it('skips a time while its previous backup still runs (and says so), and makes none while suspended', () => {
    const running = planSchedule(schedule({}, { lastScheduleTime: '2026-12-01T01:00:00.000Z' }), {
      backups: [backup('nightly-20261201010000', 'Running')],
      clusterExists: true,
      now: at('2026-12-01T02:00:01Z'),
    });
    assert.equal(running.create, undefined);
    assert.deepEqual(
      running.events.map((e) => e.reason),
      ['BackupSkipped'],
    );
    assert.equal(running.status.lastScheduleTime, '2026-12-01T02:00:00.000Z');
    const suspended = planSchedule(schedule({ suspend: true }), { backups: [], clusterExists: true, now: at('2026-12-01T02:00:01Z') });
    assert.equal(suspended.create, undefined);
    assert.equal(suspended.status.conditions?.find((c) => c.type === 'Ready')?.reason, 'Suspended');
  });

  it('an unreadable schedule or time zone: Ready False with what to write instead, one Warning', () => {
    for (const over of [{ schedule: 'every hour' }, { schedule: '0 * * * *', timeZone: 'Mars/Olympus' }]) {
      const s = planSchedule(schedule(over), { backups: [], clusterExists: true, now: at('2026-12-01T02:00:01Z') });
      const ready = s.status.conditions?.find((c) => c.type === 'Ready');
      assert.equal(ready?.reason, 'InvalidSchedule', JSON.stringify(over));
      assert.match(ready?.message ?? '', /cannot be read .*give five cron fields/);
      assert.equal(s.create, undefined);
      assert.deepEqual(
        s.events.map((e) => e.reason),
        ['InvalidSchedule'],
      );
    }
  });

  it('seconds-first six-field schedules and @daily are read', () => {
    const six = planSchedule(schedule({ schedule: '*/20 * * * * *' }), {
      backups: [],
      clusterExists: true,
      now: at('2026-12-01T00:01:00Z'),
    });
    assert.equal(six.create?.metadata.name, 'nightly-20261201000100');
    assert.equal(six.intervalSeconds, 20);
    const daily = planSchedule(schedule({ schedule: '@daily' }), { backups: [], clusterExists: true, now: at('2026-12-02T00:00:05Z') });
    assert.equal(daily.create?.metadata.name, 'nightly-20261202000000');
  });

  it('no cluster: no backup, Ready False naming it', () => {
    const s = planSchedule(schedule(), { backups: [], clusterExists: false, now: at('2026-12-01T01:00:02Z') });
    assert.equal(s.create, undefined);
    assert.equal(s.status.conditions?.find((c) => c.type === 'Ready')?.reason, 'ClusterNotFound');
  });

  it('retention: deletes the backups past the count or the age, never the newest good one nor one that runs; reports the last success', () => {
    const backups = [
      backup('nightly-20261201010000', 'Succeeded', '2026-12-01T01:00:20Z'),
      backup('nightly-20261201020000', 'Succeeded', '2026-12-01T02:00:20Z'),
      backup('nightly-20261201030000', 'Failed', undefined, '2026-12-01T03:00:00Z'),
      backup('nightly-20261201040000', 'Succeeded', '2026-12-01T04:00:20Z'),
      backup('nightly-20261201050000', 'Running', undefined, '2026-12-01T05:00:00Z'),
      {
        ...backup('other-20261201010000', 'Succeeded', '2026-12-01T01:00:20Z'),
        metadata: { name: 'other-20261201010000', namespace: 'shop', labels: { [scheduleLabel]: 'other' } },
      },
    ];
    const s = planSchedule(schedule({ retention: { keep: 2 } }, { lastScheduleTime: '2026-12-01T05:00:00.000Z' }), {
      backups,
      clusterExists: true,
      now: at('2026-12-01T05:10:00Z'),
    });
    assert.deepEqual(s.delete, ['nightly-20261201010000']);
    assert.equal(s.status.backups, 2);
    assert.equal(s.status.lastSuccessfulBackup, 'nightly-20261201040000');
    assert.equal(s.lastSuccessSeconds, at('2026-12-01T04:00:20Z') / 1000);
    assert.deepEqual(
      s.events.map((e) => e.reason),
      ['BackupsPruned'],
    );
    const old = planSchedule(schedule({ retention: { maxAge: '1h' } }, { lastScheduleTime: '2026-12-01T05:00:00.000Z' }), {
      backups,
      clusterExists: true,
      now: at('2026-12-01T09:00:00Z'),
    });
    assert.deepEqual(old.delete, ['nightly-20261201020000', 'nightly-20261201010000']);
  });

  it("the last finished backup's outcome is a condition (a failure says why)", () => {
    const s = planSchedule(schedule({}, { lastScheduleTime: '2026-12-01T03:00:00.000Z' }), {
      backups: [
        backup('nightly-20261201020000', 'Succeeded', '2026-12-01T02:00:20Z'),
        backup('nightly-20261201030000', 'Failed', undefined, '2026-12-01T03:00:00Z'),
      ],
      clusterExists: true,
      now: at('2026-12-01T03:10:00Z'),
    });
    const c = s.status.conditions?.find((x) => x.type === 'LastBackupSucceeded');
    assert.equal(c?.status, 'False');
    assert.match(c?.message ?? '', /nightly-20261201030000 failed: refused the credentials/);
  });

  it('with verify, its backups are verified; one whose restore did not hash as the source is not a good backup', () => {
    const made = planSchedule(schedule({ verify: true }), { backups: [], clusterExists: true, now: at('2026-12-01T01:00:02Z') });
    assert.equal(made.create?.spec.verify, true);
    const unverified = { ...backup('nightly-20261201030000', 'Succeeded', '2026-12-01T03:00:20Z') };
    unverified.status = { ...unverified.status, verification: { phase: 'Failed', message: 'hashes 5, the source 77' } };
    const s = planSchedule(schedule({ retention: { keep: 1 } }, { lastScheduleTime: '2026-12-01T03:00:00.000Z' }), {
      backups: [backup('nightly-20261201020000', 'Succeeded', '2026-12-01T02:00:20Z'), unverified],
      clusterExists: true,
      now: at('2026-12-01T03:10:00Z'),
    });
    assert.equal(s.status.lastSuccessfulBackup, 'nightly-20261201020000', 'the last good backup is the verified one');
    assert.deepEqual(s.delete, [], 'the newest good backup stays; the unverified one is kept for its reason');
    const c = s.status.conditions?.find((x) => x.type === 'LastBackupSucceeded');
    assert.deepEqual([c?.status, c?.reason], ['False', 'VerificationFailed']);
  });

  it("a name too long for its backups' names is refused", () => {
    const s = planSchedule(schedule({}, undefined, 'x'.repeat(49)), { backups: [], clusterExists: true, now: at('2026-12-01T01:00:02Z') });
    assert.equal(s.status.conditions?.find((c) => c.type === 'Ready')?.reason, 'NameTooLong');
    assert.equal(s.create, undefined);
  });

  it('stamps sort as times do', () => {
    assert.equal(stamp(new Date('2026-12-01T01:02:03.456Z')), '20261201010203');
  });

  it("pointInTime: the archiver Deployment runs beside the schedule (its storage, the cluster's client Service, no sidecar, owned by the schedule), Archiving says whether it runs; turned off, it is deleted", () => {
    const cluster = {
      apiVersion: 'ballast.dev/v1alpha1',
      kind: 'StoreCluster',
      metadata: { name: 'orders', namespace: 'shop' },
      spec: { replicas: 3, version: '0.3.0' },
    } as unknown as StoreCluster;
    const on = schedule({ pointInTime: { enabled: true, segmentSeconds: 2 } });
    on.metadata.uid = 'u-1';
    const starting = planSchedule(on, { backups: [], clusterExists: true, cluster, now: at('2026-12-01T00:40:00Z') });
    const d = starting.applyArchiver!;
    assert.equal(d.metadata?.name, 'nightly-archiver');
    assert.deepEqual(
      d.metadata?.ownerReferences?.map((o) => [o.kind, o.name, o.uid, o.controller]),
      [['StoreBackupSchedule', 'nightly', 'u-1', true]],
    );
    assert.equal(d.spec?.replicas, 1);
    assert.equal(d.spec?.strategy?.type, 'Recreate');
    assert.equal(d.spec?.template.metadata?.labels?.['ballast.dev/inject'], 'false');
    const args = d.spec?.template.spec?.containers[0]?.args ?? [];
    assert.deepEqual(args.slice(0, 3), ['backup', 'archive', '--endpoints=orders-client.shop.svc.cluster.local:2379']);
    assert.ok(
      args.includes('--s3-prefix=shop/orders/') && args.includes('--segment-seconds=2') && args.includes('--s3-bucket=backups'),
      args.join(' '),
    );
    assert.deepEqual(starting.status.archiver, { name: 'nightly-archiver', ready: false });
    assert.equal(starting.status.conditions?.find((c) => c.type === 'Archiving')?.reason, 'ArchiverStarting');
    assert.ok(starting.requeueMs! <= 10_000, 'looks again soon while the archiver starts');
    const running = planSchedule(on, {
      backups: [],
      clusterExists: true,
      cluster,
      archiver: { ...d, status: { availableReplicas: 1 } },
      now: at('2026-12-01T00:40:10Z'),
    });
    assert.equal(running.status.conditions?.find((c) => c.type === 'Archiving')?.status, 'True');
    assert.ok(running.requeueMs! > 10_000);
    const off = planSchedule(schedule({}, running.status), {
      backups: [],
      clusterExists: true,
      cluster,
      archiver: d,
      now: at('2026-12-01T00:41:00Z'),
    });
    assert.equal(off.deleteArchiver, 'nightly-archiver');
    assert.equal(off.applyArchiver, undefined);
    assert.equal(off.status.archiver, undefined);
    const gone = planSchedule(on, { backups: [], clusterExists: false, archiver: d, now: at('2026-12-01T00:41:00Z') });
    assert.equal(gone.deleteArchiver, 'nightly-archiver');
    assert.equal(gone.status.conditions?.find((c) => c.type === 'Archiving')?.reason, 'ClusterNotFound');
  });
});
