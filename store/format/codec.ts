/**
 * The member's log entries, versioned. Format 2 is protobuf (store/format/internal.proto);
 * format 1 was Node's v8 structured clone, whose bytes belong to the V8 version that wrote them.
 * Format 1 is still read (a data directory written by 0.1.0 is read and migrated) and still
 * written while a member that reads only format 1 is in the cluster (mixed versions during a
 * rolling upgrade): `Format` (store/format/formats.ts) says which one to write, decoding tells
 * them apart by their first byte. The state and snapshot files: store/format/state-codec.ts.
 *
 *   log entry data   u8 kind | body     kind 0: v8 envelope (format 1), 1: a put in a fixed
 *                                       layout (both formats), 2: InternalRequest (format 2),
 *                                       3: a put in the fixed layout with who made it (auth on)
 */
import { deserialize, serialize } from 'node:v8';
import { catalogue } from '../errors.ts';
import type { Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest } from '../mvcc/types.ts';
import type { AuthInfo } from '../auth/auth-store.ts';
import type { Envelope, StoreRequest } from '../state-machine.ts';
import { type Format, type Pb, T, b, permIn, permOut, s, toObject } from './formats.ts';

// Requests ------------------------------------------------------------------------------------

function rangeOut(r: RangeRequest): Pb {
  return {
    key: b(r.key),
    rangeEnd: b(r.rangeEnd),
    limit: r.limit,
    revision: r.revision,
    sortOrder: r.sortOrder,
    sortTarget: r.sortTarget,
    keysOnly: r.keysOnly,
    countOnly: r.countOnly,
    minModRevision: r.minModRevision,
    maxModRevision: r.maxModRevision,
    minCreateRevision: r.minCreateRevision,
    maxCreateRevision: r.maxCreateRevision,
  };
}
function rangeIn(p: Pb): RangeRequest {
  return {
    key: s(p['key']),
    rangeEnd: s(p['rangeEnd']),
    limit: p['limit'],
    revision: p['revision'],
    sortOrder: p['sortOrder'],
    sortTarget: p['sortTarget'],
    keysOnly: p['keysOnly'],
    countOnly: p['countOnly'],
    minModRevision: p['minModRevision'],
    maxModRevision: p['maxModRevision'],
    minCreateRevision: p['minCreateRevision'],
    maxCreateRevision: p['maxCreateRevision'],
  };
}
const putOut = (r: PutRequest): Pb => ({
  key: b(r.key),
  value: b(r.value),
  lease: r.lease,
  prevKv: r.prevKv,
  ignoreValue: r.ignoreValue,
  ignoreLease: r.ignoreLease,
});
const putIn = (p: Pb): PutRequest => ({
  key: s(p['key']),
  value: s(p['value']),
  lease: p['lease'] || '0',
  prevKv: p['prevKv'],
  ignoreValue: p['ignoreValue'],
  ignoreLease: p['ignoreLease'],
});
const delOut = (r: DeleteRangeRequest): Pb => ({ key: b(r.key), rangeEnd: b(r.rangeEnd), prevKv: r.prevKv });
const delIn = (p: Pb): DeleteRangeRequest => ({ key: s(p['key']), rangeEnd: s(p['rangeEnd']), prevKv: p['prevKv'] });

function compareOut(c: Compare): Pb {
  const base: Pb = { result: c.result, target: c.target, key: b(c.key), rangeEnd: b(c.rangeEnd) };
  // The operand's kind follows the target: value compares bytes, lease compares an id, the rest numbers.
  if (c.target === 3) base['value'] = b(String(c.operand));
  else if (c.target === 4) base['lease'] = String(c.operand);
  else base['number'] = Number(c.operand);
  return base;
}
function compareIn(p: Pb): Compare {
  const operand = p['operand'] === 'value' ? s(p['value']) : p['operand'] === 'lease' ? String(p['lease']) : Number(p['number'] ?? 0);
  return { result: p['result'], target: p['target'], key: s(p['key']), rangeEnd: s(p['rangeEnd']), operand };
}
function opOut(op: RequestOp): Pb {
  if ('range' in op) return { range: rangeOut(op.range) };
  if ('put' in op) return { put: putOut(op.put) };
  if ('deleteRange' in op) return { deleteRange: delOut(op.deleteRange) };
  return { txn: txnOut(op.txn) };
}
function opIn(p: Pb): RequestOp {
  switch (p['request']) {
    case 'range':
      return { range: rangeIn(p['range']) };
    case 'put':
      return { put: putIn(p['put']) };
    case 'deleteRange':
      return { deleteRange: delIn(p['deleteRange']) };
    case 'txn':
      return { txn: txnIn(p['txn']) };
    default:
      throw catalogue.error(
        'STORE_ERR_DATA_DIR',
        `a transaction operation of an unknown kind (${String(p['request'])}): written by a newer ballast`,
      );
  }
}
const txnOut = (t: TxnRequest): Pb => ({
  compare: t.compare.map(compareOut),
  success: t.success.map(opOut),
  failure: t.failure.map(opOut),
});
const txnIn = (p: Pb): TxnRequest => ({
  compare: (p['compare'] as Pb[]).map(compareIn),
  success: (p['success'] as Pb[]).map(opIn),
  failure: (p['failure'] as Pb[]).map(opIn),
});

