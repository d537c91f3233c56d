/**
 * bench/mesh: one hop between two meshed workloads, plaintext and mTLS, against HAProxy doing the
 * same hop (plaintext, and TLS with client certificates verified both ways), in one run, with one
 * load generator (wrk from Debian) and one app (test/support/upstream-server.ts).
 *
 *   direct          wrk → app
 *   sidecar-plain   wrk → caller sidecar → callee sidecar (inbound listener) → app    (mtls: off)
 *   sidecar-mtls    the same with mTLS between the sidecars                            (mtls: strict)
 *   haproxy-plain   wrk → HAProxy → HAProxy → app
 *   haproxy-tls     the same with TLS between them, client certificates required and verified
 *
 * Measures, at ~1,000 req/s (Poisson arrivals, 10 connections): p50/p99 and what each adds over
 * direct; the CPU both proxies of a pair use (cores at 1,000 req/s); the sidecars' RSS after the
 * run. Then handshakes per second that the callee side completes (`openssl s_time -new` with a
 * client certificate, full TLS 1.3 handshakes, ECDSA P-256), sidecar inbound against HAProxy's
 * TLS frontend. The sidecars' certificates come from files (identity.certFile) made by the mesh CA
 * (operator/mesh/ca.ts); HAProxy gets the same certificates.
 *
 *   node bench/mesh.ts [--seconds=10] [--warmup=3] [--rate=1000]
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { newKeyAndCsr } from '../lib/csr.ts';
import { makeIssuer, makeTrustAnchor, signWorkload } from '../operator/mesh/ca.ts';
import { type WrkResult, machine, parseWrk, root, rssBytes, table, tryRun, writeResult } from './lib.ts';

const arg = (name: string, def: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? def;
const seconds = Number(arg('seconds', '10'));
const warmup = Number(arg('warmup', '3'));
const rate = Number(arg('rate', '1000'));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const dir = mkdtempSync(join(tmpdir(), 'ballast-mesh-bench-'));
const node = process.execPath;
const td = 'bench.local';

// Fixed ports (benchmarks own the machine while they run).
const P = {
  app: 29401,
  plainOut: 29411,
  plainIn: 29412,
  plainAdminA: 29413,
  plainAdminB: 29414,
  mtlsOut: 29421,
  mtlsIn: 29422,
  mtlsAdminA: 29423,
  mtlsAdminB: 29424,
  hpPlainA: 29431,
  hpPlainB: 29432,
  hpTlsA: 29441,
  hpTlsB: 29442,
};

const children: ChildProcess[] = [];
const cpu = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
};
async function stop(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const done = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM');
  await done;
}

// Certificates: one anchor and issuer; web (caller) and api (callee) workload certificates.
const anchor = await makeTrustAnchor(td, new Date());
const issuer = await makeIssuer(anchor, td, new Date());
const certs: Record<string, { certFile: string; keyFile: string; bundleFile: string; pemFile: string }> = {};
for (const sa of ['web', 'api']) {
  const { keyPem, csrPem } = await newKeyAndCsr();
  const issued = await signWorkload(issuer, csrPem, `spiffe://${td}/ns/bench/sa/${sa}`, new Date(), 86_400_000);
  const f = (n: string, v: string) => {
    const p = join(dir, `${sa}-${n}`);
    writeFileSync(p, v);
    return p;
  };
  certs[sa] = {
    certFile: f('cert.pem', issued.chainPem),
    keyFile: f('key.pem', keyPem),
    bundleFile: f('bundle.pem', anchor.certPem),
    pemFile: f('haproxy.pem', `${issued.chainPem}${keyPem}`),
  };
}

const files = (c: { certFile: string; keyFile: string; bundleFile: string }) => ({
  certFile: c.certFile,
  keyFile: c.keyFile,
  bundleFile: c.bundleFile,
});

async function sidecar(name: string, doc: object, adminPort: number): Promise<ChildProcess> {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, stringify({ admin: `127.0.0.1:${adminPort}`, ...doc }));
  const p = spawn(join(root, 'bin/ballast'), ['sidecar', `--config=${file}`, '--watch=false'], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, BALLAST_LOG_LEVEL: 'warn' },
  });
  children.push(p);
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${adminPort}/ready`)).ok) return p;
    } catch {
      /* not yet */
    }
    await sleep(100);
  }
  throw new Error(`sidecar ${name} did not start`);
}

