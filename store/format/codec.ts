/**
 * The member's on-disk and wire formats, versioned. Format 2 is protobuf (store/format/
 * internal.proto: field numbers are the contract, so a renamed field still reads); format 1 was
 * Node's v8 structured clone, whose bytes belong to the V8 version that wrote them. Format 1 is
 * still read (a data directory written by 0.1.0 is read and migrated) and still written while a
 * member that reads only format 1 is in the cluster (mixed versions during a rolling upgrade):
 * `Format` says which one to write, decoding tells them apart by their first bytes.
 *
 *   log entry data   u8 kind | body     kind 0: v8 envelope (format 1), 1: a put in a fixed
 *                                       layout (both formats), 2: InternalRequest (format 2),
 *                                       3: a put in the fixed layout with who made it (auth on)
 *   state            "BLS2" | State                 (format 1: a v8 clone of the state)
 *   snapshot meta    0x02 | SnapshotMeta            (format 1: a v8 clone, first byte 0xff)
 */
import { deserialize, serialize } from 'node:v8';
import protobuf from 'protobufjs';
import { catalogue } from '../errors.ts';
import type { Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest } from '../mvcc/types.ts';
import type { SnapshotMeta } from '../raft/types.ts';
import type { AuthInfo, AuthState, Permission, PermType } from '../auth/auth-store.ts';
import type { Envelope, Member, StateMachineState, StoreRequest } from '../state-machine.ts';
import { WireReader, WireWriter } from './wire.ts';

/** The formats this build reads; it writes the highest every member reads. */
export const supportedFormats = [1, 2] as const;
export type Format = (typeof supportedFormats)[number];
export const latestFormat: Format = 2;

const root = protobuf.loadSync(new URL('./internal.proto', import.meta.url).pathname);
const T = {
  request: root.lookupType('ballast.store.v2.InternalRequest'),
  state: root.lookupType('ballast.store.v2.State'),
  meta: root.lookupType('ballast.store.v2.SnapshotMeta'),
  snapshot: root.lookupType('ballast.store.v2.Snapshot'),
  auth: root.lookupType('ballast.store.v2.AuthState'),
};
const toObject = { longs: Number, bytes: Buffer, defaults: true, arrays: true, oneofs: true } as const;

/* eslint-disable @typescript-eslint/no-explicit-any -- protobuf objects are plain records */
type Pb = Record<string, any>;

const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const s = (v: Buffer | Uint8Array | undefined): string => (v ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('latin1') : '');

// Requests ------------------------------------------------------------------------------------

function rangeOut(r: RangeRequest): Pb {
  return {
    key: b(r.key), rangeEnd: b(r.rangeEnd), limit: r.limit, revision: r.revision, sortOrder: r.sortOrder, sortTarget: r.sortTarget,
    keysOnly: r.keysOnly, countOnly: r.countOnly, minModRevision: r.minModRevision, maxModRevision: r.maxModRevision,
    minCreateRevision: r.minCreateRevision, maxCreateRevision: r.maxCreateRevision,
  };
}
function rangeIn(p: Pb): RangeRequest {
  return {
    key: s(p['key']), rangeEnd: s(p['rangeEnd']), limit: p['limit'], revision: p['revision'], sortOrder: p['sortOrder'], sortTarget: p['sortTarget'],
    keysOnly: p['keysOnly'], countOnly: p['countOnly'], minModRevision: p['minModRevision'], maxModRevision: p['maxModRevision'],
    minCreateRevision: p['minCreateRevision'], maxCreateRevision: p['maxCreateRevision'],
  };
}
const putOut = (r: PutRequest): Pb => ({ key: b(r.key), value: b(r.value), lease: r.lease, prevKv: r.prevKv, ignoreValue: r.ignoreValue, ignoreLease: r.ignoreLease });
const putIn = (p: Pb): PutRequest => ({ key: s(p['key']), value: s(p['value']), lease: p['lease'] || '0', prevKv: p['prevKv'], ignoreValue: p['ignoreValue'], ignoreLease: p['ignoreLease'] });
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
    case 'range': return { range: rangeIn(p['range']) };
    case 'put': return { put: putIn(p['put']) };
    case 'deleteRange': return { deleteRange: delIn(p['deleteRange']) };
    case 'txn': return { txn: txnIn(p['txn']) };
    default: throw catalogue.error('STORE_ERR_DATA_DIR', `a transaction operation of an unknown kind (${String(p['request'])}): written by a newer ballast`);
  }
}
const txnOut = (t: TxnRequest): Pb => ({ compare: t.compare.map(compareOut), success: t.success.map(opOut), failure: t.failure.map(opOut) });
const txnIn = (p: Pb): TxnRequest => ({ compare: (p['compare'] as Pb[]).map(compareIn), success: (p['success'] as Pb[]).map(opIn), failure: (p['failure'] as Pb[]).map(opIn) });

