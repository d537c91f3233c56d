/**
 * The design card's opossum and bottleneck, side by side with the sidecar's own breaker
 * (sidecar/policies/breaker.ts) and token bucket (sidecar/policies/ratelimit.ts), on the same
 * workloads in the same run:
 *
 * - breaker behaviour: one upstream, healthy, then down, then flaky (40% failures), then healthy
 *   again, called every 2 ms; equivalent settings (open at ≥ 50% failures of ≥ 20 calls in a 1 s
 *   window, retry after 250 ms). What reached the upstream while it was down, how fast each
 *   opened and closed, and how often it flapped while the upstream was flaky.
 * - breaker cost: the time a call takes through each, against the bare call.
 * - rate limit behaviour: 1,000 calls/s offered to a 500/s limit for 3 s: what was admitted, how
 *   bursty the admitted calls were, and how long an admitted or refused call waited for its answer.
 * - rate limit cost: one admission decision.
 *
 *   node bench/breaker-limiter.ts     (writes bench/results/breaker-limiter.json and .html)
 */
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import Bottleneck from 'bottleneck';
import CircuitBreaker from 'opossum';
import { Breaker } from '../sidecar/policies/breaker.ts';
import { TokenBucket } from '../sidecar/policies/ratelimit.ts';
import { SeededRandom } from '../lib/random.ts';
import { machine, percentile, table, writeResult } from './lib.ts';

