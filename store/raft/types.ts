/**
 * Data types of the Raft core. Everything here is plain data: the core takes these in through
 * `step()` and hands them out through `ready()`; the driver persists and sends them.
 */

/** A member's id: the uint64 of etcd's API, as 16 lowercase hex digits. */
export type NodeId = string;

export const EntryType = { normal: 0, confChange: 1 } as const;
export type EntryType = (typeof EntryType)[keyof typeof EntryType];

export interface Entry {
  term: number;
  index: number;
  type: EntryType;
  /** Opaque to the core; an encoded {@link ConfChange} for conf entries. Empty for the leader's no-op. */
  data: Uint8Array;
}

/** A single-server membership change (Raft thesis §4.1). */
export interface ConfChange {
  type: 'addLearner' | 'promote' | 'remove' | 'addVoter';
  id: NodeId;
  /** Opaque to the core: the driver's member record (name, peer URLs). */
  context?: unknown;
}

export interface ConfState {
  voters: NodeId[];
  learners: NodeId[];
}

/** What must be durable before any message that depends on it is sent. */
export interface HardState {
  term: number;
  vote: NodeId | '';
  commit: number;
}

export interface SnapshotMeta {
  index: number;
  term: number;
  conf: ConfState;
}

export interface Snapshot {
  meta: SnapshotMeta;
  /** The state machine's encoded state at `meta.index`; opaque to the core. */
  data: Uint8Array;
}

export type MessageType =
  | 'hup' // local: start an election now
  | 'prop' // a proposal (local, or forwarded from a follower)
  | 'preVote'
  | 'preVoteResp'
  | 'vote'
  | 'voteResp'
  | 'app'
  | 'appResp'
  | 'heartbeat'
  | 'heartbeatResp'
  | 'snap'
  | 'snapStatus' // local: the driver reports a snapshot send finished or failed
  | 'unreachable' // local: the driver could not reach a peer
  | 'readIndex'
  | 'readIndexResp'
  | 'transferLeader'
  | 'timeoutNow';

export interface Message {
  type: MessageType;
  from: NodeId;
  to: NodeId;
  term: number;
  /** app: term of the entry before `entries`; vote: last log term; resp: hint term. */
  logTerm?: number;
  /** app: index before `entries`; appResp: last index accepted (or the hint when rejecting). */
  index?: number;
  entries?: Entry[];
  commit?: number;
  reject?: boolean;
  snapshot?: Snapshot;
  /** readIndex and heartbeats: the request context being confirmed. */
  context?: string;
}

/** A linearizable read that may now be served once the state machine has applied `index`. */
export interface ReadState {
  index: number;
  context: string;
}

export type Role = 'follower' | 'preCandidate' | 'candidate' | 'leader';

export interface SoftState {
  lead: NodeId | '';
  role: Role;
}

/**
 * A batch of work for the driver, done in this order: persist `snapshot`, `entries` and
 * `hardState` (durably); send `messages`; apply `snapshot` then `committedEntries`; serve
 * `readStates` once applied; then call `advance(ready)`.
 */
export interface Ready {
  softState?: SoftState;
  hardState?: HardState;
  entries: Entry[];
  snapshot?: Snapshot;
  committedEntries: Entry[];
  messages: Message[];
  readStates: ReadState[];
}

export const emptyBytes = new Uint8Array(0);

export function encodeConfChange(cc: ConfChange): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(cc));
}

export function decodeConfChange(data: Uint8Array): ConfChange {
  return JSON.parse(new TextDecoder().decode(data)) as ConfChange;
}
