/**
 * bench/sidecar-vs-haproxy: `ballast sidecar` against HAProxy (`basic` and `tuned` profiles of
 * bench/anchors/haproxy-anchor), a bare Node pass-through proxy (bench/passthrough.ts: the
 * ceiling for a Node proxy here) and no proxy at all, in one run, with one load generator (wrk
 * from Debian) and the same upstream processes (test/support/upstream-server.ts).
 *
 * Scenarios (3 upstream endpoints each; "direct" can only reach one of them):
 *   saturation   healthy, wrk -c64 closed loop: throughput, and throughput per core of the proxy
 *   rate1000     healthy, ~1,000 req/s: added p50/p99 over direct
 *   slow         1 of 3 endpoints answers after 1 s, ~500 req/s
 *   failing      1 of 3 endpoints answers 503 to everything, ~500 req/s
 *   overload     each endpoint serves 4 at once in 50 ms (240 req/s in all); offered ~3× that
 * In saturation and rate1000 the sidecar is measured twice: plainly, and through an upstream with
 * 10 Gateway API routes of header matches the requests do not carry plus a catch-all to the same
 * endpoints (sidecar-10-routes): what route matching costs.
 * Rates are approximate (wrk is closed-loop; each connection waits an exponential delay between
 * requests, so arrivals are Poisson-like rather than in lockstep bursts).
 * Throughput counts what users get: good answers (2xx) per second. Refusals and errors are
 * reported beside it, never inside it (a proxy that refuses fast would otherwise look fast).
 * p99 is wrk's, over every response. Every system gets the same discarded warm-up run first
 * (--warmup seconds), so none is measured cold.
 * Each proxy's resident memory is read before any load (the sidecar's goal: 60 MiB idle).
 *
 *   node bench/sidecar-vs-haproxy.ts [--seconds=10] [--warmup=3] [--only=saturation,slow]
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { type WrkResult, machine, parseWrk, root, rssBytes, table, tryRun, writeResult } from './lib.ts';

const arg = (name: string, def: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? def;
const seconds = Number(arg('seconds', '10'));
const warmup = Number(arg('warmup', '3'));
const only = arg('only', 'saturation,rate1000,slow,failing,overload').split(',');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const anchor = join(root, 'bench', 'anchors', 'haproxy-anchor');
const dir = mkdtempSync(join(tmpdir(), 'ballast-sidecar-bench-'));
const node = process.execPath;

// Fixed ports (benchmarks own the machine while they run, like the e2e suites).
const upPorts = [29101, 29102, 29103];
const ports = { basic: 29201, tuned: 29202, passthrough: 29203, sidecar: 29204, admin: 29205, routed: 29206 };
// The cost of Gateway API route matching: in these scenarios the sidecar is also measured through
// an upstream with 10 HTTPRoutes of header matches that the requests do not carry, and a catch-all
// that sends to the same endpoints (every request is tried against all 10 first).
const routedIn = new Set(['saturation', 'rate1000']);

const children: ChildProcess[] = [];
function start(cmd: string, args: string[]): Promise<ChildProcess> {
  const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, BALLAST_LOG_LEVEL: 'warn' } });
  children.push(p);
  return new Promise((resolve, reject) => {
    let out = '';
    p.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      if (/listening|started/.test(out)) resolve(p);
    });
    p.once('exit', (code) => reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${out}`)));
  });
}
async function stop(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const done = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM');
  await done;
}
const cpu = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
};

type Wrk = WrkResult & { seconds: number };
function wrk(url: string, o: { connections: number; rate?: number; seconds?: number }): Wrk {
  const secs = o.seconds ?? seconds;
  const args = ['-t1', `-c${o.connections}`, `-d${secs}s`, '--latency', '--timeout', '10s'];
  if (o.rate) {
    const script = join(dir, `rate-${o.rate}-${o.connections}.lua`);
    // Each connection waits an exponentially distributed time (mean connections/rate) between
    // requests: about `rate` in all, as Poisson arrivals. A fixed delay would keep wrk's
    // connections in lockstep, and "1,000 req/s" would really be 100 bursts of 10 a second.
    const mean = (1000 * o.connections) / o.rate;
    writeFileSync(script, `math.randomseed(${o.connections})\nfunction delay() return -math.log(1 - math.random()) * ${mean} end\n`);
    args.push('-s', script);
  }
  const out = execFileSync('wrk', [...args, url], { encoding: 'utf8', timeout: (secs + 30) * 1000 });
  return { ...parseWrk(out), seconds: secs };
}

interface Setup {
  modes: string[];
}
const scenarios: Record<string, Setup & { run: (url: string, secs?: number) => Wrk }> = {
  saturation: { modes: ['ok', 'ok', 'ok'], run: (u, secs) => wrk(u, { connections: 64, seconds: secs }) },
  rate1000: { modes: ['ok', 'ok', 'ok'], run: (u, secs) => wrk(u, { connections: 10, rate: 1000, seconds: secs }) },
  slow: { modes: ['slow:1000', 'ok', 'ok'], run: (u, secs) => wrk(u, { connections: 64, rate: 500, seconds: secs }) },
  failing: { modes: ['fail:100', 'ok', 'ok'], run: (u, secs) => wrk(u, { connections: 16, rate: 500, seconds: secs }) },
  overload: {
    modes: ['capacity:4:50', 'capacity:4:50', 'capacity:4:50'],
    run: (u, secs) => wrk(u, { connections: 48, rate: 720, seconds: secs }),
  },
};

const created = '2026-12-01T00:00:00Z';
const sidecarConfig = {
  admin: `127.0.0.1:${ports.admin}`,
  upstreams: [
    { name: 'bench', listen: `127.0.0.1:${ports.sidecar}`, endpoints: upPorts.map((p) => `127.0.0.1:${p}`) },
    {
      name: 'routed',
      listen: `127.0.0.1:${ports.routed}`,
      endpoints: upPorts.map((p) => `127.0.0.1:${p}`),
      httpRoutes: [
        ...Array.from({ length: 10 }, (_, i) => ({
          name: `bench/tenant-${i}`,
          created,
          rules: [{ matches: [{ headers: [{ type: 'Exact', name: 'x-tenant', value: `t${i}` }] }], backends: [{ upstream: 'bench' }] }],
        })),
        {
          name: 'bench/default',
          created,
          rules: [{ matches: [{ path: { type: 'PathPrefix', value: '/' } }], backends: [{ upstream: 'bench' }] }],
        },
      ],
    },
  ],
};
writeFileSync(join(dir, 'sidecar.yaml'), stringify(sidecarConfig));

type Row = Record<string, string | number>;
const results: Record<string, Record<string, Wrk & { cpuSeconds?: number; perCore?: number }>> = {};
const idleRssMiB: Record<string, number> = {};
try {
  for (const name of only) {
    const sc = scenarios[name];
    if (!sc) throw new Error(`unknown scenario ${name}; known: ${Object.keys(scenarios).join(', ')}`);
    results[name] = {};
    const ups: ChildProcess[] = [];
    for (let i = 0; i < 3; i++)
      ups.push(await start(node, [join(root, 'test/support/upstream-server.ts'), `127.0.0.1:${upPorts[i]}`, sc.modes[i] as string]));
    const eps = upPorts.map((p) => `127.0.0.1:${p}`);
    const systems: Array<{ name: string; url: string; pid?: () => number; stop: () => Promise<void> }> = [];
    // Direct can reach one endpoint only: the healthy third one.
    systems.push({ name: 'direct', url: `http://${eps[2]}/`, stop: async () => undefined });
    for (const profile of ['basic', 'tuned'] as const) {
      execFileSync(anchor, ['start', String(ports[profile]), profile, ...eps]);
      systems.push({
        name: `haproxy-${profile}`,
        url: `http://127.0.0.1:${ports[profile]}/`,
        pid: () => Number(readFileSync(`/tmp/haproxy-anchor-${ports[profile]}/pid`, 'utf8')),
        stop: async () => {
          execFileSync(anchor, ['stop', String(ports[profile])]);
        },
      });
    }
    const pt = await start(node, [join(root, 'bench/passthrough.ts'), String(ports.passthrough), ...eps]);
    systems.push({
      name: 'node-passthrough',
      url: `http://127.0.0.1:${ports.passthrough}/`,
      pid: () => pt.pid as number,
      stop: () => stop(pt),
    });
    const side = spawn(join(root, 'bin/ballast'), ['sidecar', `--config=${join(dir, 'sidecar.yaml')}`, '--watch=false'], {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, BALLAST_LOG_LEVEL: 'warn' },
    });
    children.push(side);
    for (let i = 0; i < 100; i++) {
      try {
        if ((await fetch(`http://127.0.0.1:${ports.admin}/ready`)).ok) break;
      } catch {
        /* not yet */
      }
      await sleep(100);
    }
    systems.push({
      name: 'ballast-sidecar',
      url: `http://127.0.0.1:${ports.sidecar}/`,
      pid: () => side.pid as number,
      stop: () => stop(side),
    });
    if (routedIn.has(name))
      systems.push({
        name: 'sidecar-10-routes',
        url: `http://127.0.0.1:${ports.routed}/`,
        pid: () => side.pid as number,
        stop: async () => undefined,
      });
    await sleep(1500); // HAProxy's active checks settle
    // Resident memory before any load (each scenario starts fresh processes; the first one counts).
    for (const s of systems) {
      const pid = s.pid?.();
      if (pid && s.name !== 'sidecar-10-routes' && idleRssMiB[s.name] === undefined) idleRssMiB[s.name] = rssBytes(pid) / 2 ** 20;
    }
    for (const s of systems) {
      // The same warm-up for every system (JIT, connection pools, what each has to learn), discarded.
      if (warmup > 0) sc.run(s.url, warmup);
      const pid = s.pid?.();
      const c0 = pid ? cpu(pid) : 0;
      const r = sc.run(s.url);
      const c1 = pid ? cpu(pid) : 0;
      results[name][s.name] = pid
        ? { ...r, cpuSeconds: c1 - c0, perCore: (r.requests - r.non2xx - r.errors) / Math.max(0.01, c1 - c0) }
        : r;
      console.log(
        `${name.padEnd(10)} ${s.name.padEnd(17)} ${r.rps.toFixed(0).padStart(7)} req/s  p50 ${r.p50.toFixed(2)} ms  p99 ${r.p99.toFixed(2)} ms  non-2xx ${r.non2xx}  errors ${r.errors}${pid ? `  cpu ${(c1 - c0).toFixed(1)} s` : ''}`,
      );
      await sleep(500);
    }
    for (const s of systems) await s.stop();
    for (const u of ups) await stop(u);
  }
} finally {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const p of [ports.basic, ports.tuned]) tryRun(anchor, ['stop', String(p)]);
}

