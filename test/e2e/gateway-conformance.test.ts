// The Gateway API's own conformance suite (sigs.k8s.io/gateway-api/conformance, the release of the
// CRDs `make gateway-api` installs), MESH-HTTP and MESH-GRPC profiles, against Ballast installed
// by its Helm chart on the real node: the suite makes its namespaces (labelled for injection), its
// echo Deployments (Istio's echo app, built from its Go module into the image its manifests name),
// its HTTPRoutes and GRPCRoutes, then calls Services from inside the meshed pods with `kubectl
// exec` of the echo client, which has no proxy settings (transparent interception does it).
// Promises: every core test of both profiles passes, every extended feature claimed below passes,
// and the report the suite writes (docs/conformance/) says so.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { binaries, cacheDir, gatewayApiVersion } from '../../cluster/toolchain.ts';
import { LocalCluster, crdsEstablished, gatewayApiCrds } from '../support/cluster.ts';

const root = join(import.meta.dirname, '..', '..');
const helmBin = process.env['BALLAST_HELM'] ?? join(root, '.tools', 'helm-v3.22.0', 'helm');
const chart = join(root, 'charts', 'ballast');
const version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;
const reportPath = join(root, 'docs', 'conformance', `gateway-api-${gatewayApiVersion()}-mesh-report.yaml`);

/**
 * What Ballast claims beyond the profiles' core (Mesh, HTTPRoute, GRPCRoute): every extended
 * feature the mesh tests exercise. The suite runs a test only when all its features are claimed,
 * so a claim is a promise the test then checks.
 */
const claimed = [
  'Mesh',
  'HTTPRoute',
  'GRPCRoute',
  'MeshClusterIPMatching',
  'MeshConsumerRoute',
  'MeshHTTPRouteBackendRequestHeaderModification',
  'MeshHTTPRouteNamedRouteRule',
  'MeshHTTPRouteQueryParamMatching',
  'MeshHTTPRouteRedirectPath',
  'MeshHTTPRouteRedirectPort',
  'MeshHTTPRouteRewritePath',
  'MeshHTTPRouteSchemeRedirect',
  'HTTPRouteResponseHeaderModification',
  'HTTPRouteParentRefPort',
  'HTTPRoute303RedirectStatusCode',
  'HTTPRoute307RedirectStatusCode',
  'HTTPRoute308RedirectStatusCode',
];

interface Statistics {
  Failed: number;
  Passed: number;
  Skipped: number;
}
interface Report {
  gatewayAPIVersion: string;
  gatewayAPIChannel: string;
  profiles: Array<{
    name: string;
    core: { result: string; statistics: Statistics; failedTests?: string[] };
    extended?: { result: string; statistics: Statistics; supportedFeatures?: string[]; failedTests?: string[] };
  }>;
}

