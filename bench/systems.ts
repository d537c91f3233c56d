/**
 * The systems the store benchmarks compare, each a fresh 3-member cluster on loopback: the
 * anchors, Debian's etcd 3.4 and etcd 3.6 built from its Go module (bench/anchors/etcd-cluster,
 * bench/anchors/etcd36), and `ballast store`.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { StoreCluster } from '../test/support/store-cluster.ts';
import { root } from './lib.ts';

export interface System {
  endpoints: string[];
  pids(): number[];
  leaderEndpoint(): string | undefined;
  killLeader(): Promise<string>;
  stop(): Promise<void>;
}

export function etcdctl(endpoints: string[], a: string[], timeout = 300_000): string {
  const r = spawnSync('etcdctl', [`--endpoints=${endpoints.join(',')}`, ...a], {
    encoding: 'utf8',
    env: { ...process.env, ETCDCTL_API: '3' },
    timeout,
    maxBuffer: 64 << 20,
  });
  return `${r.stdout}${r.stderr}`;
}

function leaderOf(endpoints: string[]): string | undefined {
  // `-w fields` prints one block per endpoint, separated by a blank line, "Endpoint" last.
  const out = etcdctl(endpoints, ['endpoint', 'status', '-w', 'fields']);
  for (const block of out.split(/\n\s*\n/)) {
    const ep = /"Endpoint" : "([^"]+)"/.exec(block)?.[1];
    const leader = /"Leader" : (\d+)/.exec(block)?.[1];
    const member = /"MemberID" : (\d+)/.exec(block)?.[1];
    if (ep && leader && leader === member) return ep;
  }
  return undefined;
}

const anchorScript = `${root}bench/anchors/etcd-cluster`;

/** An etcd release the benchmarks run as an anchor: its name in tables ("etcd3.4") and its binary. */
export interface Anchor {
  name: string;
  binary: string;
  version: string;
}

/** Debian's etcd-server (3.4), on PATH. */
export function etcd34(): Anchor {
  return { name: 'etcd3.4', binary: 'etcd', version: etcdVersion('etcd') };
}

/** etcd 3.6, built from its Go module by `make etcd36` (BALLAST_ETCD36 names the binary). */
export function etcd36(): Anchor {
  const binary =
    process.env['BALLAST_ETCD36'] ??
    (() => {
      const mod = readFileSync(`${root}bench/anchors/etcd36/go.mod`, 'utf8');
      const v = /go\.etcd\.io\/etcd\/server\/v3 (v\S+)/.exec(mod)?.[1] ?? 'unknown';
      return `${process.env['BALLAST_CACHE'] ?? `${homedir()}/.cache/ballast`}/etcd-${v}/etcd`;
    })();
  try {
    accessSync(binary, constants.X_OK);
  } catch {
    throw new Error(`etcd 3.6 is not built at ${binary}: run \`make etcd36\` (make bench builds it), or pass --anchors=3.4`);
  }
  return { name: 'etcd3.6', binary, version: etcdVersion(binary) };
}

/** The anchors a benchmark's `--anchors=3.4,3.6` names (both by default). */
export function anchorsFrom(argv: string[]): Anchor[] {
  const list = (argv.find((a) => a.startsWith('--anchors='))?.slice(10) ?? '3.4,3.6').split(',').filter(Boolean);
  return list.map((v) => {
    if (v === '3.4') return etcd34();
    if (v === '3.6') return etcd36();
    throw new Error(`--anchors: unknown etcd release ${JSON.stringify(v)} (known: 3.4, 3.6)`);
  });
}

/**
 * Each anchor's results under its key in bench/results: etcd 3.4 stays under `etcd`, as in the
 * results written before 3.6 joined; 3.6 is `etcd36`.
 */
export function byAnchor<T>(anchors: Anchor[], results: T[]): Record<string, T | undefined> {
  return Object.fromEntries(anchors.map((a, i) => [a.name === 'etcd3.4' ? 'etcd' : a.name.replace('.', ''), results[i]]));
}

function etcdVersion(binary: string): string {
  const r = spawnSync(binary, ['--version'], { encoding: 'utf8' });
  return /etcd Version: (\S+)/.exec(r.stdout ?? '')?.[1] ?? 'unknown';
}

export async function startEtcd(anchor: Anchor = etcd34()): Promise<System> {
  const dir = '/tmp/ballast-bench-etcd';
  const eps = execFileSync(anchorScript, ['start', dir, '3'], { encoding: 'utf8', env: { ...process.env, ETCD: anchor.binary } })
    .trim()
    .split(',');
  const pids = () => readFileSync(`${dir}/pids`, 'utf8').trim().split('\n').map(Number);
  return {
    endpoints: eps,
    pids,
    leaderEndpoint: () => leaderOf(eps),
    async killLeader() {
      const lead = leaderOf(eps);
      const idx = eps.indexOf(lead ?? '');
      const pid = pids()[idx];
      if (pid === undefined) throw new Error('no etcd leader');
      process.kill(pid, 'SIGKILL');
      return lead as string;
    },
    async stop() {
      execFileSync(anchorScript, ['stop', dir]);
    },
  };
}

export async function startBallast(): Promise<System> {
  const c = await StoreCluster.start(3, { env: { BALLAST_LOG_LEVEL: 'warn' } });
  const eps = c.members.map((m) => `127.0.0.1:${m.clientPort}`);
  return {
    endpoints: eps,
    pids: () => c.members.map((m) => c.procs.get(m.name)?.pid ?? 0),
    leaderEndpoint: () => leaderOf(eps),
    async killLeader() {
      const lead = leaderOf(eps);
      const m = c.members.find((x) => `127.0.0.1:${x.clientPort}` === lead);
      if (!m) throw new Error('no ballast leader');
      await c.kill9(m.name);
      return lead as string;
    },
    stop: () => c.shutdown(),
  };
}

export interface Load {
  opsPerSec: number;
  p50ms: number;
  p99ms: number;
  errors: number;
}

/**
 * bench/loadgen (etcd's Go clientv3) for `ms` after a second's warm-up: 16 clients of 256-byte
 * puts spread over the endpoints. Asynchronous, so something else can run meanwhile (a backup).
 */
export function putLoad(sys: System, ms: number): Promise<Load> {
  const loadgen = process.env['BALLAST_LOADGEN'] ?? `${root}.tools/loadgen`;
  return new Promise((resolve, reject) => {
    const p = spawn(
      loadgen,
      ['-endpoints', sys.endpoints.join(','), '-op', 'put', '-clients', '16', '-duration', `${ms}ms`, '-warmup', '1s'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    p.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as Load) : reject(new Error(`loadgen exited ${code}`))));
  });
}
