/**
 * One call of lib/grpc-server.ts: a Duplex in object mode with grpc-js's server-call shapes, the
 * gRPC framing of its messages both ways, its deadline and the status it ends with.
 */
import * as grpc from '@grpc/grpc-js';
import * as http2 from 'node:http2';
import { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { gunzipSync, inflateSync } from 'node:zlib';
import type { Clock, TimerHandle } from './clock.ts';
import { Deframer, frameMessages } from './grpc-frame.ts';

export type Method = grpc.MethodDefinition<unknown, unknown>;
export type Kind = 'unary' | 'serverStream' | 'clientStream' | 'bidi';
export type AnyHandler = (...args: never[]) => void;
export interface Registered {
  method: Method;
  kind: Kind;
  fn: AnyHandler;
}

export interface GrpcServerOptions {
  clock: Clock;
  /** Largest request message accepted, in bytes (grpc-js's `grpc.max_receive_message_length`). */
  maxReceiveMessageLength: number;
}

export interface GrpcStatus {
  code: grpc.status;
  details: string;
  metadata?: grpc.Metadata | undefined;
}

/** TLS for a listener: the context now, and how to read it again (certificate rotation). */
export interface GrpcTls {
  context(): http2.SecureServerOptions;
  refreshMs: number;
}

/** The status an error thrown or passed by a handler ends its call with (as grpc-js reads it). */
export function statusOfError(err: unknown): GrpcStatus {
  const e = (err ?? {}) as { code?: unknown; details?: unknown; message?: unknown; metadata?: unknown };
  const code =
    typeof e.code === 'number' && Number.isInteger(e.code) && e.code >= 0 && e.code <= 16 ? (e.code as grpc.status) : grpc.status.UNKNOWN;
  const details = typeof e.details === 'string' ? e.details : typeof e.message === 'string' ? e.message : 'Unknown Error';
  return { code, details, metadata: e.metadata instanceof grpc.Metadata ? e.metadata : undefined };
}

const timeoutUnitsMs: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };
/** Headers that are transport, not metadata (grpc-js removes the same). */
const notMetadata = ['content-type', 'te', 'grpc-timeout', 'grpc-encoding', 'grpc-accept-encoding', 'accept-encoding', 'user-agent'];

/**
 * One call: a Duplex in object mode. Its readable side yields the client's messages (streaming
 * requests); its writable side takes response messages; `request` holds a unary or
 * server-streaming call's one message.
 */
export class GrpcServerCall extends Duplex {
  /** The request's headers until `metadata` is first read (most calls never read it: see there). */
  #headers: http2.IncomingHttpHeaders | undefined;
  #metadata: grpc.Metadata | undefined;
  request: unknown = undefined;
  cancelled = false;
  readonly #stream: http2.ServerHttp2Stream;
  readonly #method: Method;
  readonly #kind: Kind;
  readonly #opts: GrpcServerOptions;
  readonly #encoding: string;
  #deadline: TimerHandle | undefined;
  #deadlineAt = Infinity;
  #headersSent = false;
  #finished = false;
  #trailers: http2.OutgoingHttpHeaders | undefined;
  #pending: GrpcStatus | undefined;
  #trailing: grpc.Metadata | undefined;
  readonly #frames: Deframer;
  readonly #eachMessage = (flag: number, body: Buffer): boolean => this.#onMessage(flag, body);
  #requests = 0;
  #onRequest: (() => void) | undefined;

