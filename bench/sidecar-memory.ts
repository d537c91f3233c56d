/**
 * bench/sidecar-memory: what an idle sidecar holds resident, where it goes, and HAProxy's idle
 * footprint as the anchor, in the same run. The sidecar runs in every meshed pod, so its idle
 * memory is multiplied by every pod (the goal: 60 MiB).
 *
 * Each measurement is a fresh process, read from /proc/<pid>/status (VmRSS; RssAnon is the
 * process's own memory, RssFile the pages of the node binary and libraries it touched) after it
 * has been idle for 3 s:
 *   - the sidecar as the operator's webhook injects it (flags, its upstream from the operator's
 *     discovery service, no file), and as `bin/ballast sidecar` runs with a one-upstream config file
 *     (which loads the YAML parser), no load on either; then the latter with
 *     `--enable-source-maps` (how bin/ballast started every command before) and with a smaller
 *     young generation (`--max-semi-space-size`), through NODE_OPTIONS;
 *   - a ladder of Node processes loading, cumulatively, what the sidecar loads, the way it loads
 *     it (what each adds, in this order: shared costs such as the first CommonJS import fall on
 *     the first step that pays them), and the same set loaded the way the sidecar did before;
 *   - HAProxy (Debian's, bench/anchors/haproxy-anchor, profile tuned) with the same one endpoint.
 * Medians of --runs rounds (5 by default), the rounds interleaved.
 *
 *   node bench/sidecar-memory.ts [--runs=5]
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import type { ResiliencePolicy } from '../api/resiliencepolicy.ts';
import { realClock } from '../lib/clock.ts';
import { silentLogger } from '../lib/log.ts';
import { Metrics } from '../lib/metrics.ts';
import { DiscoveryServer } from '../operator/discovery/server.ts';
import { MemCache } from '../test/support/mem-cache.ts';
import { machine, root, table, tryRun, writeResult } from './lib.ts';

const runs = Number(process.argv.find((a) => a.startsWith('--runs='))?.slice(7) ?? 5);
const node = process.execPath;
const anchor = join(root, 'bench/anchors/haproxy-anchor');
const dir = mkdtempSync(join(tmpdir(), 'ballast-bench-sidecar-memory-'));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Mem {
  rssMiB: number;
  anonMiB: number;
  fileMiB: number;
}

function memOf(pid: number): Mem {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (f: string) => Number(new RegExp(`${f}:\\s+(\\d+) kB`).exec(s)?.[1] ?? NaN) / 1024;
  return { rssMiB: kb('VmRSS'), anonMiB: kb('RssAnon'), fileMiB: kb('RssFile') };
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

async function stopChild(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise((r) => c.once('exit', r));
  c.kill('SIGTERM');
  await Promise.race([exited, sleep(5000)]);
  if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}

// The ladder: each step runs everything before it too (ES module code, in the repo's root).
const req = "const { createRequire } = await import('node:module'); const require = createRequire(import.meta.url);";
const ladder: Array<[string, string]> = [
  ['node, nothing loaded', ''],
  ["+ node:http (require'd), node:http2, node:tls", "require('node:http'); await import('node:http2'); await import('node:tls');"],
  ['+ pino (logs)', "await import('pino');"],
  ["+ lib/metrics.ts (prom-client's metric modules, default metrics)", "new (await import('./dist/lib/metrics.js')).Metrics();"],
  [
    '+ lib/grpc-client.ts, api/discovery-wire.ts (discovery on node:http2)',
    "await import('./dist/lib/grpc-client.js'); await import('./dist/api/discovery-wire.js');",
  ],
  ["+ undici's Pool (HTTP/1.1 upstreams)", "require('undici/lib/dispatcher/pool.js');"],
  ['+ yaml (a config file)', "require('yaml');"],
];
/**
 * The same, loaded as the sidecar loaded them before: node:http as an ES import, prom-client's and
 * undici's index, grpc-js for discovery.
 */
