// What `ballast sidecar` loads at start. The sidecar runs in every meshed pod, so every module
// it loads without using is resident memory multiplied by the pods (docs/sidecar.md, Memory;
// bench/sidecar-memory.ts measures it). Each of these was loaded before and cost memory.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

describe('the sidecar footprint', () => {
  it("loads neither Node's bundled undici, undici's or prom-client's index, @opentelemetry/api, yaml, grpc-js nor protobufjs", () => {
    const probe = `
      import { createRequire } from 'node:module';
      await import('./cli/sidecar.ts');
      const cjs = Object.keys(createRequire(import.meta.url).cache);
      console.log(JSON.stringify({
        bundledUndici: process.moduleLoadList.some((m) => m.includes('internal/deps/undici')),
        undiciIndex: cjs.some((f) => f.endsWith('/node_modules/undici/index.js')),
        promClientIndex: cjs.some((f) => f.endsWith('/node_modules/prom-client/index.js')),
        otelApi: cjs.some((f) => f.includes('/node_modules/@opentelemetry/api/')),
        yaml: cjs.some((f) => f.includes('/node_modules/yaml/')),
        grpcJs: cjs.some((f) => f.includes('/node_modules/@grpc/')),
        protobufjs: cjs.some((f) => f.includes('/node_modules/protobufjs/')),
      }));`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', probe], { cwd: root, encoding: 'utf8' });
    assert.deepEqual(JSON.parse(out.trim().split('\n').pop() as string), {
      bundledUndici: false,
      undiciIndex: false,
      promClientIndex: false,
      otelApi: false,
      yaml: false,
      grpcJs: false,
      protobufjs: false,
    });
  });
});
