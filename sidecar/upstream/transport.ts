/**
 * Connections to one endpoint, and one attempt over them. HTTP/1.1 goes through an undici Pool
 * (keep-alive, its dispatch API: no promise or stream object per request); HTTP/2 and gRPC
 * through one node:http2 session per endpoint (h2c, or TLS with ALPN). Either way an attempt
 * reports its response head, body chunks (with back-pressure), trailers, or a failure named by
 * kind, so the policies above can tell "never reached the server" (safe to retry anything)
 * from "reset mid-request" (safe only for idempotent requests).
 */
import http2, { type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import type { Readable } from 'node:stream';
import { Pool } from 'undici';

export type Headers = Record<string, string | string[] | undefined>;

export type FailureKind = 'connect' | 'refused' | 'reset' | 'timeout' | 'cancelled' | 'protocol';

export class AttemptError extends Error {
  readonly kind: FailureKind;
  constructor(kind: FailureKind, message: string, options?: ErrorOptions) {
    super(message, options);
    this.kind = kind;
  }
}

export interface OutRequest {
  method: string;
  path: string;
  authority: string;
  /** Without hop-by-hop and pseudo headers; HTTP/1.1 requests carry `host`. */
  headers: Headers;
  body: Readable | Buffer | null;
  /** Use HTTP/2 towards the endpoint. */
  h2: boolean;
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

export interface EndpointOptions {
  connectMs: number;
  idleMs: number;
  tls?: TlsOptions;
  /** HTTP/1.1 connections at most. */
  connections: number;
}

const connectCodes = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT', 'ERR_HTTP2_SESSION_ERROR']);

function classify(err: Error & { code?: string; cause?: unknown }): AttemptError {
  if (err instanceof AttemptError) return err;
  const code = err.code ?? (err.cause as { code?: string } | undefined)?.code;
  if (code && connectCodes.has(code)) return new AttemptError('connect', `cannot connect: ${err.message}`, { cause: err });
  if (code === 'UND_ERR_ABORTED' || code === 'ABORT_ERR') return new AttemptError('cancelled', err.message, { cause: err });
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') return new AttemptError('timeout', err.message, { cause: err });
  return new AttemptError('reset', `connection reset: ${err.message}`, { cause: err });
}

/** One upstream endpoint's connections. */
export class EndpointTransport {
  readonly id: string;
  readonly #o: EndpointOptions;
  readonly #origin: string;
  #pool: Pool | undefined;
  #session: ClientHttp2Session | undefined;
  #sessionReady: Promise<ClientHttp2Session> | undefined;
  #closed = false;

  constructor(id: string, o: EndpointOptions) {
    this.id = id;
    this.#o = o;
    this.#origin = `${o.tls ? 'https' : 'http'}://${id}`;
  }

  send(req: OutRequest, h: AttemptHandlers): AttemptControl {
    return req.h2 ? this.#sendH2(req, h) : this.#sendH1(req, h);
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
      const tls = this.#o.tls;
      this.#pool = new Pool(this.#origin, {
        connections: this.#o.connections,
        pipelining: 1,
        // HTTP/1.1 means HTTP/1.1: undici would otherwise take h2 when a TLS endpoint offers it.
        allowH2: false,
        keepAliveTimeout: 30_000,
        headersTimeout: 0,
        bodyTimeout: this.#o.idleMs,
        connect: { timeout: this.#o.connectMs, ...(tls ? { ca: tls.ca, servername: tls.serverName, rejectUnauthorized: !tls.insecureSkipVerify } : {}) },
      });
    }
    return this.#pool;
  }

  #sendH1(req: OutRequest, h: AttemptHandlers): AttemptControl {
    let ctl: { abort(reason?: Error): void; resume(): void; pause(): void } | undefined;
    let aborted = false;
    let started = false;
    let finished = false;
    // The stack has put `host` in the headers already.
    this.#h1().dispatch({ path: req.path, method: req.method, headers: req.headers as Record<string, string>, body: req.body, blocking: false }, {
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
        if (!aborted) h.end(trailers && Object.keys(trailers).length > 0 ? trailers as Headers : undefined);
      },
      onResponseError(_c, err) {
        finished = true;
        if (aborted) return;
        const e = classify(err);
        // A reset after the head is a broken body, not a retryable failure: report it as such.
        h.error(started && e.kind === 'connect' ? new AttemptError('reset', e.message, { cause: e }) : e);
      },
    });
    return {
      abort() {
        if (aborted || finished) return;
        aborted = true;
        ctl?.abort(new AttemptError('cancelled', 'attempt cancelled'));
      },
      resume: () => ctl?.resume(),
    };
  }

  #h2session(): Promise<ClientHttp2Session> {
    if (this.#session && !this.#session.closed && !this.#session.destroyed) return Promise.resolve(this.#session);
    if (this.#sessionReady) return this.#sessionReady;
    const tls = this.#o.tls;
    const p = new Promise<ClientHttp2Session>((resolve, reject) => {
      const s = http2.connect(this.#origin, tls ? { ca: tls.ca, servername: tls.serverName, rejectUnauthorized: !tls.insecureSkipVerify, ALPNProtocols: ['h2'] } : {});
      const timer = setTimeout(() => {
        s.destroy();
        reject(new AttemptError('connect', `cannot connect to ${this.id} within ${this.#o.connectMs} ms`));
      }, this.#o.connectMs);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        reject(new AttemptError('connect', `cannot connect to ${this.id}: ${err.message}`, { cause: err }));
      };
      s.once('error', fail);
      s.once('connect', () => {
        clearTimeout(timer);
        s.off('error', fail);
        s.on('error', () => undefined); // per-stream errors are reported on the streams
        s.setTimeout(this.#o.idleMs, () => s.close());
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
    let aborted = false;
    let done = false;
    const fail = (e: AttemptError): void => {
      if (done || aborted) return;
      done = true;
      h.error(e);
    };
    if (this.#closed) {
      queueMicrotask(() => fail(new AttemptError('connect', `endpoint ${this.id} was removed`)));
      return { abort() { aborted = true; }, resume() {} };
    }
    this.#h2session().then((session) => {
      if (aborted) return;
      const headers: http2.OutgoingHttpHeaders = { ...req.headers, ':method': req.method, ':path': req.path, ':authority': req.authority, ':scheme': this.#o.tls ? 'https' : 'http' };
      const hasBody = req.body !== null;
      let s: ClientHttp2Stream;
      try {
        s = session.request(headers, { endStream: !hasBody });
      } catch (err) {
        return fail(new AttemptError('refused', `cannot open a stream: ${(err as Error).message}`, { cause: err }));
      }
      stream = s;
      let started = false;
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
        done = true;
        h.end(trailers);
      });
      s.on('error', () => undefined);
      s.on('close', () => {
        if (done || aborted) return;
        const code = s.rstCode;
        if (code === http2.constants.NGHTTP2_REFUSED_STREAM && !started) fail(new AttemptError('refused', `${this.id} refused the stream`));
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
    }, (err: Error) => fail(classify(err)));
    return {
      abort() {
        if (aborted || done) return;
        aborted = true;
        stream?.close(http2.constants.NGHTTP2_CANCEL);
      },
      resume: () => stream?.resume(),
    };
  }
}
