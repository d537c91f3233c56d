import assert from 'node:assert/strict';
import type { StoreBackup } from '../api/storebackup.ts';
import { describe, it } from 'node:test';
import type { StoreCluster } from '../api/storecluster.ts';
import * as specs from './storecluster.ts';
import { disruptionBudget, faultTolerance, initialCluster, peerService, peerUrl, specHash, statefulSet } from './storecluster.ts';

const sc: StoreCluster = {
  apiVersion: 'ballast.dev/v1alpha1',
  kind: 'StoreCluster',
  metadata: { name: 'orders', namespace: 'shop', uid: 'u1' },
  spec: {
    replicas: 3,
    version: '0.2.0',
    storage: { size: '2Gi', retainOnScaleDown: true },
    compaction: { mode: 'periodic', retention: '1h' },
    timing: { heartbeatMs: 100, electionMs: 1000 },
  },
};

describe('StoreCluster specs', () => {
  it('members bootstrap from their stable peer names under the headless Service', () => {
    assert.equal(
      initialCluster(sc, 3),
      ['orders-0', 'orders-1', 'orders-2'].map((m) => `${m}=http://${m}.orders-peer.shop.svc.cluster.local:2380`).join(','),
    );
    const svc = peerService(sc);
    assert.equal(svc.spec?.clusterIP, 'None');
    assert.equal(svc.spec?.publishNotReadyAddresses, true, 'peers resolve before any member is ready');
  });
  it('spec.tls: https URLs, the Secrets mounted read-only, certificates required both ways', () => {
    const secure: StoreCluster = { ...sc, spec: { ...sc.spec, tls: { clientSecretName: 'c-tls', peerSecretName: 'p-tls' } } };
    assert.match(peerUrl(secure, 0), /^https:\/\/orders-0\.orders-peer\.shop\.svc\.cluster\.local:2380$/);
    const pod = statefulSet(secure, { replicas: 3, initialCluster: initialCluster(secure, 3), clusterState: 'new' }).spec?.template.spec;
    const args = pod?.containers[0]?.args ?? [];
    for (const a of [
      '--listen-client-urls=https://0.0.0.0:2379',
      '--listen-peer-urls=https://0.0.0.0:2380',
      '--client-cert-auth=true',
      '--peer-client-cert-auth=true',
      '--trusted-ca-file=/etc/ballast/tls/client/ca.crt',
      '--peer-cert-file=/etc/ballast/tls/peer/tls.crt',
    ])
      assert.ok(args.includes(a), a);
    assert.ok(args.some((a) => a.startsWith('--initial-cluster=orders-0=https://')));
    assert.deepEqual(
      pod?.volumes?.map((v) => `${v.name}:${v.secret?.secretName}`),
      ['tls-client:c-tls', 'tls-peer:p-tls'],
    );
    assert.ok(pod?.containers[0]?.volumeMounts?.filter((m) => m.name.startsWith('tls-')).every((m) => m.readOnly));
    const plain = statefulSet(sc, { replicas: 3, initialCluster: initialCluster(sc, 3), clusterState: 'new' }).spec?.template.spec;
    assert.equal(plain?.volumes, undefined);
    assert.ok(!(plain?.containers[0]?.args ?? []).some((a) => a.includes('cert')));
  });
  it("podTemplate.env reaches the store container; the operator's own variables are not overridden", () => {
    const withEnv: StoreCluster = {
      ...sc,
      spec: {
        ...sc.spec,
        podTemplate: {
          env: [
            { name: 'OTEL_EXPORTER_OTLP_ENDPOINT', value: 'http://collector:4318' },
            { name: 'CLUSTER_TOKEN', value: 'guess' },
          ],
        },
      },
    };
    const env =
      statefulSet(withEnv, { replicas: 3, initialCluster: initialCluster(withEnv, 3), clusterState: 'new' }).spec?.template.spec
        ?.containers[0]?.env ?? [];
    assert.deepEqual(
      env.map((e) => e.name),
      ['OTEL_EXPORTER_OTLP_ENDPOINT', 'POD_NAME', 'CLUSTER_TOKEN'],
    );
    assert.ok(env.find((e) => e.name === 'CLUSTER_TOKEN')?.valueFrom?.secretKeyRef, 'the token still comes from its Secret');
  });
  it("members opt out of sidecar injection unless podTemplate.labels opts them in; a restore container gets the member's resources and the point-in-time target", () => {
    const ss = statefulSet(sc, { replicas: 3, initialCluster: initialCluster(sc, 3), clusterState: 'new' });
    assert.equal(ss.spec?.template.metadata?.labels?.['ballast.dev/inject'], 'false');
    const optedIn: StoreCluster = { ...sc, spec: { ...sc.spec, podTemplate: { labels: { 'ballast.dev/inject': 'true' } } } };
    assert.equal(
      statefulSet(optedIn, { replicas: 3, initialCluster: initialCluster(sc, 3), clusterState: 'new' }).spec?.template.metadata?.labels?.[
        'ballast.dev/inject'
      ],
      'true',
    );
    const backup = {
      apiVersion: 'ballast.dev/v1alpha1',
      kind: 'StoreBackup',
      metadata: { name: 'b1', namespace: sc.metadata.namespace },
      spec: { cluster: 'orders', storage: { endpoint: 'http://s3', bucket: 'b', region: 'us-east-1', credentialsSecret: 's' } },
      status: { phase: 'Succeeded' },
    } as StoreBackup;
    const pit: StoreCluster = { ...sc, spec: { ...sc.spec, restore: { backup: 'b1', toTime: '2026-12-02T14:03:00Z' } } };
    const init = statefulSet(pit, { replicas: 3, initialCluster: initialCluster(pit, 3), clusterState: 'new', restoreFrom: backup }).spec
      ?.template.spec?.initContainers?.[0];
    assert.ok(init?.args?.includes('--to-time=2026-12-02T14:03:00Z'), init?.args?.join(' '));
    assert.deepEqual(
      init?.resources,
      statefulSet(pit, { replicas: 3, initialCluster: initialCluster(pit, 3), clusterState: 'new' }).spec?.template.spec?.containers[0]
        ?.resources,
    );
  });
  it('the StatefulSet is replaced by the operator (OnDelete), started in parallel, hardened, owned by the StoreCluster', () => {
    const ss = statefulSet(sc, { replicas: 3, initialCluster: initialCluster(sc, 3), clusterState: 'new' });
    assert.equal(ss.spec?.updateStrategy?.type, 'OnDelete');
    assert.equal(ss.spec?.podManagementPolicy, 'Parallel');
    const c = ss.spec?.template.spec?.containers[0];
    assert.equal(c?.image, 'ballast:0.2.0');
    assert.ok(c?.args?.includes('--initial-cluster-state=new'));
    assert.deepEqual(c?.securityContext, {
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
    });
    assert.equal(ss.spec?.template.spec?.securityContext?.runAsNonRoot, true);
    assert.equal(ss.spec?.volumeClaimTemplates?.[0]?.spec?.resources?.requests?.['storage'], '2Gi');
    assert.equal(ss.metadata?.ownerReferences?.[0]?.uid, 'u1');
  });
  it('the spec hash changes with what needs a member replaced, not with membership', () => {
    const base = specHash(sc);
    assert.equal(specHash({ ...sc, spec: { ...sc.spec, replicas: 5 } }), base, 'scaling replaces nobody');
    assert.notEqual(specHash({ ...sc, spec: { ...sc.spec, version: '0.3.0' } }), base);
    assert.notEqual(specHash({ ...sc, spec: { ...sc.spec, timing: { heartbeatMs: 100, electionMs: 2000 } } }), base);
  });
  it('the disruption budget allows exactly the fault tolerance', () => {
    assert.deepEqual([1, 3, 5, 7].map(faultTolerance), [0, 1, 2, 3]);
    assert.equal(disruptionBudget({ ...sc, spec: { ...sc.spec, replicas: 5 } }).spec?.maxUnavailable, 2);
  });
});

