// Observing and deploying Ballast, checked with the tools users run: promtool (Debian's
// prometheus package) on the alerts, Argo CD's own Lua runtime and test on its health checks, helm on the chart's
// dashboards and PrometheusRule. The dashboards' queries against a real Prometheus are in
// test/e2e/observe.test.ts.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parse, parseAllDocuments } from 'yaml';
import { dashboards } from '../../dashboards/definitions.ts';
import { renderObservability } from '../../dashboards/generate.ts';
import { type DashboardModel, lintDashboard } from '../../dashboards/lint.ts';
import { binaries, cacheDir, versions } from '../../cluster/toolchain.ts';

const root = join(import.meta.dirname, '..', '..');
const helmBin = process.env['BALLAST_HELM'] ?? join(root, '.tools', 'helm-v3.22.0', 'helm');

/**
 * Argo CD's own health-check test, TestLuaHealthScript of Argo CD's util/lua (gopher-lua with
 * Argo CD's sandbox; built by cluster/go/build with our checks embedded among Argo CD's), run on
 * argocd/resource_customizations/ballast.dev: its subtests' verdicts, by `<group>/<kind>/<input>`.
 */
function argoHealthTests(): { verdicts: Map<string, boolean>; output: string } {
  const bin = binaries(cacheDir()).argocdLuaTests;
  assert.ok(
    existsSync(bin),
    `${bin} is missing: run \`make control-plane\` (cluster/go/build builds Argo CD ${versions.argocd}'s Lua health test)`,
  );
  // The scripts are compiled in: a binary built before a health.lua changed would test the old one.
  const built = readFileSync(`${bin}.key`, 'utf8').trim();
  const checks = join(root, 'argocd', 'resource_customizations', 'ballast.dev');
  const scripts = readdirSync(checks)
    .map((k) => join(checks, k, 'health.lua'))
    .filter((f) => existsSync(f))
    .sort();
  const want = createHash('sha256')
    .update(Buffer.concat([readFileSync(join(root, 'cluster', 'go', 'build')), ...scripts.map((f) => readFileSync(f))]))
    .digest('hex')
    .slice(0, 16);
  assert.equal(built, want, `${bin} was built from other health.lua files: run \`make control-plane\` to rebuild it`);
  // The test walks ../../resource_customizations from where it runs: a copy of ours.
  const dir = mkdtempSync(join(tmpdir(), 'ballast-argocd-lua-'));
  cpSync(join(root, 'argocd', 'resource_customizations'), join(dir, 'resource_customizations'), { recursive: true });
  mkdirSync(join(dir, 'util', 'lua'), { recursive: true });
  const r = spawnSync(bin, ['-test.run', '^TestLuaHealthScript$', '-test.v'], { cwd: join(dir, 'util', 'lua'), encoding: 'utf8' });
  assert.match(r.stdout, /^(PASS|FAIL)$/m, `${bin}: ${r.stderr}${r.stdout.slice(-2000)}`);
  return {
    verdicts: new Map([...r.stdout.matchAll(/^\s+--- (PASS|FAIL): TestLuaHealthScript\/(\S+)/gm)].map((m) => [m[2]!, m[1] === 'PASS'])),
    output: r.stdout,
  };
}

