// The docs name files and sections that exist: a path in backticks that starts at one of the
// repository's folders (`store/raft/node.ts`, `bench/store-vs-etcd`), and a link to another page
// or to a section of one. A file moved or renamed without its docs fails here, naming the line.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { describe, it } from 'node:test';

const root = join(import.meta.dirname, '..');
const pages = [
  'README.md',
  ...readdirSync(join(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];
const folders = new Set(
  readdirSync(root).filter(
    (d) => !d.startsWith('.') && !['node_modules', 'dist', 'scratch'].includes(d) && statSync(join(root, d)).isDirectory(),
  ),
);
/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens. */
const slug = (heading: string) =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, '')
    .replace(/ /g, '-');
const anchors = (page: string) =>
  new Set(
    readFileSync(join(root, page), 'utf8')
      .split('\n')
      .filter((l) => /^#{1,6} /.test(l))
      .map((l) => slug(l.replace(/^#+ /, ''))),
  );

describe('docs name files and sections that exist', () => {
  it('every repository path in backticks and every local link resolves', () => {
    const missing: string[] = [];
    for (const page of pages) {
      readFileSync(join(root, page), 'utf8')
        .split('\n')
        .forEach((line, i) => {
          const where = `${page}:${i + 1}`;
          for (const [, token] of line.matchAll(/`([^`\s]+)`/g)) {
            // Patterns and placeholders (test/**/*.test.ts, <name>, ${x}) name no one file.
            if (!token!.includes('/') || /[*<>{}$=]/.test(token!)) continue;
            const path = token!.replace(/[:#].*$/, '').replace(/[/.,]+$/, '');
            if (!folders.has(path.split('/')[0]!)) continue;
            if (!existsSync(join(root, path)) && !existsSync(join(root, `${path}.ts`))) missing.push(`${where}: \`${token}\``);
          }
          for (const [, target] of line.matchAll(/\]\(([^)\s]+)\)/g)) {
            if (/^[a-z]+:/.test(target!)) continue;
            const [file, anchor] = target!.split('#');
            const resolved = file ? normalize(join(dirname(page), file)) : page;
            if (!existsSync(join(root, resolved))) missing.push(`${where}: link ${target}`);
            else if (anchor && resolved.endsWith('.md') && !anchors(resolved).has(anchor))
              missing.push(`${where}: link ${target} (no such section in ${resolved})`);
          }
        });
    }
    assert.deepEqual(missing, []);
  });

  it('every docs section a status message, an error or a comment names exists (docs/x.md, "Section")', () => {
    const sources: string[] = [];
    const walk = (dir: string) => {
      for (const name of readdirSync(join(root, dir))) {
        const rel = join(dir, name);
        if (statSync(join(root, rel)).isDirectory()) walk(rel);
        else if (/\.(ts|js|mjs)$/.test(name)) sources.push(rel);
      }
    };
    for (const d of folders)
      if (!['bench', 'docs', 'charts', 'crds', 'kustomize', 'argocd', 'dashboards', 'alerts', 'examples'].includes(d)) walk(d);
    walk('bench');
    const missing: string[] = [];
    let named = 0;
    for (const file of [...sources, 'eslint.config.js'].filter((f) => f !== 'test/docs-references.test.ts')) {
      readFileSync(join(root, file), 'utf8')
        .split('\n')
        .forEach((line, i) => {
          for (const [, page, section] of line.matchAll(/(docs\/[a-z-]+\.md)[,:]? \(?\\?["“]([^"”\\]+)\\?["”]/g)) {
            named++;
            const headings = existsSync(join(root, page!))
              ? readFileSync(join(root, page!), 'utf8')
                  .split('\n')
                  .filter((l) => /^#{1,6} /.test(l))
                  .map((l) => l.replace(/^#+ /, '').trim())
              : [];
            if (!headings.some((h) => h.startsWith(section!))) missing.push(`${file}:${i + 1}: ${page}, "${section}"`);
          }
        });
    }
    assert.ok(named >= 3, `found the references (${named})`);
    assert.deepEqual(missing, [], 'a message or comment sends readers to a section that does not exist');
  });

  it('the check finds a missing file and a missing section', () => {
    assert.equal(existsSync(join(root, 'store/raft/no-such-file.ts')), false);
    assert.ok(anchors('docs/store.md').has('known-differences-from-etcd'));
    assert.ok(!anchors('docs/store.md').has('no-such-section'));
  });
});