describe('downgradeRefusal: a rollback only while the data is still in a format the target reads', () => {
  it('allows upgrades, and a rollback while a member still runs the older version', () => {
    assert.equal(specs.downgradeRefusal('0.2.0', ['0.1.0', '0.1.0', '0.1.0']), undefined);
    assert.equal(specs.downgradeRefusal('0.1.0', ['0.2.0', '0.1.0', '0.1.0']), undefined);
    assert.equal(specs.downgradeRefusal('0.1.0', ['0.2.0', '0.2.0', '0.1.0']), undefined);
    assert.equal(specs.downgradeRefusal('0.2.0', ['0.3.0', '0.3.0', '0.3.0']), undefined, 'both read format 2');
    assert.equal(specs.downgradeRefusal('0.1.0', []), undefined);
  });
  it('refuses going back to 0.1.x once every member runs a version that writes format 2, saying what to do', () => {
    const why = specs.downgradeRefusal('0.1.0', ['0.2.0', '0.2.0', '0.2.0']);
    assert.match(why ?? '', /every member runs 0\.2\.0, which writes its data in format 2; 0\.1\.0 reads only format 1/);
    assert.match(why ?? '', /Set spec\.version back to 0\.2\.0/);
    assert.ok(specs.downgradeRefusal('0.1.9', ['0.3.1', '0.2.0']));
    assert.equal(specs.formatReadBy('0.1.5'), 1);
    assert.equal(specs.formatReadBy('0.10.0'), 2, 'compared as numbers, not text');
  });
});
