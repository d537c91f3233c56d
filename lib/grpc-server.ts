/**
 * A gRPC server written on `node:http2`, for the hot path of the store's client API.
 *
 * Why not grpc-js's server: measured alone (bench/grpc-server.ts: etcd's Go client sending `Put`
 * to a server with a fixed answer) grpc-js spent 1.2–1.7× the CPU per call of this server
 * with the same codec, in an interceptor chain, a Metadata object and several closures and
 * listeners per call. Handlers keep grpc-js's shapes (`call.request`, `call.metadata`,
 * `callback(err, value)`, `call.write`/`end`, `emit('error', err)` to end a stream with a status,
 * the `cancelled` event), so one service implementation runs on either server.
 *
 * What it implements, as grpc-js's server does: unary, server-streaming, client-streaming and
 * bidirectional methods; request framing across DATA frames and several messages per frame; the
 * receive- and send-size limits (RESOURCE_EXHAUSTED); gzip and deflate request messages;
 * `grpc-timeout` deadlines (DEADLINE_EXCEEDED, then `cancelled`); response headers sent with the
 * first message or with the status (trailers-only), the status in trailers with the error's
 * metadata; UNIMPLEMENTED for an unknown method, HTTP 415 for a non-gRPC content type;
 * backpressure both ways; TLS with client certificates (`getAuthContext()`), and graceful or
 * forced shutdown. Unlike grpc-js, a stream's buffered messages are framed into one write
 * (`_writev`), so a burst of small responses leaves in as few DATA frames as fit.
 */
