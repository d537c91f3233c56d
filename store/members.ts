/**
 * Member and cluster identity. As in etcd, a member's id is derived from its peer URLs and the
 * cluster token (so every founding member computes the same ids from --initial-cluster, and a
 * member added later can compute its own), and ids are 16 hex digits of a uint64.
 */
import { createHash } from 'node:crypto';
import { BallastError } from '../lib/errors.ts';
import type { NodeId } from './raft/types.ts';

/**
 * A member's id: from its peer URLs and the cluster token (so members of a new cluster agree on
 * each other's ids from --initial-cluster alone), plus a salt when a URL is added again after its
 * member was removed (a removed id never comes back, as in etcd; the new member learns its id
 * from the cluster when it joins).
 */
export function memberId(peerURLs: readonly string[], token: string, salt = ''): NodeId {
  const h = createHash('sha1').update([...peerURLs].map(normalizeUrl).sort().join(',')).update(token).update(salt).digest();
  return h.subarray(0, 8).toString('hex');
}

export function clusterId(token: string): string {
  return createHash('sha1').update(`cluster:${token}`).digest().subarray(0, 8).toString('hex');
}

/** `http://127.0.0.1:2380/` and `http://127.0.0.1:2380` are the same peer. */
export function normalizeUrl(u: string): string {
  return new URL(u).href.replace(/\/$/, '');
}

/** uint64 hex id → decimal string (the wire form of etcd's uint64 ids). */
export function idToDecimal(id: NodeId): string {
  return BigInt(`0x${id}`).toString(10);
}

export function idFromDecimal(dec: string | number): NodeId {
  return BigInt(dec).toString(16).padStart(16, '0');
}

/** Parse `--initial-cluster name=url,name=url` (a name may repeat for several URLs). */
export function parseInitialCluster(s: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const part of s.split(',').map((p) => p.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    const name = part.slice(0, eq);
    const url = part.slice(eq + 1);
    if (eq <= 0 || !URL.canParse(url) || !/^https?:$/.test(new URL(url).protocol)) {
      throw new BallastError('BALLAST_ERR_CONFIG_INVALID', `--initial-cluster: got "${part}"; expected name=http://host:port entries separated by commas (m1=http://127.0.0.1:2380,m2=...)`);
    }
    out.set(name, [...(out.get(name) ?? []), normalizeUrl(url)]);
  }
  return out;
}
