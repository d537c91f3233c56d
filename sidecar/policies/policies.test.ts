import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VirtualClock } from '../../lib/clock.ts';
import { SeededRandom } from '../../lib/random.ts';
import { Bulkhead } from './bulkhead.ts';
import { decideFault } from './fault.ts';
import { LatencyTracker, hedgeDelay } from './hedge.ts';
import { OutlierDetector, type OutlierOptions } from './outlier.ts';
import { TokenBucket } from './ratelimit.ts';
import { AdaptiveLimit, ClientThrottle, PooledLimit } from './shed.ts';
import { callerBudgetMs, formatGrpcTimeout, parseGrpcTimeout } from './timeout.ts';

describe('Bulkhead', () => {
  it('runs maxConcurrent, queues queueLength, refuses the rest at once, times out waiters', () => {
    const clock = new VirtualClock();
    const b = new Bulkhead({ maxConcurrent: 2, queueLength: 2, queueWaitMs: 100 }, clock);
    const got: string[] = [];
    for (let i = 0; i < 5; i++) b.enqueue(1, (ok, why) => got.push(`${i}:${ok ? 'run' : why}`));
    assert.deepEqual(got, ['0:run', '1:run', '4:full']);
    assert.equal(b.queued, 2);
    b.release();
    assert.deepEqual(got.slice(3), ['2:run'], 'a freed slot goes to the first waiter');
    clock.advance(100);
    assert.deepEqual(got.slice(4), ['3:timeout'], 'a waiter gives up after queueWaitMs');
    assert.equal(b.queued, 0);
  });

  it('serves critical before default before sheddable; a full queue evicts the newest sheddable for a critical call', () => {
    const clock = new VirtualClock();
    const b = new Bulkhead({ maxConcurrent: 1, queueLength: 2, queueWaitMs: 1000 }, clock);
    const got: string[] = [];
    b.enqueue(1, () => got.push('running'));
    b.enqueue(2, (ok, why) => got.push(`shed:${ok ? 'run' : why}`));
    b.enqueue(1, (ok) => got.push(`default:${ok ? 'run' : 'no'}`));
    b.enqueue(0, (ok) => got.push(`critical:${ok ? 'run' : 'no'}`));
    assert.deepEqual(got, ['running', 'shed:evicted']);
    b.release();
    b.release();
    assert.deepEqual(got.slice(2), ['critical:run', 'default:run']);
    b.enqueue(2, (ok, why) => got.push(`late-shed:${ok ? 'run' : why}`));
    assert.equal(b.running, 1);
  });
});

describe('TokenBucket', () => {
  it('admits a burst, then one call per 1/rate, and says how long to wait', () => {
    const t = new TokenBucket({ perSecond: 100, burst: 5 }, 0);
    let ok = 0;
    while (t.take(0) === 0) ok++;
    assert.equal(ok, 5);
    assert.equal(t.take(0), 10, 'next token in 10 ms');
    assert.equal(t.take(10), 0);
    assert.equal(t.take(15), 5);
    assert.equal(t.available(10_000), 5, 'never more than the burst');
  });
});

describe('AdaptiveLimit (Vegas)', () => {
  /** A dependency that serves `capacity` at once in `serviceMs`; more queue (latency grows). */
  function simulate(limit: AdaptiveLimit, capacity: number, serviceMs: number, offered: number, rounds: number): number {
    for (let r = 0; r < rounds; r++) {
      let admitted = 0;
      for (let i = 0; i < offered; i++) if (limit.tryAcquire(1)) admitted++;
      const rtt = serviceMs * Math.max(1, admitted / capacity);
      for (let i = 0; i < admitted; i++) limit.onSample(rtt, false, admitted);
    }
    return limit.limit;
  }

  it("converges near the dependency's capacity under 3× overload, so admitted calls keep unloaded latency", () => {
    // A 1 ms tolerance (the default 5 ms is half this simulated service time).
    const limit = new AdaptiveLimit({ initialLimit: 20, minLimit: 5, maxLimit: 1000, toleranceMs: 1 }, new SeededRandom(1));
    const learned = simulate(limit, 50, 10, 150, 400);
    assert.ok(learned >= 40 && learned <= 75, `learned ${learned} for a capacity of 50`);
  });

  it('does not grow on an idle path; shrinks on overload answers; sheddable is refused first', () => {
    const limit = new AdaptiveLimit({ initialLimit: 20, minLimit: 5, maxLimit: 1000 }, new SeededRandom(1));
    simulate(limit, 50, 10, 2, 200);
    assert.equal(limit.limit, 20, 'two at a time teach nothing about capacity');
    for (let i = 0; i < 10; i++) {
      limit.tryAcquire(1);
      limit.onSample(10, true);
    }
    assert.ok(limit.limit < 20);
    const l = new AdaptiveLimit({ initialLimit: 8, minLimit: 1, maxLimit: 8 }, new SeededRandom(1));
    let shed = 0;
    let crit = 0;
    for (let i = 0; i < 6; i++) if (l.tryAcquire(2)) shed++;
    for (let i = 0; i < 10; i++) if (l.tryAcquire(0)) crit++;
    assert.equal(shed, 6, 'sheddable up to 75% of 8');
    assert.equal(crit, 4, 'critical up to 125% of 8');
  });
});

