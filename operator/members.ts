/**
 * How the operator talks to store members: etcd's Cluster, Maintenance and Auth services over
 * gRPC, by pod IP (which works from inside the cluster and from a host on the pod network
 * alike). Every call has a deadline: a member that does not answer is reported, never waited on.
 * With auth on (spec.auth), calls carry a root token, fetched when a member asks for a user and
 * again when it says the token is unknown or from before an auth change (as clientv3 does).
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
  /** Raft term and commit index (etcd's raftTerm and raftIndex). */
  term: number;
  commitIndex: number;
  isLearner: boolean;
}

const hex = (id: string | number | undefined) => BigInt(id ?? 0).toString(16);

let protos: grpc.GrpcObject | undefined;
function services(): {
  Cluster: grpc.ServiceClientConstructor;
  Maintenance: grpc.ServiceClientConstructor;
  Auth: grpc.ServiceClientConstructor;
} {
  protos ??= loadProtos();
  const pb = protos['etcdserverpb'] as grpc.GrpcObject;
  return {
    Cluster: pb['Cluster'] as grpc.ServiceClientConstructor,
    Maintenance: pb['Maintenance'] as grpc.ServiceClientConstructor,
    Auth: pb['Auth'] as grpc.ServiceClientConstructor,
  };
}

export interface MemberTls {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
  serverName: string;
}

/**
 * The root user of one StoreCluster (its spec.auth Secret), and the token last handed out for it:
 * shared by every MemberClient of that cluster (a simple token is known to every member).
 */
export class StoreCredentials {
  readonly username: string;
  readonly password: string;
  token: string | undefined;
  constructor(username: string, password: string) {
    this.username = username;
    this.password = password;
  }
}

/** The answers that mean "authenticate (again) and retry". */
const needsToken = (e: grpc.ServiceError) =>
  e.code === grpc.status.UNAUTHENTICATED || /etcdserver: (user name is empty|revision of auth store is old)/.test(e.details ?? '');

export class MemberClient {
  readonly #cluster: grpc.Client;
  readonly #maintenance: grpc.Client;
  readonly #auth: grpc.Client;
  readonly #timeoutMs: number;
  readonly #creds: StoreCredentials | undefined;

  /**
   * `tls`: the cluster's client TLS (spec.tls.clientSecretName): its CA, a certificate to
   * present, the name to expect. `creds`: the root user, while the store may have auth on.
   */
  constructor(address: string, timeoutMs = 2000, tls?: MemberTls, creds?: StoreCredentials) {
    const { Cluster, Maintenance, Auth } = services();
    // A private subchannel pool: a member that was down must not keep a shared back-off.
    // A short reconnect cap: a closed client's pending reconnect timer otherwise holds the process up to 2 min.
    const opts: grpc.ChannelOptions = {
      'grpc.use_local_subchannel_pool': 1,
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 2000,
    };
    // Members are dialled by pod IP; their certificate is checked against the client Service's name.
    if (tls) opts['grpc.ssl_target_name_override'] = tls.serverName;
    const root = creds;
    const channel = tls ? grpc.credentials.createSsl(tls.ca, tls.key, tls.cert) : grpc.credentials.createInsecure();
    this.#cluster = new Cluster(address, channel, opts);
    this.#maintenance = new Maintenance(address, channel, opts);
    this.#auth = new Auth(address, channel, opts);
    this.#timeoutMs = timeoutMs;
    this.#creds = root;
  }

  #raw(client: grpc.Client, method: string, req: Wire, token?: string): Promise<Wire> {
    const md = new grpc.Metadata();
    if (token) md.set('token', token);
    return new Promise((resolve, reject) => {
      (
        client as unknown as Record<
          string,
          (r: Wire, m: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: Wire) => void) => void
        >
      )[method]?.(req, md, { deadline: Date.now() + this.#timeoutMs }, (err, res) => (err ? reject(err) : resolve(res)));
    });
  }

  async #call(client: grpc.Client, method: string, req: Wire): Promise<Wire> {
    const c = this.#creds;
    try {
      return await this.#raw(client, method, req, c?.token);
    } catch (err) {
      if (!c || !needsToken(err as grpc.ServiceError)) throw err;
      await this.#authenticate(c);
      return this.#raw(client, method, req, c.token);
    }
  }

  async #authenticate(c: StoreCredentials): Promise<void> {
    try {
      c.token = String((await this.#raw(this.#auth, 'Authenticate', { name: c.username, password: c.password }))['token']);
    } catch (err) {
      c.token = undefined;
      // Auth went off in between: calls need no token.
      if (/authentication is not enabled/.test((err as grpc.ServiceError).details ?? '')) return;
      throw err;
    }
  }

  /**
   * Whether the store checks users now (AuthStatus: open while auth is off, root-only while on);
   * undefined from a member that has no auth at all (ballast 0.1.x: UNIMPLEMENTED).
   */
  async authEnabled(): Promise<boolean | undefined> {
    try {
      return Boolean((await this.#call(this.#auth, 'AuthStatus', {}))['enabled']);
    } catch (err) {
      if ((err as grpc.ServiceError).code === grpc.status.UNIMPLEMENTED) return undefined;
      throw err;
    }
  }

  /**
   * Turn auth on with `creds` as root: the root user (its password set to the Secret's when it
   * exists already), the root role, then AuthEnable, each step safe to repeat.
   */
  async enableAuth(creds: StoreCredentials): Promise<void> {
    const exists = (e: unknown) => /user name already exists/.test((e as grpc.ServiceError).details ?? '');
    await this.#call(this.#auth, 'UserAdd', { name: creds.username, password: creds.password }).catch(async (e: unknown) => {
      if (!exists(e)) throw e;
      await this.#call(this.#auth, 'UserChangePassword', { name: creds.username, password: creds.password });
    });
    await this.#call(this.#auth, 'UserGrantRole', { user: creds.username, role: 'root' });
    await this.#call(this.#auth, 'AuthEnable', {});
  }

  async disableAuth(): Promise<void> {
    await this.#call(this.#auth, 'AuthDisable', {});
  }

  async status(): Promise<MemberState> {
    const r = await this.#call(this.#maintenance, 'Status', {});
    return {
      id: hex(r['header']?.member_id),
      leader: hex(r['leader']),
      version: String(r['version'] ?? ''),
      appliedIndex: Number(r['raftAppliedIndex'] ?? 0),
      term: Number(r['raftTerm'] ?? 0),
      commitIndex: Number(r['raftIndex'] ?? 0),
      isLearner: Boolean(r['isLearner']),
    };
  }

  /** The member table: through the leader (linearizable), or as this member applied it (no leader needed). */
  async list(linearizable = true): Promise<MemberInfo[]> {
    const r = await this.#call(this.#cluster, 'MemberList', { linearizable });
    return ((r['members'] as Wire[]) ?? []).map((m) => ({
      id: hex(m['ID']),
      name: String(m['name'] ?? ''),
      peerURLs: m['peerURLs'] ?? [],
      clientURLs: m['clientURLs'] ?? [],
      isLearner: Boolean(m['isLearner']),
    }));
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
    this.#auth.close();
  }
}
