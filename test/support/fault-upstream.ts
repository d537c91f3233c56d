/**
 * An echo upstream that fails on request, for the sidecar's byte-exactness property test:
 * HTTP/1.1 and h2c on one port (or HTTP/1.1 only, refusing the HTTP/2 preface as a plain HTTP/1.1
 * server does), plain HTTP and gRPC. It answers with exactly the bytes it received (streamed
 * back as they come, or after the whole body), so a caller that gets a success can check both
 * directions at once: a truncated or empty request body comes back truncated or empty.
 *
 * What it does with a request is named by the header `x-fault-<name>` (each server of a set has
 * its own name, so one request can meet a different fault at each endpoint it is tried on):
 *   ok              echo
 *   slow:<ms>       wait, then echo
 *   503             read the body, answer 503 (gRPC: trailers-only UNAVAILABLE)
 *   reset-before    read part of the body, then reset (the connection, or the HTTP/2 stream)
 *   reset-after     send the head and part of the echo, then reset
 *   drop-after      HTTP/2: the head and part of the echo, then drop the whole connection
 */
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import http2, { type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import type net from 'node:net';
import type { Socket } from 'node:net';
import { listenSniffing } from './upstreams.ts';

type Req = IncomingMessage | Http2ServerRequest;
type Res = ServerResponse | Http2ServerResponse;

export class FaultUpstream {
  readonly name: string;
  readonly h1Only: boolean;
  port = 0;
  /** Requests seen, and how many of them were answered 2xx in full. */
  seen = 0;
  #server: net.Server | undefined;
  readonly #sockets = new Set<Socket>();
  readonly #h1 = createServer({ requestTimeout: 0 }, (req, res) => this.#handle(req, res));
  readonly #h2 = http2.createServer({}, (req, res) => this.#handle(req, res));

  constructor(name: string, o: { h1Only?: boolean } = {}) {
    this.name = name;
    this.h1Only = o.h1Only ?? false;
    this.#h2.on('sessionError', () => undefined);
    this.#h2.on('stream', (s) => s.on('error', () => undefined));
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    this.#server = await listenSniffing(this.#h1, this.h1Only ? undefined : this.#h2, this.#sockets);
    this.port = (this.#server.address() as net.AddressInfo).port;
    return this;
  }

  async stop(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => (this.#server ? this.#server.close(() => resolve()) : resolve()));
  }

  #handle(req: Req, res: Res): void {
    this.seen++;
    req.on('error', () => undefined);
    res.on('error', () => undefined);
    const spec = String(req.headers[`x-fault-${this.name}`] ?? 'ok');
    const [fault = 'ok', arg = '0'] = spec.split(':');
    const isGrpc = String(req.headers['content-type'] ?? '').startsWith('application/grpc');
    const h2 = req.httpVersionMajor === 2;
    const reset = (drop = false): void => {
      if (h2) {
        const stream = (req as Http2ServerRequest).stream;
        // destroy(err): RST_STREAM INTERNAL_ERROR with no END_STREAM before it (close() would
        // end the stream first); or the whole connection.
        if (drop) stream.session?.destroy();
        else stream.destroy(new Error('fault: reset'));
      } else req.socket.destroy();
    };
    const chunks: Buffer[] = [];
    let received = 0;
    const streamBack = fault === 'ok' && !isGrpc && this.seen % 2 === 0;
    const out = res as ServerResponse;
    const head = (): void => {
      const headers: Record<string, string> = isGrpc
        ? { 'content-type': 'application/grpc' }
        : { 'content-type': 'application/octet-stream' };
      out.writeHead(200, headers);
    };
    if (streamBack) head();
    req.on('data', (c: Buffer) => {
      received += c.length;
      if (fault === 'reset-before' && received > Number(arg)) return reset();
      if (streamBack) out.write(c);
      else chunks.push(c);
    });
    req.on('end', () => {
      if (fault === 'reset-before') return reset();
      const body = Buffer.concat(chunks);
      const answer = (): void => {
        if (streamBack) return void res.end();
        if (fault === '503') {
          if (isGrpc) {
            res.statusCode = 200;
            res.setHeader('content-type', 'application/grpc');
            res.setHeader('grpc-status', '14');
            res.setHeader('grpc-message', 'fault: unavailable');
            return void res.end();
          }
          out.writeHead(503, { 'content-type': 'text/plain' });
          return void res.end('fault: 503');
        }
        head();
        if (fault === 'reset-after' || fault === 'drop-after') {
          out.write(body.subarray(0, Math.max(1, Math.floor(body.length / 2))));
          // Let the head and the half reach the wire before the reset.
          return void setTimeout(() => reset(fault === 'drop-after'), 5);
        }
        if (isGrpc) (res as Http2ServerResponse).addTrailers({ 'grpc-status': '0' });
        res.end(body);
      };
      if (fault === 'slow') setTimeout(answer, Number(arg));
      else answer();
    });
  }
}

export async function startFaultUpstreams(names: string[], o: { h1Only?: boolean } = {}): Promise<FaultUpstream[]> {
  return Promise.all(names.map((n) => new FaultUpstream(n, o).start()));
}
