/**
 * Between etcd's wire messages (as @grpc/proto-loader decodes them: snake_case fields, int64 as
 * decimal strings, bytes as Buffers) and the store's internal requests (binary strings, numbers).
 */
import { catalogue } from '../errors.ts';
import type { Compare, DeleteRangeRequest, KeyValue, PutRequest, RangeRequest, RequestOp, ResponseOp, TxnRequest } from '../mvcc/types.ts';

/* eslint-disable @typescript-eslint/no-explicit-any -- wire objects are untyped by proto-loader */
type Wire = Record<string, any>;

const bin = (b: Buffer | undefined): string => (b ? b.toString('latin1') : '');
const num = (s: string | number | undefined): number => (s === undefined || s === '' ? 0 : Number(s));
export const bytes = (s: string): Buffer => Buffer.from(s, 'latin1');

export function toRange(w: Wire): RangeRequest {
  return {
    key: bin(w['key']),
    rangeEnd: bin(w['range_end']),
    limit: num(w['limit']),
    revision: num(w['revision']),
    sortOrder: num(w['sort_order']),
    sortTarget: num(w['sort_target']),
    keysOnly: !!w['keys_only'],
    countOnly: !!w['count_only'],
    minModRevision: num(w['min_mod_revision']),
    maxModRevision: num(w['max_mod_revision']),
    minCreateRevision: num(w['min_create_revision']),
    maxCreateRevision: num(w['max_create_revision']),
  };
}

export function toPut(w: Wire): PutRequest {
  const key = bin(w['key']);
  if (key === '') throw catalogue.error('STORE_ERR_EMPTY_KEY', 'etcdserver: key is not provided');
  return {
    key,
    value: bin(w['value']),
    lease: String(w['lease'] ?? '0') || '0',
    prevKv: !!w['prev_kv'],
    ignoreValue: !!w['ignore_value'],
    ignoreLease: !!w['ignore_lease'],
  };
}

export function toDelete(w: Wire): DeleteRangeRequest {
  const key = bin(w['key']);
  if (key === '') throw catalogue.error('STORE_ERR_EMPTY_KEY', 'etcdserver: key is not provided');
  return { key, rangeEnd: bin(w['range_end']), prevKv: !!w['prev_kv'] };
}

function toCompare(w: Wire): Compare {
  const union = w['target_union'] as string | undefined;
  const operand = union === 'value' ? bin(w['value']) : union === 'lease' ? String(w['lease'] ?? '0') : num(union ? w[union] : 0);
  return { result: num(w['result']), target: num(w['target']), key: bin(w['key']), rangeEnd: bin(w['range_end']), operand };
}

function toOp(w: Wire): RequestOp {
  switch (w['request']) {
    case 'request_range':
      return { range: toRange(w['request_range']) };
    case 'request_put':
      return { put: toPut(w['request_put']) };
    case 'request_delete_range':
      return { deleteRange: toDelete(w['request_delete_range']) };
    case 'request_txn':
      return { txn: toTxn(w['request_txn']) };
    default:
      throw catalogue.error('STORE_ERR_EMPTY_KEY', 'etcdserver: key is not provided');
  }
}

export function toTxn(w: Wire): TxnRequest {
  const t = {
    compare: ((w['compare'] ?? []) as Wire[]).map(toCompare),
    success: ((w['success'] ?? []) as Wire[]).map(toOp),
    failure: ((w['failure'] ?? []) as Wire[]).map(toOp),
  };
  checkNoDuplicatePuts(t.success);
  checkNoDuplicatePuts(t.failure);
  return t;
}

/** etcd refuses a txn branch that writes one key twice (puts, or a put inside a deleted range). */
function checkNoDuplicatePuts(ops: RequestOp[]): void {
  const puts = new Set<string>();
  const dels: Array<[string, string]> = [];
  const walk = (list: RequestOp[]): void => {
    for (const op of list) {
      if ('put' in op) {
        if (puts.has(op.put.key)) throw catalogue.error('STORE_ERR_DUPLICATE_KEY', 'etcdserver: duplicate key given in txn request');
        puts.add(op.put.key);
      } else if ('deleteRange' in op) dels.push([op.deleteRange.key, op.deleteRange.rangeEnd]);
    }
  };
  walk(ops);
  for (const key of puts) {
    for (const [start, end] of dels) {
      const hit = end === '' ? key === start : end === '\0' ? key >= start : key >= start && key < end;
      if (hit) throw catalogue.error('STORE_ERR_DUPLICATE_KEY', 'etcdserver: duplicate key given in txn request');
    }
  }
}

export function isReadOnlyTxn(t: TxnRequest): boolean {
  return [...t.success, ...t.failure].every((op) => 'range' in op || ('txn' in op && isReadOnlyTxn(op.txn)));
}

export function kvOut(kv: KeyValue): Wire {
  // Numbers, not decimal strings: protobufjs would re-parse strings on every encode.
  return {
    key: bytes(kv.key),
    create_revision: kv.createRevision,
    mod_revision: kv.modRevision,
    version: kv.version,
    value: bytes(kv.value),
    lease: kv.lease,
  };
}

export function rangeOut(r: { kvs: KeyValue[]; more: boolean; count: number }, header: Wire): Wire {
  return { header, kvs: r.kvs.map(kvOut), more: r.more, count: String(r.count) };
}

export function responseOpOut(op: ResponseOp, header: Wire): Wire {
  if ('range' in op) return { response_range: rangeOut(op.range, header) };
  if ('put' in op) return { response_put: { header, ...(op.put.prevKv ? { prev_kv: kvOut(op.put.prevKv) } : {}) } };
  if ('deleteRange' in op)
    return { response_delete_range: { header, deleted: String(op.deleteRange.deleted), prev_kvs: op.deleteRange.prevKvs.map(kvOut) } };
  return { response_txn: { header, succeeded: op.txn.succeeded, responses: op.txn.responses.map((r) => responseOpOut(r, header)) } };
}
