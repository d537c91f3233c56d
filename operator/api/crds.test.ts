import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { packageRoot } from '../../lib/paths.ts';
import { definitions, renderCrds } from './crds.ts';
import type { Schema } from '../../api/schema.ts';

describe('crds/', () => {
  it("crds/ and the chart's crds/ match operator/api (run `npm run gen:crds` after changing a definition)", () => {
    for (const dir of ['crds', 'charts/ballast/crds']) {
      for (const [name, text] of renderCrds())
        assert.equal(readFileSync(join(packageRoot(), dir, name), 'utf8'), text, `${dir}/${name} is stale`);
    }
  });
  it('documents every field, so kubectl explain teaches', () => {
    const missing: string[] = [];
    const walk = (sch: Schema, path: string) => {
      if (!sch.description) missing.push(path);
      for (const [k, v] of Object.entries(sch.properties ?? {})) walk(v, `${path}.${k}`);
      if (sch.items) walk(sch.items, `${path}[]`);
    };
    for (const d of definitions) {
      walk(d.spec, `${d.kind}.spec`);
      walk(d.status, `${d.kind}.status`);
    }
    assert.deepEqual(missing, []);
  });
});
