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

  it('revokeExpired proposes each expired lease once with the term it was decided in; a failed revoke is tried again, a lease already gone counts as revoked', async () => {
    const clock = new VirtualClock();
    const t = new LeaseTracker(clock);
    for (const id of ['a', 'b', 'c']) t.onLeaseChange(id, 1);
    t.promote();
    clock.advance(1000);
    const proposed: string[] = [];
    const revoked: string[] = [];
    const outcome: Record<string, Promise<{ error?: { code: string } }>> = {
      a: Promise.resolve({}),
      b: Promise.resolve({ error: { code: 'STORE_ERR_LEASE_NOT_FOUND' } }),
      c: Promise.reject(new Error('leadership lost')),
    };
    const revoke = (id: string, term: number) => {
      proposed.push(`${id}@${term}`);
      return outcome[id]!;
    };
    t.revokeExpired(7, revoke, (id) => revoked.push(id));
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(proposed, ['a@7', 'b@7', 'c@7']);
    assert.deepEqual(revoked.sort(), ['a', 'b']);
    outcome['c'] = Promise.resolve({});
    t.revokeExpired(8, revoke, (id) => revoked.push(id));
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(proposed.slice(3), ['c@8'], 'only the failed one again (a and b are in flight until applied)');
  });
});
