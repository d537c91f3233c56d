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

  it("names every default metric prom-client's collectDefaultMetrics does, with the same types, and counts CPU time", async () => {
    const prom = await import('prom-client');
    const reference = new prom.Registry();
    prom.collectDefaultMetrics({ register: reference });
    const ours = new Metrics();
    const types = (text: string) => [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => `${m[1]} ${m[2]}`).sort();
    assert.deepEqual(types((await ours.render()).body), types(await reference.metrics()));
    const cpu = (text: string) => Number(/^process_cpu_seconds_total (\S+)$/m.exec(text)?.[1]);
    const user = (text: string) => Number(/^process_cpu_user_seconds_total (\S+)$/m.exec(text)?.[1]);
    const first = (await ours.render()).body;
    // Spend 10 ms of CPU time (not of wall time: on a busy machine this process may wait).
    const start = process.cpuUsage().user;
    while (process.cpuUsage().user - start < 10_000);
    const second = (await ours.render()).body;
    assert.ok(cpu(second) > cpu(first), `process_cpu_seconds_total grew: ${cpu(first)} then ${cpu(second)}`);
    assert.ok(user(second) > user(first), 'process_cpu_user_seconds_total grew');
    assert.ok(cpu(second) >= user(second), 'user time is part of the total');
  });

  it('shares a metric declared twice with the same labels and refuses different labels', () => {
    const m = new Metrics({ defaultMetrics: false });
    const a = m.counter('x_total', 'x', ['member']);
    assert.equal(m.counter('x_total', 'x', ['member']), a);
    assert.throws(() => m.counter('x_total', 'x', ['peer']), /registered twice with different labels/);
  });
});
