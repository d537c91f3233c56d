/**
 * The StoreCluster's status after a step: members with their roles, versions and restarts,
 * the Ready, Available, Progressing and Degraded conditions (transition times kept while a
 * condition holds), and the Events a member's restart deserves.
 */
import type { V1Condition } from '@kubernetes/client-node';
import { condition } from '../../lib/kube/conditions.ts';
import type { MemberStatus, StoreCluster, StoreClusterStatus } from '../api/storecluster.ts';
import * as specs from '../specs/storecluster.ts';
import type { Observed, StepEvent, StepStatus } from './types.ts';

export function planStatus(sc: StoreCluster, o: Observed, step: StepStatus): { status: StoreClusterStatus; events: StepEvent[] } {
  const now = new Date(o.now).toISOString();
  const gen = sc.metadata.generation ?? 0;
  const leaderMember = o.members?.find((m) => m.id === o.leaderId);
  const podByName = new Map(o.pods.map((p) => [p.name, p]));
  const members: MemberStatus[] = (o.members ?? []).map((m) => {
    const pod = podByName.get(m.name);
    const answered = pod?.appliedIndex !== undefined;
    return {
      name: m.name,
      id: m.id,
      role: !answered ? 'unknown' : m.isLearner ? 'learner' : m.id === o.leaderId ? 'leader' : 'follower',
      ready: pod?.ready === true,
      ...(answered ? { appliedIndex: pod.appliedIndex } : {}),
      // The ballast version the pod runs (the store reports etcd's API version, 3.5.0, to clients).
      ...(pod?.version ? { version: pod.version } : {}),
      ...(pod?.restarts !== undefined ? { restarts: pod.restarts } : {}),
      ...(pod?.lastTermination ? { lastTermination: pod.lastTermination } : {}),
    };
  });
  // A member that restarted since the last status: say so, with the kubelet's reason (an
  // OOMKilled member names its memory limit: the fix is usually spec.resources).
  const events: StepEvent[] = [];
  for (const m of members) {
    const before = sc.status?.members?.find((x) => x.name === m.name)?.restarts;
    if (before === undefined || m.restarts === undefined || m.restarts <= before || !m.lastTermination) continue;
    const limit = podByName.get(m.name)?.memoryLimit;
    const oom = m.lastTermination.reason === 'OOMKilled';
    events.push({
      type: 'Warning',
      reason: oom ? 'MemberOOMKilled' : 'MemberRestarted',
      message: `${m.name} stopped (${m.lastTermination.reason}, exit code ${m.lastTermination.exitCode})${oom ? ` at its memory limit${limit ? ` of ${limit}` : ''}; raise spec.resources.limits.memory if it recurs` : ''} and was restarted by the kubelet (restart ${m.restarts}); it rejoins with its data`,
    });
  }
  const ready = members.filter((m) => m.ready).length;
  const allReady = step.phase === 'Ready';
  const quorum = Math.floor(sc.spec.replicas / 2) + 1;
  const cond = (type: string, status: 'True' | 'False', reason: string, message: string) =>
    condition(sc.status?.conditions, { type, status, reason, message }, gen, now);
  const versions = [...new Set(members.map((m) => m.version).filter(Boolean))].sort();
  const available = o.leaderId
    ? cond('Available', 'True', 'QuorumAvailable', `a leader is elected; ${ready} of ${sc.spec.replicas} members ready (quorum ${quorum})`)
    : step.quorumLost
      ? cond(
          'Available',
          'False',
          'QuorumLost',
          `no leader: fewer than ${quorum} of ${sc.spec.replicas} members are running. The operator does not act destructively on a lost quorum. Bring the members' pods back (kubectl get pods -l ${specs.labels.instance}=${sc.metadata.name}); if their data is gone, approve the recovery plan in status.recovery, or restore a snapshot into a new StoreCluster (docs/operations.md, "Recovering from quorum loss").`,
        )
      : cond('Available', 'False', 'NoLeader', 'waiting for the members to elect a leader');
  const degraded = step.quorumLost
    ? cond('Degraded', 'True', 'QuorumLost', 'quorum lost')
    : step.degraded
      ? cond('Degraded', 'True', step.progressing.reason, step.progressing.message)
      : step.phase === 'Degraded'
        ? cond('Degraded', 'True', 'MembersNotReady', `${sc.spec.replicas - ready} member(s) not ready`)
        : cond('Degraded', 'False', 'AsExpected', 'all members as expected');
  const status: StoreClusterStatus = {
    observedGeneration: gen,
    phase: step.phase,
    replicas: o.pods.length,
    readyReplicas: ready,
    members,
    ...(leaderMember ? { leader: leaderMember.name } : {}),
    ...(versions[0] ? { currentVersion: versions[0] } : {}),
    selector: Object.entries(specs.selectorLabels(sc))
      .map(([k, v]) => `${k}=${v}`)
      .join(','),
    // A plan nobody approved is dropped once it is no longer proposed (the quorum is back, or no
    // member answers); null: a merge patch removes it.
    ...(step.recovery
      ? { recovery: step.recovery }
      : sc.status?.recovery
        ? { recovery: sc.status.recovery.state === 'AwaitingApproval' ? null : sc.status.recovery }
        : {}),
    ...(step.authEnabled !== undefined
      ? { authEnabled: step.authEnabled }
      : sc.status?.authEnabled !== undefined
        ? { authEnabled: sc.status.authEnabled }
        : {}),
    conditions: [
      cond(
        'Ready',
        allReady ? 'True' : 'False',
        allReady ? 'AllMembersReady' : step.phase,
        allReady
          ? `${ready} of ${sc.spec.replicas} members ready; leader ${leaderMember ? leaderMember.name : 'unknown'}`
          : step.progressing.message,
      ),
      available,
      cond('Progressing', step.progressing.status, step.progressing.reason, step.progressing.message),
      degraded,
    ] as unknown as V1Condition[],
  };
  return { status, events };
}

/**
 * The merge patch that writes a status: against the version of the StoreCluster it was planned
 * from. The apiserver refuses it (409 Conflict) when the object changed since, so a plan made
 * from a cache that had not yet seen the last status write cannot undo that write (it once
 * dropped an approved recovery run's record 2 s after the approval, on a loaded machine); the
 * reconcile is retried and plans again from what is current.
 */
export function statusPatch(
  sc: StoreCluster,
  status: StoreClusterStatus,
): { metadata: { resourceVersion?: string }; status: StoreClusterStatus } {
  return { metadata: sc.metadata.resourceVersion ? { resourceVersion: sc.metadata.resourceVersion } : {}, status };
}
