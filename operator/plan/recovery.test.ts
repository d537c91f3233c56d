import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RecoveryStatus, StoreCluster } from '../api/storecluster.ts';
import { peerUrl, specHash } from '../specs/storecluster.ts';
import { type MemberView, type Observed, type PodView, type Step, approveAnnotation, plan, planStatus } from './storecluster.ts';

const now = Date.UTC(2026, 11, 2, 12);
/** A 3-member cluster that had a leader, orders-0 the only member still answering (term 3, index 120). */
function lostQuorum(change: (sc: StoreCluster, o: Observed) => void = () => undefined): { sc: StoreCluster; o: Observed } {
  const sc = {
    apiVersion: 'ballast.dev/v1alpha1',
    kind: 'StoreCluster',
    metadata: { name: 'orders', namespace: 'shop', uid: 'u1', generation: 2 },
    spec: {
      replicas: 3,
      version: '0.2.0',
      storage: { size: '1Gi', retainOnScaleDown: true },
      compaction: { mode: 'periodic', retention: '1h' },
      timing: { heartbeatMs: 100, electionMs: 1000 },
    },
    status: { observedGeneration: 2, phase: 'QuorumLost', leader: 'orders-0' },
  } as StoreCluster;
  const o: Observed = {
    setReplicas: 3,
    members: undefined,
    leaderId: '',
    auth: 'off',
    hasRootCredentials: false,
    nextClaimExists: false,
    now,
    pods: [
      pod(sc, 0, { memberId: 'm0', term: 3, commitIndex: 120 }),
      pod(sc, 1, { dataLost: true, ready: false }),
      pod(sc, 2, { dataLost: true, ready: false }),
    ],
    localMembers: [0, 1, 2].map((i) => member(sc, i)),
  };
  change(sc, o);
  return { sc, o };
}
function pod(sc: StoreCluster, i: number, over: Partial<PodView> = {}): PodView {
  return {
    name: `orders-${i}`,
    ip: `10.0.0.${i + 1}`,
    ready: true,
    specHash: specHash(sc),
    version: '0.2.0',
    dataLost: false,
    createdAt: now - 3_600_000,
    ...over,
  };
}
function member(sc: StoreCluster, i: number, over: Partial<MemberView> = {}): MemberView {
  return { id: `m${i}`, name: `orders-${i}`, peerUrl: peerUrl(sc, i), isLearner: false, ...over };
}
const actions = (s: Step) =>
  s.actions.map((a) => {
    if (a.do === 'applyStatefulSet')
      return `applyStatefulSet ${a.replicas} ${a.state} [${a.members.map((m) => m.name).join(' ')}]${a.forceNewCluster ? ` force ${a.forceNewCluster.member}/${a.forceNewCluster.id}` : ''}`;
    if (a.do === 'deletePod') return `deletePod ${a.name}${a.force ? ' now' : ''}`;
    if (a.do === 'deleteClaim' || a.do === 'addLearner') return `${a.do} ${a.name}`;
    return a.do;
  });
const proposed = (): RecoveryStatus => plan(lostQuorum().sc, lostQuorum().o).recovery as RecoveryStatus;