describe('the Gateway API conformance suite, mesh profiles, on the real node', { timeout: 900_000 }, () => {
  const cluster = new LocalCluster('gateway-conformance');
  const { stateDir, kubeconfig } = cluster;
  const kubectl = (args: string[], input?: string) => cluster.kubectl(args, input);

  before(async () => {
    const suite = binaries(cacheDir()).gatewayConformance;
    assert.ok(existsSync(suite), `${suite} is missing: run make control-plane (cluster/go/build builds it)`);
    await cluster.up();
  });
  after(() => cluster.down());

  it('installs Ballast with transparent interception for every injected pod', async (t) => {
    // The Gateway API CRDs first (a prerequisite the chart documents), so the operator finds them at start.
    assert.equal(kubectl(['apply', '--server-side', '-f', join(chart, 'crds')]).status, 0);
    assert.equal(kubectl(['apply', '--server-side', '-f', gatewayApiCrds()]).status, 0);
    await crdsEstablished(kubectl, ['httproutes.gateway.networking.k8s.io', 'grpcroutes.gateway.networking.k8s.io']);
    assert.equal(kubectl(['create', 'namespace', 'ballast-system']).status, 0);
    const values = ['operator.replicas=1', 'injection.interception.enabled=true'].flatMap((v) => ['--set', v]);
    const r = spawnSync(helmBin, [`--kubeconfig=${kubeconfig}`, 'install', 'ballast', chart, '-n', 'ballast-system', '--wait', ...values], {
      encoding: 'utf8',
      timeout: 200_000,
    });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    // The suite's pods must be injected: wait until the webhook answers through its Service
    // (kube-proxy programs a new Service's endpoints a moment after the pod is Ready).
    const probe = () => kubectl(['apply', '--dry-run=server', '-f', join(root, 'examples', 'storecluster.yaml')]);
    const start = Date.now();
    let dry = probe();
    for (let i = 0; i < 120 && dry.status !== 0; i++) {
      await new Promise((res) => setTimeout(res, 250));
      dry = probe();
    }
    assert.equal(dry.status, 0, dry.stderr);
    t.diagnostic(`webhook reachable ${Date.now() - start} ms after helm --wait returned`);
  });

  it('MESH-HTTP and MESH-GRPC: every core test and every claimed extended feature passes, and the report says so', (t) => {
    mkdirSync(join(root, 'docs', 'conformance'), { recursive: true });
    const out = join(stateDir, 'report.yaml');
    const log = join(stateDir, 'conformance.log');
    const start = Date.now();
    const run = spawnSync(
      binaries(cacheDir()).gatewayConformance,
      [
        '-test.run=^TestConformance$',
        '-test.v',
        '-test.timeout=12m',
        '--conformance-profiles=MESH-HTTP,MESH-GRPC',
        `--supported-features=${claimed.join(',')}`,
        // Namespaces the suite makes are meshed: the sidecar is injected into every pod there.
        '--namespace-labels=ballast.dev/injection=enabled',
        `--report-output=${out}`,
        '--organization=ballast',
        '--project=ballast',
        '--url=https://github.com/ballast-dev/ballast',
        `--version=${version}`,
        '--contact=https://github.com/ballast-dev/ballast/issues',
        '--mode=default',
      ],
      { encoding: 'utf8', env: { ...process.env, KUBECONFIG: kubeconfig }, cwd: stateDir, timeout: 780_000, maxBuffer: 256 * 1024 * 1024 },
    );
    writeFileSync(log, run.stdout + run.stderr);
    const verdicts = (run.stdout ?? '').split('\n').filter((l) => /^ {4}--- (PASS|FAIL)/.test(l));
    t.diagnostic(`suite ran ${Date.now() - start} ms; ${verdicts.length} tests:\n${verdicts.join('\n')}`);
    const failed = verdicts.filter((l) => l.includes('FAIL'));
    assert.deepEqual(failed, [], `failed (the suite's output is in ${log}):\n${failed.join('\n')}`);
    assert.equal(run.status, 0, `the suite exited ${run.status} (its output is in ${log})`);

    const text = readFileSync(out, 'utf8');
    const report = parse(text) as Report;
    assert.equal(report.gatewayAPIVersion, gatewayApiVersion());
    assert.equal(report.gatewayAPIChannel, 'standard');
    assert.deepEqual(report.profiles.map((p) => p.name).sort(), ['MESH-GRPC', 'MESH-HTTP']);
    for (const p of report.profiles) {
      assert.equal(p.core.result, 'success', `${p.name} core: ${JSON.stringify(p.core)}`);
      assert.equal(p.core.statistics.Failed, 0);
      assert.equal(p.core.statistics.Skipped, 0, `${p.name}: no core test is skipped`);
      assert.ok(p.core.statistics.Passed > 0);
      if (p.extended) {
        assert.equal(p.extended.result, 'success', `${p.name} extended: ${JSON.stringify(p.extended)}`);
        assert.equal(p.extended.statistics.Failed, 0);
      }
    }
    const http = report.profiles.find((p) => p.name === 'MESH-HTTP');
    const extendedClaims = claimed.filter((f) => f.startsWith('Mesh') && f !== 'Mesh');
    assert.deepEqual([...(http?.extended?.supportedFeatures ?? [])].sort(), extendedClaims.sort());
    // The report is published with the docs (the same file the Gateway API project collects).
    writeFileSync(reportPath, text);
    const line = (p: Report['profiles'][number]) =>
      `${p.name}: core ${p.core.statistics.Passed} passed, ${p.core.statistics.Failed} failed, ${p.core.statistics.Skipped} skipped` +
      (p.extended
        ? `; extended ${p.extended.statistics.Passed} passed, ${p.extended.statistics.Failed} failed, ${p.extended.statistics.Skipped} skipped`
        : '');
    t.diagnostic(report.profiles.map(line).join('\n'));
  });
});
