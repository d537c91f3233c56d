/**
 * A listener that speaks HTTP/1.1 and HTTP/2 on one port: cleartext connections are told apart
 * by the HTTP/2 connection preface (h2c with prior knowledge, what gRPC clients send); TLS ones
 * by ALPN. Closing drains: the port stops accepting, idle connections close, HTTP/2 sessions
 * get GOAWAY, and requests in flight have `drainMs` to finish before their connections go.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer as createH1 } from '../../lib/node-http.ts';
import http2, { type Http2ServerRequest, type Http2ServerResponse, type Http2Session } from 'node:http2';
import net, { type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import tls, { type TLSSocket } from 'node:tls';
import { parseSpiffeId, uriSans } from '../../api/mesh.ts';
import { type DownRes, asDownRes } from '../http.ts';

export type Handler = (req: IncomingMessage | Http2ServerRequest, res: DownRes, isH2: boolean) => void;
/** An HTTP/1.1 request asking to switch protocols (Upgrade: websocket, ...): the raw socket is handed over. */
export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

export interface Listener {
  readonly address: string;
  readonly port: number;
  close(drainMs: number): Promise<void>;
}

const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

/** Mesh mTLS on a listener: a connection that opens with a TLS handshake is terminated with the sidecar's certificate. */
export interface ListenerMesh {
  /** The sidecar's certificate chain, key, trust bundle and trust domain; undefined until it has one. */
  material(): { chainPem: string; keyPem: string; bundlePem: string; trustDomain: string } | undefined;
  /** A connection was accepted (`mtls`, with the caller's identity, or `plaintext`) or refused (the reason). */
  count(security: 'mtls' | 'plaintext', result: string, detail?: string): void;
}

const peerKey = Symbol.for('ballast.peerIdentity');

/** The mesh identity of the caller of a request that came over mTLS ('' when plaintext). */
export function peerIdentity(req: { socket?: unknown }): string {
  const s = req.socket as Record<symbol, unknown> | undefined;
  return (s?.[peerKey] as string | undefined) ?? '';
}

export function splitAddress(addr: string): { host: string; port: number } {
  const i = addr.lastIndexOf(':');
  return { host: addr.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(addr.slice(i + 1)) };
}

/** A Duplex over `socket` whose readable side starts with `first` (bytes already read). */
export function replaying(socket: Socket, first: Buffer): Duplex {
  const d = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, _enc, cb) {
      socket.write(chunk, cb);
    },
    final(cb) {
      socket.end(cb);
    },
    destroy(err, cb) {
      socket.destroy(err ?? undefined);
      cb(err);
    },
  });
  d.push(first);
  socket.on('data', (c: Buffer) => {
    if (!d.push(c)) socket.pause();
  });
  socket.on('end', () => d.push(null));
  socket.on('close', () => d.destroy());
  // What servers ask of a connection.
  Object.defineProperties(d, {
    remoteAddress: { get: () => socket.remoteAddress },
    remotePort: { get: () => socket.remotePort },
    remoteFamily: { get: () => socket.remoteFamily },
    localAddress: { get: () => socket.localAddress },
    localPort: { get: () => socket.localPort },
  });
  (d as unknown as { setNoDelay: (v?: boolean) => void }).setNoDelay = (v) => socket.setNoDelay(v);
  (d as unknown as { setKeepAlive: (v?: boolean, ms?: number) => void }).setKeepAlive = (v, ms) => socket.setKeepAlive(v, ms);
  (d as unknown as { setTimeout: (ms: number, cb?: () => void) => void }).setTimeout = (ms, cb) => socket.setTimeout(ms, cb);
  socket.resume();
  return d;
}

export interface ServeOptions {
  tls?: { cert: Buffer; key: Buffer };
  upgrade?: UpgradeHandler;
  mesh?: ListenerMesh;
}

/** HTTP service of connections accepted elsewhere (a listener's, or the interception listeners' by destination). */
export interface Served {
  accept(socket: Socket): void;
  /** Drain: idle connections close, HTTP/2 sessions get GOAWAY, the rest have `drainMs`. */
  close(drainMs: number): Promise<void>;
}

