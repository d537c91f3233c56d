/**
 * bench/operator-scale: what the operator costs the apiserver and itself.
 *
 * 1. API requests per minute from the apiserver's own `apiserver_request_total`, over one
 *    minute with the operator and no StoreClusters (baseline: kubelet, controllers), then one
 *    minute with 20 idle, Ready 1-member StoreClusters. The difference is the operator's idle cost.
 * 2. 1,000 StoreCluster objects whose pods stay Pending (a node selector no node has): the
 *    operator's memory (RSS) once all have status, and its reconcile latency (from its histogram).
 *
 * 3. With --heap-snapshot: a V8 heap snapshot of the operator once all have status, summarized
 *    by constructor (bench/heap-summary.ts), the file kept for Chrome DevTools.
 *
 * The operator runs as the chart runs it: under its memory limit (the chart's default,
 * charts/ballast/values.yaml, or --memory-limit=MiB; 0 for none), in a memory cgroup of its own.
 * V8 sizes its heap from that limit (259 MiB of heap under 512 MiB), and without one, on this
 * 24 GiB machine, lets garbage fill a 4 GiB heap: RSS would measure the host, not the operator.
 *
 *   node bench/operator-scale.ts [--idle=20] [--objects=1000] [--minute=60] [--heap-snapshot] [--memory-limit=MiB]
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type HeapRow, summarize } from './heap-summary.ts';
import { parse } from 'yaml';
import { machine, root, rssBytes, table, writeResult } from './lib.ts';

const arg = (name: string, def: number) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? def);
const idle = arg('idle', 20);
const objects = arg('objects', 1000);
const minuteMs = arg('minute', 60) * 1000;
const heapSnapshot = process.argv.includes('--heap-snapshot');
/** The chart's memory limit for the operator (operator.resources.limits.memory, in Mi). */
function chartLimitMiB(): number {
  const values = parse(readFileSync(join(root, 'charts', 'ballast', 'values.yaml'), 'utf8')) as {
    operator?: { resources?: { limits?: { memory?: string } } };
  };
  const limit = values.operator?.resources?.limits?.memory;
  const mi = /^(\d+)Mi$/.exec(limit ?? '')?.[1];
  if (!mi)
    throw new Error(
      `operator.resources.limits.memory in charts/ballast/values.yaml is ${limit ?? 'unset'}, not <n>Mi: pass --memory-limit=MiB`,
    );
  return Number(mi);
}
const memoryLimitMiB = process.argv.some((a) => a.startsWith('--memory-limit=')) ? arg('memory-limit', 0) : chartLimitMiB();
// Its own directory: `cluster down` removes the state directory, the snapshot stays.
const heapDir = heapSnapshot ? mkdtempSync(join(tmpdir(), 'ballast-opscale-heap-')) : undefined;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const bin = join(root, 'bin', 'ballast');

const state = mkdtempSync(join(tmpdir(), 'ballast-opscale-'));
const kc = join(state, 'admin.kubeconfig');
const port = 26443;
const kubectl = (args: string[], input?: string) =>
  spawnSync('kubectl', [`--kubeconfig=${kc}`, ...args], {
    encoding: 'utf8',
    input: input ?? '',
    timeout: 300_000,
    maxBuffer: 256 * 1024 * 1024,
  });
const metricsPort = 28080;

/** The apiserver's URL as the kubeconfig names it (it serves on the node's address, not loopback). */
function apiserver(): string {
  const server = /server: "?(https:\/\/[^",}\s]+)/.exec(readFileSync(kc, 'utf8'))?.[1];
  if (!server) throw new Error(`no server in ${kc}`);
  return server;
}

function apiRequests(): { total: number; operatorish: number } {
  const pki = join(state, 'pki');
  const text = execFileSync('curl', ['-sk', '--cert', join(pki, 'admin.crt'), '--key', join(pki, 'admin.key'), `${apiserver()}/metrics`], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  let total = 0;
  let operatorish = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith('apiserver_request_total{')) continue;
    const v = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (/verb="WATCH"/.test(line)) continue;
    total += v;
    if (
      /resource="(storeclusters|statefulsets|services|poddisruptionbudgets|secrets|serviceaccounts)"/.test(line) ||
      /resource="events"/.test(line)
    )
      operatorish += v;
  }
  return { total, operatorish };
}

function operatorMetric(name: string): Array<{ labels: string; value: number }> {
  const text = execFileSync('curl', ['-s', `http://127.0.0.1:${metricsPort}/metrics`], { encoding: 'utf8' });
  return text
    .split('\n')
    .filter((l) => l.startsWith(name))
    .map((l) => ({ labels: l.slice(name.length, l.lastIndexOf(' ')), value: Number(l.slice(l.lastIndexOf(' ') + 1)) }));
}