function haproxy(name: string, cfg: string): ChildProcess {
  const file = join(dir, `${name}.cfg`);
  writeFileSync(file, cfg);
  execFileSync('haproxy', ['-c', '-q', '-f', file]);
  const p = spawn('haproxy', ['-db', '-f', file], { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(p);
  return p;
}
const hpGlobal =
  'global\n  nbthread 1\n  maxconn 4000\ndefaults\n  mode http\n  timeout connect 1s\n  timeout client 30s\n  timeout server 30s\n';

type Wrk = WrkResult;
function wrk(url: string, secs: number): Wrk {
  const connections = 10;
  const script = join(dir, 'rate.lua');
  writeFileSync(script, `math.randomseed(7)\nfunction delay() return -math.log(1 - math.random()) * ${(1000 * connections) / rate} end\n`);
  const out = execFileSync('wrk', ['-t1', `-c${connections}`, `-d${secs}s`, '--latency', '--timeout', '10s', '-s', script, url], {
    encoding: 'utf8',
    timeout: (secs + 30) * 1000,
  });
  return parseWrk(out);
}

/** Full handshakes per second `openssl s_time -new` completes against host:port with the web certificate. */
function handshakes(port: number, secs: number): number {
  const out = tryRun('openssl', [
    's_time',
    '-connect',
    `127.0.0.1:${port}`,
    '-new',
    '-cert',
    certs['web']!.certFile,
    '-key',
    certs['web']!.keyFile,
    '-CAfile',
    certs['web']!.bundleFile,
    '-time',
    String(secs),
  ]);
  const m = /(\d+) connections in (\d+) real seconds/.exec(out);
  return m ? Number(m[1]) / Math.max(1, Number(m[2])) : NaN;
}

const results: Record<string, Wrk & { cpuCores?: number; rssMiB?: number }> = {};
const shakes: Record<string, number> = {};
try {
  const app = spawn(node, [join(root, 'test/support/upstream-server.ts'), `127.0.0.1:${P.app}`, 'ok'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(app);
  await new Promise<void>((resolve) => app.stdout?.on('data', (c: Buffer) => /listening/.test(c.toString()) && resolve()));
  const appAddr = `127.0.0.1:${P.app}`;
  const pairs: Array<{ name: string; url: string; pids: () => number[]; stop: () => Promise<void> }> = [
    { name: 'direct', url: `http://${appAddr}/`, pids: () => [], stop: async () => undefined },
  ];
  for (const mode of ['plain', 'mtls'] as const) {
    const [outPort, inPort, adminA, adminB] =
      mode === 'plain' ? [P.plainOut, P.plainIn, P.plainAdminA, P.plainAdminB] : [P.mtlsOut, P.mtlsIn, P.mtlsAdminA, P.mtlsAdminB];
    const mesh = mode === 'mtls';
    const callee = await sidecar(
      `api-${mode}`,
      {
        ...(mesh ? { identity: files(certs['api']!) } : {}),
        inbound: [{ name: 'api', listen: `127.0.0.1:${inPort}`, target: appAddr, mtls: mesh ? 'strict' : 'off' }],
      },
      adminB,
    );
    const caller = await sidecar(
      `web-${mode}`,
      {
        ...(mesh ? { identity: files(certs['web']!) } : {}),
        upstreams: [
          {
            name: 'api',
            listen: `127.0.0.1:${outPort}`,
            mtls: mesh ? 'strict' : 'off',
            endpoints: [{ address: `127.0.0.1:${inPort}`, ...(mesh ? { identity: `spiffe://${td}/ns/bench/sa/api` } : {}) }],
          },
        ],
      },
      adminA,
    );
    pairs.push({
      name: `sidecar-${mode}`,
      url: `http://127.0.0.1:${outPort}/`,
      pids: () => [caller.pid as number, callee.pid as number],
      stop: async () => {
        await stop(caller);
        await stop(callee);
      },
    });
  }
  const hpPlainB = haproxy(
    'hp-plain-b',
    `${hpGlobal}frontend f\n  bind 127.0.0.1:${P.hpPlainB}\n  default_backend b\nbackend b\n  server app ${appAddr}\n`,
  );
  const hpPlainA = haproxy(
    'hp-plain-a',
    `${hpGlobal}frontend f\n  bind 127.0.0.1:${P.hpPlainA}\n  default_backend b\nbackend b\n  server b 127.0.0.1:${P.hpPlainB}\n`,
  );
  const api = certs['api']!;
  const web = certs['web']!;
  const hpTlsB = haproxy(
    'hp-tls-b',
    `${hpGlobal}frontend f\n  bind 127.0.0.1:${P.hpTlsB} ssl crt ${api.pemFile} ca-file ${api.bundleFile} verify required alpn h2,http/1.1\n  default_backend b\nbackend b\n  server app ${appAddr}\n`,
  );
  const hpTlsA = haproxy(
    'hp-tls-a',
    `${hpGlobal}frontend f\n  bind 127.0.0.1:${P.hpTlsA}\n  default_backend b\nbackend b\n  server b 127.0.0.1:${P.hpTlsB} ssl crt ${web.pemFile} ca-file ${web.bundleFile} verify required alpn http/1.1\n`,
  );
  await sleep(500);
  pairs.push(
    {
      name: 'haproxy-plain',
      url: `http://127.0.0.1:${P.hpPlainA}/`,
      pids: () => [hpPlainA.pid as number, hpPlainB.pid as number],
      stop: async () => {
        await stop(hpPlainA);
        await stop(hpPlainB);
      },
    },
    {
      name: 'haproxy-tls',
      url: `http://127.0.0.1:${P.hpTlsA}/`,
      pids: () => [hpTlsA.pid as number, hpTlsB.pid as number],
      stop: async () => {
        await stop(hpTlsA);
        await stop(hpTlsB);
      },
    },
  );
  for (const p of pairs) {
    if (warmup > 0) wrk(p.url, warmup);
    const pids = p.pids();
    const c0 = pids.reduce((n, pid) => n + cpu(pid), 0);
    const t0 = Date.now();
    const r = wrk(p.url, seconds);
    const wall = (Date.now() - t0) / 1000;
    const c1 = pids.reduce((n, pid) => n + cpu(pid), 0);
    const rss = p.name.startsWith('sidecar') ? pids.reduce((n, pid) => n + rssBytes(pid), 0) / 2 ** 20 : undefined;
    results[p.name] = { ...r, ...(pids.length ? { cpuCores: (c1 - c0) / wall } : {}), ...(rss !== undefined ? { rssMiB: rss } : {}) };
    console.log(
      `${p.name.padEnd(14)} ${r.rps.toFixed(0).padStart(6)} req/s  p50 ${r.p50.toFixed(2)} ms  p99 ${r.p99.toFixed(2)} ms  non-2xx ${r.non2xx}  errors ${r.errors}${pids.length ? `  cores ${((c1 - c0) / wall).toFixed(3)}` : ''}${rss !== undefined ? `  rss ${rss.toFixed(0)} MiB (two)` : ''}`,
    );
    await sleep(500);
  }
  shakes['sidecar inbound (mTLS)'] = handshakes(P.mtlsIn, seconds);
  shakes['haproxy frontend (TLS, client certificate)'] = handshakes(P.hpTlsB, seconds);
  for (const [k, v] of Object.entries(shakes)) console.log(`handshakes/s ${k}: ${v.toFixed(0)}`);
  for (const p of pairs) await p.stop();
} finally {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}

const direct = results['direct'];
const rows = Object.entries(results).map(([system, r]) => ({
  system,
  'req/s': Math.round(r.rps),
  'p50 ms': r.p50,
  'p99 ms': r.p99,
  'added p50 ms': direct && system !== 'direct' ? r.p50 - direct.p50 : '-',
  'added p99 ms': direct && system !== 'direct' ? r.p99 - direct.p99 : '-',
  [`cores at ${rate}/s (pair)`]: r.cpuCores ?? '-',
  'RSS MiB (each)': r.rssMiB !== undefined ? r.rssMiB / 2 : '-',
  'non-2xx': r.non2xx,
  errors: r.errors,
}));
console.log(`\n${table(rows, `one hop between two workloads at ~${rate} req/s`)}`);
console.log(
  `\n${table(
    Object.entries(shakes).map(([side, v]) => ({ side, 'full handshakes/s': Math.round(v) })),
    'mTLS handshakes per second',
  )}`,
);
const r = (a: string, b: string, f: (x: Wrk & { cpuCores?: number }) => number) =>
  results[a] && results[b] ? f(results[a]) / f(results[b]) : NaN;
const summary = {
  'mTLS added p50 over plaintext, ms': (results['sidecar-mtls']?.p50 ?? NaN) - (results['sidecar-plain']?.p50 ?? NaN),
  'mTLS added p99 over plaintext, ms': (results['sidecar-mtls']?.p99 ?? NaN) - (results['sidecar-plain']?.p99 ?? NaN),
  'sidecar-mtls / haproxy-tls cores': r('sidecar-mtls', 'haproxy-tls', (x) => x.cpuCores ?? NaN),
  'sidecar-mtls / sidecar-plain cores': r('sidecar-mtls', 'sidecar-plain', (x) => x.cpuCores ?? NaN),
  'sidecar / haproxy full handshakes per second': shakes['sidecar inbound (mTLS)']! / shakes['haproxy frontend (TLS, client certificate)']!,
};
console.log(
  `\n${table(
    Object.entries(summary).map(([k, v]) => ({ measure: k, value: Number.isFinite(v) ? v : 'n/a' })),
    'summary',
  )}`,
);
const versions = {
  haproxy: tryRun('haproxy', ['-v']).split('\n')[0],
  openssl: tryRun('openssl', ['version']).trim(),
  wrk: tryRun('sh', ['-c', 'wrk -v 2>&1 | head -1']),
  node: process.version,
};
console.log(`wrote ${writeResult('mesh', { machine: machine(), versions, seconds, rate, results, handshakes: shakes, summary })}`);