function requestOut(r: StoreRequest): Pb {
  switch (r.op) {
    case 'put':
      return { put: putOut(r.req) };
    case 'deleteRange':
      return { deleteRange: delOut(r.req) };
    case 'txn':
      return { txn: txnOut(r.req) };
    case 'compact':
      return { compact: { revision: r.revision } };
    case 'publish':
      return { publish: { id: r.id, name: r.name, clientUrls: r.clientURLs, formats: r.formats ?? [], version: r.version ?? '' } };
    case 'memberUpdate':
      return { memberUpdate: { id: r.id, peerUrls: r.peerURLs } };
    case 'alarm':
      return { alarm: { activate: r.action === 'activate', memberId: r.memberId, alarm: r.alarm } };
    case 'leaseGrant':
      return { leaseGrant: { id: r.id, ttl: r.ttl } };
    case 'leaseRevoke':
      return { leaseRevoke: { id: r.id, expiredInTerm: r.expiredInTerm ?? 0 } };
    case 'authEnable':
      return { authEnable: {} };
    case 'authDisable':
      return { authDisable: {} };
    case 'authenticate':
      return { authenticate: { name: r.name, token: r.token } };
    case 'userAdd':
      return { userAdd: { name: r.name, password: r.password, noPassword: r.noPassword } };
    case 'userDelete':
      return { userDelete: { name: r.name } };
    case 'userChangePassword':
      return { userChangePassword: { name: r.name, password: r.password } };
    case 'userGrantRole':
      return { userGrantRole: { user: r.user, role: r.role } };
    case 'userRevokeRole':
      return { userRevokeRole: { name: r.name, role: r.role } };
    case 'roleAdd':
      return { roleAdd: { name: r.name } };
    case 'roleDelete':
      return { roleDelete: { role: r.role } };
    case 'roleGrantPermission':
      return { roleGrantPermission: { name: r.name, perm: permOut(r.perm) } };
    case 'roleRevokePermission':
      return { roleRevokePermission: { role: r.role, key: b(r.key), rangeEnd: b(r.rangeEnd) } };
  }
}

function requestIn(p: Pb): StoreRequest {
  switch (p['op']) {
    case 'put':
      return { op: 'put', req: putIn(p['put']) };
    case 'deleteRange':
      return { op: 'deleteRange', req: delIn(p['deleteRange']) };
    case 'txn':
      return { op: 'txn', req: txnIn(p['txn']) };
    case 'compact':
      return { op: 'compact', revision: p['compact']['revision'] };
    case 'publish': {
      const x = p['publish'];
      return {
        op: 'publish',
        id: x['id'],
        name: x['name'],
        clientURLs: x['clientUrls'],
        ...(x['formats'].length > 0 ? { formats: x['formats'] } : {}),
        ...(x['version'] ? { version: x['version'] } : {}),
      };
    }
    case 'memberUpdate':
      return { op: 'memberUpdate', id: p['memberUpdate']['id'], peerURLs: p['memberUpdate']['peerUrls'] };
    case 'alarm':
      return {
        op: 'alarm',
        action: p['alarm']['activate'] ? 'activate' : 'deactivate',
        memberId: p['alarm']['memberId'],
        alarm: p['alarm']['alarm'],
      };
    case 'leaseGrant':
      return { op: 'leaseGrant', id: p['leaseGrant']['id'], ttl: p['leaseGrant']['ttl'] };
    case 'leaseRevoke': {
      const t = p['leaseRevoke']['expiredInTerm'];
      return { op: 'leaseRevoke', id: p['leaseRevoke']['id'], ...(t ? { expiredInTerm: t } : {}) };
    }
    case 'authEnable':
      return { op: 'authEnable' };
    case 'authDisable':
      return { op: 'authDisable' };
    case 'authenticate':
      return { op: 'authenticate', name: p['authenticate']['name'], token: p['authenticate']['token'] };
    case 'userAdd':
      return { op: 'userAdd', name: p['userAdd']['name'], password: p['userAdd']['password'], noPassword: p['userAdd']['noPassword'] };
    case 'userDelete':
      return { op: 'userDelete', name: p['userDelete']['name'] };
    case 'userChangePassword':
      return { op: 'userChangePassword', name: p['userChangePassword']['name'], password: p['userChangePassword']['password'] };
    case 'userGrantRole':
      return { op: 'userGrantRole', user: p['userGrantRole']['user'], role: p['userGrantRole']['role'] };
    case 'userRevokeRole':
      return { op: 'userRevokeRole', name: p['userRevokeRole']['name'], role: p['userRevokeRole']['role'] };
    case 'roleAdd':
      return { op: 'roleAdd', name: p['roleAdd']['name'] };
    case 'roleDelete':
      return { op: 'roleDelete', role: p['roleDelete']['role'] };
    case 'roleGrantPermission':
      return { op: 'roleGrantPermission', name: p['roleGrantPermission']['name'], perm: permIn(p['roleGrantPermission']['perm'] ?? {}) };
    case 'roleRevokePermission':
      return {
        op: 'roleRevokePermission',
        role: p['roleRevokePermission']['role'],
        key: s(p['roleRevokePermission']['key']),
        rangeEnd: s(p['roleRevokePermission']['rangeEnd']),
      };
    default:
      throw catalogue.error(
        'STORE_ERR_DATA_DIR',
        `a log entry holds a request of an unknown kind (${String(p['op'])}): written by a newer ballast, which this one cannot apply`,
      );
  }
}

