// Write the generated dashboards, the chart's copy of the alerts and Argo CD's argocd-cm patch
// (see dashboards/generate.ts).
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { renderObservability } from '../dashboards/generate.ts';
import { packageRoot } from '../lib/paths.ts';

for (const [rel, text] of renderObservability()) {
  const file = join(packageRoot(), rel);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, text);
  console.log(`wrote ${rel}`);
}