function quantile(q: number): number {
  const buckets = operatorMetric('ballast_operator_reconcile_duration_seconds_bucket')
    .map((b) => ({ le: Number(/le="([^"]+)"/.exec(b.labels)?.[1] === '+Inf' ? Infinity : /le="([^"]+)"/.exec(b.labels)?.[1]), n: b.value }))
    .sort((a, b) => a.le - b.le);
  const total = buckets.at(-1)?.n ?? 0;
  return (buckets.find((b) => b.n >= q * total)?.le ?? NaN) * 1000;
}

const metricMiB = (name: string) => Math.round((operatorMetric(name).find((m) => !m.labels.includes('{'))?.value ?? NaN) / 2 ** 20);

const up = spawnSync(bin, ['cluster', 'up', `--state-dir=${state}`, '--store=etcd', `--apiserver-port=${port}`], {
  encoding: 'utf8',
  timeout: 200_000,
});
if (up.status !== 0) throw new Error(up.stderr + up.stdout);
/**
 * A memory cgroup with the limit (v2, or v1's memory controller), or undefined for none. The
 * operator joins it before Node starts, so V8 sizes its heap from the limit as in a pod.
 */
function memoryCgroup(limitMiB: number): { procs: string; remove: () => void } | undefined {
  if (limitMiB <= 0) return undefined;
  const v2 = existsSync('/sys/fs/cgroup/cgroup.controllers');
  const dir = v2 ? `/sys/fs/cgroup/ballast-opscale-${process.pid}` : `/sys/fs/cgroup/memory/ballast-opscale-${process.pid}`;
  mkdirSync(dir);
  writeFileSync(join(dir, v2 ? 'memory.max' : 'memory.limit_in_bytes'), String(limitMiB * 2 ** 20));
  return { procs: join(dir, 'cgroup.procs'), remove: () => rmdirSync(dir) };
}
const cgroup = memoryCgroup(memoryLimitMiB);
const operatorArgs = [
  'operator',
  `--kubeconfig=${kc}`,
  `--metrics-addr=127.0.0.1:${metricsPort}`,
  '--discovery-addr=127.0.0.1:28081',
  '--webhook-addr=',
  '--namespace=default',
  '--log-level=warn',
];
const op = spawn(
  cgroup ? 'sh' : bin,
  cgroup ? ['-c', `echo $$ > ${cgroup.procs} && exec "$0" "$@"`, bin, ...operatorArgs] : operatorArgs,
  // Node writes the snapshot into the working directory on SIGUSR2 (--heap-snapshot only).
  {
    stdio: 'ignore',
    cwd: heapDir ?? state,
    env: { ...process.env, ...(heapSnapshot ? { NODE_OPTIONS: '--heapsnapshot-signal=SIGUSR2' } : {}) },
  },
);
const opExited = new Promise<number | string | null>((resolve) => op.on('exit', (code, signal) => resolve(signal ?? code)));