  constructor(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, r: Registered, opts: GrpcServerOptions) {
    super({ objectMode: true, allowHalfOpen: true });
    this.#stream = stream;
    this.#method = r.method;
    this.#kind = r.kind;
    this.#opts = opts;
    this.#frames = new Deframer(opts.maxReceiveMessageLength);
    this.#encoding = String(headers['grpc-encoding'] ?? 'identity');
    this.#headers = headers;
    const timeout = /^(\d{1,8})([HMSmun])$/.exec(String(headers['grpc-timeout'] ?? ''));
    if (timeout) {
      const ms = Number(timeout[1]) * (timeoutUnitsMs[timeout[2] as string] as number);
      this.#deadlineAt = opts.clock.wallNow() + ms;
      this.#deadline = opts.clock.setTimeout(() => this.#finish({ code: grpc.status.DEADLINE_EXCEEDED, details: 'Deadline exceeded' }), ms);
    }
    // A status sent by `emit('error', err)`: grpc-js's way for a handler to end a stream with one.
    this.on('error', (err: unknown) => {
      this.#pending ??= statusOfError(err);
      if (!this.writableEnded && !this.destroyed) this.end();
    });
    stream.on('data', (chunk: Buffer) => this.#onData(chunk));
    stream.on('end', () => this.#onEnd());
    stream.on('close', () => this.#ended());
  }

  /**
   * The call's metadata, made on first read: grpc-js's Metadata validates and copies every header,
   * 5% of this server's CPU per Put in a profile (bench/grpc-server.ts), and the store reads it
   * only with auth on or tracing (a token, a traceparent).
   */
  get metadata(): grpc.Metadata {
    if (!this.#metadata) {
      const md = grpc.Metadata.fromHttp2Headers(this.#headers ?? {});
      for (const k of notMetadata) md.remove(k);
      this.#metadata = md;
      this.#headers = undefined;
    }
    return this.#metadata;
  }

  /** Runs `fn` once a unary or server-streaming call's request has arrived. */
  whenRequest(fn: () => void): void {
    this.#onRequest = fn;
  }

  getPeer(): string {
    const s = this.#stream.session?.socket;
    if (!s?.remoteAddress) return 'unknown';
    return s.remoteFamily === 'IPv6' ? `[${s.remoteAddress}]:${s.remotePort}` : `${s.remoteAddress}:${s.remotePort}`;
  }

  getDeadline(): number {
    return this.#deadlineAt;
  }

  getPath(): string {
    return this.#method.path;
  }

  getAuthContext(): { transportSecurityType?: string; sslPeerCertificate?: ReturnType<TLSSocket['getPeerCertificate']> } {
    const s = this.#stream.session?.socket as TLSSocket | undefined;
    if (!s || typeof s.getPeerCertificate !== 'function') return {};
    const cert = s.getPeerCertificate();
    return { transportSecurityType: 'ssl', ...(cert && Object.keys(cert).length > 0 ? { sslPeerCertificate: cert } : {}) };
  }

  sendMetadata(md: grpc.Metadata): void {
    this.#respond(md);
  }

  /** A unary call's answer (grpc-js's `sendUnaryData`). */
  answer(err: unknown, value?: unknown, trailer?: grpc.Metadata): void {
    if (err) return this.#finish(statusOfError(err));
    this.#send([value], () => this.#finish({ code: grpc.status.OK, details: 'OK', metadata: trailer }));
  }

  /**
   * As a Writable's `end`; with a Metadata as the only argument (grpc-js's `end(metadata)`), those
   * are the trailers sent with the OK status.
   */
  override end(...args: unknown[]): this {
    if (args.length === 1 && args[0] instanceof grpc.Metadata) {
      this.#trailing = args[0];
      return super.end();
    }
    return (super.end as (...a: unknown[]) => this)(...args);
  }

  /** End the call with `status` now (messages not yet written are dropped). */
  finish(status: GrpcStatus): void {
    this.#finish(status);
  }

  override _read(): void {
    if (this.#stream.isPaused()) this.#stream.resume();
  }

  override _write(chunk: unknown, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.#send([chunk], () => cb());
  }

  override _writev(chunks: Array<{ chunk: unknown }>, cb: (err?: Error | null) => void): void {
    this.#send(
      chunks.map((c) => c.chunk),
      () => cb(),
    );
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.#finish(this.#pending ?? { code: grpc.status.OK, details: 'OK', metadata: this.#trailing });
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.#finished) {
      if (err) this.#finish(statusOfError(err));
      else {
        this.#finished = true;
        if (!this.#stream.destroyed) this.#stream.close(http2.constants.NGHTTP2_CANCEL);
      }
    }
    this.#deadline?.cancel();
    cb(null);
  }

  #send(values: unknown[], done: () => void): void {
    if (this.#finished) return done();
    let bodies: Buffer[];
    try {
      bodies = values.map((v) => this.#method.responseSerialize(v));
    } catch (err) {
      this.#finish({ code: grpc.status.INTERNAL, details: `Error serializing response: ${(err as Error).message}` });
      return done();
    }
    this.#respond();
    if (this.#stream.destroyed) return done();
    this.#stream.write(frameMessages(bodies), () => done());
  }

  #respond(md?: grpc.Metadata): void {
    if (this.#headersSent || this.#stream.destroyed) return;
    this.#headersSent = true;
    this.#stream.respond(
      {
        ':status': 200,
        'content-type': 'application/grpc+proto',
        'grpc-accept-encoding': 'identity,deflate,gzip',
        ...md?.toHttp2Headers(),
      },
      { waitForTrailers: true },
    );
    this.#stream.once('wantTrailers', () => {
      try {
        this.#stream.sendTrailers(this.#trailers ?? { 'grpc-status': '0', 'grpc-message': 'OK' });
      } catch {
        // the stream went away meanwhile
      }
      this.#ended();
    });
  }

  #finish(s: GrpcStatus): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#deadline?.cancel();
    if (this.#stream.destroyed || this.#stream.closed) return;
    const trailers: http2.OutgoingHttpHeaders = {
      ...s.metadata?.toHttp2Headers(),
      'grpc-status': String(s.code),
      'grpc-message': encodeURI(s.details),
    };
    if (!this.#headersSent) {
      // Trailers-only: the status in the one HEADERS frame.
      this.#headersSent = true;
      this.#stream.respond({ ':status': 200, 'content-type': 'application/grpc+proto', ...trailers }, { endStream: true });
      this.#ended();
      return;
    }
    this.#trailers = trailers;
    this.#stream.end();
  }

  /**
   * The call is over: its status was sent, or its stream closed first (the client cancelled or
   * went away). As grpc-js does, the handler hears `cancelled` either way, once, and a streaming
   * call is destroyed: it is the one signal to release what the call held.
   */
  #ended(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.#finished = true;
    this.#deadline?.cancel();
    process.nextTick(() => {
      this.emit('cancelled', 'cancelled');
      if (this.#kind !== 'unary' && !this.destroyed) this.destroy();
    });
  }

  #onData(chunk: Buffer): void {
    if (this.#finished) return;
    const tooLarge = this.#frames.push(chunk, this.#eachMessage);
    const max = this.#opts.maxReceiveMessageLength;
    if (tooLarge !== undefined)
      this.#finish({ code: grpc.status.RESOURCE_EXHAUSTED, details: `Received message larger than max (${tooLarge} vs. ${max})` });
  }

  #onMessage(flag: number, raw: Buffer): boolean {
    let body = raw;
    if (flag & 1) {
      const max = this.#opts.maxReceiveMessageLength;
      try {
        if (this.#encoding === 'gzip') body = gunzipSync(raw, { maxOutputLength: max });
        else if (this.#encoding === 'deflate') body = inflateSync(raw, { maxOutputLength: max });
        else {
          this.#finish({
            code: grpc.status.UNIMPLEMENTED,
            details: `Received message compressed with unsupported encoding "${this.#encoding}"`,
          });
          return false;
        }
      } catch (err) {
        const tooBig = (err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE';
        this.#finish(
          tooBig
            ? { code: grpc.status.RESOURCE_EXHAUSTED, details: `Received message larger than max (decompressed beyond ${max})` }
            : { code: grpc.status.INTERNAL, details: `Received message that could not be decompressed: ${(err as Error).message}` },
        );
        return false;
      }
    }
    let message: unknown;
    try {
      message = this.#method.requestDeserialize(body);
    } catch (err) {
      this.#finish({ code: grpc.status.INTERNAL, details: `Error deserializing request: ${(err as Error).message}` });
      return false;
    }
    this.#requests++;
    if (this.#kind === 'unary' || this.#kind === 'serverStream') {
      if (this.#requests > 1) {
        this.#finish({
          code: grpc.status.UNIMPLEMENTED,
          details: `Received a second request message for ${this.#kind === 'unary' ? 'a unary' : 'a server-streaming'} call`,
        });
        return false;
      }
      this.request = message;
      return true;
    }
    if (!this.push(message)) this.#stream.pause();
    return true;
  }

  #onEnd(): void {
    if (this.#finished) return;
    if (this.#kind === 'unary' || this.#kind === 'serverStream') {
      if (this.#requests === 0) {
        this.#finish({ code: grpc.status.UNIMPLEMENTED, details: 'No request message received' });
        return;
      }
      this.#onRequest?.();
      return;
    }
    this.push(null);
  }
}
