import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Breaker, type BreakerRules } from './breaker.ts';

const rules = (o: Partial<BreakerRules>): BreakerRules => ({ windowMs: 10_000, openMs: 5000, halfOpenTrials: 1, ...o });

function call(b: Breaker, now: number, ok: boolean, latencyMs = 1): boolean {
  const a = b.tryAcquire(now);
  if (!a.ok) return false;
  b.onResult(a.ticket, now, ok, latencyMs);
  return true;
}

describe('Breaker', () => {
  it('opens after n consecutive failures, fails fast while open, half-opens after openMs', () => {
    const b = new Breaker(rules({ consecutiveFailures: 3 }));
    const changes: string[] = [];
    b.onChange = (f, t) => changes.push(`${f}->${t}`);
    call(b, 0, false);
    call(b, 1, true); // a success resets the streak
    for (let t = 2; t < 5; t++) call(b, t, false);
    assert.equal(b.state(5), 'open');
    const refused = b.tryAcquire(1000);
    assert.deepEqual(refused, { ok: false, retryAfterMs: 4004 });
    assert.equal(b.state(5004), 'halfOpen');
    assert.deepEqual(changes, ['closed->open', 'open->halfOpen']);
  });

  it('failure-rate rule: trips at the threshold once enough calls are in the window; old calls age out', () => {
    const b = new Breaker(rules({ failureRate: { threshold: 0.5, minCalls: 10 } }));
    for (let i = 0; i < 4; i++) call(b, i, false);
    for (let i = 0; i < 5; i++) call(b, 10 + i, true);
    assert.equal(b.state(20), 'closed', '4 of 9: below minCalls');
    call(b, 21, false);
    assert.equal(b.state(22), 'open', '5 of 10 failed');
    const c = new Breaker(rules({ failureRate: { threshold: 0.5, minCalls: 4 } }));
    for (let i = 0; i < 3; i++) call(c, i, false); // old failures...
    for (let i = 0; i < 4; i++) call(c, 20_000 + i, true); // ...out of the window by now
    call(c, 20_010, false);
    assert.equal(c.state(20_011), 'closed', '1 of 5 in the window');
  });

  it('slow-call rule: trips when too many calls are slow, even if they succeed', () => {
    const b = new Breaker(rules({ slowCallRate: { threshold: 0.6, slowMs: 1000, minCalls: 5 } }));
    for (let i = 0; i < 3; i++) call(b, i, true, 2000);
    for (let i = 0; i < 2; i++) call(b, 10 + i, true, 10);
    assert.equal(b.state(20), 'open', '3 of 5 slow');
  });

  it('half-open admits N trials at once; all succeeding closes it, one failure reopens it', () => {
    const b = new Breaker(rules({ consecutiveFailures: 1, halfOpenTrials: 3 }));
    call(b, 0, false);
    const t = 5000;
    const trials = [b.tryAcquire(t), b.tryAcquire(t), b.tryAcquire(t)];
    assert.ok(trials.every((x) => x.ok));
    assert.equal(b.tryAcquire(t).ok, false, 'a fourth concurrent trial is refused');
    for (const x of trials) if (x.ok) b.onResult(x.ticket, t + 1, true, 1);
    assert.equal(b.state(t + 2), 'closed');
    call(b, t + 3, false);
    const again = [b.tryAcquire(t + 5003), b.tryAcquire(t + 5003)];
    if (again[0]?.ok) b.onResult(again[0].ticket, t + 5004, false, 1);
    assert.equal(b.state(t + 5005), 'open', 'one failed trial reopens');
    if (again[1]?.ok) b.onResult(again[1].ticket, t + 5006, true, 1);
    assert.equal(b.state(t + 5007), 'open', 'a late sibling success does not close it');
  });
});