describe('observability and deployment files', () => {
  it("the generated dashboards, the chart's alert copy and argocd-cm.yaml are up to date (npm run gen:observability)", () => {
    for (const [rel, text] of renderObservability()) {
      let committed = '';
      try {
        committed = readFileSync(join(root, rel), 'utf8');
      } catch {
        /* missing: reported below */
      }
      assert.equal(committed, text, `${rel} is stale: run npm run gen:observability`);
    }
  });

  it('dashboards: unique ids, every panel names its data source and explains itself', () => {
    const uids = new Set<string>();
    for (const file of readdirSync(join(root, 'dashboards')).filter((f) => f.endsWith('.json'))) {
      const d = JSON.parse(readFileSync(join(root, 'dashboards', file), 'utf8')) as {
        uid: string;
        panels: Array<{ type: string; title: string; description?: string; datasource?: unknown; targets?: Array<{ expr: string }> }>;
      };
      assert.ok(!uids.has(d.uid), `duplicate uid ${d.uid}`);
      uids.add(d.uid);
      for (const p of d.panels.filter((x) => x.type !== 'row')) {
        assert.ok(p.datasource, `${file}: ${p.title} has no data source`);
        assert.ok(p.description && p.description.length > 10, `${file}: ${p.title} has no description`);
        assert.ok((p.targets ?? []).length > 0 && p.targets!.every((t) => t.expr.length > 0), `${file}: ${p.title} has no query`);
      }
    }
    assert.equal(uids.size, dashboards.length);
  });

  it("dashboards keep every rule of Grafana's dashboard linter (datasource variable, job and instance, rate intervals, units, counters)", (t) => {
    let panels = 0;
    for (const file of readdirSync(join(root, 'dashboards')).filter((f) => f.endsWith('.json'))) {
      const d = JSON.parse(readFileSync(join(root, 'dashboards', file), 'utf8')) as DashboardModel;
      panels += (d.panels ?? []).filter((p) => p.type !== 'row').length;
      assert.deepEqual(lintDashboard(d), [], `${file} breaks the linter's rules`);
    }
    t.diagnostic(`${panels} panels linted`);
  });

  it("a dashboard that breaks a linter rule is refused with the rule's name and what to fix", () => {
    const shipped = readFileSync(join(root, 'dashboards', 'ballast-store.json'), 'utf8');
    type Panel = {
      title?: string;
      targets: Array<{ expr: string }>;
      fieldConfig: { defaults: { unit?: string } };
      datasource?: unknown;
      description?: string;
    };
    type Mutable = Omit<DashboardModel, 'panels' | 'templating'> & {
      panels: Panel[];
      templating: { list: Array<{ name?: string; type?: string; refresh?: number }> };
    };
    const panel = (d: Mutable) => d.panels.find((p) => p.title === 'Proposals committed / s')!;
    const query = (d: Mutable) => panel(d).targets[0]!;
    const cases: Array<[string, (d: Mutable) => void, RegExp]> = [
      [
        'rate over a fixed window',
        (d) => {
          query(d).expr = 'sum(rate(etcd_server_proposals_committed_total{job=~"$job", instance=~"$instance"}[5m]))';
        },
        /\[target-rate-interval-rule\] .*should use \[\$__rate_interval\]/,
      ],
      [
        'a query not narrowed by job',
        (d) => {
          query(d).expr = 'sum(rate(etcd_server_proposals_committed_total{instance=~"$instance"}[$__rate_interval]))';
        },
        /\[target-job-rule\] .*job=~"\$job"/,
      ],
      [
        'a counter read raw',
        (d) => {
          query(d).expr = 'sum(etcd_server_proposals_committed_total{job=~"$job", instance=~"$instance"})';
        },
        /\[target-counter-agg-rule\] .*etcd_server_proposals_committed_total/,
      ],
      [
        'a panel with no unit',
        (d) => {
          delete panel(d).fieldConfig.defaults.unit;
        },
        /\[panel-units-rule\] .*no unit/,
      ],
      [
        'a panel with a unit Grafana does not know',
        (d) => {
          panel(d).fieldConfig.defaults.unit = 'furlongs';
        },
        /\[panel-units-rule\] .*unknown unit 'furlongs'/,
      ],
      [
        'a panel on a fixed data source',
        (d) => {
          panel(d).datasource = { type: 'prometheus', uid: 'prom-1' };
        },
        /\[panel-datasource-rule\]/,
      ],
      [
        'a panel without a description',
        (d) => {
          delete panel(d).description;
        },
        /\[panel-title-description-rule\]/,
      ],
      [
        'an editable dashboard',
        (d) => {
          d.editable = true;
        },
        /\[uneditable-dashboard\]/,
      ],
      [
        'no data source variable',
        (d) => {
          d.templating.list = d.templating.list.filter((v) => v.type !== 'datasource');
        },
        /\[template-datasource-rule\]/,
      ],
      [
        'no instance variable',
        (d) => {
          d.templating.list = d.templating.list.filter((v) => v.name !== 'instance');
        },
        /\[template-instance-rule\] .*no 'instance' variable/,
      ],
      [
        'a variable that never refreshes',
        (d) => {
          d.templating.list[1]!.refresh = 1;
        },
        /\[template-on-time-change-reload-rule\]/,
      ],
    ];
    for (const [name, mutate, finding] of cases) {
      const d = JSON.parse(shipped) as Mutable;
      mutate(d);
      const findings = lintDashboard(d as DashboardModel);
      assert.ok(
        findings.some((f) => finding.test(f)),
        `${name}: expected ${finding}, got ${JSON.stringify(findings)}`,
      );
    }
  });

  it('alerts: promtool check rules passes and promtool test rules shows each alert firing on its case and quiet on its near miss', () => {
    // The chart's PrometheusRule carries the very same file (it had fallen behind once, missing the backup alerts).
    assert.equal(
      readFileSync(join(root, 'charts', 'ballast', 'files', 'ballast.rules.yaml'), 'utf8'),
      readFileSync(join(root, 'alerts', 'ballast.rules.yaml'), 'utf8'),
      'charts/ballast/files/ballast.rules.yaml is a copy of alerts/ballast.rules.yaml: cp alerts/ballast.rules.yaml charts/ballast/files/',
    );
    const check = spawnSync('promtool', ['check', 'rules', 'ballast.rules.yaml'], { cwd: join(root, 'alerts'), encoding: 'utf8' });
    assert.equal(check.status, 0, check.stdout + check.stderr);
    const alerts = [...readFileSync(join(root, 'alerts', 'ballast.rules.yaml'), 'utf8').matchAll(/- alert: (\w+)/g)].map(
      (m) => m[1] as string,
    );
    assert.match(check.stdout, new RegExp(`SUCCESS: ${alerts.length} rules found`));
    // Every alert has a case in the test file.
    const cases = readFileSync(join(root, 'alerts', 'ballast.rules.test.yaml'), 'utf8');
    for (const a of alerts) assert.match(cases, new RegExp(`alertname: ${a}\\b`), `${a} has no promtool test case`);
    const test = spawnSync('promtool', ['test', 'rules', 'ballast.rules.test.yaml'], { cwd: join(root, 'alerts'), encoding: 'utf8' });
    assert.equal(test.status, 0, test.stdout + test.stderr);
    assert.match(test.stdout, /SUCCESS/);
  });

  it('the chart renders the dashboards as labelled ConfigMaps, and the PrometheusRule and PodMonitors only when their CRDs exist', () => {
    const chart = join(root, 'charts', 'ballast');
    const render = (...extra: string[]) => {
      const r = spawnSync(helmBin, ['template', 'ballast', chart, '-n', 'ballast-system', '--kube-version', '1.36.3', ...extra], {
        encoding: 'utf8',
      });
      assert.equal(r.status, 0, r.stderr);
      return parseAllDocuments(r.stdout)
        .map(
          (d) =>
            d.toJS() as {
              kind: string;
              metadata: { name: string; labels?: Record<string, string> };
              data?: Record<string, string>;
              spec?: unknown;
            },
        )
        .filter(Boolean);
    };
    const plain = render('--set', 'metrics.prometheusRule.enabled=true', '--set', 'metrics.podMonitors.enabled=true');
    const maps = plain.filter((o) => o.kind === 'ConfigMap' && o.metadata.labels?.['grafana_dashboard'] === '1');
    assert.deepEqual(maps.map((m) => Object.keys(m.data ?? {})[0]).sort(), [
      'ballast-operator.json',
      'ballast-sidecar.json',
      'ballast-store.json',
    ]);
    for (const m of maps) JSON.parse(Object.values(m.data ?? {})[0] as string);
    assert.equal(
      plain.filter((o) => o.kind === 'PrometheusRule' || o.kind === 'PodMonitor').length,
      0,
      'no monitoring CRDs, no monitoring objects',
    );
    const withCrds = render(
      '--set',
      'metrics.prometheusRule.enabled=true',
      '--set',
      'metrics.podMonitors.enabled=true',
      '--api-versions',
      'monitoring.coreos.com/v1/PrometheusRule',
      '--api-versions',
      'monitoring.coreos.com/v1/PodMonitor',
    );
    const rule = withCrds.find((o) => o.kind === 'PrometheusRule');
    assert.deepEqual(
      rule?.spec,
      parse(readFileSync(join(root, 'alerts', 'ballast.rules.yaml'), 'utf8')),
      'the PrometheusRule carries exactly the tested rules',
    );
    assert.equal(withCrds.filter((o) => o.kind === 'PodMonitor').length, 3, 'stores, archivers, sidecars');
  });

  it(`Argo CD health: Argo CD ${versions.argocd}'s own TestLuaHealthScript passes every sample of every kind, and the samples cover every status`, () => {
    const { verdicts, output } = argoHealthTests();
    for (const kind of ['StoreCluster', 'ResiliencePolicy', 'StoreBackup', 'StoreBackupSchedule']) {
      const dir = join(root, 'argocd', 'resource_customizations', 'ballast.dev', kind);
      const cases = (
        parse(readFileSync(join(dir, 'health_test.yaml'), 'utf8')) as {
          tests: Array<{ inputPath: string; healthStatus: { status: string; message: string } }>;
        }
      ).tests;
      assert.ok(cases.length >= 4);
      for (const c of cases)
        assert.equal(verdicts.get(`ballast.dev/${kind}/${c.inputPath}`), true, `${kind} ${c.inputPath}: Argo CD's verdict:\n${output}`);
      if (kind === 'StoreCluster') {
        const seen = new Set(cases.map((c) => c.healthStatus.status));
        for (const st of ['Healthy', 'Progressing', 'Degraded', 'Suspended']) assert.ok(seen.has(st), `a sample for ${st}`);
      }
    }
  });
});
