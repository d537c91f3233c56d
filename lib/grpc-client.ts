/**
 * A gRPC client on `node:http2`, for the sidecar's one conversation with the control plane (the
 * discovery stream and certificate requests). Why not grpc-js's client: loading grpc-js with
 * proto-loader and protobufjs is ~13 MiB of an idle sidecar's 83 (bench/sidecar-memory.ts), for two
 * methods. Messages are bytes here: the caller encodes them (api/discovery-wire.ts).
 *
 * What it does as grpc-js's channel does: one HTTP/2 connection shared by the calls, opened on
 * first use and again after it is lost (with the TLS material current then: a certificate that
 * arrived since is presented); a connect timeout; keepalive pings that find a dead peer; deadlines
 * (`grpc-timeout` and a local timer); statuses from trailers, trailers-only responses, HTTP
 * statuses and stream resets mapped as gRPC's HTTP/2 protocol document says; a receive limit.
 */
import * as http2 from 'node:http2';
import { EventEmitter } from 'node:events';
import type { Clock, TimerHandle } from './clock.ts';
import { Deframer, frameMessages } from './grpc-frame.ts';

/** gRPC status codes used here (grpc/doc/statuscodes.md). */
export const Status = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  DEADLINE_EXCEEDED: 4,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  ABORTED: 10,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

/** A call that ended with a status other than OK: `code` and `details` as grpc-js's ServiceError has them. */
export class GrpcStatusError extends Error {
  readonly code: number;
  readonly details: string;
  constructor(code: number, details: string) {
    super(`${code} ${statusName(code)}: ${details}`);
    this.name = 'GrpcStatusError';
    this.code = code;
    this.details = details;
  }
}

function statusName(code: number): string {
  return Object.entries(Status).find(([, c]) => c === code)?.[0] ?? String(code);
}

/** The TLS a connection is opened with, read at each new connection. */
export interface ClientTls {
  /** PEM trust anchors to verify the server with. */
  ca: string;
  /** The name the server's certificate must carry (also sent as SNI and `:authority`). */
  serverName: string;
  /** This client's certificate chain and key (PEM), when it has one. */
  cert?: { chainPem: string; keyPem: string } | undefined;
}

export interface GrpcChannelOptions {
  /** host:port (an IPv6 host in brackets). */
  address: string;
  clock: Clock;
  /** Absent: plaintext (h2c). */
  tls?: () => ClientTls;
  /** Ping the server this often while connected (grpc-js: `grpc.keepalive_time_ms`). */
  keepaliveMs?: number;
  /** A ping unanswered this long closes the connection and fails its calls UNAVAILABLE. */
  keepaliveTimeoutMs?: number;
  /** A connection not up after this long is given up (grpc-js waits at least 20 s). */
  connectTimeoutMs?: number;
  /** Largest response message accepted (grpc's default: 4 MiB). */
  maxReceiveMessageLength?: number;
  userAgent?: string;
}

/** HTTP status to gRPC status, for a response that carries no grpc-status (grpc/doc/http-grpc-status-mapping.md). */
function statusOfHttp(status: number): number {
  if (status === 400) return Status.INTERNAL;
  if (status === 401) return Status.UNAUTHENTICATED;
  if (status === 403) return Status.PERMISSION_DENIED;
  if (status === 404) return Status.UNIMPLEMENTED;
  if (status === 429 || status === 502 || status === 503 || status === 504) return Status.UNAVAILABLE;
  return Status.UNKNOWN;
}

/** RST_STREAM error code to gRPC status (as grpc-js maps them). */
function statusOfReset(code: number): number {
  const c = http2.constants;
  if (code === c.NGHTTP2_REFUSED_STREAM) return Status.UNAVAILABLE;
  if (code === c.NGHTTP2_CANCEL) return Status.CANCELLED;
  if (code === c.NGHTTP2_ENHANCE_YOUR_CALM) return Status.RESOURCE_EXHAUSTED;
  if (code === c.NGHTTP2_INADEQUATE_SECURITY) return Status.PERMISSION_DENIED;
  return Status.INTERNAL;
}

