/**
 * bench/watch-vs-etcd: one writer and 1,000 watchers on a prefix, against etcd 3.4, etcd 3.6 and
 * `ballast store` (fresh 3-member clusters, same client: etcd's Go clientv3 in bench/loadgen).
 * Every watcher must receive every revision, in order, exactly once; reports delivery latency.
 *
 *   node bench/watch-vs-etcd.ts [--watchers=1000] [--rate=100] [--seconds=10] [--anchors=3.4,3.6]
 */
import { spawnSync } from 'node:child_process';
import { machine, root, table, writeResult } from './lib.ts';
import { type System, anchorsFrom, byAnchor, startBallast, startEtcd } from './systems.ts';

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

const anchors = anchorsFrom(process.argv.slice(2));
const results: Array<{ system: string; r: WatchResult }> = [];
for (const a of anchors) results.push({ system: `etcd ${a.version}`, r: await run(() => startEtcd(a)) });
const ballast = await run(startBallast);
results.push({ system: 'ballast store', r: ballast });
const row = (name: string, r: WatchResult) => ({
  system: name,
  writes: r.writes,
  'events expected': r.eventsExpected,
  'events received': r.eventsReceived,
  // What the one client took in per second (the writer's window and the 2 s grace after it):
  // at 10,000 watchers on two cores the client, not the server, sets this ceiling.
  'events/s delivered': Math.round(r.eventsReceived / (seconds + 2)),
  'watchers with every revision': `${r.watchersWithEveryRevision}/${r.watchers}`,
  'out of order': r.outOfOrder,
  gaps: r.gaps,
  'p50 ms': r.p50ms,
  'p99 ms': r.p99ms,
});
console.log(`\nwatch-vs-etcd: 1 writer at ${rate}/s for ${seconds}s, ${watchers} watchers on one prefix, 3 members each\n`);
console.log(
  `${table(
    results.map((x) => row(x.system, x.r)),
    'watch fan-out',
  )}\n`,
);
const ratios = anchors.map((a, i) => {
  const e = (results[i] as { r: WatchResult }).r;
  return {
    anchor: a.name,
    'p50 ratio': ballast.p50ms / e.p50ms,
    'p99 ratio': ballast.p99ms / e.p99ms,
    'writes ratio': ballast.writes / e.writes,
  };
});
console.log(`ballast / anchor:\n${table(ratios, 'ballast / anchor')}\n`);
const name = `watch-vs-etcd${watchers === 1000 ? '' : `-${watchers}`}${rate === 100 ? '' : `-rate${rate}`}`;
const anchorResults = byAnchor(
  anchors,
  results.map((x) => x.r),
);
console.log(`wrote ${writeResult(name, { machine: machine(), watchers, rate, seconds, ...anchorResults, ballast })}`);