describe('PooledLimit', () => {
  it('learns per endpoint: a slow endpoint (high but steady latency) does not shrink the others; admission is against the sum', () => {
    const pool = new PooledLimit({ initialLimit: 20, minLimit: 2, maxLimit: 200, toleranceMs: 1 }, new SeededRandom(2), new VirtualClock());
    pool.setEndpoints(['a', 'b', 'slow']);
    assert.equal(pool.limit, 60);
    for (let round = 0; round < 200; round++) {
      for (const id of ['a', 'b']) {
        const l = pool.endpoint(id)!;
        const n = 15;
        for (let i = 0; i < n; i++) l.begin();
        for (let i = 0; i < n; i++) l.onSample(2, false, n);
      }
      const s = pool.endpoint('slow')!;
      s.begin();
      s.onSample(1000, false, 1);
    }
    assert.ok(pool.endpoint('a')!.limit >= 20, `a: ${pool.endpoint('a')!.limit}`);
    assert.ok(pool.limit >= 60, `pooled ${pool.limit}`);
    let admitted = 0;
    while (pool.tryAcquire(1)) admitted++;
    assert.equal(admitted, pool.limit);
    pool.setEndpoints(['a', 'b']);
    assert.equal(pool.limit, pool.endpoint('a')!.limit + pool.endpoint('b')!.limit, 'a removed endpoint takes its share away');
  });
});

describe('ClientThrottle (SRE book adaptive throttling)', () => {
  it('never refuses while the backend accepts; refuses about (req − K·acc)/(req+1) when it stops accepting', () => {
    const t = new ClientThrottle({ k: 2, windowMs: 60_000 });
    const r = new SeededRandom(3);
    for (let i = 0; i < 1000; i++) {
      assert.ok(t.admit(i, r));
      t.onResult(i, true);
    }
    let refused = 0;
    for (let i = 0; i < 5000; i++) {
      if (!t.admit(1000 + i, r)) refused++;
      else t.onResult(1000 + i, false);
    }
    // accepts stay at 1000: the refusal probability climbs towards 1 − 2000/requests.
    assert.ok(refused > 1500 && refused < 3500, `refused ${refused} of 5000`);
    assert.ok(t.rejectProbability(6000) > 0.5);
    assert.equal(t.rejectProbability(200_000), 0, 'the window forgets');
  });
});

