/**
 * A member's start from its data directory: recover the WAL, the newest good snapshot and the
 * Raft state it implies; or create the directory — bootstrapping a new cluster from
 * --initial-cluster, or joining an existing one under the id the cluster gave it — and say which
 * peers to reach until the member table is applied. The driver (store/node.ts) runs what this
 * returns.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { catalogue } from './errors.ts';
import { forceNewCluster } from './force-new-cluster.ts';
import { discoverId, refuseIfBootstrapped } from './join.ts';
import { clusterId as clusterIdOf, memberId as memberIdOf } from './members.ts';
import type { StoreNodeConfig } from './node-config.ts';
import { bootstrapEntries } from './raft/bootstrap.ts';
import { Raft, type RaftBoot } from './raft/raft.ts';
import type { NodeId, Snapshot, SnapshotMeta } from './raft/types.ts';
import { latestFormat } from './format/formats.ts';
import { checkFormat } from './format/data-dir.ts';
import { Snapshotter } from './snapshot/snapshotter.ts';
import type { ConfContext } from './state-machine.ts';
import { Wal, type WalContents } from './wal/wal.ts';

export interface BootedMember {
  id: NodeId;
  raft: Raft;
  wal: Wal;
  snap: Snapshotter;
  /** The snapshot to restore the state machine from, when recovering. */
  snapshot?: Snapshot | undefined;
  /** Peers to reach until the member table is applied. */
  peers: Map<NodeId, URL>;
}

/** The walBeforeSync failpoint (test-only; undefined unless failpoints are enabled). */
function walFailpoint(cfg: StoreNodeConfig): ((wal: Wal) => Promise<void> | void) | undefined {
  const fp = cfg.failpoints;
  if (!fp) return undefined;
  return (wal) => {
    const t = fp.take('walBeforeSync');
    if (!t) return undefined;
    if (t.action === 'sleep') return new Promise<void>((resolve) => cfg.clock.setTimeout(resolve, t.ms));
    cfg.log.warn({ failpoint: 'walBeforeSync' }, 'failpoint: crash before fsync, losing unsynced WAL writes');
    wal.loseUnsynced();
    process.kill(process.pid, 'SIGKILL');
    return undefined;
  };
}

