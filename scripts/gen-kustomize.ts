// Write kustomize/base/ballast.yaml from the Helm chart (the one source of Ballast's manifests):
// `helm template` with the base's values, Helm's own labels removed. The overlays in
// kustomize/overlays are written by hand. A test fails when the base is stale.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderKustomizeBase } from '../test/support/kustomize-base.ts';
import { packageRoot } from '../lib/paths.ts';

const file = join(packageRoot(), 'kustomize', 'base', 'ballast.yaml');
writeFileSync(file, renderKustomizeBase());
console.log('wrote kustomize/base/ballast.yaml');
