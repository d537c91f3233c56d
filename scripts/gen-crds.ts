// Write crds/ from the definitions in operator/api (the CRDs' single source).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderCrds } from '../operator/api/crds.ts';
import { packageRoot } from '../lib/paths.ts';

const dir = join(packageRoot(), 'crds');
mkdirSync(dir, { recursive: true });
for (const [name, text] of renderCrds()) {
  writeFileSync(join(dir, name), text);
  console.log(`wrote crds/${name}`);
}
