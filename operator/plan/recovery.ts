/**
 * Guided recovery from a lost quorum (docs/operations.md, "Recovering from quorum loss"). While
 * the quorum is lost the operator acts on nothing: it proposes a plan in status.recovery (the
 * surviving member with the newest data, by Raft term then commit index; the members that would
 * be re-created empty; what approving would discard) under an id that changes whenever any of
 * that changes. A person approves that exact plan by annotating the StoreCluster with its id; an
 * approval naming another plan is refused and said so. Approved, the run goes:
 *
 * - Restarting: the StatefulSet's template names the survivor and the plan id
 *   (`--force-new-cluster-member`, `--force-new-cluster-id`), and the survivor's pod is replaced,
 *   so its store starts as a one-member cluster from its own data (store/force-new-cluster.ts),
 *   once per plan id. The other members are left alone until it leads: one of them started now
 *   would still find itself in the old configuration and stop as a member that lost its data.
 * - Rejoining: with the survivor leading, the other members' pods and volumes from before the
 *   approval are deleted; membership (operator/plan/membership.ts) adds each back as a learner
 *   and promotes it once caught up, as for a repair.
 * - Completed: every member is a voter again and ready.
 */
import { createHash } from 'node:crypto';
import type { RecoveryStatus, StoreCluster } from '../api/storecluster.ts';
import * as specs from '../specs/storecluster.ts';
import { step } from './step.ts';
import type { Action, Observed, PodView, Step, StepEvent } from './types.ts';

/** The annotation that approves a recovery plan: its value is the plan's id. */
export const approveAnnotation = 'ballast.dev/approve-recovery';

const byOrdinal = (a: string, b: string) => a.localeCompare(b, 'en', { numeric: true });

/** The plan for a lost quorum, or why there is none. */
export function proposeRecovery(sc: StoreCluster, o: Observed): RecoveryStatus | { none: string } {
  const conf = o.localMembers;
  if (!conf)
    return { none: `no member answers: there is no data to recover from. Bring a member back with its volume, or ${restoreAdvice(sc, o)}` };
  const voters = new Set(conf.filter((m) => !m.isLearner).map((m) => m.id));
  type Answered = PodView & { memberId: string; term: number; commitIndex: number };
  const answered = o.pods.filter((p): p is Answered => p.memberId !== undefined && p.term !== undefined && p.commitIndex !== undefined);
  const candidates = answered.filter((p) => voters.has(p.memberId));
  const best = [...candidates].sort((a, b) => b.term - a.term || b.commitIndex - a.commitIndex || byOrdinal(a.name, b.name))[0];
  if (!best)
    return {
      none: `no voting member answers (${answered.map((p) => p.name).join(', ') || 'none'} answered as learners or removed members): there is no complete log to recover from; ${restoreAdvice(sc, o)}`,
    };
  const names = new Set([
    ...Array.from({ length: o.setReplicas ?? sc.spec.replicas }, (_, i) => specs.memberName(sc, i)),
    ...conf.map((m) => m.name).filter(Boolean),
  ]);
  names.delete(best.name);
  const recreate = [...names].sort(byOrdinal);
  const silent = recreate.filter((n) => !answered.some((p) => p.name === n));
  const behind = answered.filter((p) => p.name !== best.name);
  const loses =
    [
      silent.length > 0
        ? `${silent.join(', ')} did not answer: whatever only ${silent.length === 1 ? 'it holds' : 'they hold'} is discarded with ${silent.length === 1 ? 'its volume' : 'their volumes'} (if ${silent.length === 1 ? 'it' : 'they'} can come back with ${silent.length === 1 ? 'its' : 'their'} data, bring ${silent.length === 1 ? 'it' : 'them'} back instead of approving)`
        : '',
      behind.length > 0
        ? `${behind.map((p) => `${p.name} (term ${p.term}, index ${p.commitIndex})`).join(', ')} answered with older data than ${best.name}; ${behind.length === 1 ? 'its volume is' : 'their volumes are'} replaced`
        : '',
    ]
      .filter(Boolean)
      .join('; ') || `nothing: ${best.name} has the newest data of every member`;
  const planId = createHash('sha256')
    .update(JSON.stringify([sc.metadata.uid ?? sc.metadata.name, best.name, best.memberId, best.term, best.commitIndex, recreate]))
    .digest('hex')
    .slice(0, 10);
  return {
    planId,
    state: 'AwaitingApproval',
    survivor: best.name,
    survivorId: best.memberId,
    term: best.term,
    index: best.commitIndex,
    recreate,
    loses,
  };
}

