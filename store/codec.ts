/**
 * Raft messages between members in a fixed binary layout (profiles showed v8.serialize at ~12% of
 * a member's CPU under write load). A snapshot's metadata inside a message is encoded by
 * store/format/codec.ts in the cluster's format (format 1, a v8 clone, while a 0.1.0 member is
 * in the cluster).
 */
import type { Format } from './format/formats.ts';
import { decodeSnapshotMeta, encodeSnapshotMeta } from './format/state-codec.ts';
import { GrowableWriter } from '../lib/wire.ts';
import type { Entry, EntryType, Message, MessageType } from './raft/types.ts';

const messageTypes: readonly MessageType[] = [
  'hup',
  'prop',
  'preVote',
  'preVoteResp',
  'vote',
  'voteResp',
  'app',
  'appResp',
  'heartbeat',
  'heartbeatResp',
  'snap',
  'snapStatus',
  'unreachable',
  'readIndex',
  'readIndexResp',
  'transferLeader',
  'timeoutNow',
];
const typeCode = new Map(messageTypes.map((t, i) => [t, i]));

/** A growable buffer writer of the message layout's primitives. */
class Writer extends GrowableWriter {
  constructor(size = 256) {
    super(size);
  }
  u8(v: number): void {
    this.need(1);
    this.buf[this.off++] = v;
  }
  u32(v: number): void {
    this.need(4);
    this.buf.writeUInt32LE(v, this.off);
    this.off += 4;
  }
  f64(v: number): void {
    this.need(8);
    this.buf.writeDoubleLE(v, this.off);
    this.off += 8;
  }
  /** A latin1 ("binary") string: one byte per char. */
  bin(s: string): void {
    this.u32(s.length);
    this.need(s.length);
    this.off += this.buf.write(s, this.off, s.length, 'latin1');
  }
  bytes(b: Uint8Array): void {
    this.u32(b.byteLength);
    this.need(b.byteLength);
    this.buf.set(b, this.off);
    this.off += b.byteLength;
  }
  done(): Buffer {
    return this.buf.subarray(0, this.off);
  }
}

class Reader {
  off = 0;
  readonly buf: Buffer;
  constructor(buf: Buffer) {
    this.buf = buf;
  }
  u8(): number {
    return this.buf[this.off++] as number;
  }
  u32(): number {
    const v = this.buf.readUInt32LE(this.off);
    this.off += 4;
    return v;
  }
  f64(): number {
    const v = this.buf.readDoubleLE(this.off);
    this.off += 8;
    return v;
  }
  bin(): string {
    const n = this.u32();
    const s = this.buf.toString('latin1', this.off, this.off + n);
    this.off += n;
    return s;
  }
  /** A copy, so a retained entry never pins the whole frame it arrived in. */
  bytes(): Uint8Array {
    const n = this.u32();
    const b = Uint8Array.prototype.slice.call(this.buf, this.off, this.off + n);
    this.off += n;
    return b;
  }
}

const F = { logTerm: 1, index: 2, commit: 4, reject: 8, context: 16, entries: 32, snapshot: 64 } as const;

/** Encode a batch of Raft messages for one peer. */
export function encodeMessages(msgs: readonly Message[], format: Format): Buffer {
  const w = new Writer(1024);
  w.u32(msgs.length);
  for (const m of msgs) {
    w.u8(typeCode.get(m.type) as number);
    w.bin(m.from);
    w.bin(m.to);
    w.f64(m.term);
    const flags =
      (m.logTerm !== undefined ? F.logTerm : 0) |
      (m.index !== undefined ? F.index : 0) |
      (m.commit !== undefined ? F.commit : 0) |
      (m.reject ? F.reject : 0) |
      (m.context !== undefined ? F.context : 0) |
      (m.entries !== undefined ? F.entries : 0) |
      (m.snapshot !== undefined ? F.snapshot : 0);
    w.u8(flags);
    if (m.logTerm !== undefined) w.f64(m.logTerm);
    if (m.index !== undefined) w.f64(m.index);
    if (m.commit !== undefined) w.f64(m.commit);
    if (m.context !== undefined) w.bin(m.context);
    if (m.entries !== undefined) {
      w.u32(m.entries.length);
      for (const e of m.entries) {
        w.f64(e.term);
        w.f64(e.index);
        w.u8(e.type);
        w.bytes(e.data);
      }
    }
    if (m.snapshot !== undefined) {
      w.bytes(encodeSnapshotMeta(m.snapshot.meta, format));
      w.bytes(m.snapshot.data);
    }
  }
  return w.done();
}

export function decodeMessages(buf: Buffer): Message[] {
  const r = new Reader(buf);
  const n = r.u32();
  const out: Message[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const type = messageTypes[r.u8()];
    if (type === undefined) throw new Error('peer message of an unknown type');
    const m: Message = { type, from: r.bin(), to: r.bin(), term: r.f64() };
    const flags = r.u8();
    if (flags & F.logTerm) m.logTerm = r.f64();
    if (flags & F.index) m.index = r.f64();
    if (flags & F.commit) m.commit = r.f64();
    if (flags & F.reject) m.reject = true;
    if (flags & F.context) m.context = r.bin();
    if (flags & F.entries) {
      const k = r.u32();
      const entries: Entry[] = new Array(k);
      for (let j = 0; j < k; j++) entries[j] = { term: r.f64(), index: r.f64(), type: r.u8() as EntryType, data: r.bytes() };
      m.entries = entries;
    }
    if (flags & F.snapshot) {
      const meta = decodeSnapshotMeta(r.bytes());
      m.snapshot = { meta, data: r.bytes() };
    }
    out[i] = m;
  }
  return out;
}
