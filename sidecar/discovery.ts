/**
 * The client of the operator's discovery stream (api/proto/discovery.proto): says who
 * it is, applies each snapshot of upstreams (policies and endpoints) and acknowledges it — or
 * names what was wrong, keeping the last good configuration. When the operator is away the
 * sidecar keeps serving what it has and reconnects with jittered exponential back-off
 * (0.5 s doubling to 30 s), resending the version it holds.
 */
import * as grpc from '@grpc/grpc-js';
import type { Clock, TimerHandle } from '../lib/clock.ts';
import type { Logger } from '../lib/log.ts';
import type { Random } from '../lib/random.ts';
import { MemoryCertificateProvider } from '../lib/cert-provider.ts';
import { type Certificate, type CertificateRequest, type ClientMessage, type Snapshot, discoveryService } from '../api/discovery.ts';

type DiscoveryStub = grpc.Client & {
  Stream(md?: grpc.Metadata): grpc.ClientDuplexStream<ClientMessage, Snapshot>;
  Certify(
    req: CertificateRequest,
    md: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: (err: grpc.ServiceError | null, res?: Certificate) => void,
  ): grpc.ClientUnaryCall;
};

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
  #client: DiscoveryStub;
  /** TLS: the trust bundle and this sidecar's certificate, changed in place (new connections take them). */
  readonly #certs = new MemoryCertificateProvider();
  /** The channel was made without a client certificate and one has arrived since: remake it at the next reconnect. */
  #remake = false;
  #call: grpc.ClientDuplexStream<ClientMessage, Snapshot> | undefined;
  #version = '';
  #attempt = 0;
  #timer: TimerHandle | undefined;
  #stopped = false;
  #connected = false;

  constructor(o: DiscoveryOptions) {
    this.#options = o;
    if (o.tls) this.#certs.setCa(o.tls.bundlePem);
    this.#client = this.#makeClient();
  }

  #makeClient(): DiscoveryStub {
    const o = this.#options;
    const Discovery = discoveryService();
    const creds = o.tls
      ? grpc.experimental.createCertificateProviderChannelCredentials(this.#certs, this.#certs.hasIdentity ? this.#certs : null)
      : grpc.credentials.createInsecure();
    return new Discovery(o.address, creds, {
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      ...(o.tls?.serverName ? { 'grpc.ssl_target_name_override': o.tls.serverName, 'grpc.default_authority': o.tls.serverName } : {}),
    }) as unknown as DiscoveryStub;
  }

  /** This sidecar's mesh certificate: presented to the operator from the next connection on. */
  setIdentity(chainPem: string, keyPem: string): void {
    if (!this.#options.tls) return;
    if (!this.#certs.hasIdentity) this.#remake = true;
    this.#certs.setIdentity(chainPem, keyPem);
  }

  /** A new trust bundle (from a snapshot): the operator's next certificate is checked against it. */
  setBundle(pem: string): void {
    if (this.#options.tls && pem) this.#certs.setCa(pem);
  }

  #metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    const token = this.#options.token?.();
    if (token) md.set('authorization', `Bearer ${token}`);
    return md;
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
  certify(csrPem: string, token: string): Promise<{ chainPem: string; bundlePem: string; spiffeId: string; notAfter: number }> {
    const md = this.#metadata();
    md.set('authorization', `Bearer ${token}`);
    return new Promise((resolve, reject) =>
      this.#client.Certify({ csr_pem: csrPem, node: this.#options.node }, md, { deadline: Date.now() + 15_000 }, (err, res) => {
        if (err || !res) return reject(err ?? new Error('no answer'));
        resolve({
          chainPem: res.cert_chain_pem,
          bundlePem: res.trust_bundle_pem,
          spiffeId: res.spiffe_id,
          notAfter: Number(res.not_after_ms),
        });
      }),
    );
  }

  stop(): void {
    this.#stopped = true;
    this.#timer?.cancel();
    this.#call?.cancel();
    this.#client.close();
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
      this.#client.close();
      this.#client = this.#makeClient();
    }
    const call = this.#client.Stream(this.#metadata());
    this.#call = call;
    call.write({ hello: { node: this.#options.node, version: this.#version } });
    let chain = Promise.resolve();
    call.on('data', (snap: Snapshot) => {
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
        if (!call.destroyed) call.write({ ack: { version: snap.version, error: error ?? '' } });
      });
    });
    const retry = (why: string): void => {
      if (this.#call !== call) return;
      this.#call = undefined;
      this.#setConnected(false);
      if (this.#stopped) return;
      const cap = Math.min(30_000, 500 * 2 ** this.#attempt++);
      const delay = cap / 2 + this.#options.random.next() * (cap / 2);
      this.#options.log.warn(
        { address: this.#options.address, why, retryInMs: Math.round(delay) },
        'discovery stream lost; serving the last good configuration',
      );
      this.#timer = this.#options.clock.setTimeout(() => this.#connect(), delay, { unref: true });
    };
    call.on('error', (err: Error) => retry(err.message));
    call.on('end', () => retry('the server ended the stream'));
  }
}