export function serve(handler: Handler, o: ServeOptions = {}): Served {
  const sockets = new Set<Socket>();
  const sessions = new Set<Http2Session>();
  const h1 = createH1(
    { keepAliveTimeout: 65_000, requestTimeout: 0, headersTimeout: 60_000 },
    (req: IncomingMessage, res: ServerResponse) => handler(req, asDownRes(res), false),
  );
  const h2 = o.tls
    ? http2.createSecureServer(
        { cert: o.tls.cert, key: o.tls.key, allowHTTP1: true },
        (req: Http2ServerRequest, res: Http2ServerResponse) => handler(req, asDownRes(res), req.httpVersionMajor === 2),
      )
    : http2.createServer({}, (req: Http2ServerRequest, res: Http2ServerResponse) => handler(req, asDownRes(res), true));
  h2.on('session', (s: Http2Session) => {
    sessions.add(s);
    s.once('close', () => sessions.delete(s));
  });
  h2.on('sessionError', () => undefined);
  if (o.upgrade) {
    const up = o.upgrade;
    h1.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => up(req, socket, head));
  }
  h1.on('clientError', (err: Error & { rawPacket?: Buffer }, socket) => {
    // Bytes that are neither the HTTP/2 preface nor an HTTP/1.x request line: no HTTP/1 client
    // sent them, so no HTTP/1 answer is owed (a client that meant HTTP/2 would take one for a
    // broken frame). Close, as an HTTP/2 server closes on an invalid preface.
    const first = err.rawPacket?.subarray(0, 1024).toString('latin1').split('\n', 1)[0] ?? '';
    if (err.rawPacket && !/ HTTP\/1\.[01]\r?$/.test(first)) return void socket.destroy();
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
  });
  // Mesh mTLS: one TLS server whose certificate follows the sidecar's (setSecureContext on renewal);
  // verified connections go on, decrypted, to the same HTTP/1.1 and HTTP/2 servers by ALPN.
  let meshTls: tls.Server | undefined;
  let meshServed: object | undefined;
  const meshServer = (mesh: ListenerMesh): tls.Server | undefined => {
    const m = mesh.material();
    if (!m) return undefined;
    const opts = { cert: m.chainPem, key: m.keyPem, ca: m.bundlePem };
    if (!meshTls) {
      const t = tls.createServer({ ...opts, requestCert: true, rejectUnauthorized: true, ALPNProtocols: ['h2', 'http/1.1'] });
      t.on('tlsClientError', (err: Error & { code?: string }) =>
        mesh.count('mtls', err.code === 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE' ? 'no-client-certificate' : 'handshake', err.message),
      );
      t.on('secureConnection', (ts: TLSSocket) => {
        ts.on('error', () => undefined);
        const td = mesh.material()?.trustDomain;
        const ids = uriSans(ts.getPeerCertificate().subjectaltname);
        const id = ids.find((u) => parseSpiffeId(u)?.trustDomain === td);
        if (!id) {
          mesh.count('mtls', 'trust-domain', ids.join(',') || 'no SPIFFE ID');
          return void ts.destroy();
        }
        (ts as unknown as Record<symbol, unknown>)[peerKey] = id;
        mesh.count('mtls', 'accepted', id);
        if (ts.alpnProtocol === 'h2') h2.emit('connection', ts);
        else h1.emit('connection', ts);
      });
      meshTls = t;
      meshServed = m;
    } else if (meshServed !== m) {
      meshTls.setSecureContext(opts);
      meshServed = m;
    }
    return meshTls;
  };
  const accept = (socket: Socket): void => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    if (o.tls) {
      h2.emit('connection', socket);
      return;
    }
    // Peek at the first bytes: a TLS handshake (mesh mTLS), the HTTP/2 preface, or HTTP/1.x.
    let seen: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
      if (o.mesh && seen[0] === 0x16) {
        socket.off('data', onData);
        socket.pause();
        const t = meshServer(o.mesh);
        if (!t) {
          o.mesh.count('mtls', 'no-certificate', 'this sidecar has no mesh certificate yet');
          return void socket.destroy();
        }
        t.emit('connection', replaying(socket, seen));
        return;
      }
      const n = Math.min(seen.length, preface.length);
      const isH2 = seen.subarray(0, n).equals(preface.subarray(0, n));
      if (isH2 && seen.length < preface.length) return; // wait for the whole preface
      socket.off('data', onData);
      socket.pause();
      o.mesh?.count('plaintext', 'accepted');
      if (isH2) {
        // node:http2 reads a net.Socket's handle directly, past anything unshifted: hand it a
        // stream that starts with the bytes already read instead.
        h2.emit('connection', replaying(socket, seen));
        return;
      }
      socket.unshift(seen);
      h1.emit('connection', socket);
      socket.resume();
    };
    socket.on('data', onData);
  };
  return {
    accept,
    async close(drainMs: number) {
      h1.closeIdleConnections();
      for (const s of sessions) s.close();
      const deadline = setTimeout(() => {
        for (const s of sockets) s.destroy();
      }, drainMs);
      deadline.unref();
      // Keep closing connections as they go idle.
      const sweep = setInterval(() => h1.closeIdleConnections(), 100);
      sweep.unref();
      await Promise.all([...sockets].map((s) => (s.destroyed ? undefined : new Promise((resolve) => s.once('close', resolve)))));
      clearInterval(sweep);
      clearTimeout(deadline);
    },
  };
}

export async function listen(addr: string, handler: Handler, o: ServeOptions = {}): Promise<Listener> {
  const served = serve(handler, o);
  return bind(net.createServer({ noDelay: true }, served.accept), addr, (drainMs) => served.close(drainMs));
}

/** Listen on `addr`; closing stops accepting and waits for `drain` (the connections' own ending). */
export async function bind(server: net.Server, addr: string, drain: (drainMs: number) => Promise<void>): Promise<Listener> {
  const { host, port } = splitAddress(addr);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = (server.address() as net.AddressInfo).port;
  return {
    address: `${host}:${bound}`,
    port: bound,
    async close(drainMs: number) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      await Promise.all([closed, drain(drainMs)]);
    },
  };
}
