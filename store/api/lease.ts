/**
 * etcd's Lease service. Grant and revoke go through the log; keep-alive and time-to-live are
 * answered by the leader, which alone decides expiry. A follower forwards each keep-alive and
 * time-to-live call to the leader over the peer channel (store/transport/rpc.ts: the peer URL,
 * the peer TLS and the cluster token, never a client URL), so clients may talk to any member,
 * and every call ends with an answer or an error within its deadline.
 */
import * as grpc from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import { BallastError, isBallastError } from '../../lib/errors.ts';
import { catalogue } from '../errors.ts';
import type { AuthInfo } from '../auth/auth-store.ts';
import type { StoreNode } from '../node.ts';
import type { Caller } from './auth.ts';
import { statusOf, toGrpcError } from './status.ts';

/* eslint-disable @typescript-eslint/no-explicit-any -- wire objects are untyped by proto-loader */
type Wire = Record<string, any>;

/** etcd's largest lease TTL, in seconds. */
const maxTtl = 9_000_000_000;

export interface LeaseApiOptions {
  node: StoreNode;
  header(revision?: number): Wire;
  /** The shortest TTL granted (etcd: 1.5 election timeouts, rounded up to a second). */
  minTtl: number;
  /** Who a call speaks for while auth is on (store/api/auth.ts). */
  who(call: Caller): Promise<AuthInfo | undefined> | undefined;
}

/** How long a forwarded keep-alive or time-to-live may take (etcd's request timeout is 5 s). */
const forwardTimeoutMs = 5000;

/** The leader's answer to a time-to-live question (keys as latin1 strings: they cross the peer channel as JSON). */
export async function leaseTimeToLive(node: StoreNode, r: Wire): Promise<{ ID: string; TTL: string; grantedTTL: string; keys: string[] }> {
  const id = String(r['ID'] ?? '0');
  const lease = node.sm.leases.get(id);
  if (!lease) return { ID: id, TTL: '-1', grantedTTL: '0', keys: [] };
  return { ID: id, TTL: String(node.leases.remaining(id)), grantedTTL: String(lease.ttl), keys: r['keys'] ? [...lease.keys].sort() : [] };
}

/**
 * The leader renews a lease: only once a quorum confirms it still leads (a ReadIndex round), so
 * a leader cut off from its peers never promises a TTL a newer leader does not honour (the
 * stale-leader keep-alive etcd fixed in 3.4.31 and 3.5.13). An unknown or expired lease answers
 * TTL 0, which clients read as "gone" (as etcd).
 */
export async function leaseKeepAliveOnce(node: StoreNode, id: string): Promise<{ ID: string; TTL: string }> {
  await node.linearizableRead();
  if (!node.isLeader) throw catalogue.error('STORE_ERR_NOT_LEADER', 'etcdserver: not leader');
  return { ID: id, TTL: String(node.leases.keepAlive(id) ?? 0) };
}

/** A fresh positive int63 lease id, as a decimal string. */
function newLeaseId(): string {
  return (randomBytes(8).readBigUInt64BE() & 0x7fffffffffffffffn || 1n).toString();
}

export function leaseHandlers(o: LeaseApiOptions): Record<string, (req: Wire, call: Caller) => Promise<Wire>> {
  const node = o.node;
  const auth = node.sm.auth;
  return {
    LeaseGrant: async (r, call) => {
      if (auth.enabled) auth.requireUser(await o.who(call));
      const requested = Number(r['TTL'] ?? 0);
      if (requested > maxTtl) throw catalogue.error('STORE_ERR_LEASE_TTL_TOO_LARGE', 'etcdserver: too large lease TTL');
      const ttl = Math.max(requested, o.minTtl);
      const id = r['ID'] && r['ID'] !== '0' ? String(r['ID']) : newLeaseId();
      const res = await node.write({ op: 'leaseGrant', id, ttl });
      if (res.error) throw new BallastError(res.error.code, res.error.message);
      return { header: o.header(res.revision), ID: id, TTL: String(ttl), error: '' };
    },
    LeaseRevoke: async (r, call) => {
      const ai = await o.who(call);
      if (auth.enabled) auth.requireUser(ai);
      // Who revokes deletes the lease's keys: checked where it applies (write access to each).
      const res = await node.write({ op: 'leaseRevoke', id: String(r['ID'] ?? '0') }, ai);
      if (res.error) throw new BallastError(res.error.code, res.error.message);
      return { header: o.header(res.revision) };
    },
    LeaseTimeToLive: async (r, call) => {
      if (auth.enabled) node.sm.checkLeaseRead(await o.who(call), String(r['ID'] ?? '0'));
      const out = node.isLeader
        ? await leaseTimeToLive(node, r)
        : ((await node.forwardToLeader('LeaseTimeToLive', r, forwardTimeoutMs)) as Awaited<ReturnType<typeof leaseTimeToLive>>);
      return { header: o.header(), ...out, keys: out.keys.map((k) => Buffer.from(k, 'latin1')) };
    },
    LeaseLeases: async (_r, call) => {
      if (auth.enabled) {
        const ai = await o.who(call);
        for (const id of node.sm.leases.keys()) node.sm.checkLeaseRead(ai, id);
      }
      return { header: o.header(), leases: [...node.sm.leases.keys()].map((ID) => ({ ID })) };
    },
  };
}

/**
 * LeaseKeepAlive: answered by the leader. A follower forwards each request of the stream to the
 * leader over the peer channel, in order; a forward that fails ends the stream with UNAVAILABLE
 * and the reason (the client reconnects), never with silence.
 */
export function keepAliveHandler(o: LeaseApiOptions): (call: grpc.ServerDuplexStream<Wire, Wire>) => void {
  return (call) => {
    let chain: Promise<void> = Promise.resolve();
    let ended = false;
    const fail = (err: unknown): void => {
      if (ended) return;
      ended = true;
      // emit('error'): grpc-js ends the stream with this status. destroy() would end it with no
      // status at all, and the client would wait in silence (the stream it holds stays open).
      // Auth refusals keep etcd's status (clients re-authenticate on UNAUTHENTICATED and on an
      // old auth revision); anything else ends the stream UNAVAILABLE and the client reconnects.
      if (
        isBallastError(err) &&
        statusOf[err.code] !== undefined &&
        (err.code.startsWith('STORE_ERR_AUTH') || err.code === 'STORE_ERR_PERMISSION_DENIED')
      ) {
        call.emit('error', toGrpcError(err));
        return;
      }
      const e = err as { code?: unknown; message?: string };
      const details = e.message ?? 'etcdserver: no leader';
      call.emit('error', Object.assign(new Error(details), { code: grpc.status.UNAVAILABLE, details }));
    };
    call.on('data', (req: Wire) => {
      const id = String(req['ID'] ?? '0');
      chain = chain
        .then(async () => {
          if (ended) return;
          const node = o.node;
          // Renewing keeps the lease's keys alive: write access to each, unless root (etcd's checkLeaseRenew).
          if (node.sm.auth.enabled) node.sm.checkLeaseWrite(await o.who(call), id);
          const out = node.isLeader
            ? await leaseKeepAliveOnce(node, id)
            : ((await node.forwardToLeader('LeaseKeepAlive', { ID: id }, forwardTimeoutMs)) as { ID: string; TTL: string });
          if (!ended) call.write({ header: o.header(), ...out });
        })
        .catch(fail);
    });
    call.on(
      'end',
      () =>
        void chain.then(() => {
          if (!ended) {
            ended = true;
            call.end();
          }
        }),
    );
    call.on('cancelled', () => {
      ended = true;
    });
    call.on('error', () => undefined);
  };
}