function decodeMessage(raw: string | string[] | undefined): string {
  const s = Array.isArray(raw) ? raw.join(',') : (raw ?? '');
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/**
 * One call: `message` for each response message, then either `end` (status OK) or `error` (a
 * GrpcStatusError), once. `write` sends a request message, `end` half-closes, `cancel` abandons.
 */
export class GrpcClientCall extends EventEmitter<{ message: [Buffer]; end: []; error: [GrpcStatusError] }> {
  readonly #req: http2.ClientHttp2Stream;
  readonly #max: number;
  readonly #frames: Deframer;
  #status: { code: number; details: string } | undefined;
  #httpStatus = 0;
  #streamError: Error | undefined;
  #done = false;
  #deadline: TimerHandle | undefined;

  /** @internal made by GrpcChannel */
  constructor(req: http2.ClientHttp2Stream, max: number, deadline?: { clock: Clock; ms: number }) {
    super();
    this.#req = req;
    this.#max = max;
    this.#frames = new Deframer(max);
    if (deadline)
      this.#deadline = deadline.clock.setTimeout(() => this.#abandon(Status.DEADLINE_EXCEEDED, 'Deadline exceeded'), deadline.ms);
    req.on('response', (headers) => {
      this.#httpStatus = Number(headers[':status']);
      // Trailers-only: the status came in the response's one HEADERS frame.
      if (headers['grpc-status'] !== undefined) this.#takeStatus(headers);
    });
    req.on('trailers', (trailers) => this.#takeStatus(trailers));
    req.on('data', (chunk: Buffer) => this.#data(chunk));
    req.on('error', (err) => (this.#streamError ??= err));
    // The server's side is over (its status came with it): the call is, even if this side has not
    // half-closed yet, as a server may end a stream early.
    req.on('end', () => {
      this.#closed(true);
      if (!req.destroyed && !req.writableEnded) req.close(http2.constants.NGHTTP2_NO_ERROR);
    });
    req.on('close', () => this.#closed(false));
  }

  get done(): boolean {
    return this.#done;
  }

  write(message: Buffer): boolean {
    if (this.#done || this.#req.writableEnded) return false;
    return this.#req.write(frameMessages([message]));
  }

  /** Half-close: no more request messages. */
  end(): void {
    if (!this.#req.writableEnded) this.#req.end();
  }

  /** Abandon the call: it ends with CANCELLED (as grpc-js's `cancel()` does), and the server hears a reset. */
  cancel(details = 'Cancelled on client'): void {
    this.#abandon(Status.CANCELLED, details);
  }

  #abandon(code: number, details: string): void {
    if (this.#done) return;
    this.#finish(code, details);
    if (!this.#req.destroyed) this.#req.close(http2.constants.NGHTTP2_CANCEL);
  }

  #takeStatus(h: http2.IncomingHttpHeaders): void {
    if (this.#status) return;
    const code = Number(h['grpc-status']);
    this.#status = {
      code: Number.isInteger(code) && code >= 0 && code <= 16 ? code : Status.UNKNOWN,
      details: decodeMessage(h['grpc-message']),
    };
  }

  #data(chunk: Buffer): void {
    if (this.#done) return;
    const tooLarge = this.#frames.push(chunk, (flag, body) => {
      if (flag !== 0) {
        this.#abandon(Status.INTERNAL, 'the server sent a compressed message; this client asked for identity');
        return false;
      }
      this.emit('message', body);
      return !this.#done;
    });
    if (tooLarge !== undefined) this.#abandon(Status.RESOURCE_EXHAUSTED, `Received message larger than max (${tooLarge} vs. ${this.#max})`);
  }

  #closed(ended: boolean): void {
    if (this.#done) return;
    if (this.#status) return this.#finish(this.#status.code, this.#status.details);
    if (this.#httpStatus !== 0 && this.#httpStatus !== 200)
      return this.#finish(statusOfHttp(this.#httpStatus), `Received HTTP status code ${this.#httpStatus}`);
    // A reset from the server arrives as ERR_HTTP2_STREAM_ERROR; any other error is the connection's
    // (refused, TLS, lost: "The pending stream has been canceled (caused by: ...)").
    const err = this.#streamError as NodeJS.ErrnoException | undefined;
    if (err && err.code !== 'ERR_HTTP2_STREAM_ERROR') return this.#finish(Status.UNAVAILABLE, err.message);
    const rst = this.#req.rstCode;
    if (rst !== undefined && rst !== http2.constants.NGHTTP2_NO_ERROR)
      return this.#finish(statusOfReset(rst), `Received RST_STREAM with code ${rst}`);
    if (ended) this.#finish(Status.UNKNOWN, 'the server ended the stream without a gRPC status');
    else this.#finish(Status.UNAVAILABLE, 'the connection closed before the call ended');
  }

  #finish(code: number, details: string): void {
    if (this.#done) return;
    this.#done = true;
    this.#deadline?.cancel();
    if (code === Status.OK && this.#frames.buffered > 0) {
      code = Status.INTERNAL;
      details = 'the response ended inside a message';
    }
    if (code === Status.OK) this.emit('end');
    else this.emit('error', new GrpcStatusError(code, details));
  }
}

/** One HTTP/2 connection to a gRPC server and the calls on it. */
export class GrpcChannel {
  readonly #o: GrpcChannelOptions;
  #session: http2.ClientHttp2Session | undefined;
  #authority = '';
  #scheme: 'http' | 'https' = 'http';
  #closed = false;
  /** Calls under way: while there are any the connection keeps the process up (as grpc-js's do). */
  #active = 0;

  constructor(o: GrpcChannelOptions) {
    this.#o = o;
  }

  /** A bidirectional (or any streaming) call; `metadata` values are sent as they are. */
  call(path: string, metadata: Record<string, string> = {}, timeoutMs?: number): GrpcClientCall {
    if (this.#closed) throw new GrpcStatusError(Status.UNAVAILABLE, 'the channel is closed');
    const session = this.#connection();
    const headers: http2.OutgoingHttpHeaders = {
      ...metadata,
      ':method': 'POST',
      ':scheme': this.#scheme,
      ':authority': this.#authority,
      ':path': path,
      'content-type': 'application/grpc',
      te: 'trailers',
      'grpc-accept-encoding': 'identity',
      'user-agent': this.#o.userAgent ?? 'ballast',
    };
    if (timeoutMs !== undefined) headers['grpc-timeout'] = `${Math.max(1, Math.ceil(timeoutMs))}m`;
    let req: http2.ClientHttp2Stream;
    try {
      req = session.request(headers);
    } catch {
      // The session went away between the check and the request (ERR_HTTP2_GOAWAY_SESSION and the like).
      this.reconnect();
      req = this.#connection().request(headers);
    }
    this.#active++;
    req.session?.ref();
    req.once('close', () => {
      if (--this.#active === 0) this.#session?.unref();
    });
    return new GrpcClientCall(
      req,
      this.#o.maxReceiveMessageLength ?? 4 * 1024 * 1024,
      timeoutMs !== undefined ? { clock: this.#o.clock, ms: timeoutMs } : undefined,
    );
  }

  /** A unary call: resolves to the one response message, or rejects with a GrpcStatusError. */
  unary(path: string, message: Buffer, metadata: Record<string, string> = {}, timeoutMs?: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      let call: GrpcClientCall;
      try {
        call = this.call(path, metadata, timeoutMs);
      } catch (err) {
        return reject(err as Error);
      }
      let answer: Buffer | undefined;
      call.on('message', (m) => {
        if (answer) return call.cancel('the server sent a second message for a unary call');
        answer = Buffer.from(m);
      });
      call.on('error', reject);
      call.on('end', () =>
        answer ? resolve(answer) : reject(new GrpcStatusError(Status.UNIMPLEMENTED, 'the server ended a unary call without a message')),
      );
      call.write(message);
      call.end();
    });
  }

  /** Close the connection now (its calls fail UNAVAILABLE); the next call opens another with the TLS material current then. */
  reconnect(): void {
    const s = this.#session;
    this.#session = undefined;
    s?.destroy();
  }

  close(): void {
    this.#closed = true;
    this.reconnect();
  }

  #connection(): http2.ClientHttp2Session {
    const live = this.#session;
    if (live && !live.closed && !live.destroyed) return live;
    const o = this.#o;
    const tls = o.tls?.();
    this.#scheme = tls ? 'https' : 'http';
    this.#authority = tls?.serverName ?? o.address;
    const session = http2.connect(
      `${this.#scheme}://${o.address}`,
      tls
        ? {
            ca: tls.ca,
            servername: tls.serverName,
            ...(tls.cert ? { cert: tls.cert.chainPem, key: tls.cert.keyPem } : {}),
          }
        : {},
    );
    this.#session = session;
    const forget = (): void => {
      if (this.#session === session) this.#session = undefined;
    };
    let keepalive: TimerHandle | undefined;
    const connectTimer = o.clock.setTimeout(
      () => session.destroy(new Error(`could not connect to ${o.address} within ${o.connectTimeoutMs ?? 20_000} ms`)),
      o.connectTimeoutMs ?? 20_000,
      { unref: true },
    );
    session.once('connect', () => {
      connectTimer.cancel();
      const every = o.keepaliveMs;
      if (!every) return;
      const ping = (): void => {
        if (session.destroyed || session.closed) return;
        const timeout = o.clock.setTimeout(
          () => session.destroy(new Error(`keepalive: no answer to a ping within ${o.keepaliveTimeoutMs ?? 20_000} ms`)),
          o.keepaliveTimeoutMs ?? 20_000,
          { unref: true },
        );
        session.ping((err) => {
          timeout.cancel();
          if (!err) keepalive = o.clock.setTimeout(ping, every, { unref: true });
        });
      };
      keepalive = o.clock.setTimeout(ping, every, { unref: true });
    });
    // A GOAWAY: calls under way finish, new ones take a new connection.
    session.on('goaway', forget);
    // Errors reach the calls as their streams close; the session's own is only logged by them.
    session.on('error', () => undefined);
    session.on('close', () => {
      connectTimer.cancel();
      keepalive?.cancel();
      forget();
    });
    // An idle connection does not keep the process up.
    if (this.#active === 0) session.unref();
    return session;
  }
}
