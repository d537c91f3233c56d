/**
 * Membership, quorum-safe (docs/architecture.md): bootstrap starts every member at once from the
 * ordinals; scaling up adds one member as a learner (MemberAdd) before its pod exists and
 * promotes it once it has caught up (the store refuses earlier); scaling down moves leadership
 * off the highest ordinal if needed and removes it from the Raft configuration (MemberRemove)
 * before its pod goes. Repair: a member that lost its data is removed, given an empty volume and
 * added back as a learner. Nothing happens while the cluster is not healthy, and a lost quorum is
 * acted on only through a recovery plan a person approved (operator/plan/recovery.ts). At most
 * one step per reconcile.
 */
import type { StoreCluster } from '../api/storecluster.ts';
import * as specs from '../specs/storecluster.ts';
import { planLostQuorum, planRejoin } from './recovery.ts';
import { step } from './step.ts';
import type { Action, MemberView, Observed, PeerRef, Step } from './types.ts';

export { step };

/** The members every ordinal below `n` would be. */
export function ordinalMembers(sc: StoreCluster, n: number): PeerRef[] {
  return Array.from({ length: n }, (_, i) => ({ name: specs.memberName(sc, i), peerUrl: specs.peerUrl(sc, i) }));
}

/** What the steps after bootstrap share: the cluster, what was observed, the Raft configuration. */
interface Membership {
  sc: StoreCluster;
  o: Observed;
  want: number;
  /** The StatefulSet's replicas. */
  current: number;
  /** The Raft configuration (a leader answered). */
  list: MemberView[];
  membersNow: PeerRef[];
  /** The StatefulSet with its bootstrap configuration in step with the Raft configuration. */
  keep: (replicas: number) => Action;
}

/**
 * Membership's step, or `continueWith`: the StatefulSet kept in step with the Raft configuration
 * (its replicas, for the rollout and auth to go on) when membership has nothing to do. In order:
 * bootstrap, the operator's credentials, no leader, a recovery run, repair, scaling.
 */
export function planMembership(sc: StoreCluster, o: Observed): Step | { continueWith: Action; healthy: boolean; members: MemberView[] } {
  if (o.setReplicas === undefined) return planBootstrap(sc, o);
  if (o.authProblem) return planAuthProblem(sc, o.authProblem);
  const list = o.members;
  if (!o.leaderId || !list) return planLeaderless(sc, o);
  const current = o.setReplicas;
  const membersNow: PeerRef[] = list.map((m) => ({ name: m.name, peerUrl: m.peerUrl }));
  const m: Membership = {
    sc,
    o,
    want: sc.spec.replicas,
    current,
    list,
    membersNow,
    keep: (replicas) => ({
      do: 'applyStatefulSet',
      replicas,
      members: membersNow.length > 0 ? membersNow : ordinalMembers(sc, current),
      state: membersNow.length > 0 ? 'existing' : 'new',
    }),
  };
  return planRecoveryRun(m) ?? planRepair(m) ?? planScaling(m);
}

/** No StatefulSet yet: every member starts at once from the ordinals (from a backup, once it is whole). */
function planBootstrap(sc: StoreCluster, o: Observed): Step {
  const want = sc.spec.replicas;
  const members = ordinalMembers(sc, want);
  // Created from a backup: only once the backup is whole, and every member restores it first.
  const from = sc.spec.restore?.backup;
  const source = o.restoreSource;
  if (from && source?.status?.phase !== 'Succeeded') {
    const message = source
      ? `spec.restore: StoreBackup ${from} is ${source.status?.phase ?? 'Pending'}${source.status?.phase === 'Failed' ? ` (${source.status.message ?? ''}); name a backup that Succeeded` : '; the members start once it Succeeded'}`
      : `spec.restore: StoreBackup ${from} does not exist in namespace ${sc.metadata.namespace}; create it, or name one that exists`;
    return step({ phase: 'Bootstrapping', progressing: { status: 'False', reason: 'RestoreSourceNotReady', message }, requeueMs: 5_000 });
  }
  return step(
    {
      phase: 'Bootstrapping',
      progressing: {
        status: 'True',
        reason: 'Bootstrapping',
        message: `starting ${want} members${source ? ` from backup ${source.metadata.name} (revision ${source.status?.revision ?? '?'})` : ''}`,
      },
    },
    [{ do: 'applyStatefulSet', replicas: want, members, state: 'new', ...(source ? { restoreFrom: source } : {}) }],
    [
      {
        type: 'Normal',
        reason: 'Bootstrapping',
        message: `starting ${want} members: ${members.map((m) => m.name).join(', ')}${source ? `, each restored from backup ${source.metadata.name} (revision ${source.status?.revision ?? '?'}, ${source.status?.objectKey ?? ''})${sc.spec.restore?.toRevision ? ` and the archive to revision ${sc.spec.restore.toRevision}` : sc.spec.restore?.toTime ? ` and the archive to ${sc.spec.restore.toTime}` : ''}` : ''}`,
      },
    ],
  );
}

