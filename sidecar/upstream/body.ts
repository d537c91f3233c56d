/**
 * A request body that can be sent more than once (for retries and hedges) while it streams.
 * Chunks are kept until `limit` bytes (64 KiB by default); every reader replays what was kept
 * and then follows the live body. A body that grows past the limit stops being replayable:
 * readers already made continue live (so an attempt in flight is not broken), no new reader can
 * be made, and chunks every reader has passed are let go, so memory stays bounded. While more
 * than `limit` bytes wait for the slowest reader, the source is paused (back-pressure).
 *
 * While no reader is out (between a failed attempt and its retry) the body is not read past the
 * limit: the source is paused instead, so the body stays whole for the retry (its next bytes
 * wait in the caller's connection). It stops being replayable only when a reader carries it past
 * the limit.
 */
import { Readable } from 'node:stream';

interface Reader {
  at: number;
  stream: Readable;
  waiting: boolean;
}

export class ReplayBody {
  readonly #src: Readable;
  readonly #limit: number;
  /** Chunks from index `#base` of the body on (earlier ones were let go). */
  #chunks: Buffer[] = [];
  #base = 0;
  #total = 0;
  #ended = false;
  #error: Error | undefined;
  #replayable = true;
  #readers: Reader[] = [];
  #paused = false;
  #disposed = false;

  constructor(src: Readable, limit: number) {
    this.#src = src;
    this.#limit = limit;
    src.on('data', (c: Buffer) => this.#onChunk(c));
    src.on('end', () => {
      this.#ended = true;
      this.#wake();
    });
    src.on('error', (e: Error) => this.#fail(e));
    src.on('close', () => {
      if (!this.#ended) this.#fail(new Error('the client closed the request before its body ended'));
    });
  }

  /** True while every byte so far is kept, so a new attempt can send the whole body. */
  get replayable(): boolean {
    return this.#replayable;
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** A new stream of the whole body, or undefined when it can no longer be replayed. */
  reader(): Readable | undefined {
    if (!this.#replayable) return undefined;
    const r: Reader = {
      at: 0,
      waiting: false,
      stream: new Readable({
        read: () => {
          r.waiting = true;
          this.#pump(r);
          if (this.#paused && this.#backlog() <= this.#limit) {
            this.#paused = false;
            this.#src.resume();
          }
        },
        destroy: (err, cb) => {
          this.#readers = this.#readers.filter((x) => x !== r);
          this.#trim();
          cb(err);
        },
      }),
    };
    // Errors reach the attempt through its transport; never as an unhandled 'error' event.
    r.stream.on('error', () => undefined);
    this.#readers.push(r);
    // Held whole for want of a reader: this one will take it, past the limit if need be.
    if (this.#paused && this.#total > this.#limit) {
      this.#replayable = false;
      this.#paused = false;
      this.#src.resume();
    }
    return r.stream;
  }

  /** Stop reading: the request is over (answered, or its client left). */
  dispose(): void {
    this.#disposed = true;
    for (const r of this.#readers) r.stream.destroy();
    this.#readers = [];
    this.#chunks = [];
    if (!this.#ended) this.#src.resume();
  }

  #onChunk(c: Buffer): void {
    this.#chunks.push(c);
    this.#total += c.length;
    if (this.#total > this.#limit) {
      if (this.#readers.length === 0) {
        // No attempt is out to take the rest: keep what came (at most one chunk past the limit)
        // and wait, replayable, for the next reader.
        if (!this.#paused && this.#replayable) {
          this.#paused = true;
          this.#src.pause();
        }
        return;
      }
      this.#replayable = false;
    }
    this.#wake();
    this.#trim();
    if (!this.#replayable && this.#backlog() > this.#limit && !this.#paused) {
      this.#paused = true;
      this.#src.pause();
    }
  }

  #wake(): void {
    for (const r of this.#readers) if (r.waiting) this.#pump(r);
  }

  #pump(r: Reader): void {
    while (r.at < this.#base + this.#chunks.length) {
      const c = this.#chunks[r.at - this.#base] as Buffer;
      r.at++;
      if (!r.stream.push(c)) {
        r.waiting = false;
        this.#trim();
        return;
      }
    }
    if (this.#ended) {
      r.stream.push(null);
      r.waiting = false;
    } else if (this.#error) r.stream.destroy(this.#error);
    this.#trim();
  }

  /** Bytes the slowest reader has yet to take. */
  #backlog(): number {
    if (this.#readers.length === 0) return 0;
    const slowest = Math.min(...this.#readers.map((r) => r.at));
    let n = 0;
    for (let i = slowest - this.#base; i < this.#chunks.length; i++) n += (this.#chunks[i] as Buffer).length;
    return n;
  }

  /** Once not replayable, let go of chunks every reader has passed. */
  #trim(): void {
    if (this.#replayable || this.#chunks.length === 0) return;
    const slowest = this.#readers.length === 0 ? this.#base + this.#chunks.length : Math.min(...this.#readers.map((r) => r.at));
    const drop = slowest - this.#base;
    if (drop <= 0) return;
    this.#chunks = this.#chunks.slice(drop);
    this.#base = slowest;
  }

  #fail(e: Error): void {
    if (this.#error || this.#ended || this.#disposed) return;
    this.#error = e;
    for (const r of this.#readers) r.stream.destroy(e);
  }
}