const before = [
  "await import('node:http'); await import('node:http2'); await import('node:tls');",
  "await import('pino');",
  "const prom = await import('prom-client'); prom.collectDefaultMetrics({ register: new prom.Registry() });",
  "await import('@grpc/grpc-js'); await import('@grpc/proto-loader');",
  "await import('undici');",
  "await import('yaml');",
].join(' ');

async function ladderStep(code: string): Promise<Mem> {
  const p = spawn(node, ['--input-type=module', '-e', `${req} ${code} setTimeout(() => {}, 60000);`], { cwd: root, stdio: 'ignore' });
  await sleep(3000);
  const m = memOf(p.pid as number);
  await stopChild(p);
  return m;
}

/** A sidecar's memory after 3 s idle once `ready` says it is serving (10 s at most), then stopped. */
async function idleMemory(p: ChildProcess, ready: () => Promise<boolean>): Promise<Mem> {
  for (let i = 0; i < 200; i++) {
    try {
      if (await ready()) break;
    } catch {
      /* not yet */
    }
    await sleep(50);
  }
  await sleep(3000);
  const m = memOf(p.pid as number);
  await stopChild(p);
  return m;
}

async function sidecar(nodeOptions: string): Promise<Mem> {
  const [admin, listen] = [await freePort(), await freePort()];
  const cfg = join(dir, `sidecar-${admin}.yaml`);
  writeFileSync(
    cfg,
    `admin: 127.0.0.1:${admin}\nupstreams:\n  - name: app\n    listen: 127.0.0.1:${listen}\n    endpoints: ["127.0.0.1:${upstream}"]\n`,
  );
  const p = spawn(join(root, 'bin/ballast'), ['sidecar', `--config=${cfg}`, '--watch=false'], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, BALLAST_LOG_LEVEL: 'warn', NODE_OPTIONS: nodeOptions },
  });
  return idleMemory(p, async () => (await fetch(`http://127.0.0.1:${admin}/ready`)).ok);
}

/**
 * The sidecar as the operator's webhook injects it: no file (`--config=`), flags, and its upstream
 * from the operator's discovery service (the real DiscoveryServer, in this process, serving one
 * ResiliencePolicy over one Service with one endpoint).
 */
async function injected(): Promise<Mem> {
  const [admin, proxy] = [await freePort(), await freePort()];
  const p = spawn(
    join(root, 'bin/ballast'),
    ['sidecar', '--config=', `--discovery-address=127.0.0.1:${discoveryPort}`, `--proxy=127.0.0.1:${proxy}`, `--admin=127.0.0.1:${admin}`],
    {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, BALLAST_LOG_LEVEL: 'warn', POD_NAMESPACE: 'shop', POD_NAME: `web-${admin}` },
    },
  );
  return idleMemory(p, async () =>
    /ballast_sidecar_discovery_connected 1/.test(await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text()),
  );
}

async function haproxy(): Promise<Mem> {
  const port = await freePort();
  execFileSync(anchor, ['start', String(port), 'tuned', `127.0.0.1:${upstream}`]);
  try {
    await sleep(3000);
    return memOf(Number(readFileSync(`/tmp/haproxy-anchor-${port}/pid`, 'utf8')));
  } finally {
    execFileSync(anchor, ['stop', String(port)]);
  }
}

// One upstream for every system: a node:http server answering 200 (it is never called here).
const upstream = await freePort();
const up = spawn(node, ['-e', `require('node:http').createServer((q, s) => s.end('ok')).listen(${upstream}, '127.0.0.1')`], {
  stdio: 'ignore',
});

