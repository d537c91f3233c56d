/**
 * etcd's v3 gRPC services (KV, Cluster, Maintenance) over a StoreNode. Errors carry etcd's gRPC
 * status codes and messages, because clients (clientv3, etcdctl, kube-apiserver) match on them.
 */
import * as grpc from '@grpc/grpc-js';
import type { Tracer } from '@opentelemetry/api';
import { extractContext, grpcServerSpan } from '../../lib/otel.ts';
import { loadProtos } from './protos.ts';
import { BallastError, isBallastError } from '../../lib/errors.ts';
import { catalogue } from '../errors.ts';
import { checkPeerUrls, idFromDecimal, idToDecimal } from '../members.ts';
import type { StoreNode } from '../node.ts';
import type { ApplyResult, Member, StoreRequest } from '../state-machine.ts';
import { bytes, isReadOnlyTxn, rangeOut, responseOpOut, toDelete, toPut, toRange, toTxn, kvOut } from './convert.ts';
import { encodeBackup } from '../backup.ts';
import { Concurrency } from './concurrency.ts';
import { keepAliveHandler, leaseHandlers, leaseKeepAliveOnce, leaseTimeToLive } from './lease.ts';
import { watchHandler, watchService } from './watch.ts';

/* eslint-disable @typescript-eslint/no-explicit-any -- wire objects are untyped by proto-loader */
type Wire = Record<string, any>;

export { loadProtos };

/** gRPC status of each store error code (as etcd's rpctypes). */
const statusOf: Record<string, grpc.status> = {
  STORE_ERR_COMPACTED: grpc.status.OUT_OF_RANGE,
  STORE_ERR_FUTURE_REV: grpc.status.OUT_OF_RANGE,
  STORE_ERR_NOSPACE: grpc.status.RESOURCE_EXHAUSTED,
  STORE_ERR_REQUEST_TOO_LARGE: grpc.status.INVALID_ARGUMENT,
  STORE_ERR_EMPTY_KEY: grpc.status.INVALID_ARGUMENT,
  STORE_ERR_KEY_NOT_FOUND: grpc.status.INVALID_ARGUMENT,
  STORE_ERR_DUPLICATE_KEY: grpc.status.INVALID_ARGUMENT,
  STORE_ERR_NO_LEADER: grpc.status.UNAVAILABLE,
  STORE_ERR_NOT_LEADER: grpc.status.FAILED_PRECONDITION,
  STORE_ERR_TIMEOUT: grpc.status.UNAVAILABLE,
  STORE_ERR_STOPPED: grpc.status.UNAVAILABLE,
  STORE_ERR_PROPOSAL_DROPPED: grpc.status.UNAVAILABLE,
  STORE_ERR_MEMBER_NOT_FOUND: grpc.status.NOT_FOUND,
  STORE_ERR_MEMBER_EXISTS: grpc.status.FAILED_PRECONDITION,
  STORE_ERR_MEMBER_BAD_URLS: grpc.status.INVALID_ARGUMENT,
  STORE_ERR_MEMBER_NOT_LEARNER: grpc.status.FAILED_PRECONDITION,
  STORE_ERR_LEARNER_NOT_READY: grpc.status.FAILED_PRECONDITION,
  STORE_ERR_TOO_MANY_LEARNERS: grpc.status.FAILED_PRECONDITION,
  STORE_ERR_UNHEALTHY_QUORUM: grpc.status.UNAVAILABLE,
  STORE_ERR_CONF_CHANGE_PENDING: grpc.status.UNAVAILABLE,
  STORE_ERR_LEADER_TRANSFER: grpc.status.UNAVAILABLE,
  STORE_ERR_TRANSFEREE_NOT_FOUND: grpc.status.FAILED_PRECONDITION,
  STORE_ERR_LEASE_NOT_FOUND: grpc.status.NOT_FOUND,
  STORE_ERR_PEER_UNREACHABLE: grpc.status.UNAVAILABLE,
};

export interface ApiOptions {
  node: StoreNode;
  maxRequestBytes: number;
  quotaBytes: number;
  version: string;
  /** Shortest lease TTL in seconds. */
  minLeaseTtl: number;
  onRequest?(method: string, code: grpc.status, seconds: number): void;
  /** Set when OpenTelemetry is on: a server span per unary call, under the caller's traceparent. */
  tracer?: Tracer;
}

