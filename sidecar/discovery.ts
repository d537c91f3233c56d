/**
 * The client of the operator's discovery stream (api/proto/discovery.proto): says who
 * it is, applies each snapshot of upstreams (policies and endpoints) and acknowledges it — or
 * names what was wrong, keeping the last good configuration. When the operator is away the
 * sidecar keeps serving what it has and reconnects with jittered exponential back-off
 * (0.5 s doubling to 30 s), resending the version it holds.
 */
import type { Clock, TimerHandle } from '../lib/clock.ts';
import { GrpcChannel, type GrpcClientCall } from '../lib/grpc-client.ts';
import type { Logger } from '../lib/log.ts';
import type { Random } from '../lib/random.ts';
import type { Snapshot } from '../api/discovery.ts';
import { decodeCertificate, decodeSnapshot, discoveryPaths, encodeCertificateRequest, encodeClientMessage } from '../api/discovery-wire.ts';

export interface DiscoveryOptions {
  address: string;
  node: string;
  clock: Clock;
  random: Random;
  log: Logger;
  /** Apply a snapshot's upstreams; resolves to an error message when refused. */
  apply(upstreams: unknown, version: string, inbound: unknown): Promise<string | undefined>;
  onConnected?(connected: boolean): void;
  /** The mesh's trust bundle, as each snapshot carries it ('' : no mesh). */
  onBundle?(pem: string): void;
  /** The issuer now signing (its SHA-256 fingerprint), as each snapshot carries it. */
  onIssuer?(fingerprint: string): void;
  /**
   * TLS to the discovery service: the trust bundle to verify it with and the name its certificate
   * must carry (the Service's DNS name). Absent: plaintext.
   */
  tls?: { bundlePem: string; serverName: string };
  /** The pod's token, sent with every call (the operator authenticates streams with it or the mesh certificate). */
  token?(): string;
}

export class DiscoveryClient {
  readonly #options: DiscoveryOptions;
  /** TLS: the trust bundle and this sidecar's certificate, read by each new connection. */
  #bundlePem = '';
  #identity: { chainPem: string; keyPem: string } | undefined;
  readonly #channel: GrpcChannel;
  /** The connection was made without a client certificate and one has arrived since: remake it at the next reconnect. */
  #remake = false;
  #call: GrpcClientCall | undefined;
  #version = '';
  #attempt = 0;
  #timer: TimerHandle | undefined;
  #stopped = false;
  #connected = false;

  constructor(o: DiscoveryOptions) {
    this.#options = o;
    const tls = o.tls;
    if (tls) this.#bundlePem = tls.bundlePem;
    this.#channel = new GrpcChannel({
      address: o.address,
      clock: o.clock,
      keepaliveMs: 30_000,
      keepaliveTimeoutMs: 10_000,
      userAgent: 'ballast-sidecar',
      ...(tls ? { tls: () => ({ ca: this.#bundlePem, serverName: tls.serverName, cert: this.#identity }) } : {}),
    });
  }

  /** This sidecar's mesh certificate: presented to the operator from the next connection on. */
  setIdentity(chainPem: string, keyPem: string): void {
    if (!this.#options.tls) return;
    if (!this.#identity) this.#remake = true;
    this.#identity = { chainPem, keyPem };
  }

  /** A new trust bundle (from a snapshot): the operator's next certificate is checked against it. */
  setBundle(pem: string): void {
    if (this.#options.tls && pem) this.#bundlePem = pem;
  }

  #metadata(token = this.#options.token?.()): Record<string, string> {
    return token ? { authorization: `Bearer ${token}` } : {};
  }

  get version(): string {
    return this.#version;
  }

  get connected(): boolean {
    return this.#connected;
  }

  start(): void {
    this.#connect();
  }

  /** Ask the operator for a mesh certificate for the key `csrPem` proves, with the pod's token. */
  async certify(csrPem: string, token: string): Promise<{ chainPem: string; bundlePem: string; spiffeId: string; notAfter: number }> {
    const answer = await this.#channel.unary(
      discoveryPaths.certify,
      encodeCertificateRequest({ csr_pem: csrPem, node: this.#options.node }),
      this.#metadata(token),
      15_000,
    );
    const res = decodeCertificate(answer);
    return { chainPem: res.cert_chain_pem, bundlePem: res.trust_bundle_pem, spiffeId: res.spiffe_id, notAfter: Number(res.not_after_ms) };
  }

  stop(): void {
    this.#stopped = true;
    this.#timer?.cancel();
    this.#call?.cancel();
    this.#channel.close();
  }

  #setConnected(v: boolean): void {
    if (v === this.#connected) return;
    this.#connected = v;
    this.#options.onConnected?.(v);
  }

  #connect(): void {
    if (this.#stopped) return;
    if (this.#remake) {
      this.#remake = false;
      this.#channel.reconnect();
    }
    let call: GrpcClientCall;
    try {
      call = this.#channel.call(discoveryPaths.stream, this.#metadata());
    } catch (err) {
      this.#retryLater((err as Error).message);
      return;
    }
    this.#call = call;
    call.write(encodeClientMessage({ hello: { node: this.#options.node, version: this.#version } }));
    let chain = Promise.resolve();
    call.on('message', (bytes: Buffer) => {
      let snap: Snapshot;
      try {
        snap = decodeSnapshot(bytes);
      } catch (err) {
        call.cancel(`the operator sent a message that is not a Snapshot (${(err as Error).message})`);
        return;
      }
      this.#attempt = 0;
      this.#setConnected(true);
      if (snap.trust_bundle_pem) {
        this.setBundle(snap.trust_bundle_pem);
        this.#options.onBundle?.(snap.trust_bundle_pem);
      }
      if (snap.issuer_fingerprint) this.#options.onIssuer?.(snap.issuer_fingerprint);
      // Apply in order, one at a time.
      chain = chain.then(async () => {
        let error: string | undefined;
        let parsed: unknown;
        let inbound: unknown = [];
        try {
          parsed = JSON.parse(snap.upstreams_json);
          if (snap.inbound_json) inbound = JSON.parse(snap.inbound_json);
        } catch (err) {
          error = `the snapshot is not JSON: ${(err as Error).message}`;
        }
        if (error === undefined) error = await this.#options.apply(parsed, snap.version, inbound);
        if (error === undefined) this.#version = snap.version;
        else this.#options.log.error({ version: snap.version, error }, 'discovery snapshot refused; keeping the last good configuration');
        if (!call.done) call.write(encodeClientMessage({ ack: { version: snap.version, error: error ?? '' } }));
      });
    });
    const retry = (why: string): void => {
      if (this.#call !== call) return;
      this.#call = undefined;
      this.#setConnected(false);
      this.#retryLater(why);
    };
    call.on('error', (err) => retry(err.message));
    call.on('end', () => retry('the server ended the stream'));
  }

  #retryLater(why: string): void {
    if (this.#stopped) return;
    const cap = Math.min(30_000, 500 * 2 ** this.#attempt++);
    const delay = cap / 2 + this.#options.random.next() * (cap / 2);
    this.#options.log.warn(
      { address: this.#options.address, why, retryInMs: Math.round(delay) },
      'discovery stream lost; serving the last good configuration',
    );
    this.#timer = this.#options.clock.setTimeout(() => this.#connect(), delay, { unref: true });
  }
}
