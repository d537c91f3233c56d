/**
 * The two systems the store benchmarks compare, each a fresh 3-member cluster on loopback:
 * Debian's etcd 3.4 (the anchor, bench/anchors/etcd-cluster) and `ballast store`.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
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

export async function startEtcd(): Promise<System> {
  const dir = '/tmp/ballast-bench-etcd';
  const eps = execFileSync(anchorScript, ['start', dir, '3'], { encoding: 'utf8' }).trim().split(',');
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
