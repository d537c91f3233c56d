import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { checkRoute, endpointApp, metricsRoute, serveMetrics } from './endpoints.ts';
import { Metrics } from './metrics.ts';

describe('operational endpoints (fastify)', () => {
  it('/metrics serves the registry, refreshed first; HEAD answers without a body', async () => {
    const m = new Metrics({ defaultMetrics: false });
    const g = m.gauge('ballast_test_up', 'up');
    const app = endpointApp();
    metricsRoute(app, m, () => g.set(7));
    const res = await app.inject({ method: 'GET', url: '/metrics' });
    assert.equal(res.statusCode, 200);
    assert.match(res.headers['content-type'] as string, /text\/plain/);
    assert.match(res.body, /ballast_test_up 7/);
    const head = await app.inject({ method: 'HEAD', url: '/metrics' });
    assert.equal(head.statusCode, 200);
    assert.equal(head.body, '');
  });

  it('a check answers 200 ok, or 503 with its reason', async () => {
    let ready = false;
    const app = endpointApp();
    checkRoute(app, '/readyz', () => (ready ? { ok: true, reason: '' } : { ok: false, reason: 'caches are not synced' }));
    const not = await app.inject({ method: 'GET', url: '/readyz' });
    assert.equal(not.statusCode, 503);
    assert.equal(not.body, 'not ready: caches are not synced\n');
    ready = true;
    const yes = await app.inject({ method: 'GET', url: '/readyz?verbose' });
    assert.deepEqual([yes.statusCode, yes.body], [200, 'ok\n']);
  });

  it('an unknown path is 404 naming the known ones; a known path with the wrong method is 405 with Allow', async () => {
    const app = endpointApp();
    metricsRoute(app, new Metrics({ defaultMetrics: false }));
    checkRoute(app, '/healthz', () => ({ ok: true, reason: '' }));
    const missing = await app.inject({ method: 'GET', url: '/nope' });
    assert.equal(missing.statusCode, 404);
    assert.equal(missing.body, 'not found: /nope; try /healthz, /metrics\n');
    const wrong = await app.inject({ method: 'POST', url: '/metrics' });
    assert.equal(wrong.statusCode, 405);
    assert.equal(wrong.headers['allow'], 'GET, HEAD');
  });

  it('serveMetrics listens on a real port (0 picks one)', async () => {
    const m = new Metrics({ defaultMetrics: false });
    m.gauge('ballast_test_up', 'up').set(1);
    const srv = await serveMetrics(m, '127.0.0.1', 0, { '/healthz': () => ({ ok: true, reason: '' }) });
    after(() => srv.close());
    const res = await fetch(`http://127.0.0.1:${srv.port}/metrics`);
    assert.equal(res.status, 200);
    assert.match(await res.text(), /ballast_test_up 1/);
    assert.equal((await fetch(`http://127.0.0.1:${srv.port}/healthz`)).status, 200);
  });
});