/** Signal the operator for a heap snapshot and wait until the file stops growing. */
async function takeHeapSnapshot(pid: number): Promise<string> {
  process.kill(pid, 'SIGUSR2');
  let last = -1;
  for (let i = 0; i < 600; i++) {
    await sleep(1000);
    const dir = heapDir as string;
    const file = readdirSync(dir).find((f) => f.endsWith('.heapsnapshot'));
    if (!file) continue;
    const size = statSync(join(dir, file)).size;
    if (size > 0 && size === last) return join(dir, file);
    last = size;
  }
  throw new Error(`no heap snapshot from the operator in ${heapDir} after 10 minutes`);
}
try {
  kubectl(['apply', '--server-side', '-f', join(root, 'crds')]);
  kubectl(['wait', '--for=condition=Established', 'crd/storeclusters.ballast.dev', '--timeout=60s']);
  await sleep(5000);
  // 1. Idle cost.
  let a = apiRequests();
  await sleep(minuteMs);
  let b = apiRequests();
  const baseline = { total: ((b.total - a.total) * 60_000) / minuteMs, operatorish: ((b.operatorish - a.operatorish) * 60_000) / minuteMs };
  const sc = (name: string, extra = '') =>
    `apiVersion: ballast.dev/v1alpha1\nkind: StoreCluster\nmetadata: {name: ${name}}\nspec:\n  replicas: 1\n${extra}`;
  kubectl(['apply', '-f', '-'], Array.from({ length: idle }, (_, i) => sc(`idle-${i}`)).join('---\n'));
  const readyIdle = () =>
    Number(
      kubectl(['get', 'storeclusters', '-o', 'jsonpath={range .items[*]}{.status.phase}{"\\n"}{end}'])
        .stdout.split('\n')
        .filter((p) => p === 'Ready').length,
    );
  for (let i = 0; i < 240 && readyIdle() < idle; i++) await sleep(1000);
  const idleReady = readyIdle();
  await sleep(35_000); // past the first 30 s requeue of every cluster
  a = apiRequests();
  await sleep(minuteMs);
  b = apiRequests();
  const withIdle = { total: ((b.total - a.total) * 60_000) / minuteMs, operatorish: ((b.operatorish - a.operatorish) * 60_000) / minuteMs };
  kubectl(['delete', 'storeclusters', '--all', '--wait=true']);

  // 2. Many objects.
  const created = Date.now();
  const pending = '  podTemplate: {nodeSelector: {ballast.dev/bench: "no-such-node"}}\n';
  for (let i = 0; i < objects; i += 100)
    kubectl(['apply', '-f', '-'], Array.from({ length: Math.min(100, objects - i) }, (_, j) => sc(`many-${i + j}`, pending)).join('---\n'));
  const withStatus = () =>
    kubectl(['get', 'storeclusters', '-o', 'jsonpath={range .items[*]}{.status.phase}{"\\n"}{end}']).stdout.split('\n').filter(Boolean)
      .length;
  let seen = 0;
  for (let i = 0; i < 600 && (seen = withStatus()) < objects; i++) await sleep(2000);
  const allStatusMs = Date.now() - created;
  await sleep(10_000);
  if (op.exitCode !== null || op.signalCode !== null)
    throw new Error(`the operator exited (${op.signalCode ?? op.exitCode}) under its ${memoryLimitMiB} MiB memory limit`);
  const many = {
    objects,
    withStatus: seen,
    allStatusMs,
    memoryLimitMiB,
    rssMiB: Math.round(rssBytes(op.pid as number) / 2 ** 20),
    heapUsedMiB: metricMiB('nodejs_heap_size_used_bytes'),
    heapTotalMiB: metricMiB('nodejs_heap_size_total_bytes'),
    externalMiB: metricMiB('nodejs_external_memory_bytes'),
    reconcileP50ms: quantile(0.5),
    reconcileP99ms: quantile(0.99),
    reconciles: operatorMetric('ballast_operator_reconcile_total').reduce((s, m) => s + m.value, 0),
  };

  let heap: { file: string; totalMiB: number; rows: HeapRow[] } | undefined;
  if (heapSnapshot) {
    const file = await takeHeapSnapshot(op.pid as number);
    heap = { file, ...summarize(file) };
  }

  const rows = [
    { measure: 'API requests/min, operator and no StoreClusters (baseline, all clients)', value: baseline.total.toFixed(0) },
    { measure: `API requests/min with ${idle} idle Ready StoreClusters (all clients)`, value: withIdle.total.toFixed(0) },
    {
      measure: "of which on the operator's resources, baseline → idle",
      value: `${baseline.operatorish.toFixed(0)} → ${withIdle.operatorish.toFixed(0)}`,
    },
    { measure: `StoreClusters Ready for the idle minute`, value: `${idleReady}/${idle}` },
    { measure: `${objects} StoreClusters: all with status after`, value: `${(allStatusMs / 1000).toFixed(1)} s (${seen}/${objects})` },
    { measure: 'operator RSS with them', value: `${many.rssMiB} MiB (memory limit ${memoryLimitMiB ? `${memoryLimitMiB} MiB` : 'none'})` },
    { measure: 'V8 heap used / total, external', value: `${many.heapUsedMiB} / ${many.heapTotalMiB} MiB, ${many.externalMiB} MiB` },
    { measure: 'reconcile latency p50 / p99 (bucket bounds)', value: `${many.reconcileP50ms} / ${many.reconcileP99ms} ms` },
  ];
  console.log(`\noperator-scale\n\n${table(rows, 'operator-scale')}\n`);
  if (heap)
    console.log(
      `heap snapshot ${heap.file}: ${heap.totalMiB} MiB\n\n${table(
        heap.rows.map((r) => ({ ...r })),
        'operator heap by constructor',
      )}\n`,
    );
  const name = heap ? 'operator-scale-heap' : 'operator-scale';
  console.log(`wrote ${writeResult(name, { machine: machine(), idle, baseline, withIdle, idleReady, many, ...(heap ? { heap } : {}) })}`);
} finally {
  op.kill('SIGTERM');
  await Promise.race([opExited, sleep(30_000)]);
  cgroup?.remove();
  spawnSync(bin, ['cluster', 'down', `--state-dir=${state}`], { encoding: 'utf8', timeout: 60_000 });
}
