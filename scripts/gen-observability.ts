// Write the generated dashboards, the chart's copy of the alerts and Argo CD's argocd-cm patch
// (see dashboards/generate.ts).
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { renderObservability } from '../dashboards/generate.ts';
import { lintDashboard } from '../dashboards/lint.ts';
import { packageRoot } from '../lib/paths.ts';

const files = renderObservability();
// Grafana's dashboard-linter rules: a dashboard that breaks one is not written.
const findings = [...files].filter(([rel]) => rel.startsWith('dashboards/')).flatMap(([, text]) => lintDashboard(JSON.parse(text)));
if (findings.length > 0) {
  console.error(findings.join('\n'));
  process.exit(1);
}
for (const [rel, text] of files) {
  const file = join(packageRoot(), rel);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, text);
  console.log(`wrote ${rel}`);
}
