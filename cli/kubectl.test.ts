import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { StoreBackup } from '../operator/api/storebackup.ts';
import type { StoreBackupSchedule } from '../operator/api/storebackupschedule.ts';
import type { RecoveryStatus, StoreCluster } from '../operator/api/storecluster.ts';
import {
  approvalRefusal,
  backupOf,
  baseBackup,
  kubectlCommand,
  renderBackupLine,
  renderBackups,
  renderList,
  renderOne,
  renderPlan,
  restoredCluster,
  storageFor,
  table,
} from './kubectl.ts';

const plan: RecoveryStatus = {
  planId: 'a1b2c3d4e5',
  state: 'AwaitingApproval',
  survivor: 'orders-0',
  survivorId: '8e9e05c52164694d',
  term: 3,
  index: 120,
  recreate: ['orders-1', 'orders-2'],
  loses: 'orders-1, orders-2 did not answer',
};
const sc = (status: StoreCluster['status']): StoreCluster & { metadata: { creationTimestamp: string } } => ({
  apiVersion: 'ballast.dev/v1alpha1',
  kind: 'StoreCluster',
  metadata: { name: 'orders', namespace: 'shop', creationTimestamp: '2026-12-02T10:00:00Z' },
  spec: { replicas: 3, version: '0.2.0' } as StoreCluster['spec'],
  ...(status ? { status } : {}),
});

