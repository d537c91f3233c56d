/**
 * Requests between members over the peer channel, as etcd forwards leader-only work (lease
 * keep-alives and time-to-live, membership changes, alarms) over its peer transport: the same
 * listener, the same peer TLS and the cluster token, and never a member's client URL (whose
 * certificate a member may have no CA for). One connection per peer, dialled when first needed,
 * requests multiplexed on it by id; every request ends with an answer, an error, or a timeout.
 *
 * Frames as the message stream's (u32 length | u8 kind | payload). The first frame is the
 * handshake `{token, from, to, query: 'rpc'}`; then `{id, method, body}` from the caller and
 * `{id, body}` or `{id, error: {code, message}}` back, JSON.
 */
import { connect, type Socket } from 'node:net';
import * as tls from 'node:tls';
import { BallastError } from '../../lib/errors.ts';
import type { NodeId } from '../raft/types.ts';
import { type TlsFiles, peerClientOptions } from '../tls.ts';

/** Encode one frame (the peer channel's framing: u32 length, u8 kind 0, payload). */
export function frame(payload: Buffer): Buffer {
  const h = Buffer.allocUnsafe(5);
  h.writeUInt32LE(payload.length, 0);
  h[4] = 0;
  return Buffer.concat([h, payload]);
}

/** Splits a byte stream into whole frames (no chunking: RPC payloads are small). */
export class RpcFrames {
  #buf: Buffer = Buffer.alloc(0);

  push(data: Buffer, onFrame: (payload: Buffer) => void): void {
    this.#buf = this.#buf.length === 0 ? data : Buffer.concat([this.#buf, data]);
    while (this.#buf.length >= 5) {
      const len = this.#buf.readUInt32LE(0);
      if (len > 16 << 20) throw new Error(`peer request frame of ${len} bytes is too large`);
      if (this.#buf.length < 5 + len) return;
      const payload = this.#buf.subarray(5, 5 + len);
      this.#buf = this.#buf.subarray(5 + len);
      onFrame(payload);
    }
  }
}

interface Pending {
  resolve(body: unknown): void;
  reject(err: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

export interface RpcClientOptions {
  self: NodeId;
  peer: NodeId;
  url: URL;
  token: string;
  tls?: TlsFiles | undefined;
}

/** The calling side of one peer's request channel. */
export class PeerRpcClient {
  readonly #options: RpcClientOptions;
  #socket: Socket | undefined;
  #ready: Promise<Socket> | undefined;
  #next = 1;
  readonly #pending = new Map<number, Pending>();
  #closed = false;

  constructor(o: RpcClientOptions) {
    this.#options = o;
  }

  get url(): URL {
    return this.#options.url;
  }

  /**
   * Ask the peer; resolves with its answer's body, or rejects with its error (a BallastError
   * with the peer's code), or STORE_ERR_PEER_UNREACHABLE if no answer came within `timeoutMs`.
   */
  async request(method: string, body: unknown, timeoutMs: number): Promise<unknown> {
    const id = this.#next++;
    const answer = new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(
          new BallastError(
            'STORE_ERR_PEER_UNREACHABLE',
            `etcdserver: request timed out (member ${this.#options.peer} at ${this.#options.url.host} did not answer ${method} within ${timeoutMs} ms)`,
          ),
        );
      }, timeoutMs);
      this.#pending.set(id, { resolve, reject, timer });
    });
    try {
      const s = await this.#connect(timeoutMs);
      s.write(frame(Buffer.from(JSON.stringify({ id, method, body }))));
    } catch (err) {
      this.#settle(
        id,
        undefined,
        new BallastError(
          'STORE_ERR_PEER_UNREACHABLE',
          `etcdserver: cannot reach member ${this.#options.peer} at ${this.#options.url.host} over the peer channel: ${(err as Error).message}`,
        ),
      );
    }
    return answer;
  }

  close(): void {
    this.#closed = true;
    this.#socket?.destroy();
  }

  #settle(id: number, body: unknown, err?: Error): void {
    const p = this.#pending.get(id);
    if (!p) return;
    this.#pending.delete(id);
    clearTimeout(p.timer);
    if (err) p.reject(err);
    else p.resolve(body);
  }

  #connect(timeoutMs: number): Promise<Socket> {
    if (this.#socket && !this.#socket.destroyed && this.#ready) return this.#ready;
    if (this.#closed) return Promise.reject(new Error('closed'));
    const o = this.#options;
    const secure = o.url.protocol === 'https:';
    if (secure && !o.tls) return Promise.reject(new Error('the peer URL is https but this member has no peer certificate'));
    const s: Socket = secure
      ? tls.connect({ host: o.url.hostname, port: Number(o.url.port), ...peerClientOptions(o.tls as TlsFiles, o.url.hostname) })
      : connect({ host: o.url.hostname, port: Number(o.url.port), noDelay: true });
    this.#socket = s;
    const reader = new RpcFrames();
    s.on('data', (data: Buffer) => {
      try {
        reader.push(data, (payload) => {
          const m = JSON.parse(payload.toString()) as { id: number; body?: unknown; error?: { code: string; message: string } };
          this.#settle(m.id, m.body, m.error ? new BallastError(m.error.code, m.error.message) : undefined);
        });
      } catch {
        s.destroy();
      }
    });
    s.on('error', () => undefined);
    s.on('close', () => {
      if (this.#socket === s) {
        this.#socket = undefined;
        this.#ready = undefined;
      }
      // Requests in flight on a connection that went away get no answer from it.
      for (const id of [...this.#pending.keys()])
        this.#settle(
          id,
          undefined,
          new BallastError('STORE_ERR_PEER_UNREACHABLE', `etcdserver: the peer channel to member ${o.peer} closed before it answered`),
        );
    });
    this.#ready = new Promise<Socket>((resolve, reject) => {
      const timer = setTimeout(() => {
        s.destroy();
        reject(new Error(`no connection within ${timeoutMs} ms`));
      }, timeoutMs);
      s.once(secure ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        s.write(frame(Buffer.from(JSON.stringify({ token: o.token, from: o.self, to: o.peer, query: 'rpc' }))));
        resolve(s);
      });
      s.once('close', () => {
        clearTimeout(timer);
        reject(new Error('connection closed'));
      });
    });
    return this.#ready;
  }
}

/** What a member does with a request from a peer (it is authenticated by the handshake). */
export type RpcHandler = (from: NodeId, method: string, body: unknown) => Promise<unknown>;

/**
 * Serve requests on an accepted, authenticated peer connection: returns what to do with each
 * frame that follows the handshake.
 */
export function rpcServer(s: Socket, from: NodeId, handler: RpcHandler): (payload: Buffer) => void {
  return (payload) => {
    let m: { id: number; method: string; body: unknown };
    try {
      m = JSON.parse(payload.toString()) as typeof m;
    } catch {
      s.destroy();
      return;
    }
    handler(from, m.method, m.body).then(
      (body) => s.writable && s.write(frame(Buffer.from(JSON.stringify({ id: m.id, body: body ?? null })))),
      (err: unknown) => {
        const e = err as { code?: unknown; message?: string };
        const code = typeof e.code === 'string' ? e.code : 'STORE_ERR_INTERNAL';
        if (s.writable) s.write(frame(Buffer.from(JSON.stringify({ id: m.id, error: { code, message: e.message ?? String(err) } }))));
      },
    );
  };
}
