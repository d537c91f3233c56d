import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isBallastError } from '../lib/errors.ts';
import { checkPeerUrls, idForNewMember, learnerToPromote, memberId, memberToRemove, publishRequest, transferTarget } from './members.ts';
import type { Member } from './state-machine.ts';

const token = 'tok';
const member = (n: number, isLearner = false): Member => ({
  id: memberId([`http://10.0.0.${n}:2380`], token),
  name: `m${n}`,
  peerURLs: [`http://10.0.0.${n}:2380`],
  clientURLs: [],
  isLearner,
});
const table = (...ms: Member[]) => new Map(ms.map((m) => [m.id, m]));
const code = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    return isBallastError(err) ? err.code : `not a catalogued error: ${String(err)}`;
  }
  return 'no error';
};

describe('membership changes', () => {
  it('peer URLs: at least one, each http(s)://host:port without a path; normalized', () => {
    assert.deepEqual(checkPeerUrls(['http://10.0.0.9:2380/', 'https://[::1]:2380']), ['http://10.0.0.9:2380', 'https://[::1]:2380']);
    for (const bad of [
      [],
      ['10.0.0.9:2380'],
      ['unix://x:1'],
      ['http://10.0.0.9'],
      ['http://10.0.0.9:2380/path'],
      ['http://:2380'],
      ['not a url'],
    ]) {
      assert.equal(
        code(() => checkPeerUrls(bad)),
        'STORE_ERR_MEMBER_BAD_URLS',
        JSON.stringify(bad),
      );
    }
    assert.equal(
      code(() => checkPeerUrls(undefined)),
      'STORE_ERR_MEMBER_BAD_URLS',
    );
  });

  it('a new member: its URL must be unused (with or without a trailing slash), one learner at a time, and a removed id never returns', () => {
    const m1 = member(1);
    const salt = (n: number) => `s${n}`;
    assert.equal(
      code(() => idForNewMember(table(m1), new Set(), ['http://10.0.0.1:2380/'], false, token, salt)),
      'STORE_ERR_MEMBER_EXISTS',
    );
    assert.equal(
      code(() => idForNewMember(table(m1, member(2, true)), new Set(), ['http://10.0.0.3:2380'], true, token, salt)),
      'STORE_ERR_TOO_MANY_LEARNERS',
    );
    assert.equal(
      idForNewMember(table(m1), new Set(), ['http://10.0.0.3:2380'], true, token, salt),
      memberId(['http://10.0.0.3:2380'], token),
    );
    const removed = new Set([memberId(['http://10.0.0.3:2380'], token)]);
    assert.equal(
      idForNewMember(table(m1), removed, ['http://10.0.0.3:2380'], false, token, salt),
      memberId(['http://10.0.0.3:2380'], token, 's1'),
    );
  });

  it('removing a voter is refused when the voters left would have no active quorum; a learner can always go', () => {
    const [m1, m2, m3, l4] = [member(1), member(2), member(3), member(4, true)];
    const ms = table(m1, m2, m3, l4);
    const status = (active: Member[]) => ({
      conf: { voters: [m1.id, m2.id, m3.id], learners: [l4.id] },
      progress: Object.fromEntries(
        [m1, m2, m3, l4].map((m) => [m.id, { match: 0, next: 1, state: 'replicate', learner: m.isLearner, active: active.includes(m) }]),
      ),
    });
    assert.equal(memberToRemove(ms, status([m1, m2, m3]), m3.id), m3);
    assert.equal(
      code(() => memberToRemove(ms, status([m1]), m3.id)),
      'STORE_ERR_UNHEALTHY_QUORUM',
    );
    assert.equal(memberToRemove(ms, status([m1]), l4.id), l4);
    assert.equal(
      code(() => memberToRemove(ms, status([m1, m2, m3]), 'ffffffffffffffff')),
      'STORE_ERR_MEMBER_NOT_FOUND',
    );
    assert.equal(
      code(() => learnerToPromote(ms, m2.id)),
      'STORE_ERR_MEMBER_NOT_LEARNER',
    );
    assert.equal(learnerToPromote(ms, l4.id), l4);
  });

  it('a stopping leader hands over to the voter furthest along', () => {
    const st = {
      conf: { voters: ['a', 'b', 'c'], learners: [] },
      progress: { a: { match: 9 }, b: { match: 5 }, c: { match: 7 } },
    } as unknown as Parameters<typeof transferTarget>[0];
    assert.equal(transferTarget(st, 'a'), 'c');
    assert.equal(
      transferTarget({ conf: { voters: ['a'], learners: [] }, progress: {} } as unknown as Parameters<typeof transferTarget>[0], 'a'),
      undefined,
    );
  });
});

describe('publishRequest', () => {
  const self = { id: 'a1', name: 'm1', clientURLs: ['http://10.0.0.1:2379'], formats: [1, 2], version: '0.3.0' };
  const row: Member = {
    id: 'a1',
    name: 'm1',
    peerURLs: ['http://10.0.0.1:2380'],
    clientURLs: ['http://10.0.0.1:2379'],
    isLearner: false,
    formats: [1, 2],
    version: '0.3.0',
  };

  it('nothing to publish when the row already says it all, or the member is not in the table', () => {
    assert.equal(publishRequest(row, self), undefined);
    assert.equal(publishRequest(undefined, self), undefined);
  });

  it('publishes name, client URLs, formats and version when any differs (a new member, an upgrade, new URLs)', () => {
    const want = { op: 'publish', id: 'a1', name: 'm1', clientURLs: ['http://10.0.0.1:2379'], formats: [1, 2], version: '0.3.0' };
    assert.deepEqual(publishRequest({ ...row, name: '', clientURLs: [] }, self), want);
    assert.deepEqual(publishRequest({ ...row, version: '0.2.0' }, self), want);
    assert.deepEqual(publishRequest({ ...row, formats: undefined }, self), want);
    assert.deepEqual(publishRequest({ ...row, clientURLs: ['http://10.0.0.9:2379'] }, self), want);
  });
});
