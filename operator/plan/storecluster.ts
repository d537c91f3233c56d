/**
 * The StoreCluster reconciler's decisions, pure: `plan(storeCluster, observed)` returns the one
 * step to take now (what to do, what to record, what status says, when to look again), made of
 * the concerns in order: paused, a refused downgrade, membership (bootstrap, quorum, repair,
 * scaling: operator/plan/membership.ts), the rollout (operator/plan/rollout.ts), auth
 * (operator/plan/auth.ts). `planStatus` (operator/plan/status.ts) turns the step into status.
 * The controller (operator/controllers/storecluster.ts) observes and performs; these decide.
 */
import type { StoreCluster } from '../api/storecluster.ts';
import * as specs from '../specs/storecluster.ts';
import { planAuth } from './auth.ts';
import { planMembership, step } from './membership.ts';
import { rejoinProgress } from './recovery.ts';
import { planRollout } from './rollout.ts';
import type { Observed, Step } from './types.ts';

export type { Action, MemberView, Observed, PodView, Step, StepEvent, StepStatus } from './types.ts';
export { planStatus, statusPatch } from './status.ts';
export { updateDeadlineMs } from './rollout.ts';
export { approveAnnotation } from './recovery.ts';

/** The annotation that pauses reconciling (value `paused`). */
export const pausedAnnotation = 'ballast.dev/reconcile';

export function plan(sc: StoreCluster, o: Observed): Step {
  if (sc.metadata.annotations?.[pausedAnnotation] === 'paused') {
    return {
      ...step({
        phase: 'Paused',
        progressing: {
          status: 'False',
          reason: 'Paused',
          message: `reconcile paused by the ${pausedAnnotation}: paused annotation; remove it to resume`,
        },
      }),
      ensureObjects: false,
    };
  }
  // Going back to a version that cannot read the members' data: nothing is applied or replaced
  // (a member restarted on the older image would not start), until the version is set back.
  const refusal = specs.downgradeRefusal(sc.spec.version, o.pods.map((p) => p.version ?? '').filter(Boolean));
  if (refusal) {
    const again = sc.status?.conditions?.find((c) => c.type === 'Progressing')?.reason === 'DowngradeRefused';
    return {
      ...step(
        { phase: 'Degraded', degraded: true, progressing: { status: 'False', reason: 'DowngradeRefused', message: refusal } },
        [],
        again ? [] : [{ type: 'Warning', reason: 'DowngradeRefused', message: refusal }],
      ),
      ensureObjects: false,
    };
  }
  const membership = planMembership(sc, o);
  let next =
    'continueWith' in membership
      ? withKeep(
          membership.continueWith,
          planRollout(sc, o, membership.members, membership.healthy) ??
            (membership.healthy
              ? planAuth(sc, o)
              : step({
                  phase: 'Degraded',
                  progressing: { status: 'False', reason: 'WaitingForMembers', message: 'some members are not ready' },
                })),
        )
      : membership;
  // An approved recovery whose survivor leads: Rejoining until every member is a voter and ready.
  const run = sc.status?.recovery;
  if (o.leaderId && next.recovery === undefined && (run?.state === 'Restarting' || run?.state === 'Rejoining')) {
    next = rejoinProgress(
      next,
      run,
      o,
      'continueWith' in membership && membership.healthy && membership.members.every((m) => !m.isLearner),
    );
  }
  // Pod and StatefulSet changes requeue on their own (informers); a timed look again is for what
  // only the members know (roles, catch-up), so it is short only right after a step.
  return next.requeueMs !== undefined ? next : { ...next, requeueMs: o.pods.some((p) => p.ip) && !o.leaderId ? 5_000 : 30_000 };
}

/** `s` with the StatefulSet kept in step first. */
function withKeep(keep: Step['actions'][number], s: Step): Step {
  return { ...s, actions: [keep, ...s.actions] };
}