/** With nothing to recover from: the newest good backup to start a new cluster from, or that there is none. */
function restoreAdvice(sc: StoreCluster, o: Observed): string {
  const b = o.newestBackup;
  if (!b)
    return `restore a backup into a new StoreCluster (${sc.metadata.name} has no successful StoreBackup; docs/operations.md, "Recovering from quorum loss")`;
  const verified = b.status?.verification?.phase === 'Verified' ? ', verified' : '';
  return `restore its newest backup, ${b.metadata.name} (revision ${b.status?.revision ?? '?'}, completed ${b.status?.completedAt ?? '?'}${verified}), into a new StoreCluster: kubectl ballast restore ${sc.metadata.name}-restored -n ${sc.metadata.namespace} --from ${b.metadata.name}`;
}

/** The annotation command that approves `planId`. */
export const approveCommand = (sc: StoreCluster, planId: string) =>
  `kubectl annotate storecluster -n ${sc.metadata.namespace} ${sc.metadata.name} --overwrite ${approveAnnotation}=${planId}`;

/**
 * The step while the quorum is lost and no approved run has a leader yet: propose, refuse a
 * wrong approval, or start (and keep on) an approved run.
 */
export function planLostQuorum(sc: StoreCluster, o: Observed): Step {
  const current = sc.status?.recovery;
  if (current?.state === 'Restarting') return restarting(sc, o, current, []);
  const proposal = proposeRecovery(sc, o);
  const lost = (message: string, recovery: RecoveryStatus | undefined, events: StepEvent[]): Step =>
    step(
      {
        phase: 'QuorumLost',
        quorumLost: true,
        progressing: { status: 'False', reason: 'QuorumLost', message },
        ...(recovery ? { recovery } : {}),
      },
      [],
      events,
    );
  const firstTime: StepEvent[] =
    sc.status?.phase === 'QuorumLost'
      ? []
      : [
          {
            type: 'Warning',
            reason: 'QuorumLost',
            message:
              'no leader: fewer than a quorum of the members answer; nothing will be removed or replaced until they are back or a recovery plan is approved',
          },
        ];
  if ('none' in proposal) return lost(`no leader, and no recovery plan: ${proposal.none}`, undefined, firstTime);
  const approval = sc.metadata.annotations?.[approveAnnotation];
  if (approval === proposal.planId) {
    const run: RecoveryStatus = { ...proposal, state: 'Restarting', approvedAt: new Date(o.now).toISOString() };
    return restarting(sc, o, run, [
      {
        type: 'Warning',
        reason: 'RecoveryApproved',
        message: `recovery plan ${run.planId} approved: ${run.survivor} restarts as a one-member cluster from its data (term ${run.term}, index ${run.index}); ${run.recreate.join(', ')} come back empty and catch up from it. Discarded: ${run.loses}`,
      },
    ]);
  }
  const events = [...firstTime];
  if (current?.planId !== proposal.planId)
    events.push({
      type: 'Warning',
      reason: 'RecoveryPlanned',
      message: `recovery plan ${proposal.planId}: restart ${proposal.survivor} (term ${proposal.term}, index ${proposal.index}) as a one-member cluster and re-create ${proposal.recreate.join(', ')} empty. Discarded: ${proposal.loses}. Nothing happens until it is approved: ${approveCommand(sc, proposal.planId)}`,
    });
  let refused: string | undefined;
  if (approval) {
    refused = `the approval names plan ${approval}, but the plan now is ${proposal.planId}: ${current?.planId === approval ? "the members' state changed since that plan was made" : 'no such plan was proposed'}. Read status.recovery and approve the plan it shows`;
    if (current?.refused !== refused) events.push({ type: 'Warning', reason: 'RecoveryRefused', message: refused });
  }
  const message = `no leader. Recovery plan ${proposal.planId}: restart ${proposal.survivor} (term ${proposal.term}, index ${proposal.index}) as a one-member cluster and re-create ${proposal.recreate.join(', ')} empty; discarded: ${proposal.loses}. If the members cannot come back with their data, approve it: ${approveCommand(sc, proposal.planId)}${refused ? ` (${refused})` : ''}`;
  return lost(message, { ...proposal, ...(refused ? { refused } : {}) }, events);
}

