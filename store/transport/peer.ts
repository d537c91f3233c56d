/**
 * Messages between members: one persistent TCP connection per peer (dialled by the sender),
 * framed binary messages, every message of one Ready to a peer in one frame, reconnect with
 * jittered back-off, and a handshake that refuses peers without the cluster token.
 *
 * Frame: u32 length | u8 kind | payload. kind 0 = a whole batch, 1 = a chunk of a large batch
 * (snapshots) with more to come, 2 = its last chunk. Payload: a batch of messages in the binary
 * layout of store/codec.ts, or the JSON handshake as the first frame of a connection.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import * as tls from 'node:tls';
import type { Logger } from 'pino';
import type { Clock, TimerHandle } from '../../lib/clock.ts';
import type { Random } from '../../lib/random.ts';
import { decodeMessages, encodeMessages } from '../codec.ts';
import type { Format } from '../format/formats.ts';
import { PeerRpcClient, type RpcHandler, rpcServer } from './rpc.ts';
import type { Message, NodeId } from '../raft/types.ts';
import { type TlsFiles, peerClientOptions, peerServerContext, watchFiles } from '../tls.ts';

const maxChunk = 4 << 20;
const maxFrame = 256 << 20;
const maxBuffered = 32 << 20;

export interface PeerTransportOptions {
  self: NodeId;
  token: string;
  log: Logger;
  clock: Clock;
  random: Random;
  onMessages(msgs: Message[]): void;
  onUnreachable(id: NodeId): void;
  onSnapshotStatus(id: NodeId, ok: boolean): void;
  onPeerAuthFailure?(remote: string): void;
  /** True for a member removed from the cluster: its connections are refused with "removed". */
  isRemoved(id: NodeId): boolean;
  /** A peer told us this member was removed from the cluster. */
  onRemovedFromCluster(): void;
  /** Peer TLS (etcd's --peer-* flags); used for https peer URLs. */
  tls?: TlsFiles | undefined;
  /** The member table, for a joining member that asks who it is (see {@link queryMembers}). */
  members?(): PeerMember[];
  /** Requests from peers (store/transport/rpc.ts): leader-only work forwarded by followers. */
  onRequest?: RpcHandler;
  /** The format every member reads (store/format/codec.ts): how snapshot metadata is sent. */
  format(): Format;
}

/**
 * A member as the member table query answers it. `clientURLs` is set once the member has
 * published them, that is, once it has run; members before 0.3 leave it out.
 */
export interface PeerMember {
  id: NodeId;
  name: string;
  peerURLs: string[];
  clientURLs?: string[];
}

interface Handshake {
  token: string;
  from: NodeId;
  to: NodeId;
  /**
   * Instead of a message stream: "members" asks once for the member table; "rpc" opens a
   * request channel (store/transport/rpc.ts).
   */
  query?: 'members' | 'rpc';
}

/**
 * Ask a member (at its peer URL) for the cluster's member table, as a member joining an
 * existing cluster does to learn its own id (etcd fetches /members from a peer the same way).
 * The cluster token authenticates the question. Rejects after `timeoutMs`.
 */
