/**
 * etcd's v3 gRPC services (KV, Cluster, Maintenance) over a StoreNode. Errors carry etcd's gRPC
 * status codes and messages, because clients (clientv3, etcdctl, kube-apiserver) match on them.
 */
import * as grpc from '@grpc/grpc-js';
import type { Tracer } from '@opentelemetry/api';
import { extractContext, grpcServerSpan } from '../../lib/otel-spans.ts';
import { loadProtos } from './protos.ts';
import { BallastError } from '../../lib/errors.ts';
import { toGrpcError } from './status.ts';
import { catalogue } from '../errors.ts';
import { checkPeerUrls, idFromDecimal, idToDecimal } from '../members.ts';
import type { StoreNode } from '../node.ts';
import type { ApplyResult, Member, StoreRequest } from '../state-machine.ts';
import { bytes, isReadOnlyTxn, rangeOut, responseOpOut, toDelete, toPut, toRange, toTxn, kvOut } from './convert.ts';
import { backupStream } from '../backup.ts';
import { Concurrency } from './concurrency.ts';
import { keepAliveHandler, leaseHandlers, leaseKeepAliveOnce, leaseTimeToLive } from './lease.ts';
import { watchHandler, watchService } from './watch.ts';
import { AuthApi, type Caller } from './auth.ts';
import type { AuthInfo } from '../auth/auth-store.ts';
import type { TokenProvider } from '../auth/tokens.ts';

/* eslint-disable @typescript-eslint/no-explicit-any -- wire objects are untyped by proto-loader */
type Wire = Record<string, any>;

export { loadProtos };

export interface ApiOptions {
  node: StoreNode;
  maxRequestBytes: number;
  quotaBytes: number;
  version: string;
  /** Shortest lease TTL in seconds. */
  minLeaseTtl: number;
  /** Auth tokens (`--auth-token`) and the bcrypt cost of password hashes (`--bcrypt-cost`). */
  tokens: TokenProvider;
  bcryptCost: number;
  onRequest?(method: string, code: grpc.status, seconds: number): void;
  /** Set when OpenTelemetry is on: a server span per unary call, under the caller's traceparent. */
  tracer?: Tracer;
}

export class StoreApi {
  readonly #options: ApiOptions;
  readonly #node: StoreNode;
  readonly #protos = loadProtos();
  #lease: ReturnType<typeof leaseHandlers> | undefined;
  readonly #auth: AuthApi;

  constructor(o: ApiOptions) {
    this.#options = o;
    this.#node = o.node;
    this.#auth = new AuthApi({ node: o.node, tokens: o.tokens, bcryptCost: o.bcryptCost, header: (rev?: number) => this.#header(rev) });
    o.node.handlePeerRequests((_from, method, body) => this.#peerRequest(method, body as Wire));
  }

  /** Who a call speaks for while auth is on (store/api/auth.ts). */
  #who(call: Caller): Promise<AuthInfo | undefined> | undefined {
    return this.#auth.info(call);
  }

  /** Membership, compaction and maintenance need the root role while auth is on. */
  async #admin(call: Caller): Promise<void> {
    if (!this.#node.sm.auth.enabled) return;
    this.#node.sm.auth.checkAdmin(await this.#who(call));
  }

  /** A user must be named while auth is on (etcd's requireAuthInfo). */
  async #requireUser(call: Caller): Promise<AuthInfo | undefined> {
    if (!this.#node.sm.auth.enabled) return undefined;
    const ai = await this.#who(call);
    this.#node.sm.auth.requireUser(ai);
    return ai;
  }

