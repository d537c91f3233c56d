/**
 * The state machine's state and snapshot files, versioned (see store/format/codec.ts for log
 * entries):
 *
 *   state            "BLS2" | State                 (format 1: a v8 clone of the state)
 *   snapshot meta    0x02 | SnapshotMeta            (format 1: a v8 clone, first byte 0xff)
 *   snapshot file    Snapshot (meta and state data)
 */
import { deserialize, serialize } from 'node:v8';
import type { SnapshotMeta } from '../raft/types.ts';
import type { AuthState } from '../auth/auth-store.ts';
import type { Member, StateMachineState, StateView } from '../state-machine.ts';
import { type Format, type Pb, T, permIn, permOut, toObject } from './formats.ts';
import { WireReader, WireWriter } from '../../lib/wire.ts';

const stateMagic = Buffer.from('BLS2');

/** protobufjs's reading of state bytes (the tests check the hand encoding is plain protobuf). */
export function decodeStateWithProtobufjs(data: Uint8Array): Pb {
  return T.state.toObject(T.state.decode(Buffer.from(data.buffer, data.byteOffset, data.byteLength).subarray(stateMagic.length)), toObject);
}

/**
 * The state machine's state: protobuf (message State) behind a magic in format 2, a v8 clone in
 * format 1. The key space is written and read by hand (lib/wire.ts): it is most of a
 * snapshot, and protobufjs's object per record made snapshots three times slower than v8.
 */
export function encodeState(st: StateView, format: Format): Uint8Array {
  if (format === 1) return serialize(materialize(st));
  const w = new WireWriter(Array.isArray(st.mvcc.keys) ? Math.max(1 << 16, st.mvcc.keys.length * 64) : 1 << 20);
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

/** A view's key space as arrays (format 1's v8 clone takes nothing else). */
function materialize(st: StateView): StateMachineState {
  return { ...st, mvcc: { ...st.mvcc, keys: Array.from(st.mvcc.keys, ([k, recs]) => [k, recs.slice()]) } };
}

/**
 * encodeState(st, 2)'s bytes, made a slice at a time with `pause()` awaited between slices, so
 * the member goes on serving and replicating while a large snapshot is encoded (a million keys
 * took 3.6 s in one piece). A first pass sizes the encoding (about `sliceKeys` keys per slice),
 * the second writes `chunkBytes` at a time straight into one buffer of that size: joining
 * chunks at the end would copy every byte again in one piece (105 MB: 80-100 ms). `st` is a
 * view: later writes do not change it.
 */
export async function encodeStateAsync(st: StateView, pause: () => Promise<void>, chunkBytes = 1 << 19, sliceKeys = 4096): Promise<Buffer> {
  let mvcc = mvccHeadBytes(st);
  let n = 0;
  for (const [key, recs] of st.mvcc.keys) {
    mvcc += keyBytes(key, recs);
    if (++n % sliceKeys === 0) await pause();
  }
  const tailBytes = stateTail(st);
  const length = stateLength(mvcc, tailBytes);
  // A little room past the end: a varint asks for 10 bytes whatever it writes.
  const w = new WireWriter(length + 16);
  writeStateHead(w, st, mvcc);
  let next = w.off + chunkBytes;
  for (const [key, recs] of st.mvcc.keys) {
    writeKey(w, key, recs);
    if (w.off >= next) {
      next = w.off + chunkBytes;
      await pause();
    }
  }
  w.buf.set(tailBytes, w.off);
  w.off += tailBytes.length;
  if (w.off !== length) throw new Error(`state encoding: sized ${length} bytes, wrote ${w.off} (a bug in keyBytes or writeKey)`);
  return w.buf.subarray(0, length);
}

type KeyRecords = [string, readonly StateMachineState['mvcc']['keys'][number][1][number][]];

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
function writeStateTail(w: WireWriter, st: StateView): void {
  for (const mb of st.members) {
    w.message(2, (m) => {
      m.utf8(1, mb.id);
      m.utf8(2, mb.name);
      for (const u of mb.peerURLs) m.string(3, u);
      for (const u of mb.clientURLs) m.string(4, u);
      m.bool(5, mb.isLearner);
      if (mb.formats && mb.formats.length > 0)
        m.message(6, (f) => {
          for (const v of mb.formats ?? []) f.varint(v);
        });
      m.utf8(7, mb.version ?? '');
    });
  }
  for (const a of st.alarms)
    w.message(3, (m) => {
      m.utf8(1, a.memberId);
      m.utf8(2, a.alarm);
    });
  for (const l of st.leases ?? [])
    w.message(4, (m) => {
      m.utf8(1, l.id);
      m.num(2, l.ttl);
    });
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
    const rec =
      numBytes(1, r.mod) +
      numBytes(2, r.sub) +
      numBytes(3, r.create) +
      numBytes(4, r.version) +
      (r.value.length === 0 ? 0 : lenBytes(5, r.value.length)) +
      (r.lease.length === 0 ? 0 : lenBytes(6, Buffer.byteLength(r.lease, 'utf8'))) +
      (r.tomb ? 2 : 0);
    body += lenBytes(2, rec);
  }
  return lenBytes(3, body);
}