describe('guided recovery from a lost quorum: the plan', () => {
  it('proposes the member with the newest data as the survivor, re-creating the others; nothing is done and the Events say how to approve', () => {
    const { sc, o } = lostQuorum();
    const s = plan(sc, o);
    assert.equal(s.phase, 'QuorumLost');
    assert.deepEqual(s.actions, []);
    const r = s.recovery!;
    assert.equal(r.state, 'AwaitingApproval');
    assert.deepEqual([r.survivor, r.survivorId, r.term, r.index, r.recreate], ['orders-0', 'm0', 3, 120, ['orders-1', 'orders-2']]);
    assert.match(r.planId, /^[0-9a-f]{10}$/);
    assert.match(
      r.loses,
      /orders-1, orders-2 did not answer: whatever only they hold is discarded with their volumes \(if they can come back with their data, bring them back instead of approving\)/,
    );
    assert.deepEqual(
      s.events.map((e) => e.reason),
      ['RecoveryPlanned'],
    );
    assert.match(
      s.events[0]!.message,
      new RegExp(`kubectl annotate storecluster -n shop orders --overwrite ${approveAnnotation}=${r.planId}`),
    );
    assert.match(s.progressing.message, new RegExp(`Recovery plan ${r.planId}: restart orders-0 \\(term 3, index 120\\)`));
    // Status carries the plan; the Available condition points at it.
    const { status } = planStatus(sc, o, s);
    assert.equal(status.recovery?.planId, r.planId);
    assert.match(status.conditions?.find((c) => c.type === 'Available')?.message ?? '', /approve the recovery plan in status\.recovery/);
  });

  it('a plan nobody approved is removed from status once the quorum is back', () => {
    const { sc, o } = lostQuorum((sc, o) => {
      sc.status = { ...sc.status, recovery: proposed() } as StoreCluster['status'];
      o.leaderId = 'm0';
      o.members = [0, 1, 2].map((i) => member(sc, i));
      o.pods = [0, 1, 2].map((i) => pod(sc, i));
    });
    const s = plan(sc, o);
    assert.equal(s.phase, 'Ready');
    assert.equal(planStatus(sc, o, s).status.recovery, null);
  });

  it("the plan id is stable while nothing changes, and changes with the survivor's index or the members re-created", () => {
    const id = proposed().planId;
    assert.equal(proposed().planId, id);
    const moved = lostQuorum((_, o) => {
      o.pods[0] = { ...o.pods[0]!, commitIndex: 121 };
    });
    assert.notEqual(plan(moved.sc, moved.o).recovery?.planId, id);
    const bigger = lostQuorum((sc, o) => {
      o.setReplicas = 4;
      o.localMembers!.push(member(sc, 3));
    });
    assert.notEqual(plan(bigger.sc, bigger.o).recovery?.planId, id);
  });

  it("of several members answering (2 of 5): the highest term wins, then the highest index; the other's volume is replaced and it says so", () => {
    const { sc, o } = lostQuorum((sc, o) => {
      sc.spec.replicas = 5;
      o.setReplicas = 5;
      o.localMembers = [0, 1, 2, 3, 4].map((i) => member(sc, i));
      o.pods = [
        pod(sc, 0, { memberId: 'm0', term: 3, commitIndex: 200 }),
        pod(sc, 1, { memberId: 'm1', term: 4, commitIndex: 150 }),
        ...[2, 3, 4].map((i) => pod(sc, i, { ready: false })),
      ];
    });
    const r = plan(sc, o).recovery!;
    assert.equal(r.survivor, 'orders-1');
    assert.deepEqual(r.recreate, ['orders-0', 'orders-2', 'orders-3', 'orders-4']);
    assert.match(r.loses, /orders-0 \(term 3, index 200\) answered with older data than orders-1; its volume is replaced/);
  });

  it('a learner is never the survivor; with no voter answering there is no plan, and status says why', () => {
    const { sc, o } = lostQuorum((_, o) => {
      o.localMembers![0] = { ...o.localMembers![0]!, isLearner: true };
    });
    const s = plan(sc, o);
    assert.equal(s.phase, 'QuorumLost');
    assert.equal(s.recovery, undefined);
    assert.match(s.progressing.message, /no recovery plan: no voting member answers \(orders-0 answered as learners or removed members\)/);
    assert.match(s.progressing.message, /restore a backup into a new StoreCluster \(orders has no successful StoreBackup/);
  });

  it('no member answers at all: status points at the newest good backup, with the command that restores it', () => {
    const backup = (name: string, completedAt: string, verification?: 'Verified' | 'Failed') => ({
      apiVersion: 'ballast.dev/v1alpha1',
      kind: 'StoreBackup' as const,
      metadata: { name, namespace: 'shop' },
      spec: { cluster: 'orders', storage: { endpoint: 'http://s3:8333', bucket: 'b', region: 'us-east-1', credentialsSecret: 's' } },
      status: {
        phase: 'Succeeded' as const,
        revision: 4242,
        completedAt,
        ...(verification ? { verification: { phase: verification } } : {}),
      },
    });
    const { sc, o } = lostQuorum((_, o) => {
      delete o.localMembers;
      o.newestBackup = backup('orders-20261202100000', '2026-12-02T10:00:20Z', 'Verified');
    });
    const s = plan(sc, o);
    assert.equal(s.recovery, undefined);
    assert.match(
      s.progressing.message,
      /no member answers: there is no data to recover from\. Bring a member back with its volume, or restore its newest backup, orders-20261202100000 \(revision 4242, completed 2026-12-02T10:00:20Z, verified\), into a new StoreCluster: kubectl ballast restore orders-restored -n shop --from orders-20261202100000/,
    );
  });

  it('an approval naming another plan is refused, with an Event once, and nothing is done', () => {
    const { sc, o } = lostQuorum((sc) => {
      sc.metadata.annotations = { [approveAnnotation]: 'deadbeef00' };
    });
    const s = plan(sc, o);
    assert.equal(s.phase, 'QuorumLost');
    assert.deepEqual(s.actions, []);
    assert.match(
      s.recovery?.refused ?? '',
      /the approval names plan deadbeef00, but the plan now is [0-9a-f]{10}: no such plan was proposed/,
    );
    assert.deepEqual(
      s.events.map((e) => e.reason),
      ['RecoveryPlanned', 'RecoveryRefused'],
    );
    sc.status = { ...sc.status, recovery: s.recovery } as StoreCluster['status'];
    assert.deepEqual(plan(sc, o).events, [], 'the same refusal is not repeated');
    // A plan that was shown once and went stale (the survivor's data moved on) is refused as such.
    const stale = lostQuorum((sc, o) => {
      sc.status = { ...sc.status, recovery: proposed() } as StoreCluster['status'];
      sc.metadata.annotations = { [approveAnnotation]: proposed().planId };
      o.pods[0] = { ...o.pods[0]!, commitIndex: 125 };
    });
    assert.match(plan(stale.sc, stale.o).recovery?.refused ?? '', /the members' state changed since that plan was made/);
  });
});

describe('guided recovery from a lost quorum: the approved run', () => {
  const approved = (state: RecoveryStatus['state'], change: (sc: StoreCluster, o: Observed) => void = () => undefined) =>
    lostQuorum((sc, o) => {
      sc.metadata.annotations = { [approveAnnotation]: proposed().planId };
      sc.status = {
        ...sc.status,
        phase: 'Recovering',
        recovery: { ...proposed(), state, approvedAt: new Date(now - 60_000).toISOString() },
      } as StoreCluster['status'];
      change(sc, o);
    });

  it("approving the plan by its id: the template names the survivor and the plan, and the survivor's pod is replaced; the others are left alone", () => {
    const { sc, o } = lostQuorum((sc) => {
      sc.metadata.annotations = { [approveAnnotation]: proposed().planId };
    });
    const s = plan(sc, o);
    assert.equal(s.phase, 'Recovering');
    assert.deepEqual(actions(s), [`applyStatefulSet 3 existing [orders-0] force orders-0/${proposed().planId}`, 'deletePod orders-0']);
    assert.equal(s.recovery?.state, 'Restarting');
    assert.equal(s.recovery?.approvedAt, new Date(now).toISOString());
    assert.deepEqual(
      s.events.map((e) => e.reason),
      ['RecoveryApproved'],
    );
  });

  it('Restarting: once the survivor runs under the plan, it is waited for, not replaced again', () => {
    const { sc, o } = approved('Restarting', (_, o) => {
      o.pods[0] = { ...o.pods[0]!, forcePlan: proposed().planId };
    });
    const s = plan(sc, o);
    assert.deepEqual(actions(s), [`applyStatefulSet 3 existing [orders-0] force orders-0/${proposed().planId}`]);
    assert.equal(s.progressing.reason, 'RestartingSurvivor');
    assert.match(s.progressing.message, /waiting for it to lead/);
  });

  it("the survivor leads alone: the other members' pods and volumes from before the approval go, the template no longer forces", () => {
    const { sc, o } = approved('Restarting', (sc, o) => {
      o.leaderId = 'm0';
      o.members = [member(sc, 0)];
    });
    const s = plan(sc, o);
    assert.equal(s.phase, 'Recovering');
    assert.deepEqual(actions(s), [
      'applyStatefulSet 3 existing [orders-0]',
      'deleteClaim data-orders-1',
      'deletePod orders-1 now',
      'deleteClaim data-orders-2',
      'deletePod orders-2 now',
    ]);
    assert.equal(s.recovery?.state, 'Rejoining');
    assert.deepEqual(s.recovery?.recreated, ['orders-1', 'orders-2']);
  });

  it("a member's pod re-made only after the approval (its old one was slow to stop) is re-created too, and each member only once", () => {
    // Found by CI: the old rule (pods created before the approval) skipped such a pod, which kept
    // the volume the plan discards, and the run never completed.
    const late = approved('Restarting', (sc, o) => {
      o.leaderId = 'm0';
      o.members = [member(sc, 0)];
      o.pods = [o.pods[0]!, pod(sc, 1, { createdAt: now + 5_000, ready: false }), o.pods[2]!];
    });
    assert.deepEqual(
      actions(plan(late.sc, late.o)).filter((a) => a.startsWith('delete')),
      ['deleteClaim data-orders-1', 'deletePod orders-1 now', 'deleteClaim data-orders-2', 'deletePod orders-2 now'],
    );
    const once = approved('Rejoining', (sc, o) => {
      sc.status!.recovery!.recreated = ['orders-1', 'orders-2'];
      o.leaderId = 'm0';
      o.members = [member(sc, 0)];
      o.pods = [o.pods[0]!, pod(sc, 1, { createdAt: now, ready: false }), pod(sc, 2, { createdAt: now, ready: false })];
    });
    assert.deepEqual(
      actions(plan(once.sc, once.o)).filter((a) => a.startsWith('delete')),
      [],
      'the re-made pods are left to rejoin',
    );
  });

  it('Rejoining without a leader for a moment (a learner restarting): the run is kept, to be Completed later', () => {
    const { sc, o } = approved('Rejoining', (sc, o) => {
      sc.status!.recovery!.recreated = ['orders-1', 'orders-2'];
      const restarting = pod(sc, 1, { ready: false });
      delete restarting.ip;
      o.leaderId = '';
      o.members = undefined;
      o.pods = [o.pods[0]!, restarting, o.pods[2]!];
    });
    const s = plan(sc, o);
    assert.equal(s.recovery?.state, 'Rejoining');
    assert.equal(s.phase, 'Recovering');
    assert.deepEqual(actions(s), []);
  });

  it('Rejoining: the new, empty members are added back one learner at a time and promoted, then the run is Completed', () => {
    const fresh = (sc: StoreCluster, i: number) => pod(sc, i, { createdAt: now - 10_000, ready: false });
    const adding = approved('Rejoining', (sc, o) => {
      sc.status!.recovery!.recreated = ['orders-1', 'orders-2'];
      o.leaderId = 'm0';
      o.members = [member(sc, 0)];
      o.pods = [o.pods[0]!, fresh(sc, 1), fresh(sc, 2)];
    });
    const a = plan(adding.sc, adding.o);
    assert.deepEqual(actions(a), ['addLearner orders-1', 'applyStatefulSet 3 existing [orders-0 orders-1]']);
    assert.equal(a.phase, 'Recovering');
    assert.equal(a.recovery?.state, 'Rejoining');
    const done = approved('Rejoining', (sc, o) => {
      o.leaderId = 'm0';
      o.members = [0, 1, 2].map((i) => member(sc, i));
      o.pods = [0, 1, 2].map((i) => pod(sc, i, { memberId: `m${i}` }));
    });
    const d = plan(done.sc, done.o);
    assert.equal(d.phase, 'Ready');
    assert.equal(d.recovery?.state, 'Completed');
    assert.equal(d.recovery?.completedAt, new Date(now).toISOString());
    assert.deepEqual(
      d.events.map((e) => e.reason),
      ['RecoveryCompleted'],
    );
    assert.match(d.events[0]!.message, /completed 60 s after its approval/);
  });
});
