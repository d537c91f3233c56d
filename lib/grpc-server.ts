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
 * receive-size limit (RESOURCE_EXHAUSTED); gzip and deflate request messages;
 * `grpc-timeout` deadlines (DEADLINE_EXCEEDED, then `cancelled`); response headers sent with the
 * first message or with the status (trailers-only), the status in trailers with the error's
 * metadata; UNIMPLEMENTED for an unknown method, HTTP 415 for a non-gRPC content type;
 * backpressure both ways; TLS with client certificates (`getAuthContext()`), and graceful or
 * forced shutdown. Unlike grpc-js, a stream's buffered messages are framed into one write
 * (`_writev`), so a burst of small responses leaves in as few DATA frames as fit.
 */
import * as grpc from '@grpc/grpc-js';
import * as http2 from 'node:http2';
import type { TLSSocket } from 'node:tls';
import type { TimerHandle } from './clock.ts';
import {
  type AnyHandler,
  type GrpcServerOptions,
  type GrpcTls,
  type Kind,
  type Method,
  type Registered,
  GrpcServerCall,
  statusOfError,
} from './grpc-call.ts';

export { type GrpcServerOptions, type GrpcTls, GrpcServerCall } from './grpc-call.ts';

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
      if (!fn) continue; // a method the service leaves out is answered UNIMPLEMENTED, as gRPC requires
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