export async function bootMember(cfg: StoreNodeConfig): Promise<BootedMember> {
  const memberDir = join(cfg.dataDir, 'member');
  const walDir = join(memberDir, 'wal');
  const snap = new Snapshotter(join(memberDir, 'snap'));
  const raftCfg = (id: NodeId) => ({
    id,
    electionTick: Math.max(2, Math.round(cfg.electionMs / cfg.heartbeatMs)),
    heartbeatTick: 1,
    random: cfg.random,
    maxSizePerMsg: 1 << 20,
    maxInflightMsgs: 512,
  });
  // Until the member table is applied, reach peers through --initial-cluster.
  const peers = new Map<NodeId, URL>();
  for (const urls of cfg.initialCluster.values()) peers.set(memberIdOf(urls, cfg.token), new URL(urls[0] as string));
  const walOpts = { beforeSync: walFailpoint(cfg) };
  if (Wal.exists(walDir)) {
    // A directory in a format this build does not read is refused before anything is read.
    const format = checkFormat(cfg.dataDir, cfg.version);
    const { wal, contents } = Wal.open(walDir, walOpts);
    if (format.format < latestFormat)
      cfg.log.info(
        { format: format.format, writtenBy: format.writtenBy },
        'data directory in an older format: read as it is; new writes use the format every member reads',
      );
    if (!contents.meta)
      throw catalogue.error('STORE_ERR_DATA_DIR', `${walDir}: the WAL has no member record; the data directory is damaged`);
    if (contents.meta.clusterId !== clusterIdOf(cfg.token)) {
      throw catalogue.error(
        'STORE_ERR_DATA_DIR',
        `${cfg.dataDir} belongs to cluster ${contents.meta.clusterId}, not this one (${clusterIdOf(cfg.token)}); check --initial-cluster-token or use a fresh --data-dir`,
      );
    }
    const snapshot = snap.loadNewest((file, why) => cfg.log.warn({ file, why }, 'skipping damaged snapshot'));
    const id = contents.meta.memberId;
    if (cfg.forceNewCluster) forceOnce(cfg, memberDir, id, wal, contents, snapshot?.meta);
    const boot: RaftBoot = { conf: { voters: [], learners: [] }, entries: contents.entries, applied: snapshot?.meta.index ?? 0 };
    if (contents.hardState) boot.hardState = contents.hardState;
    if (snapshot) boot.snapshot = snapshot;
    cfg.log.info(
      { member: id, entries: contents.entries.length, snapshotIndex: snapshot?.meta.index ?? 0, term: contents.hardState?.term ?? 0 },
      'recovered member from data directory',
    );
    return { id, raft: new Raft(raftCfg(id), boot), wal, snap, snapshot: snapshot ?? undefined, peers };
  }
  if (cfg.forceNewCluster)
    throw catalogue.error(
      'STORE_ERR_DATA_DIR',
      `--force-new-cluster: ${cfg.dataDir} holds no data to start the new cluster from; give the data directory of the member that survived`,
    );
  // Joining an existing cluster, the member asks it for its id (MemberAdd may have salted it);
  // a new cluster's members compute theirs from --initial-cluster.
  // One that would bootstrap a new cluster first makes sure it is not a wiped member of a running one.
  const joined = cfg.initialClusterState === 'existing' ? await discoverId(cfg) : undefined;
  if (cfg.initialClusterState === 'new') await refuseIfBootstrapped(cfg);
  const id = joined?.id ?? memberIdOf(cfg.advertisePeerUrls, cfg.token);
  mkdirSync(memberDir, { recursive: true });
  const wal = Wal.create(walDir, { memberId: id, clusterId: clusterIdOf(cfg.token) }, walOpts);
  let raft: Raft;
  if (cfg.initialClusterState === 'new') {
    const voters = [...cfg.initialCluster].map(([name, urls]) => ({ name, urls, id: memberIdOf(urls, cfg.token) }));
    const byId = new Map(voters.map((v) => [v.id, v]));
    const { entries, hardState } = bootstrapEntries({ voters: voters.map((v) => v.id), learners: [] }, (vid) => {
      const v = byId.get(vid);
      return {
        rid: '',
        member: { id: vid, name: v?.name ?? '', peerURLs: v?.urls ?? [], clientURLs: [], isLearner: false },
      } satisfies ConfContext;
    });
    wal.save(hardState, entries);
    raft = new Raft(raftCfg(id), { conf: { voters: [], learners: [] }, entries, hardState });
  } else {
    raft = new Raft(raftCfg(id), { conf: { voters: [], learners: [] } });
  }
  // A joining member knows the real ids (some may be salted) from the member table it fetched.
  if (joined) {
    peers.clear();
    for (const m of joined.members) if (m.id !== id && m.peerURLs[0]) peers.set(m.id, new URL(m.peerURLs[0]));
  }
  cfg.log.info({ member: id, state: cfg.initialClusterState }, 'initialized new member data directory');
  return { id, raft, wal, snap, peers };
}

/**
 * --force-new-cluster: commit the whole log with every other member removed (written to the WAL
 * and synced before the Raft core sees it), then record the id it was done under.
 */
function forceOnce(
  cfg: StoreNodeConfig,
  memberDir: string,
  id: NodeId,
  wal: Wal,
  contents: WalContents,
  snapshot: SnapshotMeta | undefined,
): void {
  const marker = join(memberDir, 'forced-new-cluster');
  const once = cfg.forceNewCluster?.once;
  if (once && existsSync(marker) && readFileSync(marker, 'utf8').trim() === once) {
    cfg.log.info({ member: id, id: once }, '--force-new-cluster: already done under this id; starting normally');
    return;
  }
  const forced = forceNewCluster(id, { snapshot, entries: contents.entries, hardState: contents.hardState });
  wal.save(forced.hardState, forced.entries);
  contents.entries.push(...forced.entries);
  contents.hardState = forced.hardState;
  if (once) writeFileSync(marker, `${once}\n`, { flush: true });
  cfg.log.warn(
    { member: id, removed: forced.removed, commit: forced.hardState.commit, term: forced.hardState.term },
    "--force-new-cluster: starting as a one-member cluster from this member's data; add the other members back (as learners) once it leads",
  );
}
