import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VirtualClock } from '../lib/clock.ts';
import { LeaseTracker } from './lease-tracker.ts';

describe('LeaseTracker (virtual time)', () => {
  it('expires a lease after its TTL unless kept alive, only while leading', () => {
    const clock = new VirtualClock();
    const t = new LeaseTracker(clock);
    t.onLeaseChange('1', 5);
    assert.deepEqual(t.takeExpired(), [], 'a follower never expires leases');
    t.promote();
    clock.advance(4000);
    assert.equal(t.keepAlive('1'), 5);
    clock.advance(4999);
    assert.deepEqual(t.takeExpired(), []);
    assert.equal(t.remaining('1'), 1);
    clock.advance(1);
    assert.deepEqual(t.takeExpired(), ['1']);
    assert.deepEqual(t.takeExpired(), [], 'one revoke in flight at a time');
    assert.equal(t.keepAlive('1'), undefined, 'an expired lease cannot be renewed');
    t.revokeFailed('1');
    assert.deepEqual(t.takeExpired(), ['1'], 'retried after a failed revoke');
    t.onLeaseChange('1', undefined);
    assert.equal(t.remaining('1'), -1);
  });

  it('a new leader gives every lease a full TTL, so a failover does not expire them all', () => {
    const clock = new VirtualClock();
    const t = new LeaseTracker(clock);
    t.onLeaseChange('a', 10);
    t.onLeaseChange('b', 10);
    clock.advance(60_000); // long after they would have expired under an old leader
    t.promote();
    assert.deepEqual(t.takeExpired(), []);
    assert.equal(t.remaining('a'), 10);
    t.demote();
    assert.equal(t.remaining('a'), -1);
  });
});
