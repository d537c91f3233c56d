// The seams of docs/architecture.md are enforced by lint, not by good intentions.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';

const cwd = fileURLToPath(new URL('..', import.meta.url));
const eslint = new ESLint({ cwd });

async function ruleIds(filePath: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath });
  return (result?.messages ?? []).map((m) => m.ruleId ?? m.message);
}

describe('import boundaries', () => {
  for (const folder of ['store/raft', 'store/mvcc', 'operator/specs', 'sidecar/balance', 'sidecar/policies']) {
    it(`${folder} (pure) may not import node:fs`, async () => {
      const ids = await ruleIds(`${folder}/probe.ts`, "import { readFileSync } from 'node:fs';\nexport const x = readFileSync;\n");
      assert.ok(ids.includes('no-restricted-imports'), `${folder}: ${ids.join(', ')}`);
    });
  }

  it('a pure core may not import gRPC, undici or the Kubernetes client, nor read real time', async () => {
    for (const mod of ['@grpc/grpc-js', 'undici', '@kubernetes/client-node', 'node:net', 'node:http2']) {
      assert.ok((await ruleIds('store/raft/probe.ts', `import * as m from '${mod}';\nexport const x = m;\n`)).includes('no-restricted-imports'), mod);
    }
    assert.ok((await ruleIds('store/raft/probe.ts', 'export const t = Date.now();\n')).includes('no-restricted-properties'));
    assert.ok((await ruleIds('sidecar/balance/probe.ts', 'export const r = Math.random();\n')).includes('no-restricted-properties'));
    assert.ok((await ruleIds('store/mvcc/probe.ts', 'setTimeout(() => undefined, 1);\n')).includes('no-restricted-globals'));
  });

  it('a pure core may import other pure code and lib/clock', async () => {
    assert.deepEqual(await ruleIds('store/raft/probe.ts', "import type { Clock } from '../../lib/clock.ts';\nexport type C = Clock;\n"), []);
  });

  it('the driver at the edge may do I/O', async () => {
    assert.deepEqual(await ruleIds('store/node-probe.ts', "import { readFileSync } from 'node:fs';\nexport const x = readFileSync;\n"), []);
  });

  it('lib/ may not import any program', async () => {
    for (const program of ['store', 'operator', 'sidecar', 'cluster', 'cli']) {
      const ids = await ruleIds('lib/probe.ts', `import { x } from '../${program}/thing.ts';\nexport const y = x;\n`);
      assert.ok(ids.includes('no-restricted-imports'), `${program}: ${ids.join(', ')}`);
    }
  });
});