  /** Leader-only work another member forwarded over the peer channel. */
  async #peerRequest(method: string, r: Wire): Promise<unknown> {
    switch (method) {
      case 'MemberAdd':
        return this.#memberAdd(r);
      case 'MemberRemove':
        return this.#memberRemove(r);
      case 'MemberPromote':
        return this.#memberPromote(r);
      case 'LeaseTimeToLive':
      case 'LeaseKeepAlive': {
        if (!this.#node.isLeader) throw catalogue.error('STORE_ERR_NOT_LEADER', 'etcdserver: not leader');
        return method === 'LeaseKeepAlive' ? leaseKeepAliveOnce(this.#node, String(r['ID'] ?? '0')) : leaseTimeToLive(this.#node, r);
      }
      case 'Alarm':
        return this.#alarm(r).then(() => ({}));
      default:
        throw catalogue.error('STORE_ERR_PEER_AUTH', `etcdserver: unknown peer request ${method}`);
    }
  }

  /** Membership changes: the member table after the change (the caller renders it). */
  async #memberAdd(r: Wire): Promise<{ member: Member; members: Member[] }> {
    if (!this.#node.isLeader) throw catalogue.error('STORE_ERR_NOT_LEADER', 'etcdserver: not leader');
    const member = await this.#node.membership.add(r['peerURLs'] as string[], !!r['isLearner']);
    return { member, members: [...this.#node.sm.members.values()] };
  }

  async #memberRemove(r: Wire): Promise<{ members: Member[] }> {
    if (!this.#node.isLeader) throw catalogue.error('STORE_ERR_NOT_LEADER', 'etcdserver: not leader');
    await this.#node.membership.remove(idFromDecimal(r['ID']));
    return { members: [...this.#node.sm.members.values()] };
  }

  async #memberPromote(r: Wire): Promise<{ members: Member[] }> {
    if (!this.#node.isLeader) throw catalogue.error('STORE_ERR_NOT_LEADER', 'etcdserver: not leader');
    await this.#node.membership.promote(idFromDecimal(r['ID']));
    return { members: [...this.#node.sm.members.values()] };
  }

  /** Register the services on a gRPC server. */
  register(server: Pick<grpc.Server, 'addService'>): void {
    const pb = this.#protos['etcdserverpb'] as Record<string, { service: grpc.ServiceDefinition }>;
    const service = (name: string): grpc.ServiceDefinition => {
      const svc = pb[name]?.service;
      if (!svc) throw new Error(`rpc.proto lacks service ${name}`);
      return svc;
    };
    server.addService(
      service('KV'),
      this.#wrap(
        {
          Range: (r, call) => this.#range(r, call),
          Put: (r, call) => this.#put(r, call),
          DeleteRange: (r, call) => this.#deleteRange(r, call),
          Txn: (r, call) => this.#txn(r, call),
          Compact: async (r, call) => {
            await this.#admin(call);
            return this.#compact(r);
          },
        },
        'etcdserverpb.KV',
      ),
    );
    server.addService(service('Auth'), this.#wrap(this.#auth.handlers(), 'etcdserverpb.Auth'));
    server.addService(
      service('Cluster'),
      this.#wrap(
        {
          MemberList: async (r, call) => {
            await this.#requireUser(call);
            return this.#memberList(r);
          },
          MemberAdd: async (r, call) => {
            await this.#admin(call);
            const out = await this.#forwardable<{ member: Member; members: Member[] }>('MemberAdd', r, () => this.#memberAdd(r));
            return { header: this.#header(), member: memberOut(out.member), members: out.members.map(memberOut) };
          },
          MemberRemove: async (r, call) => {
            await this.#admin(call);
            const out = await this.#forwardable<{ members: Member[] }>('MemberRemove', r, () => this.#memberRemove(r));
            return { header: this.#header(), members: out.members.map(memberOut) };
          },
          MemberPromote: async (r, call) => {
            await this.#admin(call);
            const out = await this.#forwardable<{ members: Member[] }>('MemberPromote', r, () => this.#memberPromote(r));
            return { header: this.#header(), members: out.members.map(memberOut) };
          },
          MemberUpdate: async (r, call) => {
            await this.#admin(call);
            const peerURLs = checkPeerUrls(r['peerURLs'] as string[]);
            this.#check(await this.#node.write({ op: 'memberUpdate', id: idFromDecimal(r['ID']), peerURLs }));
            return { header: this.#header(), members: this.#members() };
          },
        },
        'etcdserverpb.Cluster',
      ),
    );
    const leaseOpts = {
      node: this.#node,
      header: (rev?: number) => this.#header(rev),
      minTtl: this.#options.minLeaseTtl,
      who: (call: Caller) => this.#who(call),
    };
    this.#lease = leaseHandlers(leaseOpts);
    server.addService(service('Lease'), { ...this.#wrap(this.#lease, 'etcdserverpb.Lease'), LeaseKeepAlive: keepAliveHandler(leaseOpts) });
    const watch = watchService(service('Watch'));
    server.addService(watch, {
      Watch: watchHandler({
        hub: this.#node.watchHub,
        header: (rev?: number) => this.#header(rev),
        maxResponseBytes: this.#options.maxRequestBytes,
        serialize: (service('Watch')['Watch'] as grpc.MethodDefinition<Wire, Wire>).responseSerialize,
        permit: (call, key, rangeEnd) => {
          if (!this.#node.sm.auth.enabled) return undefined;
          return this.#watchPermit(call, key, rangeEnd);
        },
      }),
    });
    const concurrency = new Concurrency(
      this.#node,
      (rev?: number) => this.#header(rev),
      (call) => this.#who(call),
    );
    const pkg = (name: string, svc: string): grpc.ServiceDefinition => {
      const def = (this.#protos[name] as Record<string, { service?: grpc.ServiceDefinition }> | undefined)?.[svc]?.service;
      if (!def) throw new Error(`${name}.${svc} missing from the protos`);
      return def;
    };
    server.addService(pkg('v3lockpb', 'Lock'), concurrency.lockHandlers());
    server.addService(pkg('v3electionpb', 'Election'), concurrency.electionHandlers());
    server.addService(service('Maintenance'), {
      Snapshot: async (call: grpc.ServerWritableStream<Wire, Wire>) => {
        try {
          await this.#admin(call);
        } catch (err) {
          call.emit('error', toGrpcError(err));
          return;
        }
        // A consistent point in time: the key space as of the last applied entry, an O(1)
        // copy-on-write view (StateMachine.view()). The bytes are made a chunk at a time as the
        // client takes them: the member never holds a second copy of its values, and applies go
        // on between chunks.
        const revision = this.#node.sm.mvcc.revision;
        const backup = backupStream(this.#node.sm.view());
        let sent = 0;
        for (const part of backup.chunks(256 * 1024)) {
          for (let off = 0; off < part.length; off += 64 * 1024) {
            const piece = part.subarray(off, off + 64 * 1024);
            sent += piece.length;
            const more = call.write({
              header: this.#header(revision),
              remaining_bytes: String(backup.length - sent),
              blob: piece,
              version: this.#options.version,
            });
            if (!more && !call.cancelled)
              await new Promise<void>((resolve) => {
                call.once('drain', resolve);
                call.once('cancelled', resolve);
              });
            if (call.cancelled) return;
          }
          await new Promise<void>((resolve) => setImmediate(resolve));
        }
        call.end();
      },
      ...this.#wrap(
        {
          Status: async (_r, call) => {
            await this.#requireUser(call);
            return this.#status();
          },
          Alarm: async (r, call) => {
            if (Number(r['action'] ?? 0) === 0) await this.#requireUser(call);
            else await this.#admin(call);
            return this.#alarm(r);
          },
          MoveLeader: async (r, call) => {
            await this.#admin(call);
            if (!this.#node.isLeader) throw catalogue.error('STORE_ERR_NOT_LEADER', 'etcdserver: not leader');
            await this.#node.membership.moveLeader(idFromDecimal(r['targetID']));
            return { header: this.#header() };
          },
          HashKV: async (r, call) => {
            await this.#admin(call);
            const h = await this.#node.sm.mvcc.hashKVAsync(Number(r['revision'] ?? 0));
            return {
              header: this.#header(),
              hash: h.hash,
              compact_revision: String(h.compactRevision),
              hash_revision: String(h.hashRevision),
            };
          },
          Hash: async (_r, call) => {
            await this.#admin(call);
            return { header: this.#header(), hash: (await this.#node.sm.mvcc.hashKVAsync(0)).hash };
          },
          // The key space lives in memory and compaction already returns its space; nothing to defragment.
          Defragment: async (_r, call) => {
            await this.#admin(call);
            return { header: this.#header() };
          },
        },
        'etcdserverpb.Maintenance',
      ),
    });
  }

  /** A watch on [key, rangeEnd) needs read access to it: the reason to refuse it, or '' (etcd's isWatchPermitted). */
  async #watchPermit(call: Caller, key: string, rangeEnd: string): Promise<string> {
    try {
      this.#node.sm.auth.checkRead(await this.#who(call), key, rangeEnd);
      return '';
    } catch (err) {
      return toGrpcError(err).details ?? 'etcdserver: permission denied';
    }
  }

  #wrap(handlers: Record<string, (req: Wire, call: Caller) => Promise<Wire>>, service = ''): grpc.UntypedServiceImplementation {
    const out: grpc.UntypedServiceImplementation = {};
    const tracer = this.#options.tracer;
    for (const [name, fn] of Object.entries(handlers)) {
      out[name] = (call: grpc.ServerUnaryCall<Wire, Wire>, cb: grpc.sendUnaryData<Wire>) => {
        const start = performance.now();
        const span = tracer
          ? grpcServerSpan(
              tracer,
              service,
              name,
              extractContext((k) => call.metadata.get(k)[0]?.toString()),
            )
          : undefined;
        fn(call.request, call).then(
          (res) => {
            this.#options.onRequest?.(name, grpc.status.OK, (performance.now() - start) / 1000);
            span?.end(grpc.status.OK);
            cb(null, res);
          },
          (err: unknown) => {
            const e = toGrpcError(err);
            this.#options.onRequest?.(name, e.code ?? grpc.status.UNKNOWN, (performance.now() - start) / 1000);
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

  async #range(r: Wire, call: Caller): Promise<Wire> {
    const ai = await this.#who(call);
    if (!r['serializable']) await this.#node.linearizableRead();
    const req = toRange(r);
    this.#node.sm.auth.checkRead(ai, req.key, req.rangeEnd);
    const res = this.#node.sm.mvcc.range(req);
    return rangeOut(res, this.#header());
  }

  async #put(r: Wire, call: Caller): Promise<Wire> {
    const req = toPut(r);
    const ai = await this.#who(call);
    await this.#checkQuota(req.key.length + req.value.length);
    const res = this.#check(await this.#node.write({ op: 'put', req }, ai));
    const out = res.result as { prevKv?: Parameters<typeof kvOut>[0] };
    return { header: this.#header(res.revision), ...(out.prevKv ? { prev_kv: kvOut(out.prevKv) } : {}) };
  }

  async #deleteRange(r: Wire, call: Caller): Promise<Wire> {
    const req = toDelete(r);
    const res = this.#check(await this.#node.write({ op: 'deleteRange', req }, await this.#who(call)));
    const out = res.result as { deleted: number; prevKvs: Array<Parameters<typeof kvOut>[0]> };
    return { header: this.#header(res.revision), deleted: String(out.deleted), prev_kvs: out.prevKvs.map(kvOut) };
  }

  async #txn(r: Wire, call: Caller): Promise<Wire> {
    const req = toTxn(r);
    const ai = await this.#who(call);
    if (isReadOnlyTxn(req)) {
      // A read-only txn needs no log entry: a linearizable read point is enough (as in etcd).
      await this.#node.linearizableRead();
      if (this.#node.sm.auth.enabled) this.#node.sm.checkTxnAuth(ai, req);
      const res = this.#node.sm.mvcc.txn(req);
      return {
        header: this.#header(),
        succeeded: res.result.succeeded,
        responses: res.result.responses.map((op) => responseOpOut(op, this.#header())),
      };
    }
    await this.#checkQuota(0);
    const res = this.#check(await this.#node.write({ op: 'txn', req }, ai));
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
    if (sm.alarms.some((a) => a.alarm === 'NOSPACE'))
      throw catalogue.error('STORE_ERR_NOSPACE', 'etcdserver: mvcc: database space exceeded');
    if (sm.mvcc.bytes + extra <= this.#options.quotaBytes) return;
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
      header: this.#header(),
      version: this.#options.version,
      dbSize: String(n.sm.mvcc.bytes),
      dbSizeInUse: String(n.sm.mvcc.bytes),
      leader: st.lead ? idToDecimal(st.lead) : '0',
      raftIndex: String(st.commit),
      raftTerm: String(st.term),
      raftAppliedIndex: String(st.applied),
      errors: n.sm.alarms.map((a) => `memberID:${idToDecimal(a.memberId)} alarm:${a.alarm} `),
      isLearner: me?.isLearner ?? false,
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
    return {
      header: this.#header(),
      alarms: this.#node.sm.alarms.map((a) => ({ memberID: idToDecimal(a.memberId), alarm: types.indexOf(a.alarm) })),
    };
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
        const ok = await this.#node.askPeer(m.id, 'Alarm', req, Math.max(1, Math.min(deadline - Date.now(), 3000))).then(
          () => true,
          () => false,
        );
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

export { bytes };

/** A uint64 hex id as the {low, high, unsigned} bits protobufjs takes without parsing. */
function uint64Bits(hex: string): Wire {
  const v = BigInt(`0x${hex}`);
  return { low: Number(v & 0xffffffffn) | 0, high: Number(v >> 32n) | 0, unsigned: true };
}
