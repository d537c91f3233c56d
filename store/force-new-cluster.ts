/**
 * Forcing a new cluster from one member's data (etcd's --force-new-cluster), the last step of
 * recovering from a lost quorum when the other members' data is gone: the member keeps its whole
 * log and state and becomes the only member of the configuration, so it elects itself and serves
 * again; the others are added back empty, as learners, and catch up from it.
 *
 * Unlike etcd, which discards the entries past the member's commit index, every entry in the log
 * is kept and committed: a follower may not yet have heard that the leader committed (and
 * acknowledged) its newest entries, and dropping them would lose acknowledged writes. Keeping an
 * entry that was never committed is allowed: its client got no answer, and linearizability lets a
 * write whose outcome was unknown take effect.
 *
 * Pure: from what the WAL and snapshot hold, the entries to append. The driver (store/boot.ts)
 * writes them and records that it did.
 */
import { catalogue } from './errors.ts';
import type { ConfContext } from './state-machine.ts';
import {
  type ConfChange,
  type ConfState,
  type Entry,
  EntryType,
  type HardState,
  type NodeId,
  decodeConfChange,
  encodeConfChange,
} from './raft/types.ts';

export interface ForcedStart {
  /** Entries to append to the log: one removal per other member. */
  entries: Entry[];
  /** The hard state that commits the whole log, those entries included. */
  hardState: HardState;
  /** The members removed (voters and learners). */
  removed: NodeId[];
}

/** The configuration after the snapshot's and every conf change in `entries` (in index order). */
export function confAfter(snapshotConf: ConfState | undefined, snapshotIndex: number, entries: readonly Entry[]): ConfState {
  const voters = new Set(snapshotConf?.voters ?? []);
  const learners = new Set(snapshotConf?.learners ?? []);
  for (const e of entries) {
    if (e.index <= snapshotIndex || e.type !== EntryType.confChange) continue;
    const cc = decodeConfChange(e.data);
    switch (cc.type) {
      case 'addVoter':
        learners.delete(cc.id);
        voters.add(cc.id);
        break;
      case 'addLearner':
        if (!voters.has(cc.id)) learners.add(cc.id);
        break;
      case 'promote':
        if (learners.delete(cc.id)) voters.add(cc.id);
        break;
      case 'remove':
        voters.delete(cc.id);
        learners.delete(cc.id);
        break;
    }
  }
  return { voters: [...voters].sort(), learners: [...learners].sort() };
}

/**
 * The entries that make `self` the only member: one committed removal of every other member,
 * after the last entry of the log, in the member's current term. Throws when `self` is not a
 * voter of the configuration (a learner holds no vote-worthy log; a removed member none at all).
 */
export function forceNewCluster(
  self: NodeId,
  o: {
    snapshot?: { index: number; term: number; conf: ConfState } | undefined;
    entries: readonly Entry[];
    hardState: HardState | undefined;
  },
): ForcedStart {
  const snapIndex = o.snapshot?.index ?? 0;
  const log = o.entries.filter((e) => e.index > snapIndex);
  const conf = confAfter(o.snapshot?.conf, snapIndex, log);
  if (!conf.voters.includes(self)) {
    const why = conf.learners.includes(self)
      ? 'is a learner (it may not have every committed entry)'
      : "is not in the cluster's configuration (it was removed)";
    throw catalogue.error(
      'STORE_ERR_DATA_DIR',
      `--force-new-cluster: this member (${self}) ${why}; force the new cluster from a voting member's data`,
    );
  }
  const removed = [...conf.voters, ...conf.learners].filter((id) => id !== self);
  const last = log.length > 0 ? (log[log.length - 1] as Entry).index : snapIndex;
  const term = Math.max(o.hardState?.term ?? 0, o.snapshot?.term ?? 0, log.length > 0 ? (log[log.length - 1] as Entry).term : 0);
  const entries = removed.map((id, i): Entry => {
    const cc: ConfChange = {
      type: 'remove',
      id,
      context: { rid: '', member: { id, name: '', peerURLs: [], clientURLs: [], isLearner: false } } satisfies ConfContext,
    };
    return { term, index: last + 1 + i, type: EntryType.confChange, data: encodeConfChange(cc) };
  });
  // Commit everything: the member's vote is kept (it voted in `term` or not at all).
  return { entries, hardState: { term, vote: o.hardState?.term === term ? o.hardState.vote : '', commit: last + entries.length }, removed };
}
