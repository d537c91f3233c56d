/**
 * Generated files for observing and deploying Ballast, from their one source each:
 * - dashboards/*.json and the chart's copy (from dashboards/definitions.ts);
 * - the chart's copy of the alert rules (from alerts/ballast.rules.yaml);
 * - argocd/argocd-cm.yaml, Argo CD's health customizations (from argocd/resource_customizations).
 * `npm run gen:observability` writes them; a test fails when a committed copy is stale.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../lib/paths.ts';
import { dashboards, renderDashboard } from './definitions.ts';

export function renderObservability(root = packageRoot()): Map<string, string> {
  const out = new Map<string, string>();
  for (const d of dashboards) {
    const json = renderDashboard(d);
    out.set(`dashboards/${d.uid}.json`, json);
    out.set(`charts/ballast/dashboards/${d.uid}.json`, json);
  }
  out.set('charts/ballast/files/ballast.rules.yaml', readFileSync(join(root, 'alerts', 'ballast.rules.yaml'), 'utf8'));
  const custom = join(root, 'argocd', 'resource_customizations');
  const lines = [
    "# Argo CD health checks for Ballast's resources (generated from argocd/resource_customizations",
    "# by `npm run gen:observability`). Merge into Argo CD's argocd-cm ConfigMap, e.g.",
    '#   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file argocd/argocd-cm.yaml',
    'apiVersion: v1',
    'kind: ConfigMap',
    'metadata:',
    '  name: argocd-cm',
    '  namespace: argocd',
    '  labels: {app.kubernetes.io/part-of: argocd}',
    'data:',
  ];
  for (const group of readdirSync(custom).sort()) {
    for (const kind of readdirSync(join(custom, group)).sort()) {
      const lua = readFileSync(join(custom, group, kind, 'health.lua'), 'utf8');
      lines.push(`  resource.customizations.health.${group}_${kind}: |`);
      for (const l of lua.trimEnd().split('\n')) lines.push(l === '' ? '' : `    ${l}`);
    }
  }
  out.set('argocd/argocd-cm.yaml', `${lines.join('\n')}\n`);
  return out;
}