export class StoreApi {
  readonly #o: ApiOptions;
  readonly #node: StoreNode;
  readonly #protos = loadProtos();
  #lease: ReturnType<typeof leaseHandlers> | undefined;

  constructor(o: ApiOptions) {
    this.#o = o;
    this.#node = o.node;
    o.node.handlePeerRequests((_from, method, body) => this.#peerRequest(method, body as Wire));
  }

  /** Leader-only work another member forwarded over the peer channel. */
  async #peerRequest(method: string, r: Wire): Promise<unknown> {
    switch (method) {
      case 'MemberAdd': return this.#memberAdd(r);
      case 'MemberRemove': return this.#memberRemove(r);
      case 'MemberPromote': return this.#memberPromote(r);
      case 'LeaseTimeToLive':
      case 'LeaseKeepAlive': {
        if (!this.#node.isLeader) throw catalogue.error('STORE_ERR_NOT_LEADER', 'etcdserver: not leader');
        return method === 'LeaseKeepAlive' ? leaseKeepAliveOnce(this.#node, String(r['ID'] ?? '0')) : leaseTimeToLive(this.#node, r);
      }
      case 'Alarm': return this.#alarm(r).then(() => ({}));
      default: throw catalogue.error('STORE_ERR_PEER_AUTH', `etcdserver: unknown peer request ${method}`);
    }
  }

  /** Membership changes: the member table after the change (the caller renders it). */
  async #memberAdd(r: Wire): Promise<{ member: Member; members: Member[] }> {
    if (!this.#node.isLeader) throw catalogue.error('STORE_ERR_NOT_LEADER', 'etcdserver: not leader');
    const member = await this.#node.addMember(r['peerURLs'] as string[], !!r['isLearner']);
    return { member, members: [...this.#node.sm.members.values()] };
  }

  async #memberRemove(r: Wire): Promise<{ members: Member[] }> {
    if (!this.#node.isLeader) throw catalogue.error('STORE_ERR_NOT_LEADER', 'etcdserver: not leader');
    await this.#node.removeMember(idFromDecimal(r['ID']));
    return { members: [...this.#node.sm.members.values()] };
  }

  async #memberPromote(r: Wire): Promise<{ members: Member[] }> {
    if (!this.#node.isLeader) throw catalogue.error('STORE_ERR_NOT_LEADER', 'etcdserver: not leader');
    await this.#node.promoteMember(idFromDecimal(r['ID']));
    return { members: [...this.#node.sm.members.values()] };
  }

  /** Register the services on a gRPC server. */
  register(server: grpc.Server): void {
    const pb = this.#protos['etcdserverpb'] as Record<string, { service: grpc.ServiceDefinition }>;
    const service = (name: string): grpc.ServiceDefinition => {
      const svc = pb[name]?.service;
      if (!svc) throw new Error(`rpc.proto lacks service ${name}`);
      return svc;
    };
    server.addService(service('KV'), this.#wrap({
      Range: (r) => this.#range(r),
      Put: (r) => this.#put(r),
      DeleteRange: (r) => this.#deleteRange(r),
      Txn: (r) => this.#txn(r),
      Compact: (r) => this.#compact(r),
    }, 'etcdserverpb.KV'));
    server.addService(service('Cluster'), this.#wrap({
      MemberList: (r) => this.#memberList(r),
      MemberAdd: async (r) => {
        const out = await this.#forwardable<{ member: Member; members: Member[] }>('MemberAdd', r, () => this.#memberAdd(r));
        return { header: this.#header(), member: memberOut(out.member), members: out.members.map(memberOut) };
      },
      MemberRemove: async (r) => {
        const out = await this.#forwardable<{ members: Member[] }>('MemberRemove', r, () => this.#memberRemove(r));
        return { header: this.#header(), members: out.members.map(memberOut) };
      },
      MemberPromote: async (r) => {
        const out = await this.#forwardable<{ members: Member[] }>('MemberPromote', r, () => this.#memberPromote(r));
        return { header: this.#header(), members: out.members.map(memberOut) };
      },
      MemberUpdate: async (r) => {
        const peerURLs = checkPeerUrls(r['peerURLs'] as string[]);
        this.#check(await this.#node.write({ op: 'memberUpdate', id: idFromDecimal(r['ID']), peerURLs }));
        return { header: this.#header(), members: this.#members() };
      },
    }, 'etcdserverpb.Cluster'));
    const leaseOpts = { node: this.#node, header: (rev?: number) => this.#header(rev), minTtl: this.#o.minLeaseTtl };
    this.#lease = leaseHandlers(leaseOpts);
    server.addService(service('Lease'), { ...this.#wrap(this.#lease, 'etcdserverpb.Lease'), LeaseKeepAlive: keepAliveHandler(leaseOpts) });
    const watch = watchService(service('Watch'));
    server.addService(watch, {
      Watch: watchHandler({
        hub: this.#node.watchHub, header: (rev?: number) => this.#header(rev), maxResponseBytes: this.#o.maxRequestBytes,
        serialize: (service('Watch')['Watch'] as grpc.MethodDefinition<Wire, Wire>).responseSerialize,
        onCreated: () => setImmediate(() => this.#node.watchHub.catchUp()),
      }),
    });
    const concurrency = new Concurrency(this.#node, (rev?: number) => this.#header(rev));
    const pkg = (name: string, svc: string): grpc.ServiceDefinition => {
      const def = (this.#protos[name] as Record<string, { service?: grpc.ServiceDefinition }> | undefined)?.[svc]?.service;
      if (!def) throw new Error(`${name}.${svc} missing from the protos`);
      return def;
    };
    server.addService(pkg('v3lockpb', 'Lock'), concurrency.lockHandlers());
    server.addService(pkg('v3electionpb', 'Election'), concurrency.electionHandlers());
    server.addService(service('Maintenance'), {
      Snapshot: (call: grpc.ServerWritableStream<Wire, Wire>) => {
        // A consistent point in time: the state as of the last applied entry, taken at once.
        const revision = this.#node.sm.mvcc.revision;
        const blob = encodeBackup(this.#node.sm.state());
        const chunk = 64 * 1024;
        for (let off = 0; off < blob.length; off += chunk) {
          const part = blob.subarray(off, off + chunk);
          call.write({ header: this.#header(revision), remaining_bytes: String(blob.length - off - part.length), blob: part, version: this.#o.version });
        }
        call.end();
      },
      ...this.#wrap({
        Status: async () => this.#status(),
        Alarm: (r) => this.#alarm(r),
        MoveLeader: async (r) => {
          if (!this.#node.isLeader) throw catalogue.error('STORE_ERR_NOT_LEADER', 'etcdserver: not leader');
          await this.#node.moveLeader(idFromDecimal(r['targetID']));
          return { header: this.#header() };
        },
        HashKV: async (r) => {
          const h = this.#node.sm.mvcc.hashKV(Number(r['revision'] ?? 0));
          return { header: this.#header(), hash: h.hash, compact_revision: String(h.compactRevision), hash_revision: String(h.hashRevision) };
        },
        Hash: async () => ({ header: this.#header(), hash: this.#node.sm.mvcc.hashKV(0).hash }),
        // The key space lives in memory and compaction already returns its space; nothing to defragment.
        Defragment: async () => ({ header: this.#header() }),
      }, 'etcdserverpb.Maintenance'),
    });
  }

  #wrap(handlers: Record<string, (req: Wire) => Promise<Wire>>, service = ''): grpc.UntypedServiceImplementation {
    const out: grpc.UntypedServiceImplementation = {};
    const tracer = this.#o.tracer;
    for (const [name, fn] of Object.entries(handlers)) {
      out[name] = (call: grpc.ServerUnaryCall<Wire, Wire>, cb: grpc.sendUnaryData<Wire>) => {
        const start = performance.now();
        const span = tracer ? grpcServerSpan(tracer, service, name, extractContext((k) => call.metadata.get(k)[0]?.toString())) : undefined;
        fn(call.request).then(
          (res) => {
            this.#o.onRequest?.(name, grpc.status.OK, (performance.now() - start) / 1000);
            span?.end(grpc.status.OK);
            cb(null, res);
          },
          (err: unknown) => {
            const e = toGrpcError(err);
            this.#o.onRequest?.(name, e.code ?? grpc.status.UNKNOWN, (performance.now() - start) / 1000);
            span?.end(e.code ?? grpc.status.UNKNOWN, e.details);
            cb(e);
          },
        );
      };
    }
    return out;
  }

  /**
   * The response header. uint64 ids go to protobufjs as {low, high} bits made once, and counters
   * as numbers: given decimal strings it re-parses them for every message, which showed as 4–6%
   * of a member's CPU under a 1,000-watcher fan-out.
   */
  #header(revision = this.#node.sm.mvcc.revision): Wire {
    const ids = (this.#ids ??= { cluster_id: uint64Bits(this.#node.clusterId), member_id: uint64Bits(this.#node.id) });
    return { cluster_id: ids.cluster_id, member_id: ids.member_id, revision, raft_term: this.#node.term };
  }

  #ids: { cluster_id: Wire; member_id: Wire } | undefined;

  async #range(r: Wire): Promise<Wire> {
    if (!r['serializable']) await this.#node.linearizableRead();
    const res = this.#node.sm.mvcc.range(toRange(r));
    return rangeOut(res, this.#header());
  }

  async #put(r: Wire): Promise<Wire> {
    const req = toPut(r);
    await this.#checkQuota(req.key.length + req.value.length);
    const res = this.#check(await this.#write({ op: 'put', req }));
    const out = res.result as { prevKv?: Parameters<typeof kvOut>[0] };
    return { header: this.#header(res.revision), ...(out.prevKv ? { prev_kv: kvOut(out.prevKv) } : {}) };
  }

  async #deleteRange(r: Wire): Promise<Wire> {
    const res = this.#check(await this.#write({ op: 'deleteRange', req: toDelete(r) }));
    const out = res.result as { deleted: number; prevKvs: Array<Parameters<typeof kvOut>[0]> };
    return { header: this.#header(res.revision), deleted: String(out.deleted), prev_kvs: out.prevKvs.map(kvOut) };
  }

  async #txn(r: Wire): Promise<Wire> {
    const req = toTxn(r);
    if (isReadOnlyTxn(req)) {
      // A read-only txn needs no log entry: a linearizable read point is enough (as in etcd).
      await this.#node.linearizableRead();
      const res = this.#node.sm.mvcc.txn(req);
      return { header: this.#header(), succeeded: res.result.succeeded, responses: res.result.responses.map((op) => responseOpOut(op, this.#header())) };
    }
    await this.#checkQuota(0);
    const res = this.#check(await this.#write({ op: 'txn', req }));
    const out = res.result as { succeeded: boolean; responses: Parameters<typeof responseOpOut>[0][] };
    const header = this.#header(res.revision);
    return { header, succeeded: out.succeeded, responses: out.responses.map((op) => responseOpOut(op, header)) };
  }

  async #compact(r: Wire): Promise<Wire> {
    const res = this.#check(await this.#write({ op: 'compact', revision: Number(r['revision'] ?? 0) }));
    return { header: this.#header(res.revision) };
  }

  #write(req: StoreRequest): Promise<ApplyResult> {
    return this.#node.write(req);
  }

  #check(r: ApplyResult): ApplyResult {
    if (r.error) throw new BallastError(r.error.code, r.error.message);
    return r;
  }

  /** Refuse writes past the quota and raise the NOSPACE alarm (replicated, as etcd does). */
  async #checkQuota(extra: number): Promise<void> {
    const sm = this.#node.sm;
    if (sm.alarms.some((a) => a.alarm === 'NOSPACE')) throw catalogue.error('STORE_ERR_NOSPACE', 'etcdserver: mvcc: database space exceeded');
    if (sm.mvcc.bytes + extra <= this.#o.quotaBytes) return;
    await this.#node.write({ op: 'alarm', action: 'activate', memberId: this.#node.id, alarm: 'NOSPACE' }).catch(() => undefined);
    throw catalogue.error('STORE_ERR_NOSPACE', 'etcdserver: mvcc: database space exceeded');
  }

  async #memberList(r: Wire): Promise<Wire> {
    if (r['linearizable']) await this.#node.linearizableRead();
    return { header: this.#header(), members: this.#members() };
  }

  #members(): Wire[] {
    return [...this.#node.sm.members.values()].map(memberOut);
  }

  async #status(): Promise<Wire> {
    const n = this.#node;
    const st = n.raftStatus();
    const me = n.sm.members.get(n.id);
    return {
      header: this.#header(), version: this.#o.version, dbSize: String(n.sm.mvcc.bytes), dbSizeInUse: String(n.sm.mvcc.bytes),
      leader: st.lead ? idToDecimal(st.lead) : '0', raftIndex: String(st.commit), raftTerm: String(st.term), raftAppliedIndex: String(st.applied),
      errors: n.sm.alarms.map((a) => `memberID:${idToDecimal(a.memberId)} alarm:${a.alarm} `), isLearner: me?.isLearner ?? false,
    };
  }

  async #alarm(r: Wire): Promise<Wire> {
    const types = ['NONE', 'NOSPACE', 'CORRUPT'] as const;
    const action = Number(r['action'] ?? 0);
    if (action !== 0) {
      const alarm = types[Number(r['alarm'] ?? 0)];
      if (alarm && alarm !== 'NONE') {
        const memberId = r['memberID'] && r['memberID'] !== '0' ? idFromDecimal(r['memberID']) : this.#node.id;
        this.#check(await this.#node.write({ op: 'alarm', action: action === 1 ? 'activate' : 'deactivate', memberId, alarm }));
      }
    }
    return { header: this.#header(), alarms: this.#node.sm.alarms.map((a) => ({ memberID: idToDecimal(a.memberId), alarm: types.indexOf(a.alarm) })) };
  }

  /**
   * Membership changes are decided by the leader (it knows whether a learner caught up). A
   * follower forwards the call to the leader over the peer channel, so a client may talk to any
   * member whatever the client URLs' certificates.
   */
  async #forwardable<T>(method: string, r: Wire, local: () => Promise<T>): Promise<T> {
    if (this.#node.isLeader) return local();
    return (await this.#node.forwardToLeader(method, r, 10_000)) as T;
  }

  /**
   * Raise an alarm for this member through another member (the way `etcdctl alarm` would, but
   * over the peer channel): used when this member cannot write its own log (a full disk) and is
   * about to stop. Each other member is tried in turn; true once one has committed it.
   */
  async raiseAlarmElsewhere(alarm: 'NOSPACE' | 'CORRUPT', timeoutMs = 6000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    const others = [...this.#node.sm.members.values()].filter((m) => m.id !== this.#node.id);
    const req = { action: 1, memberID: idToDecimal(this.#node.id), alarm: alarm === 'NOSPACE' ? 1 : 2 };
    while (Date.now() < deadline) {
      for (const m of others) {
        const ok = await this.#node.askPeer(m.id, 'Alarm', req, Math.max(1, Math.min(deadline - Date.now(), 3000))).then(() => true, () => false);
        if (ok) return true;
        if (Date.now() >= deadline) break;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    return false;
  }
}

function memberOut(m: Member): Wire {
  return { ID: idToDecimal(m.id), name: m.name, peerURLs: m.peerURLs, clientURLs: m.clientURLs, isLearner: m.isLearner };
}

function toGrpcError(err: unknown): Partial<grpc.StatusObject> & Error {
  if (isBallastError(err)) {
    const e = new Error(err.message) as Partial<grpc.StatusObject> & Error;
    e.code = statusOf[err.code] ?? grpc.status.UNKNOWN;
    e.details = err.message;
    return e;
  }
  if (err && typeof err === 'object' && 'code' in err && typeof (err as grpc.ServiceError).code === 'number') {
    // Forwarded from the leader: pass its status through unchanged.
    const se = err as grpc.ServiceError;
    const e = new Error(se.details) as Partial<grpc.StatusObject> & Error;
    e.code = se.code;
    e.details = se.details;
    return e;
  }
  const e = new Error(`etcdserver: ${(err as Error)?.message ?? String(err)}`) as Partial<grpc.StatusObject> & Error;
  e.code = grpc.status.UNKNOWN;
  e.details = e.message;
  return e;
}

export { bytes };

/** A uint64 hex id as the {low, high, unsigned} bits protobufjs takes without parsing. */
function uint64Bits(hex: string): Wire {
  const v = BigInt(`0x${hex}`);
  return { low: Number(v & 0xffffffffn) | 0, high: Number(v >> 32n) | 0, unsigned: true };
}
