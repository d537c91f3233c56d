import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { V1Job, V1Pod } from '@kubernetes/client-node';
import type { StoreBackup } from '../api/storebackup.ts';
import type { StoreCluster } from '../api/storecluster.ts';
import { statefulSet } from '../specs/storecluster.ts';
import { plan } from './storecluster.ts';
import { failureOf, planBackup } from './storebackup.ts';

const now = Date.UTC(2026, 11, 2, 12);
const sb = (status?: StoreBackup['status']): StoreBackup => ({
  apiVersion: 'ballast.dev/v1alpha1',
  kind: 'StoreBackup',
  metadata: { name: 'nightly-1', namespace: 'shop', uid: 'u9', generation: 1 },
  spec: { cluster: 'orders', storage: { endpoint: 'http://s3:8333', bucket: 'backups', region: 'us-east-1', credentialsSecret: 's3' } },
  ...(status ? { status } : {}),
});
const sc = (over: Partial<NonNullable<StoreCluster['status']>> = {}): StoreCluster => ({
  apiVersion: 'ballast.dev/v1alpha1',
  kind: 'StoreCluster',
  metadata: { name: 'orders', namespace: 'shop' },
  spec: { replicas: 3, version: '0.2.0', auth: { enabled: true } } as StoreCluster['spec'],
  status: { phase: 'Ready', leader: 'orders-0', ...over },
});
const job = (st: V1Job['status'] = { active: 1 }): V1Job => ({ metadata: { name: 'nightly-1-backup' }, status: st });
const pod = (phase: string, message: string, at: string): V1Pod => ({
  metadata: { creationTimestamp: at as unknown as Date },
  status: {
    phase,
    containerStatuses: [
      {
        name: 'backup',
        image: '',
        imageID: '',
        ready: false,
        restartCount: 0,
        state: { terminated: { exitCode: phase === 'Succeeded' ? 0 : 1, message } },
      },
    ],
  },
});
const manifest = JSON.stringify({
  name: 'nightly-1',
  key: 'shop/orders/nightly-1.snap',
  revision: 4242,
  size: 1048576,
  sha256: 'ab'.repeat(32),
  member: '8e9e05c52164694d',
  startedAt: '2026-12-02T11:59:00.000Z',
  finishedAt: '2026-12-02T11:59:07.000Z',
});
const credentialsFailure =
  'some log line\nballast backup save: STORE_ERR_BACKUP_STORAGE_CREDENTIALS: could not reach the bucket: the object store (http://s3:8333, bucket backups) refused the credentials (InvalidAccessKeyId); check the access key id and secret key in the credentials Secret\n';