function requestOut(r: StoreRequest): Pb {
  switch (r.op) {
    case 'put': return { put: putOut(r.req) };
    case 'deleteRange': return { deleteRange: delOut(r.req) };
    case 'txn': return { txn: txnOut(r.req) };
    case 'compact': return { compact: { revision: r.revision } };
    case 'publish': return { publish: { id: r.id, name: r.name, clientUrls: r.clientURLs, formats: r.formats ?? [], version: r.version ?? '' } };
    case 'memberUpdate': return { memberUpdate: { id: r.id, peerUrls: r.peerURLs } };
    case 'alarm': return { alarm: { activate: r.action === 'activate', memberId: r.memberId, alarm: r.alarm } };
    case 'leaseGrant': return { leaseGrant: { id: r.id, ttl: r.ttl } };
    case 'leaseRevoke': return { leaseRevoke: { id: r.id, expiredInTerm: r.expiredInTerm ?? 0 } };
    case 'authEnable': return { authEnable: {} };
    case 'authDisable': return { authDisable: {} };
    case 'authenticate': return { authenticate: { name: r.name, token: r.token } };
    case 'userAdd': return { userAdd: { name: r.name, password: r.password, noPassword: r.noPassword } };
    case 'userDelete': return { userDelete: { name: r.name } };
    case 'userChangePassword': return { userChangePassword: { name: r.name, password: r.password } };
    case 'userGrantRole': return { userGrantRole: { user: r.user, role: r.role } };
    case 'userRevokeRole': return { userRevokeRole: { name: r.name, role: r.role } };
    case 'roleAdd': return { roleAdd: { name: r.name } };
    case 'roleDelete': return { roleDelete: { role: r.role } };
    case 'roleGrantPermission': return { roleGrantPermission: { name: r.name, perm: permOut(r.perm) } };
    case 'roleRevokePermission': return { roleRevokePermission: { role: r.role, key: b(r.key), rangeEnd: b(r.rangeEnd) } };
  }
}

const permOut = (p: Permission): Pb => ({ permType: p.permType, key: b(p.key), rangeEnd: b(p.rangeEnd) });
const permIn = (p: Pb): Permission => ({ permType: p['permType'] as PermType, key: s(p['key']), rangeEnd: s(p['rangeEnd']) });

