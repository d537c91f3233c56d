import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SeededRandom } from '../../lib/random.ts';
import { RetryBudget, backoffDelay, serverPushbackMs } from './retry-budget.ts';

describe('RetryBudget', () => {
  it('allows ratio × requests plus the floor, over the window, then refuses', () => {
    const b = new RetryBudget({ ratio: 0.2, minPerSecond: 1, windowMs: 10_000 });
    for (let i = 0; i < 100; i++) b.onRequest(i);
    let granted = 0;
    while (b.tryWithdraw(200)) granted++;
    assert.equal(granted, 30, '20% of 100 requests + 1/s × 10 s');
    // The window slides: once those requests and retries age out, only the floor remains.
    let later = 0;
    while (b.tryWithdraw(20_000)) later++;
    assert.equal(later, 10);
  });
});

describe('backoff and pushback', () => {
  it('full jitter stays within [0, min(cap, base·2^n))', () => {
    const r = new SeededRandom(5);
    for (let n = 0; n < 20; n++) {
      const d = backoffDelay(n, 25, 1000, r);
      assert.ok(d >= 0 && d < Math.min(1000, 25 * 2 ** n), `attempt ${n}: ${d}`);
    }
  });

  it('honours Retry-After (seconds or date) and grpc-retry-pushback-ms (negative: stop)', () => {
    const now = Date.UTC(2026, 10, 22, 12, 0, 0);
    assert.equal(serverPushbackMs({ 'retry-after': '3' }, now), 3000);
    assert.equal(serverPushbackMs({ 'retry-after': new Date(now + 5000).toUTCString() }, now), 5000);
    assert.equal(serverPushbackMs({ 'grpc-retry-pushback-ms': '250' }, now), 250);
    assert.equal(serverPushbackMs({ 'grpc-retry-pushback-ms': '-1' }, now), 'stop');
    assert.equal(serverPushbackMs({}, now), undefined);
  });
});
