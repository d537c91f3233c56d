import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isBallastError } from '../lib/errors.ts';
import { fromRaft } from './errors.ts';
import { RaftError } from './raft/raft-error.ts';

describe("the consensus core's refusals as etcd's errors", () => {
  it('each raft code becomes the store code and the exact message etcd clients match on', () => {
    const cases: Array<[RaftError, string, string]> = [
      [new RaftError('NOT_LEADER', 'membership changes go to the leader'), 'STORE_ERR_NOT_LEADER', 'etcdserver: not leader'],
      [new RaftError('NO_LEADER', 'no leader'), 'STORE_ERR_NO_LEADER', 'etcdserver: no leader'],
      [new RaftError('MEMBER_NOT_FOUND', 'no member 7'), 'STORE_ERR_MEMBER_NOT_FOUND', 'etcdserver: member not found'],
      [
        new RaftError('MEMBER_NOT_LEARNER', '7 is a voter already'),
        'STORE_ERR_MEMBER_NOT_LEARNER',
        'etcdserver: can only promote a learner member',
      ],
      [
        new RaftError('LEARNER_NOT_READY', 'learner 7 has 3 of 90 entries; needs 81'),
        'STORE_ERR_LEARNER_NOT_READY',
        'etcdserver: can only promote a learner member which is in sync with leader (learner 7 has 3 of 90 entries; needs 81)',
      ],
      [
        new RaftError('TRANSFEREE_NOT_FOUND', '7 is not a voting member'),
        'STORE_ERR_TRANSFEREE_NOT_FOUND',
        'etcdserver: bad leader transferee (7 is not a voting member)',
      ],
      [
        new RaftError('PROPOSAL_DROPPED', 'leadership is moving to 2; retry shortly'),
        'STORE_ERR_PROPOSAL_DROPPED',
        'leadership is moving to 2; retry shortly',
      ],
      [
        new RaftError('CONF_CHANGE_PENDING', 'a membership change is still being applied; retry after it commits'),
        'STORE_ERR_CONF_CHANGE_PENDING',
        'a membership change is still being applied; retry after it commits',
      ],
    ];
    for (const [raft, code, message] of cases) {
      const e = fromRaft(raft);
      assert.ok(isBallastError(e, code as never), `${raft.code} → ${String((e as { code?: string }).code)}`);
      assert.equal((e as Error).message, message);
    }
  });

  it('anything else passes through unchanged', () => {
    const other = new Error('disk full');
    assert.equal(fromRaft(other), other);
  });
});
