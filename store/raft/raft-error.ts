/**
 * Why the consensus core refused a request, in its own terms. The store maps these to etcd's
 * errors and messages, which clients match on (store/errors.ts `fromRaft`); the core knows
 * nothing of etcd's API.
 */
export type RaftErrorCode =
  | 'NOT_LEADER' // only the leader takes this (a membership change)
  | 'NO_LEADER' // no leader known to forward to (election in progress, or no quorum)
  | 'PROPOSAL_DROPPED' // this member was removed, or leadership is being transferred
  | 'CONF_CHANGE_PENDING' // one membership change at a time
  | 'MEMBER_NOT_FOUND'
  | 'MEMBER_NOT_LEARNER' // promote of a voter
  | 'LEARNER_NOT_READY' // promote of a learner that has not caught up
  | 'TRANSFEREE_NOT_FOUND'; // leadership transfer to a non-voter

export class RaftError extends Error {
  override readonly name = 'RaftError';
  readonly code: RaftErrorCode;

  constructor(code: RaftErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}