import * as grpc from '@grpc/grpc-js';
import * as http2 from 'node:http2';
import { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { gunzipSync, inflateSync } from 'node:zlib';
import type { Clock, TimerHandle } from './clock.ts';

type Method = grpc.MethodDefinition<unknown, unknown>;
type Kind = 'unary' | 'serverStream' | 'clientStream' | 'bidi';
type AnyHandler = (...args: never[]) => void;
interface Registered {
  method: Method;
  kind: Kind;
  fn: AnyHandler;
}

export interface GrpcServerOptions {
  clock: Clock;
  /** Largest request message accepted, in bytes (grpc-js's `grpc.max_receive_message_length`). */
  maxReceiveMessageLength: number;
  /** Largest response message sent; -1 for no limit. */
  maxSendMessageLength?: number;
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

/** gRPC's length-prefixed framing of `bodies`, one after another in one buffer. */
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
  readonly metadata: grpc.Metadata;
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
  #chunks: Buffer[] = [];
  #have = 0;
  #requests = 0;
  #onRequest: (() => void) | undefined;

  constructor(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, r: Registered, opts: GrpcServerOptions) {
    super({ objectMode: true, allowHalfOpen: true });
    this.#stream = stream;
    this.#method = r.method;
    this.#kind = r.kind;
    this.#opts = opts;
    this.#encoding = String(headers['grpc-encoding'] ?? 'identity');
    this.metadata = grpc.Metadata.fromHttp2Headers(headers);
    for (const k of notMetadata) this.metadata.remove(k);
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
    const max = this.#opts.maxSendMessageLength ?? -1;
    const big = max >= 0 ? bodies.find((b) => b.length > max) : undefined;
    if (big) {
      this.#finish({ code: grpc.status.RESOURCE_EXHAUSTED, details: `Sent message larger than max (${big.length} vs. ${max})` });
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
    this.#chunks.push(chunk);
    this.#have += chunk.length;
    const max = this.#opts.maxReceiveMessageLength;
    while (this.#have >= 5) {
      let head = this.#chunks[0] as Buffer;
      if (head.length < 5) head = this.#join();
      const length = head.readUInt32BE(1);
      if (length > max) {
        this.#finish({ code: grpc.status.RESOURCE_EXHAUSTED, details: `Received message larger than max (${length} vs. ${max})` });
        return;
      }
      if (this.#have < 5 + length) return;
      const all = this.#chunks.length === 1 ? head : this.#join();
      const flag = all[0] as number;
      const body = all.subarray(5, 5 + length);
      const rest = all.subarray(5 + length);
      this.#chunks = rest.length > 0 ? [rest] : [];
      this.#have = rest.length;
      if (!this.#onMessage(flag, body)) return;
    }
  }

  #join(): Buffer {
    const b = Buffer.concat(this.#chunks, this.#have);
    this.#chunks = [b];
    return b;
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

/** The server: services registered as on grpc-js, listening on one or more addresses. */
export class GrpcServer {
  readonly #opts: GrpcServerOptions;
  readonly #methods = new Map<string, Registered>();
  readonly #servers: Array<http2.Http2Server | http2.Http2SecureServer> = [];
  readonly #sessions = new Set<http2.ServerHttp2Session>();
  readonly #timers: TimerHandle[] = [];

  constructor(opts: GrpcServerOptions) {
    this.#opts = opts;
  }

  /** grpc-js's `addService`: a service definition and its handlers by method name. */
  addService(def: grpc.ServiceDefinition, impl: grpc.UntypedServiceImplementation): void {
    for (const [name, m] of Object.entries(def)) {
      const method = m as Method & { originalName?: string };
      const fn = (impl[name] ?? (method.originalName ? impl[method.originalName] : undefined)) as AnyHandler | undefined;
      if (!fn) continue; // not implemented: answered UNIMPLEMENTED
      const kind: Kind = method.requestStream
        ? method.responseStream
          ? 'bidi'
          : 'clientStream'
        : method.responseStream
          ? 'serverStream'
          : 'unary';
      if (this.#methods.has(method.path)) throw new Error(`method ${method.path} is registered twice`);
      this.#methods.set(method.path, { method, kind, fn });
    }
  }

  /** Listen on host:port (port 0: any); the port bound. */
  listen(host: string, port: number, tls?: GrpcTls): Promise<number> {
    const common = { maxSendHeaderBlockLength: Number.MAX_SAFE_INTEGER, maxSessionMemory: Number.MAX_SAFE_INTEGER };
    let server: http2.Http2Server | http2.Http2SecureServer;
    if (tls) {
      let current = tls.context();
      const secure = http2.createSecureServer({ ...common, ...current, ALPNProtocols: ['h2'], allowHTTP1: false });
      secure.on('secureConnection', (s: TLSSocket) => s.on('error', () => undefined));
      // Certificates are read again periodically, so a rotated one is served without a restart.
      const refresh = (): void => {
        try {
          const next = tls.context();
          if (JSON.stringify(next) !== JSON.stringify(current)) {
            secure.setSecureContext(next);
            current = next;
          }
        } catch {
          // keep serving the last good certificate; the files are mid-rotation or unreadable
        }
      };
      this.#timers.push(this.#opts.clock.setInterval(refresh, tls.refreshMs, { unref: true }));
      server = secure;
    } else server = http2.createServer(common);
    server.setTimeout(0);
    server.on('session', (s: http2.ServerHttp2Session) => {
      this.#sessions.add(s);
      s.on('error', () => undefined);
      s.on('close', () => this.#sessions.delete(s));
    });
    server.on('stream', (stream, headers) => this.#onStream(stream, headers));
    this.#servers.push(server);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        const a = server.address();
        resolve(a && typeof a === 'object' ? a.port : port);
      });
    });
  }

  /** Stop accepting; let calls in progress finish (GOAWAY), then `cb`. */
  tryShutdown(cb: () => void): void {
    this.#stopTimers();
    let left = this.#servers.length + this.#sessions.size;
    const one = (): void => {
      if (--left === 0) cb();
    };
    if (left === 0) return cb();
    for (const s of this.#servers) s.close(() => one());
    for (const s of this.#sessions) {
      s.once('close', one);
      s.close();
    }
  }

  /** Stop now: every session and its calls are destroyed. */
  forceShutdown(): void {
    this.#stopTimers();
    for (const s of this.#sessions) s.destroy();
    for (const s of this.#servers) s.close();
  }

  #stopTimers(): void {
    for (const t of this.#timers.splice(0)) t.cancel();
  }

  #onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    stream.on('error', () => undefined);
    const contentType = headers['content-type'];
    if (typeof contentType !== 'string' || !contentType.startsWith('application/grpc')) {
      stream.respond({ ':status': 415 }, { endStream: true });
      return;
    }
    const path = String(headers[':path']);
    const r = this.#methods.get(path);
    if (!r) {
      stream.respond(
        {
          ':status': 200,
          'content-type': 'application/grpc+proto',
          'grpc-status': String(grpc.status.UNIMPLEMENTED),
          'grpc-message': encodeURI(`The server does not implement the method ${path}`),
        },
        { endStream: true },
      );
      return;
    }
    const call = new GrpcServerCall(stream, headers, r, this.#opts);
    const run = (): void => {
      try {
        // Unary and client-streaming handlers answer once, through a callback.
        if (r.kind === 'unary' || r.kind === 'clientStream')
          (r.fn as (c: unknown, cb: grpc.sendUnaryData<unknown>) => void)(call, (err, value, trailer) => call.answer(err, value, trailer));
        else (r.fn as (c: unknown) => void)(call);
      } catch (err) {
        call.finish(statusOfError(err));
      }
    };
    if (r.kind === 'unary' || r.kind === 'serverStream') call.whenRequest(run);
    else run();
  }
}
