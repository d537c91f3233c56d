import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Metrics } from './metrics.ts';

describe('metrics', () => {
  it('exposes counters and histograms with their fixed labels and the default process metrics', async () => {
    const m = new Metrics();
    const c = m.counter('ballast_test_requests_total', 'requests', ['upstream', 'result']);
    c.inc({ upstream: 'a', result: 'ok' });
    c.inc({ upstream: 'a', result: 'ok' });
    m.histogram('ballast_test_latency_seconds', 'latency', ['upstream'], [0.1, 1]).observe({ upstream: 'a' }, 0.05);
    const { contentType, body } = await m.render();
    assert.match(contentType, /text\/plain/);
    assert.match(body, /ballast_test_requests_total\{upstream="a",result="ok"\} 2/);
    assert.match(body, /ballast_test_latency_seconds_bucket\{le="0.1",upstream="a"\} 1/);
    assert.match(body, /process_cpu_user_seconds_total/);
    assert.match(body, /nodejs_eventloop_lag_seconds/);
  });

  it('shares a metric declared twice with the same labels and refuses different labels', () => {
    const m = new Metrics({ defaultMetrics: false });
    const a = m.counter('x_total', 'x', ['member']);
    assert.equal(m.counter('x_total', 'x', ['member']), a);
    assert.throws(() => m.counter('x_total', 'x', ['peer']), /registered twice with different labels/);
  });
});