/** Members answer, but not to the operator: auth is on and it has no usable root user. */
function planAuthProblem(sc: StoreCluster, authProblem: string): Step {
  // Members answer, but not to the operator: auth is on and it has no usable root user.
  return step({
    phase: 'Degraded',
    degraded: true,
    progressing: {
      status: 'False',
      reason: 'AuthCredentials',
      message: `the members refuse the operator's calls (${authProblem}): auth is on in the store and the operator has no working root credentials. Set spec.auth.enabled with spec.auth.rootSecretName naming a Secret whose username and password are the store's root user's (default ${specs.rootSecretName(sc)})`,
    },
  });
}

function planLeaderless(sc: StoreCluster, o: Observed): Step {
  // Without a leader the Raft configuration is unknown: the StatefulSet is left exactly as it
  // is (rewriting its bootstrap settings from a guess could, on a member that lost its data,
  // start a second cluster).
  if (sc.status?.recovery?.state === 'Restarting' || (o.pods.length > 0 && o.pods.every((p) => p.ip) && Boolean(sc.status?.leader)))
    return planLostQuorum(sc, o);
  // A run whose members are rejoining keeps its record through a moment without a leader (a
  // learner's restart, an election); it would otherwise never be marked Completed.
  const rejoining = sc.status?.recovery;
  if (rejoining?.state === 'Rejoining')
    return step({
      phase: 'Recovering',
      progressing: {
        status: 'True',
        reason: 'WaitingForLeader',
        message: `recovery plan ${rejoining.planId}: waiting for a leader while ${rejoining.recreate.join(', ')} rejoin`,
      },
      requeueMs: 2_000,
      recovery: rejoining,
    });
  return step({
    phase: 'Bootstrapping',
    progressing: { status: 'True', reason: 'WaitingForLeader', message: 'waiting for the members to elect a leader' },
  });
}

function planRecoveryRun({ sc, o, list, current, keep }: Membership): Step | undefined {
  // A recovery run, once the survivor leads: the other members from before it go first.
  const run = sc.status?.recovery;
  if (run && (run.state === 'Restarting' || run.state === 'Rejoining')) {
    const rejoin = planRejoin(
      sc,
      o,
      run,
      keep(current),
      list.map((m) => m.name),
    );
    if (rejoin) return rejoin;
  }
  return undefined;
}

/** A member that lost its data, one missing from the Raft configuration, a learner waiting. */
function planRepair({ sc, o, list, current, want, membersNow, keep }: Membership): Step | undefined {
  // Repair: a member whose data is gone stops (STORE_ERR_DATA_LOST) instead of voting with a
  // forgotten log. Remove it from the Raft configuration and give it a new, empty volume; it is
  // added back as a learner below and promoted once caught up. Only while every other member is
  // ready, so the smaller configuration keeps its quorum.
  const lost = o.pods.find((p) => p.dataLost);
  if (lost) {
    if (!o.pods.filter((p) => p.name !== lost.name).every((p) => p.ready)) {
      return step(
        {
          phase: 'Repairing',
          progressing: {
            status: 'True',
            reason: 'WaitingForHealthyMembers',
            message: `${lost.name} lost its data; repair waits until every other member is ready`,
          },
          requeueMs: 3_000,
        },
        [keep(current)],
      );
    }
    const m = list.find((x) => x.name === lost.name);
    return step(
      {
        phase: 'Repairing',
        progressing: {
          status: 'True',
          reason: 'MemberRemovedForRepair',
          message: `${lost.name} removed; it comes back empty as a learner`,
        },
        requeueMs: 2_000,
      },
      [
        ...(m ? [{ do: 'remove', id: m.id } as const] : []),
        { do: 'deleteClaim', name: `data-${lost.name}` },
        { do: 'deletePod', name: lost.name, force: true },
        keep(current),
      ],
      m
        ? [
            {
              type: 'Warning',
              reason: 'MemberRemovedForRepair',
              message: `${lost.name} lost its data (it stopped rather than vote with an empty log); removed it from the cluster to add it back empty`,
            },
          ]
        : [],
    );
  }
  // A member of the StatefulSet missing from the Raft configuration (removed for repair): add it
  // back as a learner; its pod joins empty and is promoted once caught up.
  const missing = Array.from({ length: Math.min(current, want) }, (_, i) => i).find(
    (i) => !membersNow.some((m) => m.name === specs.memberName(sc, i) || m.peerUrl === specs.peerUrl(sc, i)),
  );
  if (missing !== undefined && !list.some((m) => m.isLearner)) {
    const name = specs.memberName(sc, missing);
    const peerUrl = specs.peerUrl(sc, missing);
    return step(
      {
        phase: 'Repairing',
        progressing: { status: 'True', reason: 'MemberReAdded', message: `${name} added back as a learner` },
        requeueMs: 2_000,
      },
      [
        { do: 'addLearner', name, peerUrl },
        { do: 'applyStatefulSet', replicas: current, members: [...membersNow, { name, peerUrl }], state: 'existing' },
      ],
      [{ type: 'Normal', reason: 'MemberReAdded', message: `added ${name} back as a learner ({id}); it catches up from the others` }],
    );
  }
  // A learner waiting: promote it once its pod runs (the store refuses until it caught up).
  const learner = list.find((m) => m.isLearner);
  if (learner) {
    return {
      ...step(
        {
          phase: 'Scaling',
          progressing: { status: 'True', reason: 'MemberPromoted', message: `${learner.name} promoted` },
          requeueMs: 1_000,
        },
        [keep(Math.max(current, list.length)), { do: 'promote', id: learner.id }],
        [{ type: 'Normal', reason: 'MemberPromoted', message: `${learner.name} caught up and is now a voting member` }],
      ),
      ifFailed: {
        action: 'promote',
        match: /[^]*/,
        appendError: true,
        instead: {
          phase: 'Scaling',
          progressing: { status: 'True', reason: 'WaitingForLearner', message: `${learner.name} is catching up` },
          requeueMs: 2_000,
        },
      },
    };
  }
  return undefined;
}