/** Restarting: the template names the survivor; its pod is replaced until it runs under the plan. */
function restarting(sc: StoreCluster, o: Observed, run: RecoveryStatus, events: StepEvent[]): Step {
  const ordinal = Number(/-(\d+)$/.exec(run.survivor)?.[1] ?? -1);
  const peer = o.localMembers?.find((m) => m.name === run.survivor)?.peerUrl ?? specs.peerUrl(sc, ordinal);
  const pod = o.pods.find((p) => p.name === run.survivor);
  const actions: Action[] = [
    {
      do: 'applyStatefulSet',
      replicas: o.setReplicas ?? sc.spec.replicas,
      members: [{ name: run.survivor, peerUrl: peer }],
      state: 'existing',
      forceNewCluster: { member: run.survivor, id: run.planId },
    },
    ...(pod && pod.forcePlan !== run.planId ? [{ do: 'deletePod', name: run.survivor } as const] : []),
  ];
  return step(
    {
      phase: 'Recovering',
      progressing: {
        status: 'True',
        reason: 'RestartingSurvivor',
        message: `recovery plan ${run.planId}: ${run.survivor} restarts as a one-member cluster from its own data${pod?.forcePlan === run.planId ? '; waiting for it to lead (if it does not, read its log: kubectl logs ' + run.survivor + ')' : ''}`,
      },
      requeueMs: 2_000,
      recovery: run,
    },
    actions,
    events,
  );
}

/**
 * With the survivor leading: each member the plan re-creates loses its pod and volume once
 * (recorded in the run's `recreated`), and membership adds it back as a learner. What has been
 * done is recorded rather than guessed from pod ages: a pod the StatefulSet re-made only after
 * the approval (its old one took long to stop) still holds the volume the plan discards.
 */
export function planRejoin(sc: StoreCluster, o: Observed, run: RecoveryStatus, keep: Action, memberNames: string[]): Step | undefined {
  const done = run.recreated ?? [];
  const due = run.recreate.filter((n) => !done.includes(n) && !memberNames.includes(n));
  if (due.length === 0) return undefined;
  const pods = new Set(o.pods.map((p) => p.name));
  return step(
    {
      phase: 'Recovering',
      progressing: {
        status: 'True',
        reason: 'MembersRecreated',
        message: `recovery plan ${run.planId}: ${run.survivor} leads; re-creating ${due.join(', ')} empty`,
      },
      requeueMs: 2_000,
      recovery: { ...run, state: 'Rejoining', recreated: [...done, ...due] },
    },
    [
      keep,
      ...due.flatMap((n): Action[] => [
        { do: 'deleteClaim', name: `data-${n}` },
        ...(pods.has(n) ? [{ do: 'deletePod', name: n, force: true } as const] : []),
      ]),
    ],
    [
      {
        type: 'Normal',
        reason: 'MembersRecreated',
        message: `${run.survivor} leads a one-member cluster with its data; re-creating ${due.join(', ')} with empty volumes, to be added back as learners`,
      },
    ],
  );
}

/** A run's status once membership's step is known: Rejoining until every member is a voter, then Completed. */
export function rejoinProgress(s: Step, run: RecoveryStatus, o: Observed, healthy: boolean): Step {
  if (!healthy) return { ...s, phase: 'Recovering', recovery: { ...run, state: 'Rejoining' } };
  const took = Math.round((o.now - Date.parse(run.approvedAt ?? '')) / 1000);
  return {
    ...s,
    recovery: { ...run, state: 'Completed', completedAt: new Date(o.now).toISOString() },
    events: [
      ...s.events,
      {
        type: 'Normal',
        reason: 'RecoveryCompleted',
        message: `recovery plan ${run.planId} completed ${took} s after its approval: every member is a voter again, with ${run.survivor}'s data`,
      },
    ],
  };
}
