import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { silentLogger } from '../../lib/log.ts';
import { Metrics } from '../../lib/metrics.ts';
import type { StoreCluster } from '../api/storecluster.ts';
import { makeServingCert } from './certs.ts';
import { WebhookServer } from './server.ts';

const inject = {
  image: 'ballast:test',
  imagePullPolicy: 'IfNotPresent',
  discoveryAddress: 'ballast-operator.ballast-system.svc:15010',
  proxyPort: 15001,
  adminPort: 15000,
};

async function server(validator?: ConstructorParameters<typeof WebhookServer>[5]): Promise<{ hook: WebhookServer; metrics: Metrics }> {
  const metrics = new Metrics({ defaultMetrics: false });
  const cert = await makeServingCert(['ballast-webhook.ballast-system.svc'], new Date());
  return { hook: new WebhookServer(cert, inject, silentLogger, metrics, ['kube-system'], validator), metrics };
}

const podReview = (namespace: string, pod: object) => ({
  apiVersion: 'admission.k8s.io/v1',
  kind: 'AdmissionReview',
  request: { uid: 'u-1', kind: { group: '', version: 'v1', kind: 'Pod' }, namespace, operation: 'CREATE', object: pod },
});
const pod = { metadata: { generateName: 'web-', namespace: 'apps' }, spec: { containers: [{ name: 'app', image: 'web:1' }] } };

interface Review {
  apiVersion: string;
  kind: string;
  response: { uid: string; allowed: boolean; patchType?: string; patch?: string; status?: { code: number; message: string } };
}

describe('admission webhook server (fastify inject)', () => {
  it("/mutate-pods answers a pod with the sidecar as a JSONPatch, under the review's uid", async () => {
    const { hook, metrics } = await server();
    const res = await hook.inject({ method: 'POST', url: '/mutate-pods', payload: podReview('apps', pod) });
    assert.equal(res.statusCode, 200);
    const review = res.json() as Review;
    assert.deepEqual(
      [review.apiVersion, review.kind, review.response.uid, review.response.allowed, review.response.patchType],
      ['admission.k8s.io/v1', 'AdmissionReview', 'u-1', true, 'JSONPatch'],
    );
    const ops = JSON.parse(Buffer.from(review.response.patch as string, 'base64').toString()) as Array<{
      op: string;
      path: string;
      value?: { name?: string };
    }>;
    assert.ok(
      ops.some((o) => o.op === 'add' && JSON.stringify(o.value ?? '').includes('ballast-sidecar')),
      'the sidecar container is added',
    );
    assert.match((await metrics.render()).body, /ballast_operator_webhook_requests_total\{result="injected"\} 1/);
  });

  it('never patches a pod in an excluded namespace, and admits it', async () => {
    const { hook } = await server();
    const review = (await hook.inject({ method: 'POST', url: '/mutate-pods', payload: podReview('kube-system', pod) })).json() as Review;
    assert.deepEqual([review.response.allowed, review.response.patch], [true, undefined]);
  });

  it('a body that is not an AdmissionReview is 400 and says so; an unknown path is 404; /healthz is ok', async () => {
    const { hook } = await server();
    const bad = await hook.inject({ method: 'POST', url: '/mutate-pods', payload: '{"request": ' });
    assert.equal(bad.statusCode, 400);
    assert.match(bad.body, /^body is not an AdmissionReview \(JSON\)/);
    const noUid = await hook.inject({ method: 'POST', url: '/mutate-pods', payload: { request: {} } });
    assert.equal(noUid.statusCode, 400);
    assert.match(noUid.body, /uid/);
    assert.equal((await hook.inject({ method: 'POST', url: '/mutate-nothing', payload: {} })).statusCode, 404);
    assert.equal((await hook.inject({ method: 'GET', url: '/mutate-pods' })).statusCode, 405);
    const health = await hook.inject({ method: 'GET', url: '/healthz' });
    assert.deepEqual([health.statusCode, health.body], [200, 'ok\n']);
  });

  it('/validate-storeclusters refuses with every problem (422), and with 503 when the lookups fail', async () => {
    let fail = false;
    const { hook } = await server(async (_op, sc: StoreCluster) => {
      if (fail) throw new Error('apiserver unreachable');
      return sc.spec.replicas % 2 === 0 ? [`spec.replicas: ${sc.spec.replicas} is even; use an odd number`] : [];
    });
    const review = (replicas: number) => ({
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      request: {
        uid: 'u-2',
        kind: { kind: 'StoreCluster' },
        namespace: 'db',
        operation: 'CREATE',
        object: { metadata: { name: 'main' }, spec: { replicas } },
      },
    });
    const refused = (await hook.inject({ method: 'POST', url: '/validate-storeclusters', payload: review(2) })).json() as Review;
    assert.equal(refused.response.allowed, false);
    assert.equal(refused.response.status?.code, 422);
    assert.equal(refused.response.status?.message, 'StoreCluster db/main: spec.replicas: 2 is even; use an odd number');
    assert.equal(
      ((await hook.inject({ method: 'POST', url: '/validate-storeclusters', payload: review(3) })).json() as Review).response.allowed,
      true,
    );
    fail = true;
    const unsure = (await hook.inject({ method: 'POST', url: '/validate-storeclusters', payload: review(3) })).json() as Review;
    assert.deepEqual([unsure.response.allowed, unsure.response.status?.code], [false, 503]);
  });
});
