// Installing Ballast with `kubectl apply -k`: each overlay applies cleanly and runs the operator;
// what the overlay sets reads back unchanged (no perpetual diff for Argo CD); the base is the
// chart's rendering (stale check).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { manifestDrift } from '../support/drift.ts';
import { renderKustomizeBase } from '../support/kustomize-base.ts';
import { LocalCluster } from '../support/cluster.ts';
import { applyWhenRouted } from '../support/webhook.ts';

const root = join(import.meta.dirname, '..', '..');

describe('kubectl apply -k kustomize/overlays/{dev,production}', { timeout: 400_000 }, () => {
  const cluster = new LocalCluster('kustomize');
  const { kubeconfig } = cluster;
  const kubectl = (args: string[], input?: string) => cluster.kubectl(args, input, 150_000);

  before(async () => {
    await cluster.up();
  });
  after(() => cluster.down());

  it("the base is the Helm chart's rendering (npm run gen:kustomize)", () => {
    assert.equal(
      readFileSync(join(root, 'kustomize', 'base', 'ballast.yaml'), 'utf8'),
      renderKustomizeBase(),
      'kustomize/base/ballast.yaml is stale: run npm run gen:kustomize',
    );
  });

  const overlay = async (name: string, replicas: number, t: { diagnostic(s: string): void }) => {
    const dir = join(root, 'kustomize', 'overlays', name);
    const built = kubectl(['kustomize', dir]);
    assert.equal(built.status, 0, built.stderr);
    const start = Date.now();
    const applied = kubectl(['apply', '--server-side', '-k', dir]);
    assert.equal(applied.status, 0, applied.stderr);
    const rolled = kubectl(['rollout', 'status', 'deployment/ballast-operator', '-n', 'ballast-system', '--timeout=120s']);
    assert.equal(rolled.status, 0, rolled.stderr + rolled.stdout);
    assert.equal(
      kubectl(['get', 'deployment', 'ballast-operator', '-n', 'ballast-system', '-o', 'jsonpath={.status.readyReplicas}']).stdout,
      String(replicas),
    );
    // The operator runs: one replica holds the Lease.
    let holder = '';
    for (let i = 0; i < 120 && !holder.startsWith('ballast-operator-'); i++) {
      holder = kubectl(['get', 'lease', 'ballast-operator', '-n', 'ballast-system', '-o', 'jsonpath={.spec.holderIdentity}']).stdout;
      if (!holder.startsWith('ballast-operator-')) await new Promise((res) => setTimeout(res, 250));
    }
    assert.match(holder, /^ballast-operator-/);
    t.diagnostic(`${name}: applied → ${replicas} replica(s) ready and leading in ${Date.now() - start} ms`);
    assert.deepEqual(
      manifestDrift(built.stdout, [`--kubeconfig=${kubeconfig}`], 'default'),
      [],
      'every field the overlay sets reads back unchanged',
    );
    return built.stdout;
  };

  it('dev: one replica with debug logs', async (t) => {
    await overlay('dev', 1, t);
    const env = kubectl([
      'get',
      'pods',
      '-n',
      'ballast-system',
      '-l',
      'app.kubernetes.io/name=ballast-operator',
      '-o',
      'jsonpath={.items[0].spec.containers[0].env[?(@.name=="BALLAST_LOG_LEVEL")].value}',
    ]).stdout;
    assert.equal(env, 'debug');
  });

  it('production: two replicas, a PodDisruptionBudget, resources and spread; a StoreCluster runs under it', async (t) => {
    await overlay('production', 2, t);
    assert.equal(kubectl(['get', 'pdb', 'ballast-operator', '-n', 'ballast-system', '-o', 'jsonpath={.spec.minAvailable}']).stdout, '1');
    assert.equal(
      kubectl([
        'get',
        'deployment',
        'ballast-operator',
        '-n',
        'ballast-system',
        '-o',
        'jsonpath={.spec.template.spec.containers[0].resources.requests.cpu}',
      ]).stdout,
      '100m',
    );
    const applied = await applyWhenRouted(kubectl, ['-f', join(root, 'examples', 'storecluster.yaml')]);
    assert.equal(applied.status, 0, applied.stderr);
    const wait = kubectl(['wait', 'storecluster/example', '--for=condition=Ready', '--timeout=150s']);
    // When it does not get there, say where it stands: the conditions, the pods, the operator's last words.
    const story = () =>
      [
        kubectl([
          'get',
          'storecluster',
          'example',
          '-o',
          'jsonpath={range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\\n"}{end}',
        ]).stdout,
        kubectl(['get', 'pods', '-A', '-o', 'wide']).stdout,
        kubectl(['logs', '-n', 'ballast-system', '-l', 'app.kubernetes.io/name=ballast-operator', '--tail=30', '--prefix']).stdout,
      ].join('\n');
    assert.equal(wait.status, 0, wait.status === 0 ? '' : `${wait.stderr}\n${story()}`);
  });

  it('delete -k removes what it applied', async () => {
    assert.equal(kubectl(['delete', 'storecluster', 'example', '--wait=true']).status, 0);
    const del = kubectl(['delete', '-k', join(root, 'kustomize', 'overlays', 'production'), '--wait=true']);
    assert.equal(del.status, 0, del.stderr);
    assert.notEqual(kubectl(['get', 'namespace', 'ballast-system']).status, 0, 'the namespace is gone');
    assert.notEqual(kubectl(['get', 'crd', 'storeclusters.ballast.dev']).status, 0, 'the CRDs are gone');
  });
});
