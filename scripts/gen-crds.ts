// Write crds/ from the definitions in operator/api and api/ (the CRDs' single source).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderCrds } from '../operator/api/crds.ts';
import { packageRoot } from '../lib/paths.ts';

// crds/ for kubectl and kustomize; the chart's crds/ for Helm (installed before its templates).
for (const rel of ['crds', 'charts/ballast/crds']) {
  const dir = join(packageRoot(), rel);
  mkdirSync(dir, { recursive: true });
  for (const [name, text] of renderCrds()) {
    writeFileSync(join(dir, name), text);
    console.log(`wrote ${rel}/${name}`);
  }
}
