/**
 * Member and cluster identity. As in etcd, a member's id is derived from its peer URLs and the
 * cluster token (so every founding member computes the same ids from --initial-cluster, and a
 * member added later can compute its own), and ids are 16 hex digits of a uint64.
 */
import { createHash } from 'node:crypto';
import { BallastError } from '../lib/errors.ts';
import { catalogue } from './errors.ts';
import type { RaftStatus } from './raft/raft.ts';
import type { NodeId } from './raft/types.ts';
import type { Member, StoreRequest } from './state-machine.ts';

/**
 * A member's id: from its peer URLs and the cluster token (so members of a new cluster agree on
 * each other's ids from --initial-cluster alone), plus a salt when a URL is added again after its
 * member was removed (a removed id never comes back, as in etcd; the new member learns its id
 * from the cluster when it joins).
 */
export function memberId(peerURLs: readonly string[], token: string, salt = ''): NodeId {
  const h = createHash('sha1')
    .update([...peerURLs].map(normalizeUrl).sort().join(','))
    .update(token)
    .update(salt)
    .digest();
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
  for (const part of s
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const eq = part.indexOf('=');
    const name = part.slice(0, eq);
    const url = part.slice(eq + 1);
    if (eq <= 0 || !URL.canParse(url) || !/^https?:$/.test(new URL(url).protocol)) {
      throw new BallastError(
        'BALLAST_ERR_CONFIG_INVALID',
        `--initial-cluster: got "${part}"; expected name=http://host:port entries separated by commas (m1=http://127.0.0.1:2380,m2=...)`,
      );
    }
    out.set(name, [...(out.get(name) ?? []), normalizeUrl(url)]);
  }
  return out;
}

// ---- membership changes: what may be proposed (store/node.ts proposes it) --------------------

/**
 * The id of a member added with these peer URLs. Refused: a peer URL some member already has,
 * and a second learner (etcd allows one at a time). A URL whose member was removed comes back
 * under a new id (`salt(n)` until one is free): a removed id never returns.
 */
export function idForNewMember(
  members: ReadonlyMap<NodeId, Member>,
  removed: ReadonlySet<NodeId>,
  peerURLs: readonly string[],
  isLearner: boolean,
  token: string,
  salt: (n: number) => string,
): NodeId {
  const urls = new Set(checkPeerUrls(peerURLs));
  // A table written before URLs were checked may hold one that does not parse: compared as is.
  const same = (u: string): boolean => urls.has(URL.canParse(u) ? normalizeUrl(u) : u);
  for (const m of members.values()) {
    if (m.peerURLs.some(same)) throw catalogue.error('STORE_ERR_MEMBER_EXISTS', 'etcdserver: Peer URLs already exists');
  }
  if (isLearner && [...members.values()].some((m) => m.isLearner))
    throw catalogue.error('STORE_ERR_TOO_MANY_LEARNERS', 'etcdserver: too many learner members in cluster');
  let id = memberId(peerURLs, token);
  for (let n = 1; removed.has(id) || members.has(id); n++) id = memberId(peerURLs, token, salt(n));
  return id;
}

/** Peer URLs as given to MemberAdd/MemberUpdate, normalized; at least one, each http(s)://host:port. */
export function checkPeerUrls(peerURLs: readonly string[] | undefined): string[] {
  // etcd's rule: scheme http(s), host:port, no path.
  const ok = (u: string): boolean => URL.canParse(u) && /^https?:\/\/(\[[0-9a-fA-F:.]+\]|[^/:\s[\]@]+):\d{1,5}\/?$/.test(u);
  if (!peerURLs || peerURLs.length === 0 || !peerURLs.every(ok))
    throw catalogue.error('STORE_ERR_MEMBER_BAD_URLS', 'etcdserver: given member URLs are invalid');
  return peerURLs.map(normalizeUrl);
}

/**
 * The member to remove. A voter's removal is refused when the voters left would not have an
 * active quorum (as etcd's --strict-reconfig-check): `status` is the leader's view of who is
 * active.
 */
export function memberToRemove(members: ReadonlyMap<NodeId, Member>, status: Pick<RaftStatus, 'conf' | 'progress'>, id: NodeId): Member {
  const m = members.get(id);
  if (!m) throw catalogue.error('STORE_ERR_MEMBER_NOT_FOUND', 'etcdserver: member not found');
  if (!m.isLearner) {
    const voters = status.conf.voters.filter((v) => v !== id);
    const active = voters.filter((v) => status.progress[v]?.active).length;
    if (voters.length > 0 && active < Math.floor(voters.length / 2) + 1)
      throw catalogue.error('STORE_ERR_UNHEALTHY_QUORUM', 'etcdserver: unhealthy cluster');
  }
  return m;
}

/** The learner to promote (only learners can be). */
export function learnerToPromote(members: ReadonlyMap<NodeId, Member>, id: NodeId): Member {
  const m = members.get(id);
  if (!m) throw catalogue.error('STORE_ERR_MEMBER_NOT_FOUND', 'etcdserver: member not found');
  if (!m.isLearner) throw catalogue.error('STORE_ERR_MEMBER_NOT_LEARNER', 'etcdserver: can only promote a learner member');
  return m;
}

/** Who a stopping leader hands over to: the voter furthest along its log. */
export function transferTarget(status: Pick<RaftStatus, 'conf' | 'progress'>, self: NodeId): NodeId | undefined {
  return status.conf.voters
    .filter((v) => v !== self)
    .sort((a, b) => (status.progress[b]?.match ?? 0) - (status.progress[a]?.match ?? 0))[0];
}

/** What a member publishes about itself in the member table (as etcd's member publish). */
export interface SelfInfo {
  id: NodeId;
  name: string;
  clientURLs: readonly string[];
  formats: readonly number[];
  version: string;
}

/**
 * The publish request that brings this member's row of the member table up to date, or undefined
 * when it already says all of it (or the member is not in the table: not yet, or removed).
 */
export function publishRequest(me: Member | undefined, self: SelfInfo): StoreRequest | undefined {
  if (!me) return undefined;
  const same = (a: readonly unknown[] | undefined, b: readonly unknown[]) => a !== undefined && a.join(',') === b.join(',');
  if (me.name === self.name && same(me.clientURLs, self.clientURLs) && same(me.formats, self.formats) && me.version === self.version)
    return undefined;
  return {
    op: 'publish',
    id: self.id,
    name: self.name,
    clientURLs: [...self.clientURLs],
    formats: [...self.formats],
    version: self.version,
  };
}