/** Scaling up (a learner first) and down (leadership off the highest ordinal first); else nothing to do. */
function planScaling({
  sc,
  o,
  list,
  current,
  want,
  membersNow,
  keep,
}: Membership): Step | { continueWith: Action; healthy: boolean; members: MemberView[] } {
  const healthy = o.pods.length === current && o.pods.every((p) => p.ready) && list.length === current;
  const waitForHealthy = (): Step =>
    step(
      {
        phase: 'Scaling',
        progressing: {
          status: 'True',
          reason: 'WaitingForHealthyMembers',
          message: `scaling ${current}→${want} waits until all ${current} members are ready`,
        },
        requeueMs: 3_000,
      },
      [keep(current)],
    );
  if (want > current) {
    if (!healthy) return waitForHealthy();
    const name = specs.memberName(sc, current);
    const claim = `data-${name}`;
    if (o.nextClaimExists) {
      // A volume kept from an earlier scale-down holds a removed member's data: the new member
      // must start empty (it is sent a snapshot), so the old claim goes first.
      return step(
        {
          phase: 'Scaling',
          progressing: { status: 'True', reason: 'StaleVolumeDeleted', message: `deleting ${claim} before adding ${name}` },
          requeueMs: 1_000,
        },
        [{ do: 'deleteClaim', name: claim }, keep(current)],
        [
          {
            type: 'Normal',
            reason: 'StaleVolumeDeleted',
            message: `deleted ${claim}, kept from when ${name} was removed, so the new ${name} starts empty`,
          },
        ],
      );
    }
    const peerUrl = specs.peerUrl(sc, current);
    return step(
      {
        phase: 'Scaling',
        progressing: { status: 'True', reason: 'MemberAdded', message: `added ${name} as a learner (${current + 1}/${want})` },
        requeueMs: 2_000,
      },
      [
        { do: 'addLearner', name, peerUrl },
        { do: 'applyStatefulSet', replicas: current + 1, members: [...membersNow, { name, peerUrl }], state: 'existing' },
      ],
      [{ type: 'Normal', reason: 'MemberAdded', message: `added ${name} ({id}) as a learner; its pod starts next` }],
    );
  }
  if (want < current) {
    if (!healthy) return waitForHealthy();
    const victimName = specs.memberName(sc, current - 1);
    const victim = list.find((m) => m.name === victimName);
    if (victim && victim.id === o.leaderId) {
      const to = list.find((m) => m.id !== victim.id && !m.isLearner);
      return step(
        {
          phase: 'Scaling',
          progressing: { status: 'True', reason: 'LeadershipMoved', message: `moving leadership off ${victimName}` },
          requeueMs: 1_000,
        },
        to ? [{ do: 'moveLeader', to: to.id }] : [],
        [
          {
            type: 'Normal',
            reason: 'LeadershipMoved',
            message: `moved leadership from ${victimName} to ${to ? to.name : '?'} before removing it`,
          },
        ],
      );
    }
    return step(
      {
        phase: 'Scaling',
        progressing: { status: 'True', reason: 'MemberRemoved', message: `removed ${victimName} (${current - 1}/${want})` },
        requeueMs: 2_000,
      },
      [
        ...(victim ? [{ do: 'remove', id: victim.id } as const] : []),
        { do: 'applyStatefulSet', replicas: current - 1, members: membersNow.filter((m) => m.name !== victimName), state: 'existing' },
      ],
      victim ? [{ type: 'Normal', reason: 'MemberRemoved', message: `removed ${victimName} from the cluster; its pod goes next` }] : [],
    );
  }
  return { continueWith: keep(current), healthy, members: list };
}
