// The store's peer suite: Kubernetes' own storage tests (k8s.io/apiserver/pkg/storage/etcd3, the
// tests kube-apiserver's etcd3 store is held to: create, get, list with pagination and resource
// versions, guaranteed updates, deletes with preconditions, watches with bookmarks, progress
// notifications and compaction, the lease manager, stats, health checks), compiled unchanged but
// for the file that starts their server (test/peer/k8s-storage/test_server.go: a store process
// per test instead of an embedded etcd, see cluster/go/build). Each test runs against etcd
// v3.5.35 and against `ballast store` in the same run; every test etcd passes, ballast must pass.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { binaries, cacheDir, versions } from '../../cluster/toolchain.ts';

const root = join(import.meta.dirname, '..', '..');
const server = join(root, 'test', 'peer', 'k8s-storage', 'server');
/** Tests ballast is known to answer differently, with the reason (docs/store.md, Known differences). */
const knownDifferences = new Map<string, string>();

interface Outcome {
  passed: string[];
  failed: string[];
  skipped: string[];
  subtests: number;
  log: string;
  ms: number;
}

/** Runs the compiled suite against one store; top-level results, and the log's path. */
function runSuite(store: 'etcd' | 'ballast', dir: string): Promise<Outcome> {
  const bin = binaries(cacheDir()).k8sStorageTests;
  const log = join(dir, `${store}.log`);
  const start = Date.now();
  return new Promise((resolve, reject) => {
    const p = spawn(bin, ['-test.v', '-test.timeout=20m'], {
      cwd: dir,
      env: { ...process.env, STORAGE_PEER_SERVER: server, PEER_STORE: store, ETCD_BIN: binaries(cacheDir()).etcd },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    p.stdout.setEncoding('latin1').on('data', (d: string) => {
      out += d;
    });
    p.stderr.setEncoding('latin1').on('data', (d: string) => {
      out += d;
    });
    p.on('error', reject);
    p.on('close', () => {
      writeFileSync(log, out);
      const top = (word: string) => [...out.matchAll(new RegExp(`^--- ${word}: (\\S+)`, 'gm'))].map((m) => m[1]!);
      resolve({
        passed: top('PASS'),
        failed: top('FAIL'),
        skipped: top('SKIP'),
        subtests: [...out.matchAll(/^\s+--- (PASS|FAIL|SKIP): /gm)].length,
        log,
        ms: Date.now() - start,
      });
    });
  });
}

describe(
  "peer suite: Kubernetes' storage tests (k8s.io/apiserver/pkg/storage/etcd3), etcd and ballast in the same run",
  { timeout: 40 * 60_000 },
  () => {
    it('every test etcd passes, ballast passes', async (t) => {
      const bin = binaries(cacheDir()).k8sStorageTests;
      assert.ok(existsSync(bin), `${bin} is missing: run \`make control-plane\` (cluster/go/build compiles Kubernetes' storage tests)`);
      const dir = mkdtempSync(join(tmpdir(), 'ballast-peer-k8s-storage-'));
      const etcd = await runSuite('etcd', dir);
      const ours = await runSuite('ballast', dir);
      const row = (name: string, o: Outcome) =>
        `${name.padEnd(16)} ${String(o.passed.length).padStart(6)} ${String(o.failed.length).padStart(6)} ${String(o.skipped.length).padStart(7)} ${String(o.subtests).padStart(9)} ${(o.ms / 1000).toFixed(0).padStart(6)} s`;
      t.diagnostic(`Kubernetes ${versions.k8s} storage tests     passed failed skipped subtests   time`);
      t.diagnostic(row(`etcd ${versions.etcd}`, etcd));
      t.diagnostic(row('ballast', ours));
      t.diagnostic(`logs: ${dir}`);
      assert.ok(etcd.passed.length >= 70, `etcd ran ${etcd.passed.length} tests (expected the suite's 74); see ${etcd.log}`);
      const regressions = etcd.passed.filter((n) => !ours.passed.includes(n) && !knownDifferences.has(n));
      assert.deepEqual(regressions, [], `tests etcd passes and ballast does not (log: ${ours.log})`);
      assert.deepEqual(
        ours.failed.filter((n) => !knownDifferences.has(n)),
        [],
        `failed on ballast (log: ${ours.log})`,
      );
    });
  },
);