const require = createRequire(import.meta.url);
const versions = {
  opossum: (require('opossum/package.json') as { version: string }).version,
  bottleneck: (require('bottleneck/package.json') as { version: string }).version,
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

// ---------------------------------------------------------------- breaker behaviour
const phases = [
  { name: 'healthy', ms: 1500, failRate: 0 },
  { name: 'down', ms: 1500, failRate: 1 },
  { name: 'flaky', ms: 1500, failRate: 0.4 },
  { name: 'recovered', ms: 1500, failRate: 0 },
] as const;
type PhaseName = (typeof phases)[number]['name'];

interface BreakerRun {
  refused: Record<PhaseName, number>;
  reached: Record<PhaseName, number>;
  failedAtUpstream: Record<PhaseName, number>;
  opens: Record<PhaseName, number>;
  msToOpen: number;
  msToClose: number;
  goodRefused: Record<PhaseName, number>;
}

/** Drive one breaker through the phases; `call` returns 'refused' or the upstream's outcome. */
async function breakerScenario(
  call: (upstream: () => Promise<void>) => Promise<'refused' | 'ok' | 'failed'>,
  state: () => string,
): Promise<BreakerRun> {
  const rng = new SeededRandom(42);
  const zero = () => ({ healthy: 0, down: 0, flaky: 0, recovered: 0 });
  const run: BreakerRun = {
    refused: zero(),
    reached: zero(),
    failedAtUpstream: zero(),
    opens: zero(),
    msToOpen: NaN,
    msToClose: NaN,
    goodRefused: zero(),
  };
  let downEnded = NaN;
  for (const p of phases) {
    const phaseStart = performance.now();
    let wasOpen = state() !== 'closed';
    while (performance.now() - phaseStart < p.ms) {
      const fail = rng.next() < p.failRate;
      const upstream = async () => {
        run.reached[p.name]++;
        if (fail) {
          run.failedAtUpstream[p.name]++;
          throw new Error('upstream failed');
        }
      };
      const r = await call(upstream);
      if (r === 'refused') {
        run.refused[p.name]++;
        if (!fail) run.goodRefused[p.name]++;
      }
      const open = state() !== 'closed';
      if (open && !wasOpen) {
        run.opens[p.name]++;
        if (p.name === 'down' && Number.isNaN(run.msToOpen)) run.msToOpen = Math.round(performance.now() - phaseStart);
      }
      // Closed again: from the end of the outage (the upstream flaky, then recovered).
      if (!open && !Number.isNaN(downEnded) && Number.isNaN(run.msToClose)) run.msToClose = Math.round(performance.now() - downEnded);
      wasOpen = open;
      await sleep(2);
    }
    if (p.name === 'down') downEnded = performance.now();
  }
  return run;
}

function ours(): Promise<BreakerRun> {
  const b = new Breaker({ failureRate: { threshold: 0.5, minCalls: 20 }, windowMs: 1000, openMs: 250, halfOpenTrials: 5 });
  return breakerScenario(
    async (upstream) => {
      const now = performance.now();
      const a = b.tryAcquire(now);
      if (!a.ok) return 'refused';
      try {
        await upstream();
        b.onResult(a.ticket, performance.now(), true, performance.now() - now);
        return 'ok';
      } catch {
        b.onResult(a.ticket, performance.now(), false, performance.now() - now);
        return 'failed';
      }
    },
    () => b.state(performance.now()),
  );
}

function theirs(): Promise<BreakerRun> {
  const cb = new CircuitBreaker((upstream: () => Promise<void>) => upstream(), {
    errorThresholdPercentage: 50,
    volumeThreshold: 20,
    rollingCountTimeout: 1000,
    rollingCountBuckets: 10,
    resetTimeout: 250,
    timeout: false,
  });
  return breakerScenario(
    async (upstream) => {
      try {
        await cb.fire(upstream);
        return 'ok';
      } catch (err) {
        return (err as { code?: string }).code === 'EOPENBREAKER' ? 'refused' : 'failed';
      }
    },
    () => (cb.opened ? 'open' : cb.halfOpen ? 'halfOpen' : 'closed'),
  );
}

// ---------------------------------------------------------------- breaker cost
async function breakerCost(): Promise<Record<string, number>> {
  const calls = 200_000;
  const op = async () => undefined;
  const time = async (f: () => Promise<unknown>) => {
    const t0 = performance.now();
    for (let i = 0; i < calls; i++) await f();
    return ((performance.now() - t0) * 1e6) / calls;
  };
  const b = new Breaker({ failureRate: { threshold: 0.5, minCalls: 20 }, windowMs: 1000, openMs: 250, halfOpenTrials: 5 });
  const cb = new CircuitBreaker(op, {
    errorThresholdPercentage: 50,
    volumeThreshold: 20,
    rollingCountTimeout: 1000,
    rollingCountBuckets: 10,
    resetTimeout: 250,
    timeout: false,
  });
  const viaOurs = async () => {
    const now = performance.now();
    const a = b.tryAcquire(now);
    if (a.ok) {
      await op();
      b.onResult(a.ticket, performance.now(), true, 0);
    }
  };
  const bare: number[] = [];
  const o: number[] = [];
  const t: number[] = [];
  for (let round = 0; round < 5; round++) {
    bare.push(await time(op));
    o.push(await time(viaOurs));
    t.push(await time(() => cb.fire()));
  }
  cb.shutdown();
  return { bare: median(bare), ours: median(o), opossum: median(t) };
}

// ---------------------------------------------------------------- rate limit
interface LimitRun {
  admitted: number;
  admittedWhileOffered: number;
  refused: number;
  maxIn100ms: number;
  admitWaitP99: number;
  refuseWaitP99: number;
}

/** Offer `rate`/s for `ms`, each call to `offer`, which resolves when the call is admitted (true) or refused (false). */
async function offerLoad(offer: () => Promise<boolean>, rate: number, ms: number): Promise<LimitRun> {
  const admittedAt: number[] = [];
  const admitWait: number[] = [];
  const refuseWait: number[] = [];
  let refused = 0;
  const pending: Array<Promise<void>> = [];
  const start = performance.now();
  let sent = 0;
  while (performance.now() - start < ms) {
    const due = Math.floor(((performance.now() - start) / 1000) * rate);
    for (; sent < due; sent++) {
      const t0 = performance.now();
      pending.push(
        offer().then((ok) => {
          const t = performance.now();
          if (ok) {
            admittedAt.push(t - start);
            admitWait.push(t - t0);
          } else {
            refused++;
            refuseWait.push(t - t0);
          }
        }),
      );
    }
    await new Promise((r) => setImmediate(r));
  }
  await Promise.all(pending);
  admittedAt.sort((a, b) => a - b);
  let maxIn100ms = 0;
  for (let i = 0, j = 0; i < admittedAt.length; i++) {
    while ((admittedAt[i] ?? 0) - (admittedAt[j] ?? 0) > 100) j++;
    maxIn100ms = Math.max(maxIn100ms, i - j + 1);
  }
  const p99 = (xs: number[]) =>
    Math.round(
      percentile(
        xs.sort((a, b) => a - b),
        99,
      ) * 100,
    ) / 100;
  return {
    admitted: admittedAt.length,
    admittedWhileOffered: admittedAt.filter((t) => t <= ms).length,
    refused,
    maxIn100ms,
    admitWaitP99: p99(admitWait),
    refuseWaitP99: refuseWait.length ? p99(refuseWait) : 0,
  };
}

async function limiters(): Promise<Record<string, LimitRun>> {
  const rate = 1000;
  const limit = 500;
  const ms = 3000;
  const bucket = new TokenBucket({ perSecond: limit, burst: 10 }, performance.now());
  const out: Record<string, LimitRun> = {};
  out['ballast token bucket (500/s, burst 10)'] = await offerLoad(async () => bucket.take(performance.now()) === 0, rate, ms);
  // bottleneck's reservoir: 500 jobs per 1 s interval; jobs that cannot start are dropped (no queue).
  const reservoir = new Bottleneck({
    reservoir: limit,
    reservoirRefreshAmount: limit,
    reservoirRefreshInterval: 1000,
    highWater: 0,
    strategy: Bottleneck.strategy.OVERFLOW,
  });
  out['bottleneck reservoir (500 per 1 s)'] = await offerLoad(() => reservoir.schedule(async () => true).catch(() => false), rate, ms);
  await reservoir.stop({ dropWaitingJobs: true }).catch(() => undefined);
  // bottleneck smoothed: one job every 2 ms, a queue of up to 10 (as the bucket's burst), the rest
  // dropped. (Measured: the jobs wait in bottleneck's RECEIVED state, which highWater does not count,
  // so none is dropped and the wait grows for as long as the overload lasts.)
  const spaced = new Bottleneck({ minTime: 1000 / limit, highWater: 10, strategy: Bottleneck.strategy.OVERFLOW });
  out['bottleneck minTime 2 ms, queue 10'] = await offerLoad(() => spaced.schedule(async () => true).catch(() => false), rate, ms);
  await spaced.stop({ dropWaitingJobs: true }).catch(() => undefined);
  return out;
}

async function limiterCost(): Promise<Record<string, number>> {
  const n = 100_000;
  const m = 10_000; // bottleneck's schedule() is asynchronous and far slower: fewer rounds
  const bucket = new TokenBucket({ perSecond: 1e12, burst: 1e12 }, performance.now());
  const t0 = performance.now();
  for (let i = 0; i < n; i++) bucket.take(performance.now());
  const ours = ((performance.now() - t0) * 1e6) / n;
  const unlimited = new Bottleneck({});
  const t1 = performance.now();
  for (let i = 0; i < 1000; i++) await unlimited.schedule(async () => undefined);
  const oneAtATime = ((performance.now() - t1) * 1e6) / 1000;
  const t2 = performance.now();
  await Promise.all(Array.from({ length: m }, () => unlimited.schedule(async () => undefined)));
  const batched = ((performance.now() - t2) * 1e6) / m;
  await unlimited.stop().catch(() => undefined);
  return { ours, bottleneckOneAtATime: oneAtATime, bottleneckBatched: batched };
}

// ---------------------------------------------------------------- run
const b1 = await ours();
const b2 = await theirs();
const bc = await breakerCost();
const lim = await limiters();
const lc = await limiterCost();

const breakerRows = (
  [
    ['ballast breaker (5 half-open trials)', b1],
    [`opossum ${versions.opossum}`, b2],
  ] as const
).map(([system, r]) => ({
  system,
  'failed calls let through while down': r.failedAtUpstream.down,
  'ms to open': r.msToOpen,
  'opens while flaky': r.opens.flaky,
  'failed calls let through while flaky': r.failedAtUpstream.flaky,
  'good calls refused while flaky': r.goodRefused.flaky,
  'ms to close after the outage': Number.isNaN(r.msToClose) ? 'never' : r.msToClose,
  'healthy calls refused': r.refused.healthy + r.refused.recovered,
}));
console.log(
  `\nbreaker: one upstream healthy 1.5 s, down 1.5 s, flaky (40% failures) 1.5 s, recovered 1.5 s; a call every 2 ms\n\n${table(breakerRows, 'breaker behaviour')}\n`,
);
const costRows = [
  {
    system: 'ballast breaker',
    'ns per call': Math.round(bc.ours ?? 0),
    'ns added to the bare call': Math.round((bc.ours ?? 0) - (bc.bare ?? 0)),
  },
  {
    system: `opossum ${versions.opossum}`,
    'ns per call': Math.round(bc.opossum ?? 0),
    'ns added to the bare call': Math.round((bc.opossum ?? 0) - (bc.bare ?? 0)),
  },
];
console.log(
  `breaker: cost of a call through it (bare async call: ${Math.round(bc.bare ?? 0)} ns; median of 5 × 200,000)\n\n${table(costRows, 'breaker cost')}\n`,
);
const limitRows = Object.entries(lim).map(([system, r]) => ({
  system,
  'admitted /s while offered': Math.round(r.admittedWhileOffered / 3),
  'admitted later': r.admitted - r.admittedWhileOffered,
  refused: r.refused,
  'most admitted in 100 ms': r.maxIn100ms,
  'admitted: wait p99 ms': r.admitWaitP99,
  'refused: wait p99 ms': r.refuseWaitP99,
}));
console.log(`rate limit 500/s, 1,000 calls/s offered for 3 s\n\n${table(limitRows, 'rate limit behaviour')}\n`);
const limitCostRows = [
  {
    system: 'ballast token bucket',
    'µs per admission, one at a time': Math.round((lc.ours ?? 0) / 10) / 100,
    'µs per admission, 10,000 at once': Math.round((lc.ours ?? 0) / 10) / 100,
  },
  {
    system: `bottleneck ${versions.bottleneck}`,
    'µs per admission, one at a time': Math.round((lc.bottleneckOneAtATime ?? 0) / 10) / 100,
    'µs per admission, 10,000 at once': Math.round((lc.bottleneckBatched ?? 0) / 10) / 100,
  },
];
console.log(`${table(limitCostRows, 'rate limit cost')}\n`);
console.log(
  `wrote ${writeResult('breaker-limiter', { machine: { ...machine(), ...versions }, breaker: { ours: b1, opossum: b2, costNs: bc }, rateLimit: lim, rateLimitCostNs: lc })}`,
);
process.exit(0);
