/**
 * bench/watch-vs-etcd: one writer and 1,000 watchers on a prefix, against etcd 3.4 and
 * `ballast store` (fresh 3-member clusters, same client: etcd's Go clientv3 in bench/loadgen).
 * Every watcher must receive every revision, in order, exactly once; reports delivery latency.
 *
 *   node bench/watch-vs-etcd.ts [--watchers=1000] [--rate=100] [--seconds=10]
 */
import { spawnSync } from 'node:child_process';
import { machine, root, table, writeResult } from './lib.ts';
import { type System, startBallast, startEtcd } from './systems.ts';

const arg = (name: string, def: number) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? def);
const watchers = arg('watchers', 1000);
const rate = arg('rate', 100);
const seconds = arg('seconds', 10);

interface WatchResult {
  watchers: number;
  writes: number;
  eventsExpected: number;
  eventsReceived: number;
  outOfOrder: number;
  gaps: number;
  p50ms: number;
  p99ms: number;
  watchersWithEveryRevision: number;
}

async function run(start: () => Promise<System>): Promise<WatchResult> {
  const sys = await start();
  try {
    const loadgen = process.env['BALLAST_LOADGEN'] ?? `${root}.tools/loadgen`;
    const r = spawnSync(
      loadgen,
      [
        '-op',
        'watch',
        '-endpoints',
        sys.endpoints.join(','),
        '-clients',
        '16',
        '-watchers',
        String(watchers),
        '-rate',
        String(rate),
        '-duration',
        `${seconds}s`,
      ],
      { encoding: 'utf8', timeout: (seconds + 120) * 1000 },
    );
    if (r.status !== 0) throw new Error(`loadgen failed: ${r.stderr}`);
    return JSON.parse(r.stdout) as WatchResult;
  } finally {
    await sys.stop();
  }
}

const etcd = await run(startEtcd);
const ballast = await run(startBallast);
const row = (name: string, r: WatchResult) => ({
  system: name,
  writes: r.writes,
  'events expected': r.eventsExpected,
  'events received': r.eventsReceived,
  'watchers with every revision': `${r.watchersWithEveryRevision}/${r.watchers}`,
  'out of order': r.outOfOrder,
  gaps: r.gaps,
  'p50 ms': r.p50ms,
  'p99 ms': r.p99ms,
});
console.log(`\nwatch-vs-etcd: 1 writer at ${rate}/s for ${seconds}s, ${watchers} watchers on one prefix, 3 members each\n`);
console.log(`${table([row('etcd 3.4', etcd), row('ballast store', ballast)], 'watch fan-out')}\n`);
console.log(`wrote ${writeResult('watch-vs-etcd', { machine: machine(), watchers, rate, seconds, etcd, ballast })}`);