export function queryMembers(url: URL, token: string, tlsFiles: TlsFiles | undefined, timeoutMs = 2000): Promise<PeerMember[]> {
  return new Promise((resolve, reject) => {
    const secure = url.protocol === 'https:';
    const s: Socket =
      secure && tlsFiles
        ? tls.connect({ host: url.hostname, port: Number(url.port), ...peerClientOptions(tlsFiles, url.hostname) })
        : connect({ host: url.hostname, port: Number(url.port) });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer from ${url.href} within ${timeoutMs} ms`));
    }, timeoutMs);
    s.on(secure ? 'secureConnect' : 'connect', () => {
      const hs: Handshake = { token, from: '', to: '', query: 'members' };
      for (const b of frames(Buffer.from(JSON.stringify(hs)))) s.write(b);
    });
    const reader = new FrameReader();
    s.on('data', (data) => {
      try {
        reader.push(data, (payload) => {
          clearTimeout(timer);
          s.destroy();
          const r = JSON.parse(payload.toString()) as { members?: PeerMember[] };
          if (r.members) resolve(r.members);
          else reject(new Error(`${url.href} did not answer with a member table`));
        });
      } catch (err) {
        clearTimeout(timer);
        s.destroy();
        reject(err as Error);
      }
    });
    s.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** Splits a byte stream into frames, reassembling chunked ones. */
class FrameReader {
  #buf: Buffer = Buffer.alloc(0);
  #chunks: Buffer[] = [];

  push(data: Buffer, onFrame: (payload: Buffer) => void): void {
    this.#buf = this.#buf.length === 0 ? data : Buffer.concat([this.#buf, data]);
    while (this.#buf.length >= 5) {
      const len = this.#buf.readUInt32LE(0);
      if (len > maxFrame) throw new Error(`peer frame of ${len} bytes exceeds the ${maxFrame}-byte limit`);
      if (this.#buf.length < 5 + len) return;
      const kind = this.#buf[4];
      const payload = this.#buf.subarray(5, 5 + len);
      this.#buf = this.#buf.subarray(5 + len);
      if (kind === 0) onFrame(payload);
      else {
        this.#chunks.push(Buffer.from(payload));
        if (kind === 2) {
          const whole = Buffer.concat(this.#chunks);
          this.#chunks = [];
          onFrame(whole);
        }
      }
    }
  }
}

function frames(payload: Buffer): Buffer[] {
  if (payload.length <= maxChunk) return [header(payload.length, 0), payload];
  const out: Buffer[] = [];
  for (let off = 0; off < payload.length; off += maxChunk) {
    const part = payload.subarray(off, off + maxChunk);
    out.push(header(part.length, off + maxChunk >= payload.length ? 2 : 1), part);
  }
  return out;
}

function header(len: number, kind: number): Buffer {
  const h = Buffer.allocUnsafe(5);
  h.writeUInt32LE(len, 0);
  h[4] = kind;
  return h;
}

/** The outgoing side of one peer link. */
/** How long a peer dial may go unanswered. */
const dialTimeoutMs = 1000;

class PeerLink {
  readonly id: NodeId;
  url: URL;
  #socket: Socket | undefined;
  #ready = false;
  #queue: Message[] = [];
  #flushScheduled = false;
  #retry: TimerHandle | undefined;
  #backoff = 50;
  #stopped = false;
  readonly #transport: PeerTransport;

  constructor(t: PeerTransport, id: NodeId, url: URL) {
    this.#transport = t;
    this.id = id;
    this.url = url;
  }

  /** Connect if not connected (the handshake is how a removed member hears that it was). */
  connect(): void {
    this.#dial();
  }

  send(m: Message): void {
    if (this.#stopped) return;
    this.#queue.push(m);
    if (!this.#socket) this.#dial();
    if (this.#ready && !this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(() => this.#flush());
    }
  }

  #dial(): void {
    if (this.#stopped || this.#socket) return;
    const o = this.#transport.opts;
    const secure = this.url.protocol === 'https:';
    if (secure && !o.tls) {
      o.log.error({ peer: this.id, url: this.url.href }, 'peer URL is https but no --peer-cert-file/--peer-key-file are set');
      return;
    }
    const s: Socket = secure
      ? tls.connect({ host: this.url.hostname, port: Number(this.url.port), ...peerClientOptions(o.tls as TlsFiles, this.url.hostname) })
      : connect({ host: this.url.hostname, port: Number(this.url.port), noDelay: true });
    this.#socket = s;
    // A dial that gets no answer is abandoned after a second (etcd's peer dial timeout), so a
    // peer that came back elsewhere (a rescheduled pod: new address, same name) is redialled,
    // and its name resolved again, within seconds rather than after TCP's SYN retries.
    s.setTimeout(dialTimeoutMs, () => {
      if (!this.#ready) s.destroy();
    });
    s.on(secure ? 'secureConnect' : 'connect', () => {
      s.setTimeout(0);
      s.setNoDelay(true);
      const hs: Handshake = { token: o.token, from: o.self, to: this.id };
      for (const b of frames(Buffer.from(JSON.stringify(hs)))) s.write(b);
      this.#ready = true;
      this.#backoff = 50;
      this.#flush();
    });
    s.on('error', () => undefined);
    // The receiver answers on this socket only to say we were removed from the cluster.
    const reader = new FrameReader();
    s.on('data', (data) => {
      try {
        reader.push(data, (payload) => {
          if ((JSON.parse(payload.toString()) as { removed?: boolean }).removed) o.onRemovedFromCluster();
        });
      } catch {
        s.destroy();
      }
    });
    s.on('close', () => {
      const hadSnap = this.#queue.some((m) => m.type === 'snap');
      this.#socket = undefined;
      this.#ready = false;
      // Undelivered messages are dropped: Raft retransmits what matters.
      this.#queue = [];
      if (hadSnap) o.onSnapshotStatus(this.id, false);
      o.onUnreachable(this.id);
      if (this.#stopped) return;
      const delay = this.#backoff * (0.5 + o.random.next());
      this.#backoff = Math.min(this.#backoff * 2, 2000);
      this.#retry = o.clock.setTimeout(() => this.#dial(), delay, { unref: true });
    });
  }

  #flush(): void {
    this.#flushScheduled = false;
    const s = this.#socket;
    if (!s || !this.#ready || this.#queue.length === 0) return;
    const batch = this.#queue;
    this.#queue = [];
    if (s.writableLength > maxBuffered) {
      // The peer is not keeping up: drop rather than grow memory; Raft will resend.
      this.#transport.opts.onUnreachable(this.id);
      if (batch.some((m) => m.type === 'snap')) this.#transport.opts.onSnapshotStatus(this.id, false);
      return;
    }
    const snaps = batch.filter((m) => m.type === 'snap');
    const parts = frames(encodeMessages(batch, this.#transport.opts.format()));
    s.cork();
    for (let i = 0; i < parts.length; i++) {
      const last = i === parts.length - 1;
      s.write(parts[i] as Buffer, last && snaps.length > 0 ? (err) => this.#transport.opts.onSnapshotStatus(this.id, !err) : undefined);
    }
    s.uncork();
  }

  stop(): void {
    this.#stopped = true;
    this.#retry?.cancel();
    this.#socket?.destroy();
  }
}

export class PeerTransport {
  readonly opts: PeerTransportOptions;
  readonly #links = new Map<NodeId, PeerLink>();
  readonly #servers: Server[] = [];
  readonly #watchers: Array<{ stop(): void }> = [];
  readonly #inbound = new Set<Socket>();
  readonly #rpc = new Map<NodeId, PeerRpcClient>();

  constructor(opts: PeerTransportOptions) {
    this.opts = opts;
  }

  /**
   * Ask a peer over the peer channel (its URL, the peer TLS, the cluster token); resolves with
   * its answer, rejects with its error or STORE_ERR_PEER_UNREACHABLE after `timeoutMs`.
   */
  request(to: NodeId, method: string, body: unknown, timeoutMs: number): Promise<unknown> {
    const link = this.#links.get(to);
    if (!link) return Promise.reject(new Error(`member ${to} is not a peer of this member`));
    let c = this.#rpc.get(to);
    if (!c || c.url.href !== link.url.href) {
      c?.close();
      c = new PeerRpcClient({ self: this.opts.self, peer: to, url: link.url, token: this.opts.token, tls: this.opts.tls });
      this.#rpc.set(to, c);
    }
    return c.request(method, body, timeoutMs);
  }

  /** Listen for peers on each URL (host:port). */
  async listen(urls: URL[]): Promise<void> {
    for (const u of urls) {
      const t = this.opts.tls;
      let server: Server;
      if (u.protocol === 'https:') {
        if (!t) throw new Error(`--listen-peer-urls ${u.href} is https: give --peer-cert-file and --peer-key-file`);
        const secure = tls.createServer(peerServerContext(t), (s) => this.#accept(s));
        // A rotated certificate applies to new connections without a restart.
        this.#watchers.push(
          watchFiles([t.certFile, t.keyFile, t.trustedCaFile].filter(Boolean), () => {
            try {
              secure.setSecureContext(peerServerContext(t));
              this.opts.log.info({ cert: t.certFile }, 'reloaded peer TLS certificate');
            } catch (err) {
              this.opts.log.warn({ err }, 'peer TLS certificate change could not be loaded; keeping the old one');
            }
          }),
        );
        server = secure;
      } else {
        server = createServer((s) => this.#accept(s));
      }
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(Number(u.port), u.hostname, () => resolve());
      });
      this.#servers.push(server);
    }
  }

  /** Set the peers to talk to (everyone but self), keyed by id. */
  setPeers(peers: Map<NodeId, URL>): void {
    for (const [id, url] of peers) {
      if (id === this.opts.self) continue;
      const link = this.#links.get(id);
      if (!link) this.#links.set(id, new PeerLink(this, id, url));
      else if (link.url.href !== url.href) {
        link.stop();
        this.#links.set(id, new PeerLink(this, id, url));
      }
    }
    for (const [id, link] of this.#links) {
      if (!peers.has(id)) {
        link.stop();
        this.#links.delete(id);
      }
    }
  }

  /**
   * Open a connection to every peer that has none. A member that sends nothing (a learner, or a
   * member removed while it was down) otherwise never makes the handshake in which a peer tells
   * it that it was removed, and would sit forever without a leader.
   */
  probe(): void {
    for (const link of this.#links.values()) link.connect();
  }

  send(msgs: readonly Message[]): void {
    for (const m of msgs) {
      const link = this.#links.get(m.to);
      if (link) link.send(m);
      else if (m.type === 'snap') this.opts.onSnapshotStatus(m.to, false);
    }
  }

  #accept(s: Socket): void {
    s.setNoDelay(true);
    this.#inbound.add(s);
    const reader = new FrameReader();
    let authed = false;
    let onRpc: ((payload: Buffer) => void) | undefined;
    s.on('data', (data) => {
      try {
        reader.push(data, (payload) => {
          if (onRpc) return onRpc(payload);
          if (!authed) {
            const hs = JSON.parse(payload.toString()) as Handshake;
            if (
              hs.query === 'rpc' &&
              hs.token === this.opts.token &&
              hs.to === this.opts.self &&
              this.opts.onRequest &&
              !this.opts.isRemoved(hs.from)
            ) {
              onRpc = rpcServer(s, hs.from, this.opts.onRequest);
              return;
            }
            if (hs.query === 'members' && hs.token === this.opts.token && this.opts.members) {
              for (const b of frames(Buffer.from(JSON.stringify({ members: this.opts.members() })))) s.write(b);
              s.end();
              return;
            }
            if (hs.token !== this.opts.token || hs.to !== this.opts.self) {
              this.opts.log.warn(
                { remote: s.remoteAddress, peer: hs.from },
                'refused peer: wrong cluster token or member id (STORE_ERR_PEER_AUTH)',
              );
              this.opts.onPeerAuthFailure?.(`${s.remoteAddress}`);
              s.destroy();
              return;
            }
            if (this.opts.isRemoved(hs.from)) {
              // As etcd: a removed member is told so, and stops.
              for (const b of frames(Buffer.from(JSON.stringify({ removed: true })))) s.write(b);
              s.end();
              return;
            }
            authed = true;
            return;
          }
          this.opts.onMessages(decodeMessages(payload));
        });
      } catch (err) {
        this.opts.log.warn({ err, remote: s.remoteAddress }, 'bad frame from peer; closing the connection');
        s.destroy();
      }
    });
    s.on('error', () => undefined);
    s.on('close', () => this.#inbound.delete(s));
  }

  async stop(): Promise<void> {
    for (const w of this.#watchers) w.stop();
    for (const link of this.#links.values()) link.stop();
    this.#links.clear();
    for (const c of this.#rpc.values()) c.close();
    this.#rpc.clear();
    for (const s of this.#inbound) s.destroy();
    await Promise.all(this.#servers.map((srv) => new Promise<void>((resolve) => srv.close(() => resolve()))));
  }
}
