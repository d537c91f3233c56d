/**
 * Protobuf's wire encoding by hand. First for the one message big enough to matter: the key space in a
 * snapshot (store/format/internal.proto, message Mvcc). protobufjs builds an object per record and
 * a Buffer per key and value; writing the same bytes straight into one buffer is several times
 * faster, and a snapshot's encoding is the CPU a member spends on it. The bytes are plain protobuf (any
 * decoder reads them); defaults are left out, as proto3 does. Then for the sidecar's discovery
 * messages (api/discovery-wire.ts): a handful of strings, where loading protobufjs and grpc-js
 * would cost the idle sidecar ~13 MiB.
 */

/** A byte buffer written from the front that doubles when it fills (the codecs' writers build on it). */
export class GrowableWriter {
  buf: Buffer;
  off = 0;

  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }

  /** Room for `n` more bytes. */
  protected need(n: number): void {
    if (this.off + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.off + n));
    this.buf.copy(next, 0, 0, this.off);
    this.buf = next;
  }
}

/** A growable byte buffer with protobuf's primitives. */
export class WireWriter extends GrowableWriter {
  constructor(size = 1 << 16) {
    super(size);
  }

  /** A varint of a non-negative integer up to 2^53. */
  varint(v: number): void {
    this.need(10);
    while (v >= 0x80) {
      this.buf[this.off++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.buf[this.off++] = v;
  }

  tag(field: number, wireType: 0 | 2): void {
    this.varint(field * 8 + wireType);
  }

  /** A varint field, left out when 0. */
  num(field: number, v: number): void {
    if (v === 0) return;
    this.tag(field, 0);
    this.varint(v);
  }

  bool(field: number, v: boolean): void {
    if (!v) return;
    this.tag(field, 0);
    this.varint(1);
  }

  /** A bytes field from a latin1 ("binary") string, left out when empty. */
  latin1(field: number, s: string): void {
    if (s.length === 0) return;
    this.tag(field, 2);
    this.varint(s.length);
    this.need(s.length);
    this.off += this.buf.write(s, this.off, s.length, 'latin1');
  }

  /** A string field (UTF-8), left out when empty. */
  utf8(field: number, s: string): void {
    if (s.length > 0) this.string(field, s);
  }

  /** A string field (UTF-8), always written (an element of a repeated field). */
  string(field: number, s: string): void {
    const n = Buffer.byteLength(s, 'utf8');
    this.tag(field, 2);
    this.varint(n);
    this.need(n);
    this.off += this.buf.write(s, this.off, n, 'utf8');
  }

  bytes(field: number, b: Uint8Array): void {
    if (b.length === 0) return;
    this.tag(field, 2);
    this.varint(b.length);
    this.need(b.length);
    this.buf.set(b, this.off);
    this.off += b.length;
  }

  /** A nested message: its length is written once it is known (a varint placeholder moved into place). */
  message(field: number, body: (w: WireWriter) => void): void {
    this.tag(field, 2);
    const lenAt = this.off;
    this.off += 1; // most nested messages are under 128 bytes: assume one length byte
    const start = this.off;
    body(this);
    const len = this.off - start;
    const lenBytes = varintSize(len);
    if (lenBytes > 1) {
      this.need(lenBytes - 1);
      this.buf.copy(this.buf, start + lenBytes - 1, start, this.off);
      this.off += lenBytes - 1;
    }
    let at = lenAt;
    let v = len;
    while (v >= 0x80) {
      this.buf[at++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.buf[at] = v;
  }

  done(): Buffer {
    return this.buf.subarray(0, this.off);
  }
}

function varintSize(v: number): number {
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 0x80);
    n++;
  }
  return n;
}

/** Reads protobuf's wire encoding from a buffer. */
export class WireReader {
  readonly buf: Buffer;
  off: number;
  readonly end: number;

  constructor(buf: Buffer, start = 0, end = buf.length) {
    this.buf = buf;
    this.off = start;
    this.end = end;
  }

  get more(): boolean {
    return this.off < this.end;
  }

  varint(): number {
    let v = 0;
    let mul = 1;
    for (;;) {
      if (this.off >= this.end) throw new Error('protobuf: a varint runs past the end of the message');
      const b = this.buf[this.off++] as number;
      v += (b & 0x7f) * mul;
      if (b < 0x80) return v;
      mul *= 0x80;
    }
  }

  /** The next field's number and wire type. */
  tag(): { field: number; type: number } {
    const t = this.varint();
    return { field: Math.floor(t / 8), type: t % 8 };
  }

  /** The bounds of a length-delimited field. */
  span(): [number, number] {
    const n = this.varint();
    const start = this.off;
    if (n > this.end - start) throw new Error(`protobuf: a field of ${n} bytes runs past the end of the message`);
    this.off += n;
    return [start, this.off];
  }

  latin1(): string {
    const [a, b] = this.span();
    return this.buf.toString('latin1', a, b);
  }

  utf8(): string {
    const [a, b] = this.span();
    return this.buf.toString('utf8', a, b);
  }

  /** Skip a field of a wire type this reader does not know (added by a newer build: still readable). */
  skip(type: number): void {
    if (type === 0) this.varint();
    else if (type === 2) this.span();
    else if (type === 1 || type === 5) {
      this.off += type === 1 ? 8 : 4;
      if (this.off > this.end) throw new Error('protobuf: a fixed-width field runs past the end of the message');
    } else throw new Error(`protobuf wire type ${type} is not used by ballast's formats`);
  }
}