const Kind = { v8: 0, put: 1, protobuf: 2, putAuth: 3 } as const;

/**
 * A log entry's data. Puts (the common case) keep their fixed layout in both formats; the rest
 * is protobuf in format 2 and a v8 clone in format 1 (which a 0.1.0 member reads).
 */
export function encodeEnvelope(env: Envelope, format: Format): Uint8Array {
  if (env.r.op === 'put' && (format === 2 || !env.a)) return encodePut(env.rid, env.r.req, env.a);
  if (format === 1) {
    const body = serialize(env);
    const out = Buffer.allocUnsafe(body.length + 1);
    out[0] = Kind.v8;
    body.copy(out, 1);
    return out;
  }
  const body = T.request
    .encode({ rid: env.rid, ...requestOut(env.r), ...(env.a ? { auth: { user: env.a.user, rev: env.a.rev } } : {}) })
    .finish();
  const out = Buffer.allocUnsafe(body.length + 1);
  out[0] = Kind.protobuf;
  out.set(body, 1);
  return out;
}

export function decodeEnvelope(data: Uint8Array): Envelope {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  switch (buf[0]) {
    case Kind.put:
    case Kind.putAuth:
      return decodePut(buf);
    case Kind.protobuf: {
      const p = T.request.toObject(T.request.decode(buf.subarray(1)), toObject);
      const a = p['auth'] as Pb | null;
      return { rid: p['rid'], r: requestIn(p), ...(a ? { a: { user: a['user'], rev: a['rev'] } } : {}) };
    }
    case Kind.v8:
      return deserialize(buf.subarray(1)) as Envelope;
    default:
      throw catalogue.error('STORE_ERR_DATA_DIR', `a log entry of an unknown kind (${buf[0]}): written by a newer ballast`);
  }
}

/**
 * The fixed put layout: rid, key, value, lease as u32-length latin1, then a flags byte; with
 * auth on (kind 3) then the user as u32-length UTF-8 and the auth revision as a u64.
 */
function encodePut(rid: string, p: PutRequest, a?: AuthInfo): Buffer {
  const user = a ? Buffer.from(a.user, 'utf8') : undefined;
  const len = 1 + 16 + rid.length + p.key.length + p.value.length + p.lease.length + 1 + (user ? 12 + user.length : 0);
  const out = Buffer.allocUnsafe(len);
  let off = 0;
  out[off++] = a ? Kind.putAuth : Kind.put;
  for (const str of [rid, p.key, p.value, p.lease]) {
    out.writeUInt32LE(str.length, off);
    off += 4;
    off += out.write(str, off, str.length, 'latin1');
  }
  out[off++] = (p.prevKv ? 1 : 0) | (p.ignoreValue ? 2 : 0) | (p.ignoreLease ? 4 : 0);
  if (a && user) {
    out.writeUInt32LE(user.length, off);
    off += 4;
    off += user.copy(out, off);
    out.writeBigUInt64LE(BigInt(a.rev), off);
    off += 8;
  }
  return out.subarray(0, off);
}

function decodePut(buf: Buffer): Envelope {
  let off = 1;
  const str = (): string => {
    const n = buf.readUInt32LE(off);
    const v = buf.toString('latin1', off + 4, off + 4 + n);
    off += 4 + n;
    return v;
  };
  const rid = str();
  const key = str();
  const value = str();
  const lease = str();
  const f = buf[off++] as number;
  const env: Envelope = {
    rid,
    r: { op: 'put', req: { key, value, lease, prevKv: (f & 1) !== 0, ignoreValue: (f & 2) !== 0, ignoreLease: (f & 4) !== 0 } },
  };
  if (buf[0] === Kind.putAuth) {
    const n = buf.readUInt32LE(off);
    const user = buf.toString('utf8', off + 4, off + 4 + n);
    env.a = { user, rev: Number(buf.readBigUInt64LE(off + 4 + n)) };
  }
  return env;
}

// State ---------------------------------------------------------------------------------------
