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
  for (const folder of ['store/raft', 'store/mvcc', 'operator/specs', 'operator/plan', 'sidecar/balance', 'sidecar/policies']) {
    it(`${folder} (pure) may not import node:fs`, async () => {
      const ids = await ruleIds(`${folder}/probe.ts`, "import { readFileSync } from 'node:fs';\nexport const x = readFileSync;\n");
      assert.ok(ids.includes('no-restricted-imports'), `${folder}: ${ids.join(', ')}`);
    });
  }

  it('a pure core may not import gRPC, undici or the Kubernetes client, nor read real time', async () => {
    for (const mod of ['@grpc/grpc-js', 'undici', '@kubernetes/client-node', 'node:net', 'node:http2']) {
      assert.ok(
        (await ruleIds('store/raft/probe.ts', `import * as m from '${mod}';\nexport const x = m;\n`)).includes('no-restricted-imports'),
        mod,
      );
    }
    assert.ok((await ruleIds('store/raft/probe.ts', 'export const t = Date.now();\n')).includes('no-restricted-properties'));
    assert.ok((await ruleIds('sidecar/balance/probe.ts', 'export const r = Math.random();\n')).includes('no-restricted-properties'));
    assert.ok((await ruleIds('store/mvcc/probe.ts', 'setTimeout(() => undefined, 1);\n')).includes('no-restricted-globals'));
  });

  it('a pure core may import other pure code and lib/clock', async () => {
    assert.deepEqual(
      await ruleIds('store/raft/probe.ts', "import type { Clock } from '../../lib/clock.ts';\nexport type C = Clock;\n"),
      [],
    );
  });

  it('the driver at the edge may do I/O', async () => {
    assert.deepEqual(await ruleIds('store/node-probe.ts', "import { readFileSync } from 'node:fs';\nexport const x = readFileSync;\n"), []);
  });

  it('the sidecar and the operator import each other through neither, pure cores included; both may import api/', async () => {
    for (const [file, other] of [
      ['sidecar/probe.ts', '../operator/api/storecluster.ts'],
      ['sidecar/policies/probe.ts', '../../operator/specs/storecluster.ts'],
      ['operator/probe.ts', '../sidecar/config.ts'],
      ['operator/controllers/probe.ts', '../../sidecar/stack.ts'],
      ['operator/plan/probe.ts', '../../sidecar/config.ts'],
    ] as const) {
      const ids = await ruleIds(file, `import { x } from '${other}';\nexport const y = x;\n`);
      assert.ok(ids.includes('no-restricted-imports'), `${file} → ${other}: ${ids.join(', ')}`);
    }
    assert.deepEqual(
      await ruleIds('sidecar/probe.ts', "import type { PolicySpec } from '../api/policy.ts';\nexport type P = PolicySpec;\n"),
      [],
    );
    assert.deepEqual(
      await ruleIds('operator/probe.ts', "import type { PolicySpec } from '../api/policy.ts';\nexport type P = PolicySpec;\n"),
      [],
    );
    // api/ is shared: it imports neither program.
    assert.ok(
      (await ruleIds('api/probe.ts', "import { x } from '../operator/thing.ts';\nexport const y = x;\n")).includes('no-restricted-imports'),
    );
  });

  it('lib/ may not import any program', async () => {
    for (const program of ['store', 'operator', 'sidecar', 'cluster', 'cli']) {
      const ids = await ruleIds('lib/probe.ts', `import { x } from '../${program}/thing.ts';\nexport const y = x;\n`);
      assert.ok(ids.includes('no-restricted-imports'), `${program}: ${ids.join(', ')}`);
    }
  });
});