// The operator's discovery service, as the injected sidecar meets it.
const policies = new MemCache<ResiliencePolicy>();
const services = new MemCache<V1Service>();
const slices = new MemCache<V1EndpointSlice>();
const discovery = new DiscoveryServer({
  policies,
  services,
  slices,
  clock: realClock,
  log: silentLogger,
  metrics: new Metrics({ defaultMetrics: false }),
  debounceMs: 20,
});
const discoveryPort = await discovery.listen('127.0.0.1:0');
services.set([{ metadata: { name: 'orders', namespace: 'shop' }, spec: { ports: [{ name: 'http', port: 80 }] } }]);
slices.set([
  {
    addressType: 'IPv4',
    metadata: { name: 'orders-abc', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'orders' } },
    ports: [{ name: 'http', port: upstream }],
    endpoints: [{ addresses: ['127.0.0.1'], conditions: { ready: true } }],
  },
]);
policies.set([
  {
    apiVersion: 'ballast.dev/v1alpha1',
    kind: 'ResiliencePolicy',
    metadata: { name: 'orders', namespace: 'shop', generation: 1 },
    spec: { service: { name: 'orders', port: 80 }, protocol: 'auto', localPort: 0, policy: { retries: { maxAttempts: 2 } } },
  } as ResiliencePolicy,
]);

const systems: Array<[string, () => Promise<Mem>]> = [
  ['ballast sidecar as injected (flags, discovery, no file), idle', injected],
  ['ballast sidecar with a config file (one upstream), idle', () => sidecar('')],
  ['… with --enable-source-maps (before)', () => sidecar('--enable-source-maps')],
  ['… with --max-semi-space-size=2', () => sidecar('--max-semi-space-size=2')],
  ['haproxy 2.6 tuned, idle', haproxy],
  ...ladder.map(([name], i): [string, () => Promise<Mem>] => [
    name,
    () =>
      ladderStep(
        ladder
          .slice(0, i + 1)
          .map(([, c]) => c)
          .join(' '),
      ),
  ]),
  ['the same libraries loaded as before (node:http ES-imported, prom-client and undici by their index)', () => ladderStep(before)],
];

const samples: Record<string, Mem[]> = {};
try {
  for (let r = 0; r < runs; r++) {
    for (const [name, f] of systems) (samples[name] ??= []).push(await f());
    process.stderr.write(`round ${r + 1}/${runs} done\n`);
  }
} finally {
  await stopChild(up);
  await discovery.stop();
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
};
const results: Record<string, Mem & { min: number; max: number }> = {};
for (const [name, ms] of Object.entries(samples))
  results[name] = {
    rssMiB: median(ms.map((m) => m.rssMiB)),
    anonMiB: median(ms.map((m) => m.anonMiB)),
    fileMiB: median(ms.map((m) => m.fileMiB)),
    min: Math.min(...ms.map((m) => m.rssMiB)),
    max: Math.max(...ms.map((m) => m.rssMiB)),
  };
let previous: number | undefined;
const rows = Object.entries(results).map(([system, m]) => {
  const inLadder = ladder.some(([n]) => n === system);
  const added = inLadder && previous !== undefined ? m.rssMiB - previous : undefined;
  if (inLadder) previous = m.rssMiB;
  return {
    system,
    'RSS MiB (median)': Number(m.rssMiB.toFixed(1)),
    'min–max': `${m.min.toFixed(1)}–${m.max.toFixed(1)}`,
    'anon MiB': Number(m.anonMiB.toFixed(1)),
    'file MiB': Number(m.fileMiB.toFixed(1)),
    'added MiB': added === undefined ? '-' : Number(added.toFixed(1)),
  };
});
console.log(`\n${table(rows, `idle resident memory, median of ${runs}`)}`);
const versions = { haproxy: tryRun('haproxy', ['-v']).split('\n')[0] ?? 'unknown' };
const goals = {
  'idle: injected sidecar RSS MiB (goal ≤ 60)': results['ballast sidecar as injected (flags, discovery, no file), idle']?.rssMiB ?? NaN,
  'idle: sidecar with a config file RSS MiB': results['ballast sidecar with a config file (one upstream), idle']?.rssMiB ?? NaN,
};
console.log(`\n${JSON.stringify(goals)}`);
console.log(`wrote ${writeResult('sidecar-memory', { machine: machine(), versions, runs, results, goals })}`);