describe('kubectl ballast', () => {
  it('tables are padded as kubectl pads them', () => {
    assert.equal(
      table([
        ['NAME', 'PHASE'],
        ['orders', 'Ready'],
        ['a', 'QuorumLost'],
      ]),
      'NAME     PHASE\norders   Ready\na        QuorumLost\n',
    );
  });

  it('status lists StoreClusters with phase, readiness, leader, version, recovery and age', () => {
    const out = renderList(
      [sc({ phase: 'QuorumLost', readyReplicas: 1, leader: 'orders-0', currentVersion: '0.2.0', recovery: plan })],
      true,
      Date.parse('2026-12-02T12:30:00Z'),
    );
    assert.equal(
      out,
      'NAMESPACE   NAME     PHASE        READY   LEADER     VERSION   RECOVERY                      AGE\nshop        orders   QuorumLost   1/3     orders-0   0.2.0     a1b2c3d4e5 AwaitingApproval   2h\n',
    );
  });

  it('status NAME shows members, conditions and the plan, with the command that approves it', () => {
    const out = renderOne(
      sc({
        phase: 'QuorumLost',
        readyReplicas: 1,
        members: [
          { name: 'orders-0', id: '8e9e05c52164694d', role: 'unknown', ready: false, appliedIndex: 120, version: '0.2.0', restarts: 0 },
        ],
        conditions: [{ type: 'Available', status: 'False', reason: 'QuorumLost', message: 'no leader', lastTransitionTime: new Date(0) }],
        recovery: plan,
      }),
    );
    assert.match(out, /^StoreCluster shop\/orders: QuorumLost, 1\/3 ready, leader <none>, version 0\.2\.0\n/);
    assert.match(out, /MEMBER {5}ID {17}ROLE {6}READY {3}APPLIED/);
    assert.match(out, /Available {3}False {4}QuorumLost {3}no leader/);
    assert.match(out, /Recovery plan a1b2c3d4e5: AwaitingApproval\n {2}survivor: {10}orders-0 \(id 8e9e05c52164694d, term 3, index 120\)/);
    assert.match(out, /approve it: kubectl ballast recover orders -n shop --approve a1b2c3d4e5\n$/);
    assert.doesNotMatch(renderPlan(sc({}), { ...plan, state: 'Completed', completedAt: '2026-12-02T11:00:00Z' }), /approve it/);
  });

  it('approving refuses anything but the plan status shows now, awaiting approval', () => {
    assert.equal(approvalRefusal(sc({ recovery: plan }), 'a1b2c3d4e5'), undefined);
    assert.match(
      approvalRefusal(sc({ recovery: plan }), 'ffffffffff') ?? '',
      /ffffffffff is not the plan orders's status shows now \(a1b2c3d4e5, AwaitingApproval\); read it again/,
    );
    assert.match(approvalRefusal(sc({ phase: 'Ready' }), 'a1b2c3d4e5') ?? '', /orders has no recovery plan \(phase Ready\)/);
    assert.match(approvalRefusal(sc({ recovery: { ...plan, state: 'Rejoining' } }), 'a1b2c3d4e5') ?? '', /approved already \(Rejoining\)/);
  });

  const storage = (bucket: string) => ({ endpoint: 'http://s3:8333', bucket, region: 'us-east-1', credentialsSecret: 's3' });
  const bk = (name: string, created: string, status?: StoreBackup['status'], labels?: Record<string, string>) =>
    ({
      apiVersion: 'ballast.dev/v1alpha1',
      kind: 'StoreBackup' as const,
      metadata: { name, namespace: 'shop', creationTimestamp: created, ...(labels ? { labels } : {}) },
      spec: { cluster: 'orders', storage: storage(`from-${name}`) },
      ...(status ? { status } : {}),
    }) as StoreBackup & { metadata: { creationTimestamp: string } };
  const sched = (name: string, cluster: string): StoreBackupSchedule => ({
    apiVersion: 'ballast.dev/v1alpha1',
    kind: 'StoreBackupSchedule',
    metadata: { name, namespace: 'shop' },
    spec: { cluster, schedule: '@daily', storage: storage(`sched-${name}`) },
  });

  it("backups lists StoreBackups newest first, with their schedule and a failure's reason", () => {
    const out = renderBackups(
      [
        bk('orders-a', '2026-12-02T10:00:00Z', { phase: 'Succeeded', revision: 42, sizeBytes: 1024 }),
        bk(
          'orders-b',
          '2026-12-02T11:00:00Z',
          { phase: 'Failed', message: 'refused the credentials' },
          { 'ballast.dev/storebackupschedule': 'nightly' },
        ),
      ],
      Date.parse('2026-12-02T12:00:00Z'),
    );
    assert.equal(
      out,
      'NAME       CLUSTER   PHASE       REVISION   SIZE   VERIFIED   SCHEDULE   AGE   MESSAGE\norders-b   orders    Failed                        <none>     nightly    60m   refused the credentials\norders-a   orders    Succeeded   42         1024   <none>     <none>     2h\n',
    );
  });

  it("status NAME ends with the cluster's newest good backup, or how to make one", () => {
    const verified = bk('orders-a', '2026-12-02T10:00:00Z', {
      phase: 'Succeeded',
      revision: 42,
      completedAt: '2026-12-02T10:00:20Z',
      verification: { phase: 'Verified' },
    });
    const unverified = bk('orders-b', '2026-12-02T11:00:00Z', {
      phase: 'Succeeded',
      revision: 50,
      completedAt: '2026-12-02T11:00:20Z',
      verification: { phase: 'Failed' },
    });
    assert.equal(
      renderBackupLine(sc(undefined), [verified, unverified]),
      'Backups: 2; newest good orders-a (revision 42, 2026-12-02T10:00:20Z, verified)\n',
    );
    assert.equal(renderBackupLine(sc(undefined), []), 'Backups: none; make one with kubectl ballast backup orders -n shop\n');
  });

  it("backup takes its storage from --storage-from, else the cluster's schedule, else its newest backup; or says how to give one", () => {
    const backups = [bk('orders-a', '2026-12-01T00:00:00Z'), bk('orders-b', '2026-12-02T00:00:00Z')];
    assert.equal(
      (storageFor('orders', { from: 'orders-a', schedules: [sched('nightly', 'orders')], backups }) as { bucket: string }).bucket,
      'from-orders-a',
    );
    assert.equal(
      (storageFor('orders', { schedules: [sched('other', 'carts'), sched('nightly', 'orders')], backups }) as { bucket: string }).bucket,
      'sched-nightly',
    );
    assert.equal((storageFor('orders', { schedules: [], backups }) as { bucket: string }).bucket, 'from-orders-b');
    assert.match(
      storageFor('orders', { schedules: [], backups: [] }) as string,
      /no StoreBackupSchedule or StoreBackup .*give --storage-from/,
    );
    assert.match(
      storageFor('orders', { from: 'nope', schedules: [], backups }) as string,
      /--storage-from nope: no StoreBackupSchedule or StoreBackup of that name/,
    );
    assert.deepEqual(backupOf(sc(undefined), storage('b'), 'orders-x').spec, { cluster: 'orders', storage: storage('b') });
  });

  it('restore makes a new StoreCluster shaped like the backed-up one, from a Succeeded backup only', () => {
    const source = {
      ...sc(undefined),
      spec: {
        replicas: 5,
        version: '0.2.0',
        storage: { size: '4Gi', retainOnScaleDown: false },
        compaction: { mode: 'periodic', retention: '1h' },
        timing: { heartbeatMs: 100, electionMs: 1000 },
        tls: { clientSecretName: 'orders-tls' },
      },
    } as StoreCluster;
    const made = restoredCluster(
      'orders-restored',
      bk('orders-a', '2026-12-02T10:00:00Z', { phase: 'Succeeded' }),
      source,
      undefined,
    ) as StoreCluster;
    assert.equal(made.metadata.name, 'orders-restored');
    assert.deepEqual(made.spec.restore, { backup: 'orders-a' });
    assert.equal(made.spec.replicas, 5);
    assert.equal(made.spec.storage.size, '4Gi');
    assert.equal(made.spec.tls, undefined, "the old cluster's certificates name the old cluster");
    assert.equal(
      (restoredCluster('r', bk('orders-a', '2026-12-02T10:00:00Z', { phase: 'Succeeded' }), undefined, 1) as StoreCluster).spec.replicas,
      1,
    );
    // A point in time after the backup: the target goes into spec.restore as given.
    assert.deepEqual(
      (
        restoredCluster('r', bk('orders-a', '2026-12-02T10:00:00Z', { phase: 'Succeeded' }), source, undefined, {
          toTime: '2026-12-02T10:30:00Z',
        }) as StoreCluster
      ).spec.restore,
      { backup: 'orders-a', toTime: '2026-12-02T10:30:00Z' },
    );
    assert.match(
      restoredCluster('r', bk('orders-b', '2026-12-02T10:00:00Z', { phase: 'Failed', message: 'no bucket' }), source, undefined) as string,
      /is Failed, not Succeeded: only a completed backup restores \(no bucket\)/,
    );
  });

  it('restore --of CLUSTER starts from its newest good backup, or the newest one before the target; says why when there is none', () => {
    const b = (
      name: string,
      cluster: string,
      revision: number,
      completedAt: string,
      extra: Partial<NonNullable<StoreBackup['status']>> = {},
    ) =>
      ({
        ...bk(name, completedAt, { phase: 'Succeeded', revision, completedAt, ...extra }),
        spec: { cluster, storage: { endpoint: 'http://s3', bucket: 'b', region: 'us-east-1', credentialsSecret: 's' } },
      }) as StoreBackup;
    const all = [
      b('o-1', 'orders', 100, '2026-12-02T10:00:00Z'),
      b('o-2', 'orders', 200, '2026-12-02T11:00:00Z'),
      b('o-3', 'orders', 300, '2026-12-02T12:00:00Z', { verification: { phase: 'Failed' } } as never),
      b('c-1', 'carts', 900, '2026-12-02T12:30:00Z'),
    ];
    assert.equal((baseBackup(all, 'orders') as StoreBackup).metadata.name, 'o-2', 'the newest good one (o-3 failed verification)');
    assert.equal((baseBackup(all, 'orders', { toRevision: 150 }) as StoreBackup).metadata.name, 'o-1');
    assert.equal((baseBackup(all, 'orders', { toTime: '2026-12-02T10:59:00Z' }) as StoreBackup).metadata.name, 'o-1');
    assert.match(
      baseBackup(all, 'orders', { toRevision: 50 }) as string,
      /no good backup of orders is before revision 50; the oldest is o-1 \(revision 100/,
    );
    assert.match(baseBackup(all, 'ghost') as string, /StoreCluster ghost has no good backup/);
  });

  it('bad usage exits 2 with a message naming the problem', async () => {
    const run = async (...args: string[]) => {
      let err = '';
      const code = await kubectlCommand.run(args, {
        out: () => undefined,
        err: (t) => {
          err += t;
        },
        env: {},
      });
      return { code, err };
    };
    assert.deepEqual(await run('status', '-o', 'wide').then((r) => [r.code, /allowed formats are json and yaml/.test(r.err)]), [2, true]);
    assert.deepEqual(await run('frobnicate').then((r) => [r.code, /unknown command "frobnicate"/.test(r.err)]), [2, true]);
    assert.deepEqual(await run('status', '--bogus').then((r) => [r.code, /Unknown option '--bogus'/.test(r.err)]), [2, true]);
    assert.deepEqual(
      await run('restore', 'r', '--from', 'b', '--to-time', 'yesterday').then((r) => [
        r.code,
        /--to-time yesterday: give an RFC 3339 time/.test(r.err),
      ]),
      [2, true],
    );
    assert.deepEqual(
      await run('restore', 'r', '--from', 'b', '--to-revision', '0').then((r) => [r.code, /--to-revision 0: give a revision/.test(r.err)]),
      [2, true],
    );
  });
});
