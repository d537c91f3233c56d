// Watching Ballast in Grafana, for real: Debian's Prometheus discovers the pods through the
// local cluster's API (kubernetes_sd, as the chart's PodMonitors would have the Prometheus
// Operator configure it) and scrapes the operator (installed by Helm), a 3-member StoreCluster
// and an injected sidecar while a load runs through them. Then every query of every panel of
// every dashboard in dashboards/ is evaluated through Prometheus' HTTP API: one that errors or
// returns nothing fails the test. The dashboards' variables are evaluated too.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { panelQueries } from '../../dashboards/definitions.ts';
import { type DashboardModel, fillAll } from '../../dashboards/lint.ts';
import { clientPod, echoService } from '../support/demo.ts';
import { type Seaweed, startSeaweed } from '../support/seaweedfs.ts';
import { bin, freePort } from '../support/store-cluster.ts';
import { applyWhenRouted } from '../support/webhook.ts';

const root = join(import.meta.dirname, '..', '..');
const helmBin = process.env['BALLAST_HELM'] ?? join(root, '.tools', 'helm-v3.22.0', 'helm');
const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));

describe('dashboards on a real Prometheus scraping the store, the sidecars and the operator', { timeout: 600_000 }, () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'ballast-observe-'));
  const kubeconfig = join(stateDir, 'admin.kubeconfig');
  const kubectl = (args: string[], input?: string) =>
    spawnSync('kubectl', [`--kubeconfig=${kubeconfig}`, ...args], { encoding: 'utf8', input: input ?? '', timeout: 200_000 });
  let prometheus: ChildProcess | undefined;
  interface OtlpSpan {
    traceId: string;
    spanId: string;
    parentSpanId?: string;
    name: string;
  }
  const spans: Array<OtlpSpan & { service: string }> = [];
  const receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => {
      body += c.toString();
    });
    req.on('end', () => {
      if (req.url === '/v1/traces') {
        const batch = JSON.parse(body) as {
          resourceSpans: Array<{
            resource: { attributes: Array<{ key: string; value: { stringValue?: string } }> };
            scopeSpans: Array<{ spans: OtlpSpan[] }>;
          }>;
        };
        for (const r of batch.resourceSpans) {
          const service = r.resource.attributes.find((a) => a.key === 'service.name')?.value.stringValue ?? '';
          for (const x of r.scopeSpans) for (const sp of x.spans) spans.push({ ...sp, service });
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  let promUrl = '';
  let etcd: Etcd3 | undefined;
  let weed: Seaweed | undefined;

  const query = async (expr: string): Promise<{ status: string; error?: string; data?: { result: unknown[] } }> => {
    const r = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
    return (await r.json()) as { status: string; error?: string; data?: { result: unknown[] } };
  };

  before(async () => {
    const up = spawnSync(bin, ['cluster', 'up', `--state-dir=${stateDir}`, '--store=etcd', `--apiserver-port=${await freePort()}`], {
      encoding: 'utf8',
      timeout: 150_000,
    });
    assert.equal(up.status, 0, up.stderr + up.stdout);
    assert.equal(kubectl(['apply', '--server-side', '-f', join(root, 'crds')]).status, 0);
    // An OTLP receiver on this machine, which pods reach at the node's address; the sidecars (by
    // the chart's injection.sidecarEnv) and the store members (by the StoreCluster's
    // podTemplate.env) export to it with nothing but the standard OTEL_* variables.
    await new Promise<void>((r) => receiver.listen(0, '0.0.0.0', r));
    const nodeIp = kubectl(['get', 'node', '-o', 'jsonpath={.items[0].status.addresses[?(@.type=="InternalIP")].address}']).stdout.trim();
    const otel = [
      { name: 'OTEL_EXPORTER_OTLP_ENDPOINT', value: `http://${nodeIp}:${(receiver.address() as { port: number }).port}` },
      { name: 'OTEL_EXPORTER_OTLP_PROTOCOL', value: 'http/json' },
      { name: 'OTEL_BSP_SCHEDULE_DELAY', value: '200' },
    ];
    const helm = spawnSync(
      helmBin,
      [
        `--kubeconfig=${kubeconfig}`,
        'install',
        'ballast',
        join(root, 'charts', 'ballast'),
        '-n',
        'ballast-system',
        '--create-namespace',
        '--wait',
        '--timeout',
        '3m',
        '--set-json',
        `injection.sidecarEnv=${JSON.stringify(otel)}`,
      ],
      { encoding: 'utf8', timeout: 200_000 },
    );
    assert.equal(helm.status, 0, helm.stderr);
    const manifests = [
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'obs', labels: { 'ballast.dev/injection': 'enabled' } } },
      {
        apiVersion: 'ballast.dev/v1alpha1',
        kind: 'StoreCluster',
        metadata: { name: 'example', namespace: 'obs' },
        spec: {
          replicas: 3,
          version: '0.2.0',
          storage: { size: '1Gi' },
          podTemplate: { labels: { 'ballast.dev/inject': 'false' }, env: otel },
        },
      },
      // The app reaches the store through its sidecar's local gRPC listener.
      {
        apiVersion: 'ballast.dev/v1alpha1',
        kind: 'ResiliencePolicy',
        metadata: { name: 'store', namespace: 'obs' },
        spec: {
          service: { name: 'example-client', port: 2379 },
          protocol: 'http2',
          localPort: 12379,
          policy: { retries: { idempotentPaths: ['/etcdserverpb.KV/'] } },
        },
      },
      ...echoService('obs'),
      {
        apiVersion: 'ballast.dev/v1alpha1',
        kind: 'ResiliencePolicy',
        metadata: { name: 'echo', namespace: 'obs' },
        spec: { service: { name: 'echo', port: 80 }, policy: { retries: { maxAttempts: 2 }, timeouts: { requestMs: 3000 } } },
      },
      clientPod('obs'),
    ];
    const applied = await applyWhenRouted(kubectl, ['-f', '-'], manifests.map((m) => JSON.stringify(m)).join('\n'));
    assert.equal(applied.status, 0, applied.stderr);
    for (const w of [
      ['-n', 'obs', 'storecluster/example', '--for=condition=Ready'],
      ['-n', 'obs', 'pod/client', '--for=condition=Ready'],
      ['-n', 'obs', 'deployment/echo', '--for=condition=Available'],
    ]) {
      const r = kubectl(['wait', ...w, '--timeout=180s']);
      assert.equal(r.status, 0, r.stderr);
    }
    assert.equal(
      kubectl(['get', 'pod', 'client', '-n', 'obs', '-o', 'jsonpath={.metadata.annotations.ballast\\.dev/injected}']).stdout,
      'true',
      'the client pod has its sidecar (injected when it was created)',
    );
    // Backups, for the dashboard's Backups row: object storage on the node's address, a schedule
    // every 30 s that verifies each backup; one verified before Prometheus starts.
    weed = await startSeaweed(join(stateDir, 'weed'), nodeIp);
    await weed.createBucket('backups');
    const backups = [
      {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: 's3', namespace: 'obs' },
        stringData: { accessKeyId: weed.accessKeyId, secretAccessKey: weed.secretAccessKey },
      },
      {
        apiVersion: 'ballast.dev/v1alpha1',
        kind: 'StoreBackupSchedule',
        metadata: { name: 'often', namespace: 'obs' },
        spec: {
          cluster: 'example',
          schedule: '*/30 * * * * *',
          storage: { endpoint: weed.endpoint, bucket: 'backups', credentialsSecret: 's3' },
          retention: { keep: 2 },
          verify: true,
        },
      },
    ];
    assert.equal(kubectl(['apply', '-f', '-'], backups.map((m) => JSON.stringify(m)).join('\n')).status, 0);
    for (
      let i = 0;
      i < 360 &&
      !kubectl(['get', 'storebackups', '-n', 'obs', '-o', 'jsonpath={.items[*].status.verification.phase}']).stdout.includes('Verified');
      i++
    )
      await sleep(500);
    assert.match(
      kubectl(['get', 'storebackups', '-n', 'obs', '-o', 'jsonpath={.items[*].status.verification.phase}']).stdout,
      /Verified/,
      'a scheduled backup verified',
    );
    // Prometheus scrapes what the chart's PodMonitors select: store and operator pods by their
    // "metrics" port, injected pods by the sidecar's admin port. (Debian's Prometheus is built
    // without Kubernetes discovery, so the test discovers the pods and writes a file_sd file.)
    const dir = mkdtempSync(join(tmpdir(), 'ballast-prometheus-'));
    interface Pod {
      metadata: { name: string; namespace: string; annotations?: Record<string, string> };
      spec: { containers: Array<{ ports?: Array<{ name?: string; containerPort: number }> }> };
      status: { podIP?: string; phase?: string };
    }
    const pods = (JSON.parse(kubectl(['get', 'pods', '-A', '-o', 'json']).stdout) as { items: Pod[] }).items.filter(
      (p) => p.status.phase === 'Running' && p.status.podIP,
    );
    const targets = pods.flatMap((p) => {
      const labels = { namespace: p.metadata.namespace, pod: p.metadata.name };
      const metrics = p.spec.containers.flatMap((c) => c.ports ?? []).find((x) => x.name === 'metrics');
      return [
        ...(metrics ? [{ targets: [`${p.status.podIP}:${metrics.containerPort}`], labels: { ...labels, job: 'ballast' } }] : []),
        ...(p.metadata.annotations?.['ballast.dev/injected'] === 'true'
          ? [{ targets: [`${p.status.podIP}:15000`], labels: { ...labels, job: 'ballast-sidecars' } }]
          : []),
      ];
    });
    writeFileSync(join(dir, 'targets.json'), JSON.stringify(targets));
    writeFileSync(
      join(dir, 'prometheus.yml'),
      `global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: ballast
    file_sd_configs: [{files: [${JSON.stringify(join(dir, 'targets.json'))}]}]
`,
    );
    const port = await freePort();
    promUrl = `http://127.0.0.1:${port}`;
    prometheus = spawn(
      'prometheus',
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--log.level=error',
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    for (let i = 0; i < 120; i++) {
      try {
        if ((await fetch(`${promUrl}/-/ready`)).ok) break;
      } catch {
        /* starting */
      }
      await sleep(250);
    }
  });

  after(async () => {
    etcd?.close();
    receiver.close();
    if (prometheus?.pid) prometheus.kill('SIGTERM');
    await weed?.stop();
    spawnSync(bin, ['cluster', 'down', `--state-dir=${stateDir}`], { encoding: 'utf8', timeout: 60_000 });
  });

  it('Prometheus finds every target up: 3 store members, 2 operator replicas, 1 sidecar', async () => {
    // Other pods expose a "metrics" port too (CoreDNS): wait for the ones this test names, not
    // for a count of targets.
    let pods: string[] = [];
    const complete = (): boolean =>
      pods.filter((p) => /^ballast\/example-\d$/.test(p)).length === 3 &&
      pods.filter((p) => /^ballast\/ballast-operator-/.test(p)).length === 2 &&
      pods.includes('ballast-sidecars/client');
    for (let i = 0; i < 240 && !complete(); i++) {
      if (i > 0) await sleep(500);
      const t = (await (await fetch(`${promUrl}/api/v1/targets?state=active`)).json()) as {
        data: { activeTargets: Array<{ labels: { job: string; pod: string }; health: string }> };
      };
      pods = t.data.activeTargets
        .filter((x) => x.health === 'up')
        .map((x) => `${x.labels.job}/${x.labels.pod}`)
        .sort();
    }
    assert.equal(pods.filter((p) => /^ballast\/example-\d$/.test(p)).length, 3, pods.join(' '));
    assert.equal(pods.filter((p) => /^ballast\/ballast-operator-/.test(p)).length, 2, pods.join(' '));
    assert.deepEqual(
      pods.filter((p) => p.startsWith('ballast-sidecars/')),
      ['ballast-sidecars/client'],
    );
  });

  it('under load, every panel query of every dashboard returns data', async (t) => {
    // Load: writes, reads and a watch on the store; calls through the client's sidecar, some
    // of them failing (retried, and ejecting endpoints).
    const ips = kubectl(['get', 'pods', '-n', 'obs', '-l', 'app.kubernetes.io/instance=example', '-o', 'jsonpath={.items[*].status.podIP}'])
      .stdout.trim()
      .split(' ');
    etcd = new Etcd3({ hosts: ips.map((ip) => `http://${ip}:2379`) });
    const watcher = await etcd.watch().prefix('/obs/').create();
    let events = 0;
    watcher.on('put', () => events++);
    const client = kubectl(['get', 'pod', 'client', '-n', 'obs', '-o', 'jsonpath={.status.podIP}']).stdout;
    const call = async (path: string) => {
      const r = await fetch(`http://${client}:8080/fetch?url=${encodeURIComponent(`http://echo.obs.svc.cluster.local${path}`)}`);
      await r.arrayBuffer();
    };
    const deadline = Date.now() + 20_000;
    let i = 0;
    while (Date.now() < deadline) {
      await etcd.put(`/obs/k${i % 50}`).value(`v${i}`);
      await etcd.get(`/obs/k${(i * 7) % 50}`).string();
      // Mostly successes; every 25th second a burst of failures (retried, then ejected).
      const failing = Math.floor(i / 10) % 5 === 4;
      await call(failing ? '/status/503' : '/');
      i++;
      await sleep(20);
    }
    t.diagnostic(`load: ${i} puts and gets, ${events} watch events, ${i} calls through the sidecar`);
    assert.ok(events > 0);
    await watcher.cancel();
    etcd.close();
    etcd = undefined;
    // Give Prometheus a few more scrapes, then evaluate everything.
    await sleep(3000);
    const failures: string[] = [];
    let queries = 0;
    // The dashboards as they ship (the JSON the chart's ConfigMaps carry), variables filled as "All".
    for (const file of readdirSync(join(root, 'dashboards')).filter((f) => f.endsWith('.json'))) {
      const d = JSON.parse(readFileSync(join(root, 'dashboards', file), 'utf8')) as DashboardModel;
      for (const v of (d.templating?.list ?? []).filter((x) => x.type === 'query')) {
        const [, selector, label] = /^label_values\((.+), *(\w+)\)$/.exec(v.definition ?? '') ?? [];
        const r = await query(`count by (${label}) (${fillAll(selector ?? '')})`);
        queries++;
        if (r.status !== 'success' || (r.data?.result.length ?? 0) === 0)
          failures.push(`${d.title} variable ${v.name}: ${r.error ?? 'no data'}`);
      }
      for (const q of panelQueries(d)) {
        const r = await query(q.expr);
        queries++;
        if (r.status !== 'success') failures.push(`${q.panel}: error ${r.error} for ${q.expr}`);
        else if ((r.data?.result.length ?? 0) === 0) failures.push(`${q.panel}: no data for ${q.expr}`);
      }
    }
    t.diagnostic(`${queries} queries evaluated, ${failures.length} without data`);
    const outcomes = (await query('sum by (outcome) (ballast_sidecar_requests_total)')).data?.result as Array<{
      metric: { outcome: string };
      value: [number, string];
    }>;
    const retries = (await query('sum(ballast_sidecar_retries_total)')).data?.result as Array<{ value: [number, string] }>;
    t.diagnostic(
      `the sidecar saw ${outcomes.map((o) => `${o.value[1]} ${o.metric.outcome}`).join(', ')}; ${retries[0]?.value[1] ?? 0} retries`,
    );
    assert.deepEqual(failures, []);
  });

  it("a request from the sample app is one trace: the app's span → the sidecar's attempt → the store's server span", async (t) => {
    const client = kubectl(['get', 'pod', 'client', '-n', 'obs', '-o', 'jsonpath={.status.podIP}']).stdout;
    let answer = { traceparent: '', error: 'not called' };
    for (let i = 0; i < 60 && answer.error !== ''; i++) {
      const r = await fetch(`http://${client}:8080/grpc-put?target=127.0.0.1:12379&key=traced`);
      answer = (await r.json()) as typeof answer;
      if (answer.error !== '') await sleep(500);
    }
    assert.equal(answer.error, '', 'the Put went through the sidecar');
    const [, traceId, appSpan] = answer.traceparent.split('-');
    const ofTrace = () => spans.filter((x) => x.traceId === traceId);
    for (
      let i = 0;
      i < 100 && !(ofTrace().some((x) => x.service === 'ballast-store') && ofTrace().some((x) => x.service === 'ballast-sidecar'));
      i++
    )
      await sleep(100);
    t.diagnostic(
      `spans of the trace: ${ofTrace()
        .map((x) => `${x.service} ${x.name}`)
        .join('; ')} (${spans.length} spans received in all)`,
    );
    const sidecarSpan = ofTrace().find((x) => x.service === 'ballast-sidecar');
    const storeSpan = ofTrace().find((x) => x.service === 'ballast-store');
    assert.ok(sidecarSpan && storeSpan, 'spans from the sidecar and the store');
    assert.equal(sidecarSpan.parentSpanId, appSpan, "the sidecar's attempt under the app's span");
    assert.equal(storeSpan.parentSpanId, sidecarSpan.spanId, "the store's span under the attempt");
    assert.equal(storeSpan.name, 'etcdserverpb.KV/Put');
  });
});
