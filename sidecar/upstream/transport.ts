/**
 * Connections to one endpoint, and one attempt over them. HTTP/1.1 goes through an undici Pool
 * (keep-alive, its dispatch API: no promise or stream object per request); HTTP/2 and gRPC
 * through one node:http2 session per endpoint (h2c, or TLS with ALPN). Either way an attempt
 * reports its response head, body chunks (with back-pressure), trailers, or a failure named by
 * kind, so the policies above can tell "never reached the server" (safe to retry anything)
 * from "reset mid-request" (safe only for idempotent requests).
 */
import http2, { type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import net from 'node:net';
import type { Readable } from 'node:stream';
import tls from 'node:tls';
import { createRequire } from 'node:module';
import type { Pool as UndiciPool, buildConnector } from 'undici';
import { uriSans } from '../../api/mesh.ts';
import { AttemptError, classify } from './failure.ts';

export { AttemptError, type FailureKind } from './failure.ts';

/**
 * undici's Pool, and only it: undici's index also loads every other dispatcher, its mock agent,
 * interceptors, caches and node:sqlite: code the sidecar never runs (with the other libraries it
 * loads, 84.3 MiB loaded the old way against 75.2; bench/sidecar-memory.ts, docs/sidecar.md). The
 * pool module is undici's own, pinned by the lockfile; the transport's tests run every HTTP/1.1
 * path through it.
 */
const Pool = createRequire(import.meta.url)('undici/lib/dispatcher/pool.js') as typeof UndiciPool;
type Pool = UndiciPool;

export type Headers = Record<string, string | string[] | undefined>;

export interface OutRequest {
  method: string;
  path: string;
  authority: string;
  /** Without hop-by-hop and pseudo headers (`host` is set from `authority` over HTTP/1.1). */
  headers: Headers;
  body: Readable | Buffer | null;
  /**
   * HTTP/1.1, HTTP/2, or HTTP/2 where the endpoint speaks it and HTTP/1.1 where it does not
   * (learned once per endpoint: a cleartext endpoint that answers the HTTP/2 preface with
   * anything but SETTINGS is HTTP/1.1 only; the request was not sent, so it goes over HTTP/1.1).
   */
  protocol: 'h1' | 'h2' | 'prefer-h2';
}

export interface AttemptHandlers {
  head(status: number, headers: Headers): void;
  /** A body chunk; false asks the transport to pause until {@link AttemptControl.resume}. */
  data(chunk: Buffer): boolean;
  end(trailers: Headers | undefined): void;
  error(err: AttemptError): void;
}

export interface AttemptControl {
  abort(): void;
  resume(): void;
}

export interface TlsOptions {
  ca?: string | Buffer;
  serverName?: string;
  insecureSkipVerify?: boolean;
}

/** Mesh mTLS to an endpoint whose sidecar presents `identity`. */
export interface MeshPeer {
  identity: string;
  /** strict: never plaintext (no certificate of our own yet: the connection fails). */
  strict: boolean;
  /** The sidecar's certificate, key and trust bundle, read at each new connection (undefined: none yet). */
  material(): { chainPem: string; keyPem: string; bundlePem: string } | undefined;
}

const contexts = new WeakMap<object, tls.SecureContext>();
function contextOf(m: { chainPem: string; keyPem: string; bundlePem: string }): tls.SecureContext {
  let c = contexts.get(m);
  if (!c) contexts.set(m, (c = tls.createSecureContext({ cert: m.chainPem, key: m.keyPem, ca: m.bundlePem })));
  return c;
}

/**
 * A connection to host:port: mTLS (ALPN `alpn`, the peer's certificate checked against the trust
 * bundle and its SPIFFE ID against the expected one) when this sidecar has a certificate, else
 * plaintext (permissive) or an error (strict).
 */
export function meshConnect(host: string, port: number, alpn: string, peer: MeshPeer): net.Socket | AttemptError {
  if (!peer.identity)
    return new AttemptError(
      'connect',
      `${host}:${port} is not meshed (its pod has no sidecar identity on this port) and the upstream requires mTLS (mtls: strict)`,
    );
  const m = peer.material();
  if (!m) {
    if (peer.strict)
      return new AttemptError('connect', `mTLS is required (mtls: strict) but this sidecar has no mesh certificate yet; see /ready`);
    return net.connect({ host, port, noDelay: true });
  }
  return tls.connect({
    host,
    port,
    secureContext: contextOf(m),
    ALPNProtocols: [alpn],
    ...(net.isIP(host) ? {} : { servername: host }),
    checkServerIdentity: (_host, cert) =>
      uriSans(cert.subjectaltname).includes(peer.identity)
        ? undefined
        : Object.assign(
            new Error(
              `the endpoint presented ${uriSans(cert.subjectaltname).join(', ') || 'no SPIFFE ID'}, not the expected ${peer.identity}`,
            ),
            { code: 'ERR_MESH_PEER_IDENTITY' },
          ),
  });
}

export interface EndpointOptions {
  connectMs: number;
  idleMs: number;
  tls?: TlsOptions;
  /** Mesh mTLS (instead of `tls`). */
  mesh?: MeshPeer;
  /** HTTP/1.1 connections at most. */
  connections: number;
}

/** One upstream endpoint's connections. */
export class EndpointTransport {
  readonly id: string;
  readonly #options: EndpointOptions;
  readonly #origin: string;
  #pool: Pool | undefined;
  #session: ClientHttp2Session | undefined;
  #sessionReady: Promise<ClientHttp2Session> | undefined;
  #closed = false;
  #h1Only = false;

  constructor(id: string, o: EndpointOptions) {
    this.id = id;
    this.#options = o;
    this.#origin = `${o.tls ? 'https' : 'http'}://${id}`;
  }

  send(req: OutRequest, h: AttemptHandlers): AttemptControl {
    if (req.protocol === 'h1' || (req.protocol === 'prefer-h2' && this.#h1Only)) return this.#sendH1(req, h);
    return this.#sendH2(req, h);
  }

  /** The endpoint answered the HTTP/2 preface as an HTTP/1.1 server (learned, kept). */
  get h1Only(): boolean {
    return this.#h1Only;
  }

  async close(): Promise<void> {
    this.#closed = true;
    const p = this.#pool;
    this.#pool = undefined;
    this.#session?.close();
    this.#session = undefined;
    await p?.close().catch(() => undefined);
  }

  #h1(): Pool {
    if (!this.#pool) {
      const tls = this.#options.tls;
      this.#pool = new Pool(this.#origin, {
        connections: this.#options.connections,
        pipelining: 1,
        // HTTP/1.1 means HTTP/1.1: undici would otherwise take h2 when a TLS endpoint offers it.
        allowH2: false,
        keepAliveTimeout: 30_000,
        headersTimeout: 0,
        bodyTimeout: this.#options.idleMs,
        connect: this.#options.mesh
          ? this.#meshConnector(this.#options.mesh)
          : {
              timeout: this.#options.connectMs,
              ...(tls ? { ca: tls.ca, servername: tls.serverName, rejectUnauthorized: !tls.insecureSkipVerify } : {}),
            },
      });
    }
    return this.#pool;
  }

  /** undici's connector for mesh endpoints: mTLS (or plaintext, permissive without a certificate) per connection. */
  #meshConnector(peer: MeshPeer): buildConnector.connector {
    return (opts, cb): void => {
      const s = meshConnect(opts.hostname, Number(opts.port) || 80, 'http/1.1', peer);
      if (s instanceof AttemptError) return void cb(s, null);
      let done = false;
      const finish = (err: Error | null): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (err) {
          s.destroy();
          cb(err, null);
        } else cb(null, s as tls.TLSSocket);
      };
      const timer = setTimeout(
        () => finish(new AttemptError('connect', `cannot connect to ${this.id} within ${this.#options.connectMs} ms`)),
        this.#options.connectMs,
      );
      s.once(s instanceof tls.TLSSocket ? 'secureConnect' : 'connect', () => finish(null));
      s.once('error', (err: Error) => finish(err));
    };
  }

  #sendH1(req: OutRequest, h: AttemptHandlers): AttemptControl {
    let ctl: { abort(reason?: Error): void; resume(): void; pause(): void } | undefined;
    let aborted = false;
    let started = false;
    let finished = false;
    const headers = { ...req.headers, host: req.authority } as Record<string, string>;
    this.#h1().dispatch(
      { path: req.path, method: req.method, headers, body: req.body, blocking: false },
      {
        onRequestStart(c) {
          ctl = c;
          if (aborted) c.abort(new AttemptError('cancelled', 'attempt cancelled'));
        },
        onResponseStart(_c, status, headers) {
          started = true;
          if (!aborted) h.head(status, headers as Headers);
        },
        onResponseData(c, chunk) {
          if (!aborted && !h.data(chunk)) c.pause();
        },
        onResponseEnd(_c, trailers) {
          finished = true;
          if (!aborted) h.end(trailers && Object.keys(trailers).length > 0 ? (trailers as Headers) : undefined);
        },
        onResponseError(_c, err) {
          finished = true;
          if (aborted) return;
          const e = classify(err);
          // A reset after the head is a broken body, not a retryable failure: report it as such.
          h.error(started && e.kind === 'connect' ? new AttemptError('reset', e.message, { cause: e }) : e);
        },
      },
    );
    return {
      abort() {
        if (aborted || finished) return;
        aborted = true;
        ctl?.abort(new AttemptError('cancelled', 'attempt cancelled'));
      },
      resume: () => ctl?.resume(),
    };
  }

  /**
   * The endpoint's HTTP/2 session, ready once the server's SETTINGS arrived: the connection is
   * up and the peer speaks HTTP/2. A cleartext peer that answers the preface with something
   * else (an HTTP/1.1 server's 400) is HTTP/1.1 only: the rejection's kind is `protocol`.
   */
  #h2session(): Promise<ClientHttp2Session> {
    if (this.#session && !this.#session.closed && !this.#session.destroyed) return Promise.resolve(this.#session);
    if (this.#sessionReady) return this.#sessionReady;
    const tls = this.#options.tls;
    const p = new Promise<ClientHttp2Session>((resolve, reject) => {
      const mesh = this.#options.mesh;
      let refused: AttemptError | undefined;
      const s = http2.connect(
        this.#origin,
        mesh
          ? {
              createConnection: (url: URL) => {
                const c = meshConnect(url.hostname.replace(/^\[|\]$/g, ''), Number(url.port) || 80, 'h2', mesh);
                if (c instanceof AttemptError) {
                  refused = c;
                  const dead = new net.Socket();
                  queueMicrotask(() => dead.destroy(c));
                  return dead;
                }
                return c;
              },
            }
          : tls
            ? { ca: tls.ca, servername: tls.serverName, rejectUnauthorized: !tls.insecureSkipVerify, ALPNProtocols: ['h2'] }
            : {},
      );
      let connected = false;
      let settled = false;
      const timer = setTimeout(() => {
        s.destroy();
        done(new AttemptError('connect', `cannot connect to ${this.id} within ${this.#options.connectMs} ms`));
      }, this.#options.connectMs);
      const done = (err?: AttemptError): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) reject(err);
      };
      const notH2 = (why: string): AttemptError => {
        this.#h1Only = true;
        return new AttemptError('protocol', `${this.id} does not speak HTTP/2 (${why})`);
      };
      s.once('error', (err: Error & { code?: string }) => {
        if (connected && (err.code === 'ERR_HTTP2_ERROR' || err.code === 'ERR_HTTP2_SESSION_ERROR' || /protocol/i.test(err.message)))
          done(notH2(err.message));
        else done(refused ?? new AttemptError('connect', `cannot connect to ${this.id}: ${err.message}`, { cause: err }));
      });
      s.once('close', () =>
        done(
          connected
            ? notH2('it closed the connection instead of sending SETTINGS')
            : new AttemptError('connect', `cannot connect to ${this.id}: connection closed`),
        ),
      );
      s.once('connect', () => {
        connected = true;
      });
      s.once('remoteSettings', () => {
        if (settled) return;
        done();
        s.on('error', () => undefined); // per-stream errors are reported on the streams
        s.setTimeout(this.#options.idleMs, () => s.close());
        const drop = (): void => {
          if (this.#session === s) this.#session = undefined;
        };
        s.once('close', drop);
        s.once('goaway', drop);
        this.#session = s;
        resolve(s);
      });
    });
    this.#sessionReady = p;
    const clear = (): void => {
      if (this.#sessionReady === p) this.#sessionReady = undefined;
    };
    p.then(clear, clear);
    return p;
  }

  #sendH2(req: OutRequest, h: AttemptHandlers): AttemptControl {
    let stream: ClientHttp2Stream | undefined;
    /** The HTTP/1.1 attempt this became (prefer-h2 to an HTTP/1.1-only endpoint). */
    let inner: AttemptControl | undefined;
    let aborted = false;
    let done = false;
    const fail = (e: AttemptError): void => {
      if (done || aborted) return;
      done = true;
      h.error(e);
    };
    if (this.#closed) {
      queueMicrotask(() => fail(new AttemptError('connect', `endpoint ${this.id} was removed`)));
      return {
        abort() {
          aborted = true;
        },
        resume() {},
      };
    }
    this.#h2session().then(
      (session) => {
        if (aborted) return;
        const headers: http2.OutgoingHttpHeaders = {
          ...req.headers,
          ':method': req.method,
          ':path': req.path,
          ':authority': req.authority,
          ':scheme': this.#options.tls || session.encrypted ? 'https' : 'http',
        };
        delete headers['host'];
        const hasBody = req.body !== null;
        let s: ClientHttp2Stream;
        try {
          s = session.request(headers, { endStream: !hasBody });
        } catch (err) {
          const e = classify(err as Error);
          return fail(
            e.kind === 'invalid' ? e : new AttemptError('refused', `cannot open a stream: ${(err as Error).message}`, { cause: err }),
          );
        }
        stream = s;
        let started = false;
        // A stream silent for idleMs (no frame either way) is reset: Envoy's stream idle timeout.
        // It bounds streams with no deadline of their own; an active one runs as long as it is used.
        s.setTimeout(this.#options.idleMs, () => {
          if (done || aborted) return;
          s.close(http2.constants.NGHTTP2_CANCEL);
          fail(new AttemptError('timeout', `the stream to ${this.id} was silent for ${this.#options.idleMs} ms (timeouts.idleMs)`));
        });
        s.on('response', (hs) => {
          started = true;
          const status = Number(hs[':status']);
          const out: Headers = {};
          for (const k in hs) if (k[0] !== ':') out[k] = hs[k] as string | string[];
          if (!aborted) h.head(status, out);
        });
        s.on('data', (chunk: Buffer) => {
          if (!aborted && !h.data(chunk)) s.pause();
        });
        let trailers: Headers | undefined;
        s.on('trailers', (t) => {
          trailers = {};
          for (const k in t) if (k[0] !== ':') trailers[k] = t[k] as string | string[];
        });
        s.on('end', () => {
          if (done || aborted) return;
          // Node ends the readable side of a stream the peer reset (RST_STREAM, CANCEL included)
          // or whose connection dropped, as if it had ended: only END_STREAM with no reset code
          // is a complete response. Anything else is a broken one and must reach the caller as such.
          if (s.rstCode !== http2.constants.NGHTTP2_NO_ERROR) {
            return fail(
              new AttemptError(
                'reset',
                `stream reset by ${this.id} after ${started ? 'the response head' : 'the request'} (HTTP/2 code ${s.rstCode})`,
              ),
            );
          }
          done = true;
          h.end(trailers);
        });
        s.on('error', () => undefined);
        s.on('close', () => {
          if (done || aborted) return;
          const code = s.rstCode;
          if (code === http2.constants.NGHTTP2_REFUSED_STREAM && !started)
            fail(new AttemptError('refused', `${this.id} refused the stream`));
          else if (!started && session.destroyed) fail(new AttemptError('reset', `connection to ${this.id} closed`));
          else fail(new AttemptError('reset', `stream reset by ${this.id} (HTTP/2 code ${code})`));
        });
        if (hasBody) {
          if (Buffer.isBuffer(req.body)) s.end(req.body);
          else {
            const body = req.body as Readable;
            body.once('error', () => s.close(http2.constants.NGHTTP2_CANCEL));
            body.pipe(s);
          }
        }
      },
      (err: Error) => {
        // An endpoint that turned out to speak only HTTP/1.1: nothing was sent, so the request goes
        // over HTTP/1.1 when the caller allowed it (protocol prefer-h2).
        if (!aborted && !done && req.protocol === 'prefer-h2' && this.#h1Only) inner = this.#sendH1(req, h);
        else fail(classify(err));
      },
    );
    return {
      abort() {
        if (inner) return inner.abort();
        if (aborted || done) return;
        aborted = true;
        stream?.close(http2.constants.NGHTTP2_CANCEL);
      },
      resume: () => (inner ? inner.resume() : stream?.resume()),
    };
  }
}
