/**
 * Requests and results of the revisioned key space, in etcd v3's shape. Keys and values are
 * "binary strings" (latin1: one char per byte) so that JavaScript's string order is byte order
 * and a million small values cost far less memory than a million Buffers. The API edge converts.
 */

export interface KeyValue {
  key: string;
  createRevision: number;
  modRevision: number;
  version: number;
  value: string;
  /** Lease id as a decimal string; '0' when none. */
  lease: string;
}

export const SortOrder = { none: 0, ascend: 1, descend: 2 } as const;
export const SortTarget = { key: 0, version: 1, create: 2, mod: 3, value: 4 } as const;

export interface RangeRequest {
  key: string;
  /** '' = just `key`; '\0' = every key >= `key`; otherwise [key, rangeEnd). */
  rangeEnd: string;
  limit: number;
  /** <= 0: the current revision. */
  revision: number;
  sortOrder: number;
  sortTarget: number;
  keysOnly: boolean;
  countOnly: boolean;
  minModRevision: number;
  maxModRevision: number;
  minCreateRevision: number;
  maxCreateRevision: number;
}

export interface RangeResult {
  kvs: KeyValue[];
  more: boolean;
  count: number;
}

export interface PutRequest {
  key: string;
  value: string;
  lease: string;
  prevKv: boolean;
  ignoreValue: boolean;
  ignoreLease: boolean;
}

export interface PutResult {
  prevKv?: KeyValue;
}

export interface DeleteRangeRequest {
  key: string;
  rangeEnd: string;
  prevKv: boolean;
}

export interface DeleteRangeResult {
  deleted: number;
  prevKvs: KeyValue[];
}

export const CompareResult = { equal: 0, greater: 1, less: 2, notEqual: 3 } as const;
export const CompareTarget = { version: 0, create: 1, mod: 2, value: 3, lease: 4 } as const;

export interface Compare {
  result: number;
  target: number;
  key: string;
  rangeEnd: string;
  /** The operand: a number for version/create/mod, a binary string for value, a decimal string for lease. */
  operand: number | string;
}

export type RequestOp = { range: RangeRequest } | { put: PutRequest } | { deleteRange: DeleteRangeRequest } | { txn: TxnRequest };

export type ResponseOp = { range: RangeResult } | { put: PutResult } | { deleteRange: DeleteRangeResult } | { txn: TxnResult };

export interface TxnRequest {
  compare: Compare[];
  success: RequestOp[];
  failure: RequestOp[];
}

export interface TxnResult {
  succeeded: boolean;
  responses: ResponseOp[];
}

export const EventType = { put: 0, delete: 1 } as const;

/** One change, for watchers: every write produces these in revision order. */
export interface Event {
  type: 0 | 1;
  kv: KeyValue;
  prevKv?: KeyValue;
}

export const emptyRange: Omit<RangeRequest, 'key'> = {
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
};