describe('OutlierDetector', () => {
  const o: OutlierOptions = {
    consecutive5xx: 5,
    consecutiveGatewayErrors: 5,
    intervalMs: 1000,
    baseEjectionMs: 30_000,
    maxEjectionMs: 300_000,
    maxEjectionPercent: 50,
    panicThresholdPercent: 30,
    failurePercent: { threshold: 50, minRequests: 20 },
  };

  it('ejects on consecutive errors for base × times ejected, then returns it', () => {
    const d = new OutlierDetector(o, ['a', 'b', 'c'], 0);
    for (let i = 0; i < 5; i++) d.onResult('a', 1, 503);
    assert.deepEqual([...d.excluded(2)], ['a']);
    assert.deepEqual([...d.excluded(30_002)], [], 'back after 30 s');
    for (let i = 0; i < 5; i++) d.onResult('a', 30_003, 'connect');
    assert.deepEqual([...d.excluded(30_004)], ['a']);
    assert.deepEqual([...d.excluded(60_004)], ['a'], 'second ejection: 60 s');
    assert.deepEqual([...d.excluded(90_004)], []);
  });

  it('ejects on failure percentage at the sweep; never more than maxEjectionPercent, never all', () => {
    const d = new OutlierDetector(o, ['a', 'b', 'c'], 0);
    for (let i = 0; i < 40; i++) {
      d.onResult('a', 10, i % 2 ? 503 : 200);
      d.onResult('b', 10, i % 2 ? 500 : 200);
      d.onResult('c', 10, 200);
    }
    const out = d.excluded(1000);
    assert.equal(out.size, 1, 'half of 3 endpoints rounds down to one');
    const two = new OutlierDetector({ ...o, maxEjectionPercent: 100 }, ['a', 'b'], 0);
    for (let i = 0; i < 5; i++) {
      two.onResult('a', 1, 503);
      two.onResult('b', 1, 503);
    }
    assert.equal(two.excluded(2).size, 1, 'the last endpoint is never ejected');
  });

  it('panic: below the threshold of healthy endpoints, ejections are ignored', () => {
    const d = new OutlierDetector({ ...o, maxEjectionPercent: 100, panicThresholdPercent: 50 }, ['a', 'b', 'c'], 0);
    for (let i = 0; i < 5; i++) d.onResult('a', 1, 503);
    assert.equal(d.excluded(2).size, 1);
    for (let i = 0; i < 5; i++) d.onResult('b', 3, 503);
    assert.equal(d.ejectedCount, 2);
    assert.equal(d.excluded(4).size, 0, '1 of 3 healthy < 50%: balance over all');
  });
});

describe('hedge, timeout, fault', () => {
  it('hedge delay: fixed, or the percentile of recent latency once there are samples', () => {
    const t = new LatencyTracker(95);
    assert.equal(hedgeDelay({ percentile: 95, minDelayMs: 2, maxHedges: 1 }, t), undefined);
    assert.equal(hedgeDelay({ percentile: 95, initialDelayMs: 50, minDelayMs: 2, maxHedges: 1 }, t), 50, 'cold start');
    for (let i = 1; i <= 100; i++) t.record(i);
    assert.equal(hedgeDelay({ percentile: 95, minDelayMs: 2, maxHedges: 1 }, t), 96);
    assert.equal(hedgeDelay({ delayMs: 1, minDelayMs: 2, maxHedges: 1 }, t), 2);
  });

  it('grpc-timeout and the Ballast deadline header', () => {
    assert.equal(parseGrpcTimeout('100m'), 100);
    assert.equal(parseGrpcTimeout('5S'), 5000);
    assert.equal(parseGrpcTimeout('2H'), 7_200_000);
    assert.equal(parseGrpcTimeout('123456789m'), undefined, 'at most 8 digits');
    assert.equal(parseGrpcTimeout('10x'), undefined);
    assert.equal(formatGrpcTimeout(0.2), '1m');
    assert.equal(callerBudgetMs({ 'grpc-timeout': '2S', 'x-ballast-timeout-ms': '1500' }), 1500);
    assert.equal(callerBudgetMs({ 'x-ballast-timeout-ms': 'soon' }), undefined);
  });

  it('fault injection hits about the configured percentages', () => {
    const r = new SeededRandom(9);
    let delayed = 0;
    let aborted = 0;
    for (let i = 0; i < 10_000; i++) {
      const d = decideFault({ delay: { percent: 10, ms: 50 }, abort: { percent: 25, status: 503 } }, r);
      if (d.delayMs === 50) delayed++;
      if (d.abort?.status === 503) aborted++;
    }
    assert.ok(delayed > 850 && delayed < 1150, `${delayed}`);
    assert.ok(aborted > 2300 && aborted < 2700, `${aborted}`);
  });
});

