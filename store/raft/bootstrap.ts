/**
 * A new cluster's first entries. As in etcd, the initial membership is written into the log as
 * committed conf-change entries at term 1 (identical on every founding member), so a member
 * that joins later learns the whole membership by replication, with no side channel.
 */
import { type ConfChange, type ConfState, type Entry, EntryType, type HardState, encodeConfChange } from './types.ts';

export function bootstrapEntries(
  conf: ConfState,
  context: (id: string) => unknown = () => undefined,
): { entries: Entry[]; hardState: HardState } {
  const changes: ConfChange[] = [
    ...[...conf.voters].sort().map((id): ConfChange => ({ type: 'addVoter', id, context: context(id) })),
    ...[...conf.learners].sort().map((id): ConfChange => ({ type: 'addLearner', id, context: context(id) })),
  ];
  const entries = changes.map((cc, i): Entry => ({ term: 1, index: i + 1, type: EntryType.confChange, data: encodeConfChange(cc) }));
  return { entries, hardState: { term: 1, vote: '', commit: entries.length } };
}