/** Bytes of message Mvcc's fields before its keys. */
const mvccHeadBytes = (st: StateView): number => numBytes(1, st.mvcc.rev) + numBytes(2, st.mvcc.compactRev);

/** The fields after the key space, encoded. */
function stateTail(st: StateView): Buffer {
  const t = new WireWriter(1 << 12);
  writeStateTail(t, st);
  return t.done();
}

/** The whole encoding's length, from the Mvcc message's body length and the tail. */
const stateLength = (mvcc: number, tail: Buffer): number => stateMagic.length + lenBytes(1, mvcc) + tail.length;

/** The magic and everything before the first key, at the start of `w` (`mvcc`: Mvcc's body length). */
function writeStateHead(w: WireWriter, st: StateView, mvcc: number): void {
  w.buf.set(stateMagic, 0);
  w.off = stateMagic.length;
  w.tag(1, 2);
  w.varint(mvcc);
  w.num(1, st.mvcc.rev);
  w.num(2, st.mvcc.compactRev);
}

/**
 * encodeState(st, 2)'s bytes as a length known up front and chunks of about `chunkBytes` made one
 * after another: a consumer that waits between chunks (a Snapshot stream) never holds the whole
 * encoding, and the event loop runs between them. `st` must not change while chunks are taken
 * (a StateMachine.view() does not).
 */
export function streamState(st: StateView): { length: number; chunks(chunkBytes: number): Generator<Buffer> } {
  let mvcc = mvccHeadBytes(st);
  for (const [key, recs] of st.mvcc.keys) mvcc += keyBytes(key, recs);
  const tailBytes = stateTail(st);
  return {
    length: stateLength(mvcc, tailBytes),
    *chunks(chunkBytes: number) {
      let w = new WireWriter(chunkBytes + (1 << 16));
      writeStateHead(w, st, mvcc);
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
          else if (f === 6 && t === 2) {
            const p = sub(m);
            mb.formats = [];
            while (p.more) mb.formats.push(p.varint());
          } else if (f === 6 && t === 0) (mb.formats ??= []).push(m.varint());
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
      default:
        return false;
    }
  });
  return st;
}

function authOut(a: AuthState): Pb {
  return {
    enabled: a.enabled,
    revision: a.revision,
    users: a.users.map((u) => ({ name: u.name, password: u.password, roles: u.roles, noPassword: u.noPassword })),
    roles: a.roles.map((r) => ({ name: r.name, perms: r.perms.map(permOut) })),
  };
}

function authIn(p: Pb): AuthState {
  return {
    enabled: p['enabled'],
    revision: p['revision'],
    users: (p['users'] as Pb[]).map((u) => ({ name: u['name'], password: u['password'], roles: u['roles'], noPassword: u['noPassword'] })),
    roles: (p['roles'] as Pb[]).map((r) => ({ name: r['name'], perms: (r['perms'] as Pb[]).map(permIn) })),
  };
}

/** Whether encoded state data is format 2 (what a snapshot file records as its format). */
export const stateFormat = (data: Uint8Array): Format => (Buffer.from(data.buffer, data.byteOffset, 4).equals(stateMagic) ? 2 : 1);

// Snapshot metadata ---------------------------------------------------------------------------

export function encodeSnapshotMeta(meta: SnapshotMeta, format: Format): Uint8Array {
  if (format === 1) return serialize(meta);
  const body = T.meta
    .encode({ index: meta.index, term: meta.term, conf: { voters: meta.conf.voters, learners: meta.conf.learners } })
    .finish();
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

/**
 * encodeSnapshotFile's bytes as two parts, the second `data` itself (not copied): what comes
 * before it (meta, then data's tag and length), and data. protobufjs writes fields in number
 * order, so the concatenation is the same bytes (store/format/codec.test.ts checks).
 */
export function snapshotFileParts(meta: SnapshotMeta, data: Uint8Array): [Buffer, Buffer] {
  const w = new WireWriter(16);
  w.tag(2, 2);
  w.varint(data.byteLength);
  const metaField = T.snapshot.encode({ meta: { index: meta.index, term: meta.term, conf: meta.conf } }).finish();
  return [Buffer.concat([metaField, w.done()]), Buffer.from(data.buffer, data.byteOffset, data.byteLength)];
}

export function decodeSnapshotFile(payload: Uint8Array): { meta: SnapshotMeta; data: Uint8Array } {
  const p = T.snapshot.toObject(T.snapshot.decode(payload), { ...toObject, bytes: Buffer });
  return {
    meta: {
      index: p['meta']['index'],
      term: p['meta']['term'],
      conf: { voters: p['meta']['conf']?.['voters'] ?? [], learners: p['meta']['conf']?.['learners'] ?? [] },
    },
    data: p['data'],
  };
}