describe('StoreBackup plan', () => {
  it('waits for its cluster (missing: says to create it or fix spec.cluster; no leader: waits)', () => {
    const missing = planBackup(sb(), { cluster: undefined, job: undefined, pods: [], now });
    assert.equal(missing.status.phase, 'Pending');
    assert.match(missing.status.message ?? '', /StoreCluster orders does not exist in namespace shop; create it, or fix spec\.cluster/);
    assert.equal(missing.createJob, undefined);
    const lost = planBackup(sb(), { cluster: sc({ phase: 'QuorumLost' }), job: undefined, pods: [], now });
    assert.deepEqual([lost.status.phase, lost.status.reason, lost.createJob], ['Pending', 'WaitingForCluster', undefined]);
  });

  it("creates its Job once: every member's address, the credentials from the Secret, the root user when auth is on, no member label on its pods", () => {
    const s = planBackup(sb(), { cluster: sc(), job: undefined, pods: [], now });
    assert.equal(s.status.phase, 'Running');
    assert.deepEqual(
      s.events.map((e) => e.reason),
      ['BackupStarted'],
    );
    const c = s.createJob!.spec!.template.spec!.containers[0]!;
    assert.ok(
      c.args!.includes(
        '--endpoints=orders-0.orders-peer.shop.svc.cluster.local:2379,orders-1.orders-peer.shop.svc.cluster.local:2379,orders-2.orders-peer.shop.svc.cluster.local:2379',
      ),
    );
    assert.ok(c.args!.includes('--s3-prefix=shop/orders/'));
    assert.deepEqual(
      c.env!.map((e) => `${e.name}=${e.valueFrom?.secretKeyRef?.name}/${e.valueFrom?.secretKeyRef?.key}`),
      [
        'AWS_ACCESS_KEY_ID=s3/accessKeyId',
        'AWS_SECRET_ACCESS_KEY=s3/secretAccessKey',
        'BALLAST_BACKUP_USER=orders-root/username',
        'BALLAST_BACKUP_PASSWORD=orders-root/password',
      ],
    );
    assert.equal(s.createJob!.spec!.template.metadata!.labels!['app.kubernetes.io/instance'], undefined);
    assert.equal(
      s.createJob!.spec!.template.metadata!.labels!['ballast.dev/inject'],
      'false',
      'no sidecar: it talks to the members directly',
    );
    assert.equal(s.createJob!.metadata!.ownerReferences![0]!.kind, 'StoreBackup');
  });

  it('a failed attempt is reported and retried by the Job; once the Job gives up, Failed with the fix named', () => {
    const running = planBackup(sb({ phase: 'Running', attempts: 1, reason: 'Started' }), {
      cluster: sc(),
      job: job({ active: 1, failed: 1 }),
      pods: [pod('Failed', credentialsFailure, '2026-12-02T11:00:00Z')],
      now,
    });
    assert.equal(running.status.phase, 'Running');
    assert.match(
      running.status.message ?? '',
      /^attempt 1 of 3 failed: STORE_ERR_BACKUP_STORAGE_CREDENTIALS: .*check the access key id and secret key.*; the Job retries with back-off$/,
    );
    assert.deepEqual(
      running.events.map((e) => e.reason),
      ['BackupRetrying'],
    );
    assert.deepEqual(
      planBackup(sb(running.status), {
        cluster: sc(),
        job: job({ active: 1, failed: 1 }),
        pods: [pod('Failed', credentialsFailure, '2026-12-02T11:00:00Z')],
        now,
      }).events,
      [],
      'said once per attempt',
    );
    const failed = planBackup(sb(running.status), {
      cluster: sc(),
      job: job({ failed: 3, conditions: [{ type: 'Failed', status: 'True', reason: 'BackoffLimitExceeded' }] }),
      pods: ['10', '11', '12'].map((m) => pod('Failed', credentialsFailure, `2026-12-02T11:${m}:00Z`)),
      now,
    });
    assert.equal(failed.status.phase, 'Failed');
    assert.equal(failed.status.reason, 'BackupStorageCredentials');
    assert.match(failed.status.message ?? '', /refused the credentials .* \(after 3 attempts\)$/);
    assert.equal(failed.finished, 'Failed');
    assert.deepEqual(
      planBackup(sb(failed.status), { cluster: sc(), job: job(), pods: [], now }).events,
      [],
      'final: never looked at again',
    );
  });

  it('Succeeded with what the manifest says', () => {
    const s = planBackup(sb({ phase: 'Running', attempts: 1 }), {
      cluster: sc(),
      job: job({ succeeded: 1 }),
      pods: [pod('Succeeded', manifest, '2026-12-02T11:59:00Z')],
      now,
    });
    assert.equal(s.status.phase, 'Succeeded');
    assert.deepEqual(
      [s.status.objectKey, s.status.revision, s.status.sizeBytes, s.status.durationSeconds],
      ['shop/orders/nightly-1.snap', 4242, 1048576, 7],
    );
    assert.equal(s.status.conditions?.find((c) => c.type === 'Complete')?.status, 'True');
    assert.equal(s.finished, 'Succeeded');
  });

  it("with spec.verify, a Succeeded backup is verified once by a Job with a member's resources: Verified, Failed (the mismatch named), or NotVerifiable", () => {
    const ok = planBackup(sb({ phase: 'Running', attempts: 1 }), {
      cluster: sc(),
      job: job({ succeeded: 1 }),
      pods: [pod('Succeeded', manifest, '2026-12-02T11:59:00Z')],
      now,
    });
    const verifying = (status: StoreBackup['status']) => ({ ...sb(status), spec: { ...sb().spec, verify: true } });
    const start = planBackup(verifying(ok.status), { cluster: sc(), job: job({ succeeded: 1 }), pods: [], now });
    assert.equal(start.status.verification?.phase, 'Running');
    assert.equal(start.createJob?.metadata?.name, 'nightly-1-verify');
    const c = start.createJob!.spec!.template.spec!.containers[0]!;
    assert.deepEqual(c.args!.slice(0, 3), ['backup', 'verify', 'nightly-1']);
    assert.ok(c.args!.includes('--work-dir=/work'));
    assert.equal(c.resources?.limits?.['memory'], '1Gi', "a member's memory: it holds the whole key space");
    assert.deepEqual(
      start.events.map((e) => e.reason),
      ['VerificationStarted'],
    );
    assert.equal(
      planBackup(sb(ok.status), { cluster: sc(), job: job({ succeeded: 1 }), pods: [], now }).createJob,
      undefined,
      'without spec.verify, nothing',
    );
    const vjob = (st: V1Job['status']): V1Job => ({ metadata: { name: 'nightly-1-verify' }, status: st });
    const verified = planBackup(verifying(start.status), {
      cluster: sc(),
      job: job({ succeeded: 1 }),
      pods: [],
      verifyJob: vjob({ succeeded: 1 }),
      verifyPods: [
        pod(
          'Succeeded',
          JSON.stringify({
            verified: true,
            got: 77,
            message: 'restored into a throw-away member: HashKV 77 at revision 4242, as the member it was taken from',
          }),
          '2026-12-02T12:00:00Z',
        ),
      ],
      now,
    });
    assert.deepEqual(
      [verified.status.verification?.phase, verified.status.verification?.hashKV, verified.verified],
      ['Verified', 77, 'verified'],
    );
    assert.equal(verified.status.conditions?.find((x) => x.type === 'Verified')?.status, 'True');
    assert.equal(verified.status.conditions?.find((x) => x.type === 'Complete')?.status, 'True', 'the other conditions stay');
    assert.deepEqual(planBackup(verifying(verified.status), { cluster: sc(), job: job(), pods: [], now }).events, [], 'verified once');
    const mismatch =
      'ballast backup verify: STORE_ERR_BACKUP_UNVERIFIED: backup nightly-1 restored into a throw-away member hashes 5 at revision 4242, but the member it was taken from hashed 77: it does not hold what the cluster held; do not rely on it\n';
    const failedJob = vjob({ failed: 2, conditions: [{ type: 'Failed', status: 'True', reason: 'BackoffLimitExceeded' }] });
    const bad = planBackup(verifying(start.status), {
      cluster: sc(),
      job: job(),
      pods: [],
      verifyJob: failedJob,
      verifyPods: [pod('Failed', mismatch, '2026-12-02T12:00:00Z'), pod('Failed', mismatch, '2026-12-02T12:01:00Z')],
      now,
    });
    assert.deepEqual(
      [bad.status.verification?.phase, bad.status.verification?.reason, bad.verified],
      ['Failed', 'BackupUnverified', 'failed'],
    );
    assert.match(
      bad.status.verification?.message ?? '',
      /^STORE_ERR_BACKUP_UNVERIFIED: backup nightly-1 restored .* hashes 5 .* hashed 77/,
    );
    assert.equal(bad.status.conditions?.find((x) => x.type === 'Verified')?.status, 'False');
    assert.deepEqual(
      bad.events.map((e) => e.reason),
      ['BackupVerificationFailed'],
    );
    const unknown = planBackup(verifying(start.status), {
      cluster: sc(),
      job: job(),
      pods: [],
      verifyJob: failedJob,
      verifyPods: [
        pod(
          'Failed',
          'ballast backup verify: STORE_ERR_BACKUP_NOT_VERIFIABLE: backup nightly-1 has no HashKV in its manifest\n',
          '2026-12-02T12:00:00Z',
        ),
      ],
      now,
    });
    assert.deepEqual([unknown.status.verification?.phase, unknown.verified], ['NotVerifiable', 'not_verifiable']);
  });

  it('the failure line of a log is found, its code made a reason', () => {
    assert.deepEqual(failureOf('x\nballast backup save: STORE_ERR_NO_LEADER: no member answers\n'), {
      reason: 'NoLeader',
      message: 'STORE_ERR_NO_LEADER: no member answers',
    });
    assert.deepEqual(failureOf(''), { reason: 'JobFailed', message: "the backup Job's pod failed without a message" });
  });
});

