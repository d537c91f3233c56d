// Installing Ballast as users do: `helm install` of charts/ballast on the local control plane.
// Promises: the chart lints strictly and its rendered manifests pass a server-side dry run; the
// operator comes up Ready in its pod (in-cluster credentials, least-privilege RBAC) and runs a
// StoreCluster to Ready; `helm upgrade` with unchanged values changes nothing; `helm uninstall`
// leaves nothing behind but the CRDs (Helm keeps those by policy).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bin, freePort } from '../support/store-cluster.ts';

const root = join(import.meta.dirname, '..', '..');
const helmBin = process.env['BALLAST_HELM'] ?? join(root, '.tools', 'helm-v3.22.0', 'helm');
const chart = join(root, 'charts', 'ballast');

describe('helm install charts/ballast', { timeout: 300_000 }, () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'ballast-helm-'));
  const kubeconfig = join(stateDir, 'admin.kubeconfig');
  const kubectl = (args: string[], input?: string) => spawnSync('kubectl', [`--kubeconfig=${kubeconfig}`, ...args], { encoding: 'utf8', input: input ?? '', timeout: 60_000 });
  const helm = (args: string[]) => spawnSync(helmBin, [`--kubeconfig=${kubeconfig}`, ...args], { encoding: 'utf8', timeout: 200_000 });
  const uids = () => kubectl(['get', 'deployment,replicaset,pods,serviceaccount,service,pdb', '-n', 'ballast-system', '-l', 'app.kubernetes.io/instance=ballast', '-o', 'jsonpath={range .items[*]}{.kind}/{.metadata.name}@{.metadata.resourceVersion} {end}']).stdout.trim().split(' ').sort();

  before(async () => {
    const up = spawnSync(bin, ['cluster', 'up', `--state-dir=${stateDir}`, '--store=etcd', `--apiserver-port=${await freePort()}`], { encoding: 'utf8', timeout: 150_000 });
    assert.equal(up.status, 0, up.stderr + up.stdout);
  });
  after(() => spawnSync(bin, ['cluster', 'down', `--state-dir=${stateDir}`], { encoding: 'utf8', timeout: 60_000 }));

  it('lints strictly, and its manifests pass a server-side dry run', () => {
    const lint = helm(['lint', '--strict', chart]);
    assert.equal(lint.status, 0, lint.stdout + lint.stderr);
    assert.equal(kubectl(['apply', '--server-side', '-f', join(chart, 'crds')]).status, 0);
    assert.equal(kubectl(['wait', '--for=condition=Established', 'crd/storeclusters.ballast.dev', '--timeout=30s']).status, 0);
    assert.equal(kubectl(['create', 'namespace', 'ballast-system']).status, 0);
    const rendered = helm(['template', 'ballast', chart, '-n', 'ballast-system', '--kube-version', '1.36.3']);
    assert.equal(rendered.status, 0, rendered.stderr);
    const dry = kubectl(['apply', '--dry-run=server', '-n', 'ballast-system', '-f', '-'], rendered.stdout);
    assert.equal(dry.status, 0, dry.stderr);
  });

  it('installs: the operator is Ready in its pods, one leads, and it runs a StoreCluster to Ready', (t) => {
    const start = Date.now();
    const r = helm(['upgrade', '--install', 'ballast', chart, '-n', 'ballast-system', '--wait', '--timeout', '3m']);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    t.diagnostic(`helm install --wait: ${Date.now() - start} ms`);
    assert.equal(kubectl(['get', 'deployment', 'ballast-operator', '-n', 'ballast-system', '-o', 'jsonpath={.status.readyReplicas}']).stdout, '2');
    const start2 = Date.now();
    assert.equal(kubectl(['apply', '-f', join(root, 'examples', 'storecluster.yaml')]).status, 0);
    const wait = kubectl(['wait', 'storecluster/example', '--for=condition=Ready', '--timeout=120s']);
    assert.equal(wait.status, 0, wait.stderr);
    t.diagnostic(`StoreCluster Ready ${Date.now() - start2} ms after apply (operator in-cluster)`);
    const holder = kubectl(['get', 'lease', 'ballast-operator', '-n', 'ballast-system', '-o', 'jsonpath={.spec.holderIdentity}']).stdout;
    assert.match(holder, /^ballast-operator-/, 'the leader is one of the operator pods (by pod name)');
  });

  it('upgrade with unchanged values changes nothing', () => {
    const before = uids();
    const r = helm(['upgrade', 'ballast', chart, '-n', 'ballast-system', '--wait']);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(uids(), before);
  });

  it('uninstall leaves nothing behind but the CRDs', async () => {
    assert.equal(kubectl(['delete', 'storecluster', 'example', '--wait=true']).status, 0);
    const r = helm(['uninstall', 'ballast', '-n', 'ballast-system', '--wait']);
    assert.equal(r.status, 0, r.stderr);
    // The leader-election Lease is the operator's own record, not a chart resource: it goes with the namespace.
    const left = () => kubectl(['get', 'all,serviceaccount,role,rolebinding,pdb', '-n', 'ballast-system', '-o', 'name']).stdout.split('\n').filter((l) => l && l !== 'serviceaccount/default');
    // Pods go by garbage collection after their Deployment: give them their grace period.
    for (let i = 0; i < 120 && left().length > 0; i++) await new Promise((res) => setTimeout(res, 250));
    assert.deepEqual(left(), []);
    assert.equal(kubectl(['get', 'clusterrole,clusterrolebinding', '-l', 'app.kubernetes.io/instance=ballast', '-o', 'name']).stdout.trim(), '');
    assert.equal(kubectl(['get', 'crd', 'storeclusters.ballast.dev', '-o', 'name']).stdout.trim(), 'customresourcedefinition.apiextensions.k8s.io/storeclusters.ballast.dev');
  });
});
