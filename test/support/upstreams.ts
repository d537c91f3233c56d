/**
 * Real upstream servers on loopback for the sidecar's tests and benchmarks: HTTP/1.1 and h2c on
 * one port, each request handled by a behaviour the test sets (and can change) — answer,
 * fail with a status, delay, hold until released, or close the connection. Every request is
 * recorded (method, path, headers, body length), and aborted ones are noticed.
 */
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import http2 from 'node:http2';
import net, { type Socket } from 'node:net';
import { replaying } from '../../sidecar/server/listener.ts';

export interface Seen {
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  bytes: number;
  aborted: boolean;
  h2: boolean;
}

export type Behaviour = (
  req: IncomingMessage | http2.Http2ServerRequest,
  res: ServerResponse | http2.Http2ServerResponse,
  n: number,
) => void;

export const ok =
  (body = 'ok'): Behaviour =>
  (_req, res) => {
    (res as ServerResponse).writeHead(200, { 'content-type': 'text/plain', 'content-length': String(Buffer.byteLength(body)) });
    res.end(body);
  };

export const status =
  (code: number, headers: Record<string, string> = {}): Behaviour =>
  (_req, res) => {
    (res as ServerResponse).writeHead(code, { 'content-type': 'text/plain', ...headers });
    res.end(`status ${code}`);
  };

export class TestUpstream {
  readonly name: string;
  port = 0;
  behaviour: Behaviour;
  seen: Seen[] = [];
  #server: net.Server | undefined;
  readonly #sockets = new Set<Socket>();
  #h1 = createServer((req, res) => this.#handle(req, res, false));
  #h2 = http2.createServer({}, (req, res) => this.#handle(req, res, true));
  /** Requests held by {@link hold}; release them with {@link releaseAll}. */
  held: Array<() => void> = [];

  constructor(name: string, behaviour: Behaviour = ok()) {
    this.name = name;
    this.behaviour = behaviour;
    this.#h2.on('sessionError', () => undefined);
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(port = 0): Promise<this> {
    this.#server = await listenSniffing(this.#h1, this.#h2, this.#sockets, port);
    this.port = (this.#server.address() as net.AddressInfo).port;
    return this;
  }

  #handle(req: IncomingMessage | http2.Http2ServerRequest, res: ServerResponse | http2.Http2ServerResponse, h2: boolean): void {
    const s: Seen = { method: req.method ?? '', path: req.url ?? '', headers: { ...req.headers }, bytes: 0, aborted: false, h2 };
    this.seen.push(s);
    req.on('data', (c: Buffer) => {
      s.bytes += c.length;
    });
    res.on('close', () => {
      if (!res.writableFinished) s.aborted = true;
    });
    this.behaviour(req, res, this.seen.length);
  }

  /** Hold each request until released. */
  hold(then: Behaviour = ok()): void {
    this.behaviour = (req, res, n) => this.held.push(() => then(req, res, n));
  }

  releaseAll(): void {
    const h = this.held;
    this.held = [];
    for (const f of h) f();
  }

  /** Stop: close the port and every connection at once (a crash, as far as clients can tell). */
  async stop(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => (this.#server ? this.#server.close(() => resolve()) : resolve()));
  }
}

export async function startUpstreams(n: number, behaviour?: Behaviour): Promise<TestUpstream[]> {
  return Promise.all(Array.from({ length: n }, (_, i) => new TestUpstream(`u${i}`, behaviour).start()));
}

/**
 * A TCP server on 127.0.0.1 that hands a connection opening with the HTTP/2 preface to `h2`
 * (h2c with prior knowledge) and any other to `h1` (every one, when `h2` is undefined: an
 * HTTP/1.1-only server answers the preface as a bad request); open sockets are kept in `sockets`.
 */
export async function listenSniffing(h1: net.Server, h2: net.Server | undefined, sockets: Set<Socket>, port = 0): Promise<net.Server> {
  const preface = 'PRI * HTTP/2.0';
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.once('data', (chunk: Buffer) => {
      socket.pause();
      if (h2 && chunk.subarray(0, preface.length).toString('latin1') === preface) {
        h2.emit('connection', replaying(socket, chunk));
        return;
      }
      socket.unshift(chunk);
      h1.emit('connection', socket);
      socket.resume();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return server;
}