describe('a StoreCluster created from a backup (spec.restore)', () => {
  const fresh = (restoreSource: StoreBackup | undefined) => ({
    setReplicas: undefined,
    pods: [],
    members: undefined,
    leaderId: '',
    auth: 'unknown' as const,
    hasRootCredentials: false,
    nextClaimExists: false,
    now,
    restoreSource,
  });
  const cluster = (): StoreCluster => ({
    ...sc(),
    spec: {
      ...sc().spec,
      auth: { enabled: false },
      restore: { backup: 'nightly-1' },
      storage: { size: '1Gi', retainOnScaleDown: true },
      compaction: { mode: 'periodic', retention: '1h' },
      timing: { heartbeatMs: 100, electionMs: 1000 },
    },
    status: {},
  });

  it('waits for its backup: missing, or not Succeeded, says so and creates nothing', () => {
    const missing = plan(cluster(), fresh(undefined));
    assert.deepEqual([missing.phase, missing.progressing.reason, missing.actions], ['Bootstrapping', 'RestoreSourceNotReady', []]);
    assert.match(missing.progressing.message, /StoreBackup nightly-1 does not exist in namespace shop; create it, or name one that exists/);
    const running = plan(cluster(), fresh(sb({ phase: 'Running' })));
    assert.match(running.progressing.message, /StoreBackup nightly-1 is Running; the members start once it Succeeded/);
    assert.deepEqual(running.actions, []);
  });

  it('bootstraps every member with a restore init container (same --initial-cluster and token for all, --if-empty); the template drops it once the cluster exists', () => {
    const done = sb({ phase: 'Succeeded', revision: 4242, objectKey: 'shop/orders/nightly-1.snap' });
    const s = plan(cluster(), fresh(done));
    const a = s.actions[0]!;
    assert.equal(a.do, 'applyStatefulSet');
    assert.match(s.events[0]!.message, /each restored from backup nightly-1 \(revision 4242, shop\/orders\/nightly-1\.snap\)/);
    const set = (state: 'new' | 'existing') =>
      statefulSet(cluster(), { replicas: 3, initialCluster: 'orders-0=http://a:2380', clusterState: state, restoreFrom: done });
    const init = set('new').spec!.template.spec!.initContainers?.[0];
    assert.equal(init?.name, 'restore');
    for (const arg of [
      'backup',
      'restore',
      'nightly-1',
      '--if-empty',
      '--initial-cluster=orders-0=http://a:2380',
      '--initial-cluster-token=$(CLUSTER_TOKEN)',
      '--s3-prefix=shop/orders/',
    ])
      assert.ok(init?.args?.includes(arg), arg);
    assert.equal(set('existing').spec!.template.spec!.initContainers, undefined);
  });
});
