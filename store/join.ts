/** How a member joining an existing cluster finds out who it is. */
import { isBallastError } from '../lib/errors.ts';
import { catalogue } from './errors.ts';
import { normalizeUrl } from './members.ts';
import type { StoreNodeConfig } from './node-config.ts';
import type { NodeId } from './raft/types.ts';
import { type PeerMember, queryMembers } from './transport/peer.ts';

/**
 * A member joining an existing cluster learns its id from the cluster: it asks the members in
 * --initial-cluster for the member table and finds itself by its advertised peer URLs. Retries
 * for up to a minute (the cluster may be electing). One member's "not in the table" is not
 * decisive (it may lag the MemberAdd, or be stale itself): only when no member lists it for ten
 * seconds has it not been added (etcdctl member add / MemberAdd), and it is told so.
 */
/** How long members answering "not in the table" are asked again before that is the answer. */
const notListedGraceMs = 10_000;

export async function discoverId(cfg: StoreNodeConfig): Promise<{ id: NodeId; members: PeerMember[] }> {
  const mine = new Set(cfg.advertisePeerUrls.map(normalizeUrl));
  const others = [...cfg.initialCluster.values()]
    .flat()
    .map((u) => new URL(u))
    .filter((u) => !mine.has(normalizeUrl(u.href)));
  const start = cfg.clock.now();
  const deadline = start + 60_000;
  let last = 'no other member in --initial-cluster';
  let notListed = false;
  for (;;) {
    for (const url of others) {
      try {
        const members = await queryMembers(url, cfg.token, cfg.peerTls);
        const me = members.find((m) => m.peerURLs.some((u) => mine.has(normalizeUrl(u))));
        // A member that has run before has published its name. Finding that with an empty data
        // directory means its data is lost: rejoining as a voter that forgot its log and its
        // votes could elect a stale leader, so it stops and says what to do instead.
        if (me && me.name !== '') throw dataLost(cfg, me);
        if (me) return { id: me.id, members };
        // Not decisive: this peer may not have applied the MemberAdd yet, or may itself be a
        // stale member (removed, or cut off). Ask the others, and again, for a while.
        notListed = true;
        last = `${url.href} does not list it`;
      } catch (err) {
        if (isBallastError(err)) throw err;
        last = `${url.href}: ${(err as Error).message}`;
      }
    }
    if (notListed && cfg.clock.now() > start + notListedGraceMs) {
      throw catalogue.error(
        'STORE_ERR_DATA_DIR',
        `this member (${[...mine].join(', ')}) is not in the cluster's member table; add it first (etcdctl member add --peer-urls=...), or use --initial-cluster-state=new for a new cluster`,
      );
    }
    if (cfg.clock.now() > deadline)
      throw catalogue.error(
        'STORE_ERR_DATA_DIR',
        `could not reach any member of the existing cluster to learn this member's id (${last}); check --initial-cluster`,
      );
    await cfg.clock.sleep(500);
  }
}

function dataLost(cfg: StoreNodeConfig, me: PeerMember): Error {
  return catalogue.error(
    'STORE_ERR_DATA_LOST',
    `this member (${me.name}, id ${me.id}) has run in this cluster before, but its data directory ${cfg.dataDir} is empty: its data is lost. Remove it and add it again as a learner (etcdctl member remove ${me.id}; etcdctl member add ${me.name} --learner --peer-urls=${me.peerURLs.join(',')}), or restore its data`,
  );
}

/**
 * Before a member bootstraps a new cluster from an empty data directory, it asks the other
 * members in --initial-cluster whether it has run before (etcd's isMemberBootstrapped): a member
 * that published its client URLs has. That is a member whose volume was wiped while its pod still
 * says --initial-cluster-state=new; bootstrapping would give it a fresh log and fresh votes, and a
 * voter that forgot what it promised can elect a stale leader. Peers that do not answer within
 * the timeout (a genuinely new cluster, whose members all start at once) are no evidence either
 * way, as in etcd.
 */
export async function refuseIfBootstrapped(cfg: StoreNodeConfig, timeoutMs = 2000): Promise<void> {
  const mine = new Set(cfg.advertisePeerUrls.map(normalizeUrl));
  const others = [...cfg.initialCluster.values()]
    .flat()
    .map((u) => new URL(u))
    .filter((u) => !mine.has(normalizeUrl(u.href)));
  const answers = await Promise.allSettled(others.map((url) => queryMembers(url, cfg.token, cfg.peerTls, timeoutMs)));
  for (const a of answers) {
    if (a.status !== 'fulfilled') continue;
    const me = a.value.find((m) => m.peerURLs.some((u) => mine.has(normalizeUrl(u))));
    if (me && (me.clientURLs?.length ?? 0) > 0) throw dataLost(cfg, me);
  }
}
