// Every program's error catalogue: codes unique across programs and documented in docs/errors.md.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { ErrorCatalogue } from '../lib/errors.ts';

const root = fileURLToPath(new URL('..', import.meta.url));

function findCatalogues(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    if (['node_modules', 'dist', '.tools', '.git', 'test'].includes(name)) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...findCatalogues(p));
    else if (name === 'errors.ts') out.push(p);
  }
  return out;
}

it('every error code is unique across programs and documented in docs/errors.md', async () => {
  const files = findCatalogues(root);
  assert.ok(files.length >= 2, 'found the catalogues');
  const docs = readFileSync(join(root, 'docs/errors.md'), 'utf8');
  const seen = new Map<string, string>();
  for (const file of files) {
    const mod = (await import(pathToFileURL(file).href)) as { catalogue?: ErrorCatalogue };
    assert.ok(mod.catalogue, `${relative(root, file)} exports its catalogue as \`catalogue\``);
    for (const code of Object.keys(mod.catalogue.entries)) {
      assert.ok(!seen.has(code), `${code} is in both ${seen.get(code)} and ${relative(root, file)}`);
      seen.set(code, relative(root, file));
      assert.match(docs, new RegExp(`\\b${code}\\b`), `${code} (${relative(root, file)}) is documented in docs/errors.md`);
    }
  }
});
