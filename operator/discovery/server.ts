/**
 * The discovery service: sidecars open one stream each (Hello: who they are), and get a
 * snapshot of what their namespace's policies that select their pod configure
 * (operator/specs/discovery.ts) at once and again
 * whenever it changes. Every operator replica serves it from its own informer caches (reads
 * only, so no leader is needed); a change is coalesced for `debounceMs` before snapshots are
 * rebuilt, and a sidecar is sent only a version it does not already hold. Acks that name an
 * error are logged and counted: the sidecar keeps its last good configuration. Every ack is
 * reported (`onAck`): the operator records it on the sidecar's pod, where the leader's status
 * writer reads it (a stream may be held by any replica).
 */
import * as grpc from '@grpc/grpc-js';
import type { Clock, TimerHandle } from '../../lib/clock.ts';
import type { Logger } from '../../lib/log.ts';
import type { Metrics } from '../../lib/metrics.ts';
import {
  type Certificate,
  type CertificateRequest,
  type ClientMessage,
  type Snapshot as WireSnapshot,
  discoveryService,
} from '../../api/discovery.ts';
import { isBallastError } from '../../lib/errors.ts';
import { spiffeId } from '../../api/mesh.ts';
import type { Certified } from '../mesh/issuer.ts';
import type { V1Pod } from '@kubernetes/client-node';
import type { GatewayRoute, ReferenceGrant } from '../../api/gateway.ts';
import { type Attached, translateRoute } from '../specs/gateway.ts';
import { type DiscoveryView, type Snapshot, buildSnapshot } from '../specs/discovery.ts';

/** A read-only cache of one kind (a SharedInformer, or a list in a test). */
export interface Cache<T> {
  list(): readonly T[];
  onChange(fn: (key: string) => void): void;
}

export interface DiscoveryServerOptions {
  policies: Cache<DiscoveryView['policies'][number]>;
  services: Cache<DiscoveryView['services'][number]>;
  slices: Cache<DiscoveryView['slices'][number]>;
  /** Injected pods, for their labels (policies select by them); absent: policies with a selector apply to no one. */
  sidecars?: Cache<V1Pod>;
  /** Gateway API routes and ReferenceGrants (absent: the Gateway API CRDs are not installed). */
  gateway?: { httpRoutes: Cache<GatewayRoute>; grpcRoutes: Cache<GatewayRoute>; grants: Cache<ReferenceGrant> };
  clock: Clock;
  log: Logger;
  metrics: Metrics;
  debounceMs?: number;
  /** A sidecar acknowledged (error '') or refused a version; `pod` from its node id (namespace/pod). */
  onAck?: (namespace: string, pod: string, version: string, error: string) => void;
  /** The mesh (absent: Certify answers UNIMPLEMENTED and snapshots carry no trust bundle). */
  mesh?: Mesh;
  /**
   * With the mesh: serve TLS with a certificate for these DNS names (the discovery Service's) and
   * authenticate every stream: by the sidecar's mesh certificate, else its pod's token. Absent or
   * empty: plaintext, unauthenticated.
   */
  tlsNames?: string[];
}

/** What the discovery service needs of the mesh issuer (operator/mesh/issuer.ts). */
export interface Mesh {
  readonly trustDomain: string;
  readonly bundlePem: string;
  /** The issuer now signing (sidecars holding a certificate from another renew soon). */
  readonly issuerFingerprint: string;
  onChange(fn: () => void): void;
  certify(token: string, node: string, csrPem: string): Promise<Certified>;
  authenticate(token: string, node: string): Promise<{ namespace: string; serviceAccount: string; pod: string }>;
  verifyPeer(raw: Buffer | undefined): { namespace: string; serviceAccount: string } | undefined;
  serverCredentials(dnsNames: string[]): Promise<grpc.ServerCredentials>;
}

