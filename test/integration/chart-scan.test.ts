// The chart and the kustomize overlays, scanned by checkov (PyPI; `make checkov` installs it into
// the cache): the community's scanner for what users hit first (privileged or unbounded
// containers, missing probes, broad RBAC). Every finding is fixed in the chart or kept as a
// reasoned exception (a `checkov.io/skipN: <check>=<reason>` annotation on the object), and the
// test lists those. checkov runs in a network namespace of its own with only loopback (it would
// otherwise fetch guidelines from its vendor): the scan is offline, as everything here is.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { cacheDir } from '../../cluster/toolchain.ts';

const root = join(import.meta.dirname, '..', '..');
const helmBin = process.env['BALLAST_HELM'] ?? join(root, '.tools', 'helm-v3.22.0', 'helm');
const checkovBin = process.env['BALLAST_CHECKOV'] ?? join(cacheDir(), 'checkov-3.3.30', 'bin', 'checkov');
const chart = join(root, 'charts', 'ballast');

interface CheckResult {
  check_id: string;
  check_name: string;
  resource: string;
  file_path: string;
  check_result: { result: string; suppress_comment?: string };
}
interface Scan {
  summary: { passed: number; failed: number; skipped: number; parsing_errors: number; resource_count: number };
  results: { passed_checks?: CheckResult[]; failed_checks?: CheckResult[]; skipped_checks?: CheckResult[] };
}

/** checkov's Kubernetes checks on every manifest in `dir`, offline. */
function checkov(dir: string): Scan {
  assert.ok(existsSync(checkovBin), `${checkovBin} is missing: run \`make checkov\``);
  const r = spawnSync(
    'unshare',
    ['--net', checkovBin, '--directory', dir, '--framework', 'kubernetes', '--skip-download', '--output', 'json', '--compact'],
    {
      encoding: 'utf8',
      env: { ...process.env, BC_SKIP_MAPPING: 'TRUE' },
      maxBuffer: 64 << 20,
      timeout: 300_000,
    },
  );
  // checkov exits 1 when a check fails; anything else (or no JSON) is checkov itself failing.
  assert.ok(r.status === 0 || r.status === 1, `checkov: exit ${r.status}: ${r.stderr.slice(-2000)}`);
  const parsed = JSON.parse(r.stdout) as Scan | Scan[];
  return Array.isArray(parsed) ? parsed[0]! : parsed;
}

const failures = (s: Scan) =>
  (s.results.failed_checks ?? []).map((c) => `${c.check_id} "${c.check_name}" on ${c.resource} (${c.file_path})`);

describe('checkov on the rendered chart and both kustomize overlays', { timeout: 600_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'ballast-checkov-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('no check fails; every exception kept is a reasoned annotation in the chart', (t) => {
    const helm = (name: string, ...extra: string[]) => {
      const r = spawnSync(helmBin, ['template', 'ballast', chart, '-n', 'ballast-system', '--kube-version', '1.36.3', ...extra], {
        encoding: 'utf8',
      });
      assert.equal(r.status, 0, `helm template (${name}): ${r.stderr}`);
      writeFileSync(join(dir, `${name}.yaml`), r.stdout);
    };
    helm('chart-defaults');
    // Everything optional on: the Prometheus Operator's objects render when its API is there.
    helm(
      'chart-monitoring',
      '--api-versions',
      'monitoring.coreos.com/v1',
      '--set',
      'metrics.serviceMonitor.enabled=true',
      '--set',
      'metrics.podMonitors.enabled=true',
      '--set',
      'metrics.prometheusRule.enabled=true',
    );
    for (const overlay of ['dev', 'production']) {
      const r = spawnSync('kubectl', ['kustomize', join(root, 'kustomize', 'overlays', overlay)], { encoding: 'utf8' });
      assert.equal(r.status, 0, `kubectl kustomize ${overlay}: ${r.stderr}`);
      writeFileSync(join(dir, `overlay-${overlay}.yaml`), r.stdout);
    }
    const scan = checkov(dir);
    assert.equal(scan.summary.parsing_errors, 0, 'checkov parsed every manifest');
    assert.deepEqual(
      failures(scan),
      [],
      "checkov's failed checks: fix them in the chart, or keep one with a checkov.io/skipN annotation that says why",
    );
    const skipped = scan.results.skipped_checks ?? [];
    for (const s of skipped)
      assert.ok((s.check_result.suppress_comment ?? '').length > 20, `${s.check_id} on ${s.resource} is skipped without a reason`);
    t.diagnostic(
      `${scan.summary.resource_count} objects: ${scan.summary.passed} checks passed, ${scan.summary.failed} failed, ${scan.summary.skipped} kept as exceptions`,
    );
    for (const id of [...new Set(skipped.map((s) => s.check_id))].sort()) {
      t.diagnostic(
        `  ${id} (${skipped.filter((s) => s.check_id === id).length}×): ${skipped.find((s) => s.check_id === id)!.check_result.suppress_comment}`,
      );
    }
  });

  it("a manifest that breaks a check fails it with checkov's own message", () => {
    const bad = join(dir, 'bad');
    spawnSync('mkdir', ['-p', bad]);
    writeFileSync(
      join(bad, 'privileged.yaml'),
      [
        'apiVersion: v1',
        'kind: Pod',
        'metadata: {name: privileged, namespace: ballast-system}',
        'spec:',
        '  containers:',
        '    - name: app',
        '      image: ballast:0.2.0',
        '      securityContext: {privileged: true}',
        '',
      ].join('\n'),
    );
    const found = failures(checkov(bad));
    assert.ok(
      found.some((f) => f.startsWith('CKV_K8S_16 "Container should not be privileged"')),
      found.join('\n'),
    );
  });
});
