/**
 * How the operator talks to store members: etcd's Cluster and Maintenance services over gRPC,
 * by pod IP (which works from inside the cluster and from a host on the pod network alike).
 * Every call has a deadline: a member that does not answer is reported, never waited on.
 */
import * as grpc from '@grpc/grpc-js';
import { loadProtos } from '../store/api/protos.ts';

/* eslint-disable @typescript-eslint/no-explicit-any -- wire objects are untyped by proto-loader */
type Wire = Record<string, any>;

export interface MemberInfo {
  id: string;
  name: string;
  peerURLs: string[];
  clientURLs: string[];
  isLearner: boolean;
}

export interface MemberState {
  id: string;
  leader: string;
  version: string;
  appliedIndex: number;
  isLearner: boolean;
}

const hex = (id: string | number | undefined) => BigInt(id ?? 0).toString(16);

let protos: grpc.GrpcObject | undefined;
function services(): { Cluster: grpc.ServiceClientConstructor; Maintenance: grpc.ServiceClientConstructor } {
  protos ??= loadProtos();
  const pb = (protos['etcdserverpb'] as grpc.GrpcObject);
  return { Cluster: pb['Cluster'] as grpc.ServiceClientConstructor, Maintenance: pb['Maintenance'] as grpc.ServiceClientConstructor };
}

export interface MemberTls { ca: Buffer; cert: Buffer; key: Buffer; serverName: string }

export class MemberClient {
  readonly #cluster: grpc.Client;
  readonly #maintenance: grpc.Client;
  readonly #timeoutMs: number;

  /** `tls`: the cluster's client TLS (spec.tls.clientSecretName): its CA, a certificate to present, the name to expect. */
  constructor(address: string, timeoutMs = 2000, tls?: MemberTls) {
    const { Cluster, Maintenance } = services();
    // A private subchannel pool: a member that was down must not keep a shared back-off.
    // A short reconnect cap: a closed client's pending reconnect timer otherwise holds the process up to 2 min.
    const opts: grpc.ChannelOptions = { 'grpc.use_local_subchannel_pool': 1, 'grpc.initial_reconnect_backoff_ms': 200, 'grpc.max_reconnect_backoff_ms': 2000 };
    // Members are dialled by pod IP; their certificate is checked against the client Service's name.
    if (tls) opts['grpc.ssl_target_name_override'] = tls.serverName;
    const creds = tls ? grpc.credentials.createSsl(tls.ca, tls.key, tls.cert) : grpc.credentials.createInsecure();
    this.#cluster = new Cluster(address, creds, opts);
    this.#maintenance = new Maintenance(address, creds, opts);
    this.#timeoutMs = timeoutMs;
  }

  #call(client: grpc.Client, method: string, req: Wire): Promise<Wire> {
    return new Promise((resolve, reject) => {
      (client as unknown as Record<string, (r: Wire, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: Wire) => void) => void>)[method]?.(req, { deadline: Date.now() + this.#timeoutMs }, (err, res) => (err ? reject(err) : resolve(res)));
    });
  }

  async status(): Promise<MemberState> {
    const r = await this.#call(this.#maintenance, 'Status', {});
    return { id: hex(r['header']?.member_id), leader: hex(r['leader']), version: String(r['version'] ?? ''), appliedIndex: Number(r['raftAppliedIndex'] ?? 0), isLearner: Boolean(r['isLearner']) };
  }

  async list(): Promise<MemberInfo[]> {
    const r = await this.#call(this.#cluster, 'MemberList', { linearizable: true });
    return (r['members'] as Wire[] ?? []).map((m) => ({ id: hex(m['ID']), name: String(m['name'] ?? ''), peerURLs: m['peerURLs'] ?? [], clientURLs: m['clientURLs'] ?? [], isLearner: Boolean(m['isLearner']) }));
  }

  async addLearner(peerUrl: string): Promise<MemberInfo> {
    const r = await this.#call(this.#cluster, 'MemberAdd', { peerURLs: [peerUrl], isLearner: true });
    const m = r['member'] as Wire;
    return { id: hex(m['ID']), name: String(m['name'] ?? ''), peerURLs: m['peerURLs'] ?? [], clientURLs: [], isLearner: true };
  }

  async promote(id: string): Promise<void> {
    await this.#call(this.#cluster, 'MemberPromote', { ID: BigInt(`0x${id}`).toString() });
  }

  async remove(id: string): Promise<void> {
    await this.#call(this.#cluster, 'MemberRemove', { ID: BigInt(`0x${id}`).toString() });
  }

  async moveLeader(toId: string): Promise<void> {
    await this.#call(this.#maintenance, 'MoveLeader', { targetID: BigInt(`0x${toId}`).toString() });
  }

  close(): void {
    this.#cluster.close();
    this.#maintenance.close();
  }
}
