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

export type Behaviour = (req: IncomingMessage | http2.Http2ServerRequest, res: ServerResponse | http2.Http2ServerResponse, n: number) => void;

export const ok = (body = 'ok'): Behaviour => (_req, res) => {
  (res as ServerResponse).writeHead(200, { 'content-type': 'text/plain', 'content-length': String(Buffer.byteLength(body)) });
  res.end(body);
};

export const status = (code: number, headers: Record<string, string> = {}): Behaviour => (_req, res) => {
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
    const preface = 'PRI * HTTP/2.0';
    this.#server = net.createServer((socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
      socket.on('error', () => undefined);
      socket.once('data', (chunk: Buffer) => {
        socket.pause();
        if (chunk.subarray(0, preface.length).toString('latin1') === preface) {
          this.#h2.emit('connection', replaying(socket, chunk));
          return;
        }
        socket.unshift(chunk);
        this.#h1.emit('connection', socket);
        socket.resume();
      });
    });
    await new Promise<void>((resolve, reject) => {
      this.#server?.once('error', reject);
      this.#server?.listen(port, '127.0.0.1', () => resolve());
    });
    this.port = (this.#server.address() as net.AddressInfo).port;
    return this;
  }

  #handle(req: IncomingMessage | http2.Http2ServerRequest, res: ServerResponse | http2.Http2ServerResponse, h2: boolean): void {
    const s: Seen = { method: req.method ?? '', path: req.url ?? '', headers: { ...req.headers }, bytes: 0, aborted: false, h2 };
    this.seen.push(s);
    req.on('data', (c: Buffer) => { s.bytes += c.length; });
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