const rows: Row[] = [];
for (const [scenario, bySystem] of Object.entries(results)) {
  const direct = bySystem['direct'];
  for (const [sys, r] of Object.entries(bySystem)) {
    const goodput = (r.requests - r.non2xx - r.errors) / r.seconds;
    rows.push({
      scenario,
      system: sys,
      'good/s': Math.round(goodput),
      'answers/s': Math.round(r.rps),
      'good per cpu-s': r.perCore ? Math.round(r.perCore) : '-',
      'p50 ms': r.p50,
      'p99 ms': r.p99,
      'added p50': direct && sys !== 'direct' ? r.p50 - direct.p50 : '-',
      'added p99': direct && sys !== 'direct' ? r.p99 - direct.p99 : '-',
      'non-2xx': r.non2xx,
      errors: r.errors,
    });
  }
}
console.log(`\n${table(rows, 'each scenario through each system')}`);
console.log(
  `\n${table(
    Object.entries(idleRssMiB).map(([system, mib]) => ({ system, 'RSS MiB': Number(mib.toFixed(1)) })),
    'resident memory before any load',
  )}`,
);
const goodput = (r: Wrk) => (r.requests - r.non2xx - r.errors) / r.seconds;
const ratio = (s: string, a: string, b: string, f: (r: Wrk & { perCore?: number }) => number) => {
  const x = results[s]?.[a];
  const y = results[s]?.[b];
  return x && y ? f(x) / f(y) : NaN;
};
const goals = {
  'saturation: sidecar / node-passthrough good answers per second (goal ≥ 0.8)': ratio(
    'saturation',
    'ballast-sidecar',
    'node-passthrough',
    goodput,
  ),
  'saturation: sidecar non-2xx and errors (goal 0)':
    (results['saturation']?.['ballast-sidecar']?.non2xx ?? NaN) + (results['saturation']?.['ballast-sidecar']?.errors ?? NaN),
  'saturation: sidecar / node-passthrough per cpu-s': ratio('saturation', 'ballast-sidecar', 'node-passthrough', (r) => r.perCore ?? NaN),
  'saturation: sidecar / haproxy-tuned per cpu-s': ratio('saturation', 'ballast-sidecar', 'haproxy-tuned', (r) => r.perCore ?? NaN),
  'idle: sidecar RSS MiB before any load (goal ≤ 60)': idleRssMiB['ballast-sidecar'] ?? NaN,
  'rate1000: sidecar added p99 ms (goal ≤ 1)':
    (results['rate1000']?.['ballast-sidecar']?.p99 ?? NaN) - (results['rate1000']?.['direct']?.p99 ?? NaN),
  'saturation: 10 routes / no routes, good answers per second': ratio('saturation', 'sidecar-10-routes', 'ballast-sidecar', goodput),
  'saturation: 10 routes / no routes, per cpu-s': ratio('saturation', 'sidecar-10-routes', 'ballast-sidecar', (r) => r.perCore ?? NaN),
  'rate1000: 10 routes, added p50 ms over no routes':
    (results['rate1000']?.['sidecar-10-routes']?.p50 ?? NaN) - (results['rate1000']?.['ballast-sidecar']?.p50 ?? NaN),
  'rate1000: 10 routes, added p99 ms over no routes':
    (results['rate1000']?.['sidecar-10-routes']?.p99 ?? NaN) - (results['rate1000']?.['ballast-sidecar']?.p99 ?? NaN),
  ...Object.fromEntries(
    ['slow', 'failing', 'overload'].flatMap((s) => [
      [`${s}: sidecar / haproxy-tuned goodput (goal ≥ 1)`, ratio(s, 'ballast-sidecar', 'haproxy-tuned', goodput)],
      [`${s}: sidecar / haproxy-tuned p99 (goal ≤ 0.5)`, ratio(s, 'ballast-sidecar', 'haproxy-tuned', (r) => r.p99)],
    ]),
  ),
};
console.log(
  `\n${table(
    Object.entries(goals).map(([goal, v]) => ({ goal, value: Number.isFinite(v) ? v : 'n/a' })),
    'goals',
  )}`,
);
const versions = {
  haproxy: tryRun('haproxy', ['-v']).split('\n')[0],
  wrk: tryRun('sh', ['-c', 'wrk -v 2>&1 | head -1']),
  undici: JSON.parse(readFileSync(join(root, 'node_modules/undici/package.json'), 'utf8')).version,
};
console.log(`wrote ${writeResult('sidecar-vs-haproxy', { machine: machine(), versions, seconds, idleRssMiB, results, goals })}`);
