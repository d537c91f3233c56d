import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isBallastError } from '../lib/errors.ts';
import { confAfter, forceNewCluster } from './force-new-cluster.ts';
import { type ConfChange, type Entry, EntryType, decodeConfChange, encodeConfChange } from './raft/types.ts';

const conf = (index: number, term: number, cc: ConfChange): Entry => ({
  index,
  term,
  type: EntryType.confChange,
  data: encodeConfChange(cc),
});
const put = (index: number, term: number): Entry => ({ index, term, type: EntryType.normal, data: new Uint8Array([1]) });

describe("force a new cluster from one member's data", () => {
  it("the configuration is the snapshot's with every later conf change applied, in order", () => {
    const log = [
      conf(5, 2, { type: 'addLearner', id: 'd' }),
      put(6, 2),
      conf(7, 2, { type: 'promote', id: 'd' }),
      conf(8, 3, { type: 'remove', id: 'b' }),
      conf(9, 3, { type: 'addLearner', id: 'e' }),
    ];
    assert.deepEqual(confAfter({ voters: ['a', 'b', 'c'], learners: [] }, 4, log), { voters: ['a', 'c', 'd'], learners: ['e'] });
    // Entries the snapshot already covers are not applied twice.
    assert.deepEqual(confAfter({ voters: ['a', 'c'], learners: [] }, 8, log), { voters: ['a', 'c'], learners: ['e'] });
  });

  it('every other member (voters and learners) is removed after the last entry, and the whole log is committed: entries past the old commit index are kept', () => {
    const entries = [
      conf(1, 1, { type: 'addVoter', id: 'a' }),
      conf(2, 1, { type: 'addVoter', id: 'b' }),
      conf(3, 1, { type: 'addVoter', id: 'c' }),
      put(4, 2),
      put(5, 2),
      conf(6, 2, { type: 'addLearner', id: 'd' }),
      put(7, 3),
    ];
    // The member heard of commits up to 5 only; 6 and 7 may have been acknowledged by the leader.
    const r = forceNewCluster('b', { entries, hardState: { term: 4, vote: 'a', commit: 5 } });
    assert.deepEqual(r.removed, ['a', 'c', 'd']);
    assert.deepEqual(
      r.entries.map((e) => [e.index, e.term, e.type]),
      [
        [8, 4, 1],
        [9, 4, 1],
        [10, 4, 1],
      ],
    );
    assert.deepEqual(
      r.entries.map((e) => decodeConfChange(e.data)).map((cc) => [cc.type, cc.id]),
      [
        ['remove', 'a'],
        ['remove', 'c'],
        ['remove', 'd'],
      ],
    );
    assert.deepEqual(r.hardState, { term: 4, vote: 'a', commit: 10 });
    assert.deepEqual(confAfter(undefined, 0, [...entries, ...r.entries]), { voters: ['b'], learners: [] });
  });

  it('from a snapshot with an empty log after it; already alone: nothing to append', () => {
    const r = forceNewCluster('a', {
      snapshot: { index: 100, term: 5, conf: { voters: ['a', 'b', 'c'], learners: [] } },
      entries: [],
      hardState: { term: 6, vote: '', commit: 100 },
    });
    assert.deepEqual(
      r.entries.map((e) => e.index),
      [101, 102],
    );
    assert.equal(r.hardState.commit, 102);
    const again = forceNewCluster('a', {
      snapshot: { index: 100, term: 5, conf: { voters: ['a', 'b', 'c'], learners: [] } },
      entries: r.entries,
      hardState: r.hardState,
    });
    assert.deepEqual(again.entries, []);
    assert.equal(again.hardState.commit, 102);
  });

  it("refuses a learner's data and a removed member's, saying why", () => {
    const snapshot = { index: 10, term: 2, conf: { voters: ['a', 'b'], learners: ['c'] } };
    for (const [self, why] of [
      ['c', /is a learner/],
      ['z', /was removed/],
    ] as const) {
      try {
        forceNewCluster(self, { snapshot, entries: [], hardState: undefined });
        assert.fail('accepted');
      } catch (err) {
        assert.ok(isBallastError(err, 'STORE_ERR_DATA_DIR'));
        assert.match((err as Error).message, why);
      }
    }
  });
});
