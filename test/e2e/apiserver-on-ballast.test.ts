// Kubernetes on Ballast: kube-apiserver v1.36 (built from its Go modules) with --etcd-servers
// pointing at a 3-member `ballast store` cluster instead of etcd.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { ApiServer } from '../support/apiserver.ts';
import { StoreCluster } from '../support/store-cluster.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('kube-apiserver on ballast store', { timeout: 240_000 }, () => {
  let store: StoreCluster;
  let api: ApiServer;
  before(async () => {
    store = await StoreCluster.start(3);
    // Events live for --event-ttl: the apiserver attaches them to a store lease of that TTL.
    api = await ApiServer.start(
      store.members.map((m) => `127.0.0.1:${m.clientPort}`),
      ['--event-ttl=4s'],
    );
  });
  after(async () => {
    await api?.stop();
    await store?.shutdown();
  });

  const ok = (args: string[], input?: string) => {
    const r = api.kubectl(args, input);
    assert.equal(r.status, 0, `kubectl ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };

  it('bootstraps: readyz (with its etcd checks) and the system namespaces', () => {
    assert.match(ok(['get', '--raw', '/readyz?verbose']), /\[\+\]etcd ok/);
    assert.match(
      ok(['get', 'ns', '-o', 'name']),
      /namespace\/default\nnamespace\/kube-node-lease\nnamespace\/kube-public\nnamespace\/kube-system/,
    );
    assert.match(ok(['version']), /Server Version: v1\.36\.3/);
  });

  it('stores objects: ConfigMaps, Deployments, StatefulSets, Leases, with resourceVersion from the store revision', () => {
    ok(['create', 'configmap', 'cm1', '--from-literal=a=b']);
    assert.equal(ok(['get', 'configmap', 'cm1', '-o', 'jsonpath={.data.a}']), 'b');
    ok(['create', 'deployment', 'web', '--image=nginx', '--replicas=2']);
    ok(
      ['apply', '-f', '-'],
      'apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec:\n  serviceName: db\n  replicas: 1\n  selector: {matchLabels: {app: db}}\n  template:\n    metadata: {labels: {app: db}}\n    spec: {containers: [{name: db, image: db}]}\n  volumeClaimTemplates: [{metadata: {name: data}, spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}}]\n',
    );
    ok(
      ['apply', '-f', '-'],
      'apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {name: l1, namespace: default}\nspec: {holderIdentity: me, leaseDurationSeconds: 15}\n',
    );
    assert.equal(ok(['get', 'lease', 'l1', '-o', 'jsonpath={.spec.holderIdentity}']), 'me');
    const rv = Number(ok(['get', 'configmap', 'cm1', '-o', 'jsonpath={.metadata.resourceVersion}']));
    const storeRev = (JSON.parse(store.etcdctl(['get', 'x', '-w', 'json']).stdout) as { header: { revision: number } }).header.revision;
    assert.ok(rv > 0 && rv <= storeRev, `resourceVersion ${rv} is a store revision (<= ${storeRev})`);
    ok(['delete', 'configmap', 'cm1']);
    assert.notEqual(api.kubectl(['get', 'configmap', 'cm1']).status, 0);
  });

  it('Events expire by TTL: the store revokes their lease and deletes them', async () => {
    ok(
      ['create', '-f', '-'],
      'apiVersion: v1\nkind: Event\nmetadata: {name: e2e-event, namespace: default}\ninvolvedObject: {kind: ConfigMap, name: x, namespace: default}\nreason: Testing\nmessage: expires soon\ntype: Normal\n',
    );
    assert.match(ok(['get', 'events', '-o', 'name']), /event\/e2e-event/);
    assert.match(store.etcdctl(['lease', 'list']).stdout, /found \d+ leases/);
    let gone = false;
    for (let i = 0; i < 40 && !gone; i++) {
      await sleep(500);
      gone = !ok(['get', 'events', '-o', 'name']).includes('e2e-event');
    }
    assert.ok(gone, 'the event expired with its lease');
  });

  it('kubectl get -w streams changes (the apiserver watches the store)', async () => {
    const w = spawn('kubectl', [`--kubeconfig=${api.kubeconfig}`, 'get', 'configmaps', '-w', '-o', 'json', '--output-watch-events'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    w.stdout.on('data', (d: Buffer) => (out += d.toString()));
    await sleep(1500);
    ok(['create', 'configmap', 'watched', '--from-literal=x=1']);
    ok(['patch', 'configmap', 'watched', '-p', '{"data":{"x":"2"}}']);
    ok(['delete', 'configmap', 'watched']);
    for (let i = 0; i < 50 && !out.includes('DELETED'); i++) await sleep(100);
    w.kill();
    const events = out
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { type: string; object: { metadata: { name: string } } })
      .filter((e) => e.object.metadata.name === 'watched')
      .map((e) => `${e.type} ${e.object.metadata.name}`);
    assert.deepEqual(events, ['ADDED watched', 'MODIFIED watched', 'DELETED watched']);
  });

  it('kill -9 the store leader: the API stays available after the store fails over', async () => {
    const lead = await store.waitLeader();
    await store.kill9(lead);
    let okAfter = false;
    for (let i = 0; i < 300 && !okAfter; i++) {
      okAfter = api.kubectl(['create', 'configmap', `after-${i}`, '--from-literal=x=y']).status === 0;
      if (!okAfter) await sleep(100);
    }
    assert.ok(okAfter, 'the apiserver takes writes again');
    assert.equal(api.kubectl(['get', '--raw', '/readyz']).stdout.trim(), 'ok');
    store.restart(lead);
    await store.waitHealthy();
  });
});