function requestIn(p: Pb): StoreRequest {
  switch (p['op']) {
    case 'put': return { op: 'put', req: putIn(p['put']) };
    case 'deleteRange': return { op: 'deleteRange', req: delIn(p['deleteRange']) };
    case 'txn': return { op: 'txn', req: txnIn(p['txn']) };
    case 'compact': return { op: 'compact', revision: p['compact']['revision'] };
    case 'publish': {
      const x = p['publish'];
      return { op: 'publish', id: x['id'], name: x['name'], clientURLs: x['clientUrls'], ...(x['formats'].length > 0 ? { formats: x['formats'] } : {}), ...(x['version'] ? { version: x['version'] } : {}) };
    }
    case 'memberUpdate': return { op: 'memberUpdate', id: p['memberUpdate']['id'], peerURLs: p['memberUpdate']['peerUrls'] };
    case 'alarm': return { op: 'alarm', action: p['alarm']['activate'] ? 'activate' : 'deactivate', memberId: p['alarm']['memberId'], alarm: p['alarm']['alarm'] };
    case 'leaseGrant': return { op: 'leaseGrant', id: p['leaseGrant']['id'], ttl: p['leaseGrant']['ttl'] };
    case 'leaseRevoke': {
      const t = p['leaseRevoke']['expiredInTerm'];
      return { op: 'leaseRevoke', id: p['leaseRevoke']['id'], ...(t ? { expiredInTerm: t } : {}) };
    }
    case 'authEnable': return { op: 'authEnable' };
    case 'authDisable': return { op: 'authDisable' };
    case 'authenticate': return { op: 'authenticate', name: p['authenticate']['name'], token: p['authenticate']['token'] };
    case 'userAdd': return { op: 'userAdd', name: p['userAdd']['name'], password: p['userAdd']['password'], noPassword: p['userAdd']['noPassword'] };
    case 'userDelete': return { op: 'userDelete', name: p['userDelete']['name'] };
    case 'userChangePassword': return { op: 'userChangePassword', name: p['userChangePassword']['name'], password: p['userChangePassword']['password'] };
    case 'userGrantRole': return { op: 'userGrantRole', user: p['userGrantRole']['user'], role: p['userGrantRole']['role'] };
    case 'userRevokeRole': return { op: 'userRevokeRole', name: p['userRevokeRole']['name'], role: p['userRevokeRole']['role'] };
    case 'roleAdd': return { op: 'roleAdd', name: p['roleAdd']['name'] };
    case 'roleDelete': return { op: 'roleDelete', role: p['roleDelete']['role'] };
    case 'roleGrantPermission': return { op: 'roleGrantPermission', name: p['roleGrantPermission']['name'], perm: permIn(p['roleGrantPermission']['perm'] ?? {}) };
    case 'roleRevokePermission': return { op: 'roleRevokePermission', role: p['roleRevokePermission']['role'], key: s(p['roleRevokePermission']['key']), rangeEnd: s(p['roleRevokePermission']['rangeEnd']) };
    default: throw catalogue.error('STORE_ERR_DATA_DIR', `a log entry holds a request of an unknown kind (${String(p['op'])}): written by a newer ballast, which this one cannot apply`);
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
  const body = T.request.encode({ rid: env.rid, ...requestOut(env.r), ...(env.a ? { auth: { user: env.a.user, rev: env.a.rev } } : {}) }).finish();
  const out = Buffer.allocUnsafe(body.length + 1);
  out[0] = Kind.protobuf;
  out.set(body, 1);
  return out;
}

export function decodeEnvelope(data: Uint8Array): Envelope {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  switch (buf[0]) {
    case Kind.put:
    case Kind.putAuth: return decodePut(buf);
    case Kind.protobuf: {
      const p = T.request.toObject(T.request.decode(buf.subarray(1)), toObject);
      const a = p['auth'] as Pb | null;
      return { rid: p['rid'], r: requestIn(p), ...(a ? { a: { user: a['user'], rev: a['rev'] } } : {}) };
    }
    case Kind.v8: return deserialize(buf.subarray(1)) as Envelope;
    default: throw catalogue.error('STORE_ERR_DATA_DIR', `a log entry of an unknown kind (${buf[0]}): written by a newer ballast`);
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
  const env: Envelope = { rid, r: { op: 'put', req: { key, value, lease, prevKv: (f & 1) !== 0, ignoreValue: (f & 2) !== 0, ignoreLease: (f & 4) !== 0 } } };
  if (buf[0] === Kind.putAuth) {
    const n = buf.readUInt32LE(off);
    const user = buf.toString('utf8', off + 4, off + 4 + n);
    env.a = { user, rev: Number(buf.readBigUInt64LE(off + 4 + n)) };
  }
  return env;
}

// State ---------------------------------------------------------------------------------------

const stateMagic = Buffer.from('BLS2');

/** protobufjs's reading of state bytes (the tests check the hand encoding is plain protobuf). */
export function decodeStateWithProtobufjs(data: Uint8Array): Pb {
  return T.state.toObject(T.state.decode(Buffer.from(data.buffer, data.byteOffset, data.byteLength).subarray(stateMagic.length)), toObject);
}

/**
 * The state machine's state: protobuf (message State) behind a magic in format 2, a v8 clone in
 * format 1. The key space is written and read by hand (store/format/wire.ts): it is most of a
 * snapshot, and protobufjs's object per record made snapshots three times slower than v8.
 */
export function encodeState(st: StateMachineState, format: Format): Uint8Array {
  if (format === 1) return serialize(st);
  const w = new WireWriter(Math.max(1 << 16, st.mvcc.keys.length * 64));
  w.buf.set(stateMagic, 0);
  w.off = stateMagic.length;
  w.message(1, (m) => {
    m.num(1, st.mvcc.rev);
    m.num(2, st.mvcc.compactRev);
    for (const [key, recs] of st.mvcc.keys) writeKey(m, key, recs);
  });
  writeStateTail(w, st);
  return w.done();
}

type KeyRecords = StateMachineState['mvcc']['keys'][number];

/** One key with its records: field 3 of message Mvcc. */
function writeKey(m: WireWriter, key: string, recs: KeyRecords[1]): void {
  m.message(3, (k) => {
    k.latin1(1, key);
    for (const r of recs) {
      k.message(2, (x) => {
        x.num(1, r.mod);
        x.num(2, r.sub);
        x.num(3, r.create);
        x.num(4, r.version);
        x.latin1(5, r.value);
        x.utf8(6, r.lease);
        x.bool(7, r.tomb);
      });
    }
  });
}

/** The fields after the key space: members, alarms, leases, auth. */
function writeStateTail(w: WireWriter, st: StateMachineState): void {
  for (const mb of st.members) {
    w.message(2, (m) => {
      m.utf8(1, mb.id);
      m.utf8(2, mb.name);
      for (const u of mb.peerURLs) m.string(3, u);
      for (const u of mb.clientURLs) m.string(4, u);
      m.bool(5, mb.isLearner);
      if (mb.formats && mb.formats.length > 0) m.message(6, (f) => { for (const v of mb.formats ?? []) f.varint(v); });
      m.utf8(7, mb.version ?? '');
    });
  }
  for (const a of st.alarms) w.message(3, (m) => { m.utf8(1, a.memberId); m.utf8(2, a.alarm); });
  for (const l of st.leases ?? []) w.message(4, (m) => { m.utf8(1, l.id); m.num(2, l.ttl); });
  if (st.auth) w.bytes(5, T.auth.encode(authOut(st.auth)).finish());
}

const varintBytes = (v: number): number => {
  let n = 1;
  for (; v >= 0x80; n++) v = Math.floor(v / 0x80);
  return n;
};
/** Bytes of a varint field (0 when left out), of a length-delimited one. */
const numBytes = (field: number, v: number): number => (v === 0 ? 0 : varintBytes(field * 8) + varintBytes(v));
const lenBytes = (field: number, n: number): number => varintBytes(field * 8 + 2) + varintBytes(n) + n;

/** The encoded size of writeKey's output, without writing it. */
function keyBytes(key: string, recs: KeyRecords[1]): number {
  let body = key.length === 0 ? 0 : lenBytes(1, key.length);
  for (const r of recs) {
    const rec = numBytes(1, r.mod) + numBytes(2, r.sub) + numBytes(3, r.create) + numBytes(4, r.version)
      + (r.value.length === 0 ? 0 : lenBytes(5, r.value.length)) + (r.lease.length === 0 ? 0 : lenBytes(6, Buffer.byteLength(r.lease, 'utf8'))) + (r.tomb ? 2 : 0);
    body += lenBytes(2, rec);
  }
  return lenBytes(3, body);
}

/**
 * encodeState(st, 2)'s bytes as a length known up front and chunks of about `chunkBytes` made one
 * after another: a consumer that waits between chunks (a Snapshot stream) never holds the whole
 * encoding, and the event loop runs between them. `st` must not change while chunks are taken
 * (StateMachine.state() is a copy of the records; their values are immutable strings).
 */
export function streamState(st: StateMachineState): { length: number; chunks(chunkBytes: number): Generator<Buffer> } {
  const head = numBytes(1, st.mvcc.rev) + numBytes(2, st.mvcc.compactRev);
  let mvcc = head;
  for (const [key, recs] of st.mvcc.keys) mvcc += keyBytes(key, recs);
  const tail = new WireWriter(1 << 12);
  writeStateTail(tail, st);
  const tailBytes = tail.done();
  const length = stateMagic.length + lenBytes(1, mvcc) + tailBytes.length;
  return {
    length,
    *chunks(chunkBytes: number) {
      let w = new WireWriter(chunkBytes + (1 << 16));
      w.buf.set(stateMagic, 0);
      w.off = stateMagic.length;
      w.tag(1, 2);
      w.varint(mvcc);
      w.num(1, st.mvcc.rev);
      w.num(2, st.mvcc.compactRev);
      for (const [key, recs] of st.mvcc.keys) {
        writeKey(w, key, recs);
        if (w.off >= chunkBytes) {
          yield w.done();
          w = new WireWriter(chunkBytes + (1 << 16));
        }
      }
      if (w.off > 0) yield w.done();
      if (tailBytes.length > 0) yield tailBytes;
    },
  };
}

export function decodeState(data: Uint8Array): StateMachineState {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (!buf.subarray(0, 4).equals(stateMagic)) return deserialize(buf) as StateMachineState;
  const st: StateMachineState = { mvcc: { rev: 1, compactRev: 0, keys: [] }, members: [], alarms: [], leases: [] };
  const r = new WireReader(buf, stateMagic.length);
  const each = (rd: WireReader, on: (field: number, type: number, rd: WireReader) => boolean): void => {
    while (rd.more) {
      const { field, type } = rd.tag();
      if (!on(field, type, rd)) rd.skip(type);
    }
  };
  const sub = (rd: WireReader): WireReader => {
    const [a, b] = rd.span();
    return new WireReader(buf, a, b);
  };
  each(r, (field, type, rd) => {
    if (type !== 2 && field <= 4) return false;
    switch (field) {
      case 1:
        st.mvcc.rev = 0;
        each(sub(rd), (f, t, m) => {
          if (f === 1 && t === 0) st.mvcc.rev = m.varint();
          else if (f === 2 && t === 0) st.mvcc.compactRev = m.varint();
          else if (f === 3 && t === 2) {
            let key = '';
            const recs: StateMachineState['mvcc']['keys'][number][1] = [];
            each(sub(m), (kf, kt, k) => {
              if (kf === 1 && kt === 2) key = k.latin1();
              else if (kf === 2 && kt === 2) {
                const rec = { mod: 0, sub: 0, create: 0, version: 0, value: '', lease: '', tomb: false };
                each(sub(k), (rf, rt, x) => {
                  if (rt === 0) {
                    const v = x.varint();
                    if (rf === 1) rec.mod = v;
                    else if (rf === 2) rec.sub = v;
                    else if (rf === 3) rec.create = v;
                    else if (rf === 4) rec.version = v;
                    else if (rf === 7) rec.tomb = v !== 0;
                    return true;
                  }
                  if (rf === 5 && rt === 2) rec.value = x.latin1();
                  else if (rf === 6 && rt === 2) rec.lease = x.utf8();
                  else return false;
                  return true;
                });
                recs.push(rec);
              } else return false;
              return true;
            });
            st.mvcc.keys.push([key, recs]);
          } else return false;
          return true;
        });
        return true;
      case 2: {
        const mb: Member = { id: '', name: '', peerURLs: [], clientURLs: [], isLearner: false };
        each(sub(rd), (f, t, m) => {
          if (f === 1 && t === 2) mb.id = m.utf8();
          else if (f === 2 && t === 2) mb.name = m.utf8();
          else if (f === 3 && t === 2) mb.peerURLs.push(m.utf8());
          else if (f === 4 && t === 2) mb.clientURLs.push(m.utf8());
          else if (f === 5 && t === 0) mb.isLearner = m.varint() !== 0;
          else if (f === 6 && t === 2) { const p = sub(m); mb.formats = []; while (p.more) mb.formats.push(p.varint()); }
          else if (f === 6 && t === 0) (mb.formats ??= []).push(m.varint());
          else if (f === 7 && t === 2) mb.version = m.utf8();
          else return false;
          return true;
        });
        st.members.push(mb);
        return true;
      }
      case 3: {
        const a = { memberId: '', alarm: '' };
        each(sub(rd), (f, t, m) => {
          if (f === 1 && t === 2) a.memberId = m.utf8();
          else if (f === 2 && t === 2) a.alarm = m.utf8();
          else return false;
          return true;
        });
        st.alarms.push(a as StateMachineState['alarms'][number]);
        return true;
      }
      case 4: {
        const l = { id: '', ttl: 0 };
        each(sub(rd), (f, t, m) => {
          if (f === 1 && t === 2) l.id = m.utf8();
          else if (f === 2 && t === 0) l.ttl = m.varint();
          else return false;
          return true;
        });
        st.leases?.push(l);
        return true;
      }
      case 5: {
        const [a, e] = rd.span();
        st.auth = authIn(T.auth.toObject(T.auth.decode(buf.subarray(a, e)), toObject));
        return true;
      }
      default: return false;
    }
  });
  return st;
}

function authOut(a: AuthState): Pb {
  return {
    enabled: a.enabled, revision: a.revision,
    users: a.users.map((u) => ({ name: u.name, password: u.password, roles: u.roles, noPassword: u.noPassword })),
    roles: a.roles.map((r) => ({ name: r.name, perms: r.perms.map(permOut) })),
  };
}

function authIn(p: Pb): AuthState {
  return {
    enabled: p['enabled'], revision: p['revision'],
    users: (p['users'] as Pb[]).map((u) => ({ name: u['name'], password: u['password'], roles: u['roles'], noPassword: u['noPassword'] })),
    roles: (p['roles'] as Pb[]).map((r) => ({ name: r['name'], perms: (r['perms'] as Pb[]).map(permIn) })),
  };
}

/** Whether encoded state data is format 2 (what a snapshot file records as its format). */
export const stateFormat = (data: Uint8Array): Format => (Buffer.from(data.buffer, data.byteOffset, 4).equals(stateMagic) ? 2 : 1);

// Snapshot metadata ---------------------------------------------------------------------------

export function encodeSnapshotMeta(meta: SnapshotMeta, format: Format): Uint8Array {
  if (format === 1) return serialize(meta);
  const body = T.meta.encode({ index: meta.index, term: meta.term, conf: { voters: meta.conf.voters, learners: meta.conf.learners } }).finish();
  const out = Buffer.allocUnsafe(body.length + 1);
  out[0] = 0x02;
  out.set(body, 1);
  return out;
}

export function decodeSnapshotMeta(data: Uint8Array): SnapshotMeta {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (buf[0] !== 0x02) return deserialize(buf) as SnapshotMeta;
  const p = T.meta.toObject(T.meta.decode(buf.subarray(1)), toObject);
  return { index: p['index'], term: p['term'], conf: { voters: p['conf']?.['voters'] ?? [], learners: p['conf']?.['learners'] ?? [] } };
}

/** A snapshot file's payload (meta and the state data), in format 2. */
export function encodeSnapshotFile(meta: SnapshotMeta, data: Uint8Array): Uint8Array {
  return T.snapshot.encode({ meta: { index: meta.index, term: meta.term, conf: meta.conf }, data }).finish();
}

export function decodeSnapshotFile(payload: Uint8Array): { meta: SnapshotMeta; data: Uint8Array } {
  const p = T.snapshot.toObject(T.snapshot.decode(payload), { ...toObject, bytes: Buffer });
  return { meta: { index: p['meta']['index'], term: p['meta']['term'], conf: { voters: p['meta']['conf']?.['voters'] ?? [], learners: p['meta']['conf']?.['learners'] ?? [] } }, data: p['data'] };
}
