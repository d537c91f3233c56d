/**
 * etcd's Lease service. Grant and revoke go through the log; keep-alive and time-to-live are
 * answered by the leader, which alone decides expiry. A follower passes keep-alive streams and
 * time-to-live calls through to the leader, so clients may talk to any member.
 */
import * as grpc from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import { BallastError } from '../../lib/errors.ts';
import { catalogue } from '../errors.ts';
import type { StoreNode } from '../node.ts';

/* eslint-disable @typescript-eslint/no-explicit-any -- wire objects are untyped by proto-loader */
type Wire = Record<string, any>;

/** etcd's largest lease TTL, in seconds. */
const maxTtl = 9_000_000_000;

export interface LeaseApiOptions {
  node: StoreNode;
  header(revision?: number): Wire;
  /** The leader's Lease client, or undefined when no leader is known. */
  leaderLease(): grpc.Client | undefined;
  /** The shortest TTL granted (etcd: 1.5 election timeouts, rounded up to a second). */
  minTtl: number;
}

/** A fresh positive int63 lease id, as a decimal string. */
function newLeaseId(): string {
  return (randomBytes(8).readBigUInt64BE() & 0x7fffffffffffffffn || 1n).toString();
}

export function leaseHandlers(o: LeaseApiOptions): Record<string, (req: Wire) => Promise<Wire>> {
  const node = o.node;
  return {
    LeaseGrant: async (r) => {
      const requested = Number(r['TTL'] ?? 0);
      if (requested > maxTtl) throw catalogue.error('STORE_ERR_LEASE_TTL_TOO_LARGE', 'etcdserver: too large lease TTL');
      const ttl = Math.max(requested, o.minTtl);
      const id = r['ID'] && r['ID'] !== '0' ? String(r['ID']) : newLeaseId();
      const res = await node.write({ op: 'leaseGrant', id, ttl });
      if (res.error) throw new BallastError(res.error.code, res.error.message);
      return { header: o.header(res.revision), ID: id, TTL: String(ttl), error: '' };
    },
    LeaseRevoke: async (r) => {
      const res = await node.write({ op: 'leaseRevoke', id: String(r['ID'] ?? '0') });
      if (res.error) throw new BallastError(res.error.code, res.error.message);
      return { header: o.header(res.revision) };
    },
    LeaseTimeToLive: async (r) => {
      const id = String(r['ID'] ?? '0');
      if (!node.isLeader) return forwardUnary(o, 'LeaseTimeToLive', r);
      const lease = node.sm.leases.get(id);
      if (!lease) return { header: o.header(), ID: id, TTL: '-1', grantedTTL: '0', keys: [] };
      return {
        header: o.header(), ID: id, TTL: String(node.leases.remaining(id)), grantedTTL: String(lease.ttl),
        keys: r['keys'] ? [...lease.keys].sort().map((k) => Buffer.from(k, 'latin1')) : [],
      };
    },
    LeaseLeases: async () => ({ header: o.header(), leases: [...node.sm.leases.keys()].map((ID) => ({ ID })) }),
  };
}

/** LeaseKeepAlive: answered by the leader; a follower pipes the stream to the leader. */
export function keepAliveHandler(o: LeaseApiOptions): (call: grpc.ServerDuplexStream<Wire, Wire>) => void {
  return (call) => {
    if (!o.node.isLeader) {
      const leader = o.leaderLease();
      if (!leader) {
        call.destroy(Object.assign(new Error('etcdserver: no leader'), { code: grpc.status.UNAVAILABLE, details: 'etcdserver: no leader' }));
        return;
      }
      const upstream = (leader as unknown as { LeaseKeepAlive(): grpc.ClientDuplexStream<Wire, Wire> }).LeaseKeepAlive();
      upstream.on('data', (res: Wire) => call.write(res));
      upstream.on('error', (err: grpc.ServiceError) => call.destroy(Object.assign(new Error(err.details), { code: err.code, details: err.details })));
      upstream.on('end', () => call.end());
      call.on('data', (req: Wire) => upstream.write(req));
      call.on('end', () => upstream.end());
      call.on('cancelled', () => upstream.cancel());
      return;
    }
    const notLeader = (): void => {
      // Leadership moved away mid-stream: make the client reconnect (to the new leader).
      call.destroy(Object.assign(new Error('etcdserver: not leader'), { code: grpc.status.UNAVAILABLE, details: 'etcdserver: not leader' }));
    };
    call.on('data', (req: Wire) => {
      if (!o.node.isLeader) return notLeader();
      const id = String(req['ID'] ?? '0');
      // Renew only once a quorum confirms this member still leads (a ReadIndex round): a leader
      // cut off from its peers must not promise a client a TTL that a newer leader does not
      // honour (the stale-leader keep-alive that etcd fixed in 3.4.31 and 3.5.13).
      o.node.linearizableRead().then(() => {
        if (!o.node.isLeader) return notLeader();
        const ttl = o.node.leases.keepAlive(id);
        // As etcd: an unknown or expired lease answers TTL 0, which clients read as "gone".
        call.write({ header: o.header(), ID: id, TTL: String(ttl ?? 0) });
      }, () => notLeader());
    });
    call.on('end', () => call.end());
    call.on('error', () => undefined);
  };
}

function forwardUnary(o: LeaseApiOptions, method: string, r: Wire): Promise<Wire> {
  const leader = o.leaderLease();
  if (!leader) return Promise.reject(catalogue.error('STORE_ERR_NO_LEADER', 'etcdserver: no leader'));
  const fn = (leader as unknown as Record<string, (req: Wire, md: grpc.Metadata, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, res: Wire) => void) => void>)[method];
  return new Promise((resolve, reject) => {
    fn?.call(leader, r, new grpc.Metadata(), { deadline: Date.now() + 5000 }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}