const refusalStatus: Record<string, grpc.status> = {
  OPERATOR_ERR_MESH_TOKEN_MISSING: grpc.status.UNAUTHENTICATED,
  OPERATOR_ERR_MESH_TOKEN_INVALID: grpc.status.UNAUTHENTICATED,
  OPERATOR_ERR_MESH_TOKEN_AUDIENCE: grpc.status.UNAUTHENTICATED,
  OPERATOR_ERR_MESH_NOT_A_POD: grpc.status.PERMISSION_DENIED,
  OPERATOR_ERR_MESH_WRONG_POD: grpc.status.PERMISSION_DENIED,
  OPERATOR_ERR_MESH_CSR_INVALID: grpc.status.INVALID_ARGUMENT,
  OPERATOR_ERR_MESH_ISSUER_UNAVAILABLE: grpc.status.UNAVAILABLE,
};

interface Stream {
  node: string;
  namespace: string;
  pod: string;
  sent: string;
  sentBundle: string;
  sentIssuer: string;
  call: grpc.ServerDuplexStream<ClientMessage, WireSnapshot>;
}

export class DiscoveryServer {
  readonly #options: DiscoveryServerOptions;
  readonly #server = new grpc.Server({
    'grpc.keepalive_time_ms': 30_000,
    'grpc.keepalive_permit_without_calls': 1,
    // Nothing reads channelz (its service is not registered): no per-call bookkeeping for it.
    'grpc.enable_channelz': 0,
  });
  readonly #streams = new Set<Stream>();
  #timer: TimerHandle | undefined;
  readonly #metrics;

  constructor(o: DiscoveryServerOptions) {
    this.#options = o;
    this.#metrics = {
      streams: o.metrics.gauge('ballast_operator_discovery_streams', "Sidecars connected to this replica's discovery service."),
      snapshots: o.metrics.counter('ballast_operator_discovery_snapshots_total', 'Snapshots sent to sidecars.'),
      authenticated: o.metrics.counter(
        'ballast_operator_discovery_authenticated_streams_total',
        'Discovery streams accepted over TLS, by how the sidecar proved its pod: certificate or token.',
        ['by'],
      ),
      refused: o.metrics.counter(
        'ballast_operator_discovery_refused_streams_total',
        'Discovery streams refused: the sidecar could not prove it runs in the pod it named.',
      ),
      nacks: o.metrics.counter(
        'ballast_operator_discovery_nacks_total',
        'Snapshots a sidecar refused (it keeps its last good configuration).',
      ),
    };
    this.#metrics.streams.set(0);
    this.#metrics.snapshots.inc(0);
    this.#metrics.nacks.inc(0);
    this.#metrics.refused.inc(0);
    const changed = (): void => this.#schedule();
    o.policies.onChange(changed);
    o.services.onChange(changed);
    o.slices.onChange(changed);
    o.sidecars?.onChange(changed);
    o.mesh?.onChange(changed);
    o.gateway?.httpRoutes.onChange(changed);
    o.gateway?.grpcRoutes.onChange(changed);
    o.gateway?.grants.onChange(changed);
    this.#server.addService(discoveryService().service, {
      Stream: (call: grpc.ServerDuplexStream<ClientMessage, WireSnapshot>) => this.#open(call),
      Certify: (call: grpc.ServerUnaryCall<CertificateRequest, Certificate>, cb: grpc.sendUnaryData<Certificate>) =>
        void this.#certify(call, cb),
    });
  }

  /** Listen on host:port (port 0: any); resolves to the port. */
  async listen(address: string): Promise<number> {
    const { mesh, tlsNames } = this.#options;
    const creds = mesh && tlsNames?.length ? await mesh.serverCredentials(tlsNames) : grpc.ServerCredentials.createInsecure();
    return new Promise((resolve, reject) => this.#server.bindAsync(address, creds, (err, port) => (err ? reject(err) : resolve(port))));
  }

  /** With TLS: who the stream's sidecar is, and that it runs in the pod it names; throws a gRPC status. */
  async #authenticate(call: grpc.ServerDuplexStream<ClientMessage, WireSnapshot>, namespace: string, pod: string): Promise<string> {
    const mesh = this.#options.mesh;
    if (!mesh || !this.#options.tlsNames?.length) return 'none';
    // A mesh certificate proves the namespace and ServiceAccount: the pod named must run as it.
    const peer = mesh.verifyPeer(call.getAuthContext()?.sslPeerCertificate?.raw);
    if (peer) {
      const p = this.#options.sidecars?.list().find((x) => x.metadata?.namespace === namespace && x.metadata?.name === pod);
      if (p && peer.namespace === namespace && (p.spec?.serviceAccountName || 'default') === peer.serviceAccount) {
        this.#metrics.authenticated.inc({ by: 'certificate' });
        return `certificate ${spiffeId({ trustDomain: mesh.trustDomain, ...peer })}`;
      }
    }
    // Else the pod's token (a sidecar before its first certificate, or a pod not in the cache yet).
    const token = /^Bearer\s+(.+)$/i.exec(String(call.metadata.get('authorization')[0] ?? ''))?.[1] ?? '';
    try {
      const who = await mesh.authenticate(token, `${namespace}/${pod}`);
      this.#metrics.authenticated.inc({ by: 'token' });
      return `token of ${who.namespace}/${who.pod}`;
    } catch (err) {
      const code = isBallastError(err) ? err.code : '';
      throw {
        code: refusalStatus[code] ?? grpc.status.UNAVAILABLE,
        details: code ? `${code}: ${(err as Error).message}` : `cannot authenticate the sidecar: ${(err as Error).message}`,
      };
    }
  }

  async stop(): Promise<void> {
    this.#timer?.cancel();
    for (const s of this.#streams) s.call.end();
    await new Promise<void>((resolve) => this.#server.tryShutdown(() => resolve()));
  }

  #view(): DiscoveryView {
    const o = this.#options;
    return {
      policies: o.policies.list(),
      services: o.services.list(),
      slices: o.slices.list(),
      ...(o.mesh ? { mesh: { trustDomain: o.mesh.trustDomain, pods: o.sidecars?.list() ?? [] } } : {}),
      ...(o.gateway ? { routes: attachedRoutes(o.gateway, o.services.list(), this.#options.clock) } : {}),
    };
  }

  #open(call: grpc.ServerDuplexStream<ClientMessage, WireSnapshot>): void {
    let stream: Stream | undefined;
    let hello = false;
    let closed = false;
    call.on('data', (m: ClientMessage) => {
      if (m.hello && !stream && !hello) {
        const node = m.hello.node;
        const namespace = node.includes('/') ? node.slice(0, node.indexOf('/')) : 'default';
        const pod = node.includes('/') ? node.slice(node.indexOf('/') + 1) : node;
        const version = m.hello.version;
        hello = true;
        this.#authenticate(call, namespace, pod).then(
          (by) => {
            if (closed) return;
            stream = { node, namespace, pod, sent: version, sentBundle: '', sentIssuer: '', call };
            this.#streams.add(stream);
            this.#metrics.streams.set(this.#streams.size);
            this.#options.log.info({ node, has: version || null, authenticated: by }, 'sidecar connected to discovery');
            this.#push(stream, buildSnapshot(namespace, this.#podLabels().get(`${namespace}/${pod}`), this.#view()));
          },
          (status: { code: grpc.status; details: string }) => {
            this.#metrics.refused.inc();
            this.#options.log.warn({ node, error: status.details }, 'refused a discovery stream');
            if (!closed) call.emit('error', status);
          },
        );
      } else if (m.ack && stream) {
        if (m.ack.error) {
          this.#metrics.nacks.inc();
          this.#options.log.warn(
            { node: stream.node, version: m.ack.version, error: m.ack.error },
            'a sidecar refused a discovery snapshot',
          );
        }
        if (stream.node.includes('/')) this.#options.onAck?.(stream.namespace, stream.pod, m.ack.version, m.ack.error);
      }
    });
    const close = (): void => {
      closed = true;
      if (stream && this.#streams.delete(stream)) this.#metrics.streams.set(this.#streams.size);
    };
    call.on('end', () => {
      close();
      call.end();
    });
    call.on('error', close);
    call.on('cancelled', close);
  }

  /** Injected pods' labels by namespace/name (undefined for a pod not in the cache yet). */
  #podLabels(): Map<string, Record<string, string>> {
    const out = new Map<string, Record<string, string>>();
    for (const p of this.#options.sidecars?.list() ?? []) out.set(`${p.metadata?.namespace}/${p.metadata?.name}`, p.metadata?.labels ?? {});
    return out;
  }

  #push(s: Stream, snap: Snapshot): void {
    const bundle = this.#options.mesh?.bundlePem ?? '';
    const issuer = this.#options.mesh?.issuerFingerprint ?? '';
    if (snap.version === s.sent && bundle === s.sentBundle && issuer === s.sentIssuer) return;
    s.sent = snap.version;
    s.sentBundle = bundle;
    s.sentIssuer = issuer;
    s.call.write({
      version: snap.version,
      upstreams_json: JSON.stringify(snap.upstreams),
      inbound_json: JSON.stringify(snap.inbound),
      trust_bundle_pem: bundle,
      issuer_fingerprint: issuer,
    });
    this.#metrics.snapshots.inc();
  }

  async #certify(call: grpc.ServerUnaryCall<CertificateRequest, Certificate>, cb: grpc.sendUnaryData<Certificate>): Promise<void> {
    const mesh = this.#options.mesh;
    if (!mesh) return cb({ code: grpc.status.UNIMPLEMENTED, details: 'the mesh is off in this operator (--mesh-trust-domain is empty)' });
    const auth = String(call.metadata.get('authorization')[0] ?? '');
    const token = /^Bearer\s+(.+)$/i.exec(auth)?.[1] ?? '';
    try {
      const c = await mesh.certify(token, call.request.node, call.request.csr_pem);
      cb(null, {
        cert_chain_pem: c.chainPem,
        trust_bundle_pem: c.bundlePem,
        spiffe_id: c.spiffeId,
        not_after_ms: String(c.notAfter.getTime()),
      });
    } catch (err) {
      const code = isBallastError(err) ? err.code : '';
      cb({
        code: refusalStatus[code] ?? grpc.status.INTERNAL,
        details: code ? `${code}: ${(err as Error).message}` : `the certificate could not be issued: ${(err as Error).message}`,
      });
    }
  }

  #schedule(): void {
    if (this.#timer) return;
    this.#timer = this.#options.clock.setTimeout(() => {
      this.#timer = undefined;
      const view = this.#view();
      // Pods with the same labels in a namespace get the same snapshot: built once per pass.
      const built = new Map<string, Snapshot>();
      const podLabels = this.#podLabels();
      for (const s of this.#streams) {
        const labels = podLabels.get(`${s.namespace}/${s.pod}`);
        const key = `${s.namespace}\u0000${labels === undefined ? '?' : JSON.stringify(Object.entries(labels).sort())}`;
        let snap = built.get(key);
        if (!snap) built.set(key, (snap = buildSnapshot(s.namespace, labels, view)));
        this.#push(s, snap);
      }
    }, this.#options.debounceMs ?? 100);
  }
}

/** Every route's attachments (the routes of both kinds, translated against the Services and grants). */
export function attachedRoutes(
  g: NonNullable<DiscoveryServerOptions['gateway']>,
  services: DiscoveryView['services'],
  clock: Clock,
): Attached[] {
  const view = { routes: [], grants: g.grants.list(), services };
  const now = new Date(clock.wallNow()).toISOString();
  return [
    ...g.httpRoutes.list().map((r) => ({ ...r, kind: 'HTTPRoute' as const })),
    ...g.grpcRoutes.list().map((r) => ({ ...r, kind: 'GRPCRoute' as const })),
  ].flatMap((r) => translateRoute(r, view, now).attached);
}
