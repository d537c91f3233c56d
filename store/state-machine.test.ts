import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { StateMachine } from './state-machine.ts';

const keys = (sm: StateMachine): number =>
  sm.mvcc.range({
    key: 'k',
    rangeEnd: '',
    limit: 0,
    revision: 0,
    sortOrder: 0,
    sortTarget: 0,
    keysOnly: false,
    countOnly: false,
    minModRevision: 0,
    maxModRevision: 0,
    minCreateRevision: 0,
    maxCreateRevision: 0,
  }).kvs.length;

describe('state machine: lease expiry', () => {
  it('an expiry decided by the leader of an earlier term is ignored where it is applied (a deposed leader, resumed after a pause, forwarded it to the new leader)', () => {
    const sm = new StateMachine();
    sm.apply({ op: 'leaseGrant', id: '7', ttl: 3 }, 1);
    sm.apply({ op: 'put', req: { key: 'k', value: 'v', lease: '7', prevKv: false, ignoreValue: false, ignoreLease: false } }, 1);
    // Decided in term 7, appended by the leader of term 8: refused on every member alike.
    const stale = sm.apply({ op: 'leaseRevoke', id: '7', expiredInTerm: 7 }, 8);
    assert.equal(stale.error?.code, 'STORE_ERR_PROPOSAL_DROPPED');
    assert.ok(sm.leases.has('7'), 'the lease lives');
    assert.equal(keys(sm), 1, 'its key is there');
    // Decided and appended in the same term: the lease goes with its keys.
    assert.equal(sm.apply({ op: 'leaseRevoke', id: '7', expiredInTerm: 8 }, 8).error, undefined);
    assert.ok(!sm.leases.has('7'));
    assert.equal(keys(sm), 0);
  });

  it("a client's LeaseRevoke carries no term and applies in any term", () => {
    const sm = new StateMachine();
    sm.apply({ op: 'leaseGrant', id: '9', ttl: 3 }, 1);
    assert.equal(sm.apply({ op: 'leaseRevoke', id: '9' }, 5).error, undefined);
    assert.ok(!sm.leases.has('9'));
  });
});
