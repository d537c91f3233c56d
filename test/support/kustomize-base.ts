// kustomize/base/ballast.yaml, rendered from the Helm chart (see scripts/gen-kustomize.ts).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { parseAllDocuments, stringify } from 'yaml';
import { packageRoot } from '../../lib/paths.ts';

const helmBin = () => process.env['BALLAST_HELM'] ?? join(packageRoot(), '.tools', 'helm-v3.22.0', 'helm');

/** The base's values: one replica, no PDB or spread (the production overlay adds them). */
export const baseValues = ['operator.replicas=1', 'operator.podDisruptionBudget.enabled=false', 'operator.topologySpread=false'];

export function renderKustomizeBase(): string {
  const chart = join(packageRoot(), 'charts', 'ballast');
  const r = spawnSync(
    helmBin(),
    ['template', 'ballast', chart, '-n', 'ballast-system', '--kube-version', '1.36.3', ...baseValues.flatMap((v) => ['--set', v])],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`helm template failed: ${r.stderr}`);
  const docs = parseAllDocuments(r.stdout)
    .map((d) => d.toJS() as { kind?: string; metadata?: { labels?: Record<string, string> } } | null)
    .filter((d): d is { kind: string; metadata: { labels?: Record<string, string> } } => !!d?.kind);
  const strip = (labels?: Record<string, string>) => {
    if (!labels) return;
    delete labels['helm.sh/chart'];
    delete labels['app.kubernetes.io/managed-by'];
  };
  for (const d of docs) strip(d.metadata.labels);
  const head =
    "# Generated from charts/ballast by `npm run gen:kustomize` (helm template with the base's values,\n# Helm's labels removed); do not edit: change the chart, or patch it in an overlay.\n";
  return head + docs.map((d) => stringify(d, { lineWidth: 0 })).join('---\n');
}
