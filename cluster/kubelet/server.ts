/**
 * The kubelet's own endpoints on the node address:
 *
 * - the kubelet API over TLS (port 10250), as the apiserver calls it for `kubectl logs`:
 *   `GET /containerLogs/<namespace>/<pod>/<container>` with `follow`, `tailLines`,
 *   `limitBytes` and `previous`. Only clients with a certificate from the cluster CA get in
 *   (the apiserver's kubelet-client certificate).
 * - the `kubernetes` Service for pods: a TCP pass-through from `<node address>:6443` to the
 *   apiserver, so in-cluster clients (`KUBERNETES_SERVICE_HOST/PORT`, the projected token and
 *   CA) reach it as in a real cluster. TLS is end to end: the apiserver's certificate names
 *   the node address.
 */
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { createServer as createHttps, type Server as HttpsServer } from 'node:https';
import { connect, createServer as createTcp, type Server as TcpServer, type Socket } from 'node:net';
import type { ServerResponse } from 'node:http';
import type { Logger } from 'pino';

export interface ContainerLog {
  path: string;
  /** The container is still running (a follow keeps streaming until it is not). */
  running: () => boolean;
}

export interface KubeletServerOptions {
  address: string;
  port: number;
  tls: { cert: string; key: string; ca: string };
  /** The log file of a container's current (or previous) run; undefined when there is none. */
  logOf: (namespace: string, pod: string, container: string, previous: boolean) => ContainerLog | undefined;
  log: Logger;
}

const listen = (s: HttpsServer | TcpServer, port: number, host: string) => new Promise<void>((resolve, reject) => {
  s.once('error', reject);
  s.listen(port, host, () => {
    s.off('error', reject);
    resolve();
  });
});

export class KubeletServer {
  readonly #o: KubeletServerOptions;
  #server: HttpsServer | undefined;

  constructor(o: KubeletServerOptions) {
    this.#o = o;
  }

  async start(): Promise<void> {
    const t = this.#o.tls;
    this.#server = createHttps({ cert: readFileSync(t.cert), key: readFileSync(t.key), ca: readFileSync(t.ca), requestCert: true, rejectUnauthorized: true }, (req, res) => {
      const url = new URL(req.url ?? '/', 'https://kubelet');
      const m = /^\/containerLogs\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(url.pathname);
      if (req.method === 'GET' && url.pathname === '/healthz') return void res.end('ok');
      if (req.method !== 'GET' || !m) {
        res.writeHead(404, { 'content-type': 'text/plain' });
        return void res.end(`the process kubelet serves GET /containerLogs/<namespace>/<pod>/<container> and /healthz; not ${req.method} ${url.pathname}\n`);
      }
      const [ns, pod, container] = [m[1], m[2], m[3]].map((s) => decodeURIComponent(s ?? '')) as [string, string, string];
      const log = this.#o.logOf(ns, pod, container, url.searchParams.get('previous') === 'true');
      if (!log || !existsSync(log.path)) {
        res.writeHead(404, { 'content-type': 'text/plain' });
        return void res.end(`container "${container}" in pod "${ns}/${pod}" has no ${url.searchParams.get('previous') === 'true' ? 'previous ' : ''}log on this node\n`);
      }
      const tail = url.searchParams.get('tailLines');
      const limit = url.searchParams.get('limitBytes');
      streamLog(res, log, {
        follow: url.searchParams.get('follow') === 'true',
        tailLines: tail === null ? undefined : Number(tail),
        limitBytes: limit === null ? undefined : Number(limit),
      });
    });
    await listen(this.#server, this.#o.port, this.#o.address);
    this.#o.log.info({ address: `${this.#o.address}:${this.#o.port}` }, 'kubelet API listening (container logs)');
  }

  async stop(): Promise<void> {
    const s = this.#server;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}

/** Write a log file (its last `tailLines`, at most `limitBytes`), then, when following, what the container adds. */
function streamLog(res: ServerResponse, log: ContainerLog, o: { follow: boolean; tailLines: number | undefined; limitBytes: number | undefined }): void {
  res.writeHead(200, { 'content-type': 'text/plain' });
  const whole = readFileSync(log.path);
  let first: Buffer = whole;
  if (o.tailLines !== undefined && o.tailLines >= 0) {
    const text = whole.toString('utf8');
    const lines = (text.endsWith('\n') ? text.slice(0, -1) : text).split('\n');
    first = o.tailLines === 0 || text === '' ? Buffer.alloc(0) : Buffer.from(`${lines.slice(-o.tailLines).join('\n')}\n`);
  }
  let budget = o.limitBytes ?? Number.POSITIVE_INFINITY;
  const write = (chunk: Buffer) => {
    const part = chunk.subarray(0, Math.min(chunk.length, budget));
    budget -= part.length;
    if (part.length > 0) res.write(part);
  };
  write(first);
  if (!o.follow || budget <= 0) return void res.end();
  let offset = whole.length;
  const fd = openSync(log.path, 'r');
  const poll = setInterval(() => {
    const size = statSync(log.path).size;
    if (size > offset) {
      const buf = Buffer.alloc(size - offset);
      readSync(fd, buf, 0, buf.length, offset);
      offset = size;
      write(buf);
    }
    if (budget <= 0 || (!log.running() && statSync(log.path).size === offset)) finish();
  }, 200);
  const finish = () => {
    clearInterval(poll);
    closeSync(fd);
    res.end();
  };
  res.on('close', () => {
    if (!res.writableEnded) finish();
  });
}

/** A TCP pass-through: pods dial `<address>:<port>`, and reach `target`. */
export class TcpForwarder {
  readonly #server: TcpServer;
  readonly #address: string;
  readonly #port: number;
  readonly #open = new Set<Socket>();

  constructor(address: string, port: number, target: { host: string; port: number }) {
    this.#address = address;
    this.#port = port;
    this.#server = createTcp((down) => {
      const up = connect(target);
      this.#open.add(down).add(up);
      down.pipe(up).pipe(down);
      const close = () => {
        down.destroy();
        up.destroy();
        this.#open.delete(down);
        this.#open.delete(up);
      };
      up.on('error', close);
      down.on('error', close);
      up.on('close', close);
      down.on('close', close);
    });
  }

  start(): Promise<void> {
    return listen(this.#server, this.#port, this.#address);
  }

  async stop(): Promise<void> {
    for (const s of this.#open) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