describe('PooledLimit: waiting at the limit', () => {
  it('a burst beyond a cold limit waits for room instead of being shed, and every request is admitted as the first ones finish', () => {
    const clock = new VirtualClock();
    const pool = new PooledLimit({ initialLimit: 50, minLimit: 5, maxLimit: 1000 }, new SeededRandom(3), clock);
    pool.setEndpoints(['a']);
    const outcome: boolean[] = [];
    for (let i = 0; i < 200; i++) pool.acquire(1, (ok) => outcome.push(ok));
    assert.equal(outcome.filter(Boolean).length, 50, 'the limit admits 50 at once');
    assert.equal(pool.queued, 150, 'the rest wait');
    // The requests finish within a millisecond each: the waiters take their places.
    for (let round = 0; round < 4; round++) {
      clock.advance(1);
      for (let i = 0; i < 50; i++) pool.release();
    }
    assert.equal(outcome.length, 200);
    assert.equal(outcome.filter((o) => !o).length, 0, 'nothing of a healthy burst is shed');
  });

  it('a wait longer than max(250 ms, 4 × the unloaded latency) is shed: queueing is the evidence', () => {
    const clock = new VirtualClock();
    const pool = new PooledLimit({ initialLimit: 10, minLimit: 5, maxLimit: 1000 }, new SeededRandom(3), clock);
    pool.setEndpoints(['a']);
    const a = pool.endpoint('a')!;
    for (let i = 0; i < 5; i++) {
      a.begin();
      a.onSample(100, false, 1);
    } // unloaded latency 100 ms
    const outcome: Array<[number, boolean]> = [];
    for (let i = 0; i < 12; i++) pool.acquire(1, (ok) => outcome.push([clock.now(), ok]));
    assert.equal(outcome.filter(([, ok]) => ok).length, 10);
    clock.advance(399);
    assert.equal(outcome.length, 10, 'still waiting at 399 ms');
    clock.advance(1);
    assert.deepEqual(
      outcome.slice(10).map(([t, ok]) => [t, ok]),
      [
        [400, false],
        [400, false],
      ],
      'shed at 4 × 100 ms',
    );
  });

  it('with evidence of overload (a queue at the dependency), a request over the limit is shed at once: admitted ones keep unloaded latency', () => {
    const clock = new VirtualClock();
    const pool = new PooledLimit({ initialLimit: 10, minLimit: 5, maxLimit: 1000, toleranceMs: 1 }, new SeededRandom(3), clock);
    pool.setEndpoints(['a']);
    const a = pool.endpoint('a')!;
    for (let i = 0; i < 10; i++) {
      a.begin();
      a.onSample(10, false, 1);
    } // unloaded: 10 ms
    for (let i = 0; i < 10; i++) {
      a.begin();
      a.onSample(40, false, 10);
    } // then a queue: 40 ms
    assert.equal(pool.overloaded, true);
    const outcome: boolean[] = [];
    for (let i = 0; i < pool.limit + 5; i++) pool.acquire(1, (ok) => outcome.push(ok));
    assert.equal(outcome.length, pool.limit + 5, 'every request decided at once');
    assert.equal(outcome.filter((o) => !o).length, 5);
  });

  it("latency that rose while the proxy's own event loop was saturated is not evidence: requests over the limit wait instead of being shed", () => {
    const clock = new VirtualClock();
    let busy = true;
    const pool = new PooledLimit(
      { initialLimit: 10, minLimit: 5, maxLimit: 1000, toleranceMs: 1, proxyBusy: () => busy },
      new SeededRandom(3),
      clock,
    );
    pool.setEndpoints(['a']);
    const a = pool.endpoint('a')!;
    const window = (rtt: number, inflight: number) => {
      for (let i = 0; i < 10; i++) {
        a.begin();
        a.onSample(rtt, false, inflight);
      }
    };
    window(10, 1); // unloaded: 10 ms
    window(40, 10); // then 40 ms, while the proxy was the bottleneck
    assert.equal(pool.overloaded, false, 'its own delay says nothing of the dependency');
    const outcome: boolean[] = [];
    for (let i = 0; i < pool.limit + 5; i++) pool.acquire(1, (ok) => outcome.push(ok));
    assert.equal(outcome.filter((o) => !o).length, 0, 'nothing shed');
    assert.equal(pool.queued, 5, 'the excess waits for room');
    for (let i = 0; i < 5; i++) pool.release();
    assert.equal(outcome.length, pool.limit + 5);
    // The same rise with the proxy idle is a queue at the dependency.
    busy = false;
    window(40, 10);
    assert.equal(pool.overloaded, true);
  });

  it('room goes to the most important waiter first', () => {
    const clock = new VirtualClock();
    const pool = new PooledLimit({ initialLimit: 4, minLimit: 4, maxLimit: 4 }, new SeededRandom(3), clock);
    pool.setEndpoints(['a']);
    const order: string[] = [];
    for (let i = 0; i < 4; i++) pool.acquire(1, () => undefined);
    pool.acquire(2, (ok) => ok && order.push('sheddable'));
    pool.acquire(1, (ok) => ok && order.push('default'));
    pool.acquire(0, (ok) => ok && order.push('critical'));
    pool.release();
    pool.release();
    assert.deepEqual(order, ['critical', 'default']);
  });
});
