/**
 * gRPC's length-prefixed message framing (a flag byte, a 4-byte big-endian length, the message),
 * both ways, shared by the server (lib/grpc-call.ts) and the client (lib/grpc-client.ts). No
 * grpc-js here: the sidecar loads this without it.
 */

/** `bodies` framed one after another in one buffer, uncompressed. */
export function frameMessages(bodies: readonly Buffer[]): Buffer {
  let total = 0;
  for (const b of bodies) total += 5 + b.length;
  const out = Buffer.allocUnsafe(total);
  let at = 0;
  for (const b of bodies) {
    out[at] = 0; // not compressed
    out.writeUInt32BE(b.length, at + 1);
    b.copy(out, at + 5);
    at += 5 + b.length;
  }
  return out;
}

/**
 * Messages out of DATA chunks as they arrive. Chunks are kept as they came and joined once per
 * message (not once per chunk: a 4 MiB message in 16 KiB frames would otherwise be copied ~256
 * times over).
 */
export class Deframer {
  readonly #max: number;
  #chunks: Buffer[] = [];
  #have = 0;

  constructor(maxMessageLength: number) {
    this.#max = maxMessageLength;
  }

  /** Bytes received that are not yet a whole message (a stream that ends with some ended inside one). */
  get buffered(): number {
    return this.#have;
  }

  /**
   * Take `chunk` and hand each whole message to `each` (its flag byte and body), in order, until
   * `each` returns false. Returns the announced length of a message over the limit, when one
   * comes: nothing more is read then.
   */
  push(chunk: Buffer, each: (flag: number, body: Buffer) => boolean): number | undefined {
    this.#chunks.push(chunk);
    this.#have += chunk.length;
    while (this.#have >= 5) {
      let head = this.#chunks[0] as Buffer;
      if (head.length < 5) head = this.#join();
      const length = head.readUInt32BE(1);
      if (length > this.#max) return length;
      if (this.#have < 5 + length) return undefined;
      const all = this.#chunks.length === 1 ? head : this.#join();
      const flag = all[0] as number;
      const body = all.subarray(5, 5 + length);
      const rest = all.subarray(5 + length);
      this.#chunks = rest.length > 0 ? [rest] : [];
      this.#have = rest.length;
      if (!each(flag, body)) return undefined;
    }
    return undefined;
  }

  #join(): Buffer {
    const b = Buffer.concat(this.#chunks, this.#have);
    this.#chunks = [b];
    return b;
  }
}
