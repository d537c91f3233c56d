/**
 * Updates (image, version, configuration): members whose pod carries an older spec hash are
 * replaced one at a time, followers first, each only while every member is ready (so caught up:
 * readiness means applied within a small lag), the leader last after moving leadership to an
 * updated member. A replaced member that is not ready within the deadline stops the rollout
 * (nothing else is replaced while a member is not ready) and marks the cluster Degraded.
 */
import type { StoreCluster } from '../api/storecluster.ts';
import * as specs from '../specs/storecluster.ts';
import { step } from './membership.ts';
import type { MemberView, Observed, Step } from './types.ts';

/** How long a replaced member may take to become ready before the rollout stops. */
export const updateDeadlineMs = 5 * 60_000;

/** The rollout's step; undefined when every member runs the current spec. */
export function planRollout(sc: StoreCluster, o: Observed, list: MemberView[], healthy: boolean): Step | undefined {
  const want = specs.specHash(sc);
  const outdated = o.pods.filter((p) => p.specHash !== want);
  const stuck = o.pods.find((p) => p.specHash === want && !p.ready && o.now - p.createdAt > updateDeadlineMs);
  if (stuck) {
    return step({
      phase: 'Degraded',
      degraded: true,
      progressing: {
        status: 'False',
        reason: 'RolloutStuck',
        message: `${stuck.name} was replaced for the update and is not ready after ${updateDeadlineMs / 60_000} minutes; the rollout is stopped. Check its logs (kubectl logs ${stuck.name}) and fix the spec; nothing else is replaced while a member is not ready`,
      },
    });
  }
  if (outdated.length === 0) return undefined;
  if (!healthy)
    return step({
      phase: 'Updating',
      progressing: {
        status: 'True',
        reason: 'WaitingForHealthyMembers',
        message: `${outdated.length} member(s) to update; waiting until every member is ready`,
      },
      requeueMs: 3_000,
    });
  const leaderName = list.find((m) => m.id === o.leaderId)?.name ?? '';
  const follower = outdated.find((p) => p.name !== leaderName);
  if (!follower) {
    // Only the leader is left: hand leadership to an updated member first.
    const to = list.find((m) => m.id !== o.leaderId && !m.isLearner && o.pods.some((p) => p.name === m.name && p.specHash === want));
    if (!to)
      return step({
        phase: 'Updating',
        progressing: { status: 'True', reason: 'NoUpdatedMember', message: 'no updated member to take over leadership' },
        requeueMs: 3_000,
      });
    return step(
      {
        phase: 'Updating',
        progressing: { status: 'True', reason: 'LeadershipMoved', message: `moving leadership off ${leaderName} before updating it` },
        requeueMs: 1_000,
      },
      [{ do: 'moveLeader', to: to.id }],
      [
        {
          type: 'Normal',
          reason: 'LeadershipMoved',
          message: `moved leadership from ${leaderName} to ${to.name} before updating ${leaderName}`,
        },
      ],
    );
  }
  return step(
    {
      phase: 'Updating',
      progressing: { status: 'True', reason: 'MemberUpdating', message: `replacing ${follower.name} (${outdated.length} to go)` },
      requeueMs: 2_000,
    },
    [{ do: 'deletePod', name: follower.name }],
    [
      {
        type: 'Normal',
        reason: 'MemberUpdating',
        message: `replacing ${follower.name} to run ${specs.imageOf(sc)} (${outdated.length - 1} more after it)`,
      },
    ],
  );
}
