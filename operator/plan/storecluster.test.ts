import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { StoreCluster } from '../api/storecluster.ts';
import { peerUrl, specHash } from '../specs/storecluster.ts';
import {
  type MemberView,
  type Observed,
  type PodView,
  type Step,
  pausedAnnotation,
  plan,
  planStatus,
  statusPatch,
} from './storecluster.ts';

/** Every case starts from 3 healthy members (orders-0 leads) of a 3-member cluster with auth off. */
function cluster(change: (sc: StoreCluster) => void = () => undefined): StoreCluster {
  const sc: StoreCluster = {
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
    status: { observedGeneration: 2, phase: 'Ready', leader: 'orders-0' },
  } as StoreCluster;
  change(sc);
  return sc;
}
const pod = (sc: StoreCluster, i: number, over: Partial<PodView> = {}): PodView => ({
  name: `orders-${i}`,
  ip: `10.0.0.${i + 1}`,
  ready: true,
  specHash: specHash(sc),
  version: '0.2.0',
  dataLost: false,
  createdAt: Date.UTC(2026, 11, 2) - 60_000,
  appliedIndex: 100,
  ...over,
});
const member = (sc: StoreCluster, i: number, over: Partial<MemberView> = {}): MemberView => ({
  id: `m${i}`,
  name: `orders-${i}`,
  peerUrl: peerUrl(sc, i),
  isLearner: false,
  ...over,
});
function healthy(sc: StoreCluster, n = 3, change: (o: Observed) => void = () => undefined): Observed {
  const o: Observed = {
    setReplicas: n,
    pods: Array.from({ length: n }, (_, i) => pod(sc, i)),
    members: Array.from({ length: n }, (_, i) => member(sc, i)),
    leaderId: 'm0',
    auth: 'off',
    hasRootCredentials: false,
    nextClaimExists: false,
    now: Date.UTC(2026, 11, 2),
  };
  change(o);
  return o;
}
/** A step as one line per action: what a reviewer checks. */
const actions = (s: Step) =>
  s.actions.map((a) => {
    switch (a.do) {
      case 'applyStatefulSet':
        return `applyStatefulSet ${a.replicas} ${a.state} [${a.members.map((m) => m.name).join(' ')}]`;
      case 'addLearner':
        return `addLearner ${a.name}`;
      case 'promote':
      case 'remove':
        return `${a.do} ${a.id}`;
      case 'moveLeader':
        return `moveLeader ${a.to}`;
      case 'deleteClaim':
        return `deleteClaim ${a.name}`;
      case 'deletePod':
        return `deletePod ${a.name}${a.force ? ' now' : ''}`;
      default:
        return a.do;
    }
  });
const keep3 = 'applyStatefulSet 3 existing [orders-0 orders-1 orders-2]';
const sixMinutesAgo = Date.UTC(2026, 11, 2) - 6 * 60_000;

interface Case {
  name: string;
  sc?: (sc: StoreCluster) => void;
  /** The observation, from the cluster (healthy() when absent). */
  observe?: (sc: StoreCluster) => Observed;
  phase: string;
  reason: string;
  actions: string[];
  events?: string[];
  requeueMs?: number | undefined;
  check?: (s: Step) => void;
}

const cases: Case[] = [
  {
    name: 'bootstrap: no StatefulSet yet → every member from the ordinals, as a new cluster',
    observe: (sc) => ({ ...healthy(sc), setReplicas: undefined, pods: [], members: undefined, leaderId: '' }),
    phase: 'Bootstrapping',
    reason: 'Bootstrapping',
    actions: ['applyStatefulSet 3 new [orders-0 orders-1 orders-2]'],
    events: ['Bootstrapping'],
    requeueMs: 30_000,
  },
  {
    name: 'bootstrap: members running, no leader yet, never had one → wait, the StatefulSet left as it is',
    sc: (sc) => {
      delete sc.status;
    },
    observe: (sc) =>
      healthy(sc, 3, (o) => {
        o.leaderId = '';
        o.members = undefined;
      }),
    phase: 'Bootstrapping',
    reason: 'WaitingForLeader',
    actions: [],
    requeueMs: 5_000,
  },
  {
    name: 'quorum lost (2 of 3 frozen): reported with no action at all, its Event once',
    observe: (sc) =>
      healthy(sc, 3, (o) => {
        o.leaderId = '';
        o.members = undefined;
      }),
    phase: 'QuorumLost',
    reason: 'QuorumLost',
    actions: [],
    events: ['QuorumLost'],
    requeueMs: 5_000,
    check: (s) => assert.equal(s.quorumLost, true),
  },
  {
    name: 'quorum still lost at the next look: no second Event',
    sc: (sc) => {
      sc.status = { ...sc.status, phase: 'QuorumLost' } as StoreCluster['status'];
    },
    observe: (sc) =>
      healthy(sc, 3, (o) => {
        o.leaderId = '';
        o.members = undefined;
      }),
    phase: 'QuorumLost',
    reason: 'QuorumLost',
    actions: [],
    events: [],
  },
  {
    name: 'steady: Ready, the StatefulSet kept in step with the Raft configuration',
    phase: 'Ready',
    reason: 'Reconciled',
    actions: [keep3],
    requeueMs: 30_000,
  },
  {
    name: 'scale up 3→5, healthy: the next member is added as a learner before its pod exists',
    sc: (sc) => {
      sc.spec.replicas = 5;
    },
    phase: 'Scaling',
    reason: 'MemberAdded',
    actions: ['addLearner orders-3', 'applyStatefulSet 4 existing [orders-0 orders-1 orders-2 orders-3]'],
    events: ['MemberAdded'],
    requeueMs: 2_000,
  },
  {
    name: 'scale up while a member is not ready: waits',
    sc: (sc) => {
      sc.spec.replicas = 5;
    },
    observe: (sc) =>
      healthy(sc, 3, (o) => {
        o.pods[1] = pod(sc, 1, { ready: false });
      }),
    phase: 'Scaling',
    reason: 'WaitingForHealthyMembers',
    actions: [keep3],
    requeueMs: 3_000,
  },
  {
    name: 'scale up where a claim was kept from an earlier scale-down: the claim goes first',
    sc: (sc) => {
      sc.spec.replicas = 5;
    },
    observe: (sc) =>
      healthy(sc, 3, (o) => {
        o.nextClaimExists = true;
      }),
    phase: 'Scaling',
    reason: 'StaleVolumeDeleted',
    actions: ['deleteClaim data-orders-3', keep3],
    events: ['StaleVolumeDeleted'],
  },
  {
    name: 'a learner waiting: promoted (a refusal while it catches up is an answer, not an error)',
    sc: (sc) => {
      sc.spec.replicas = 5;
    },
    observe: (sc) =>
      healthy(sc, 4, (o) => {
        o.members![3] = member(sc, 3, { isLearner: true });
      }),
    phase: 'Scaling',
    reason: 'MemberPromoted',
    actions: ['applyStatefulSet 4 existing [orders-0 orders-1 orders-2 orders-3]', 'promote m3'],
    events: ['MemberPromoted'],
    check: (s) => {
      assert.equal(s.ifFailed?.action, 'promote');
      assert.equal(s.ifFailed?.instead.progressing.reason, 'WaitingForLearner');
    },
  },
  {
    name: 'scale down 5→3 with the leader on the highest ordinal: leadership moves first, nothing removed',
    observe: (sc) =>
      healthy(sc, 5, (o) => {
        o.leaderId = 'm4';
      }),
    phase: 'Scaling',
    reason: 'LeadershipMoved',
    actions: ['moveLeader m0'],
    events: ['LeadershipMoved'],
    requeueMs: 1_000,
  },
  {
    name: 'scale down 5→3, leader elsewhere: the highest ordinal leaves the Raft configuration before its pod',
    observe: (sc) => healthy(sc, 5),
    phase: 'Scaling',
    reason: 'MemberRemoved',
    actions: ['remove m4', 'applyStatefulSet 4 existing [orders-0 orders-1 orders-2 orders-3]'],
    events: ['MemberRemoved'],
  },
  {
    name: 'scale down while a member is not ready: waits',
    observe: (sc) =>
      healthy(sc, 5, (o) => {
        o.pods[2] = pod(sc, 2, { ready: false });
      }),
    phase: 'Scaling',
    reason: 'WaitingForHealthyMembers',
    actions: ['applyStatefulSet 5 existing [orders-0 orders-1 orders-2 orders-3 orders-4]'],
  },
  {
    name: 'rollout: followers first (the lowest outdated follower), one at a time',
    sc: (sc) => {
      sc.spec.version = '0.2.1';
    },
    observe: (sc) =>
      healthy(sc, 3, (o) => {
        o.pods = o.pods.map((p) => ({ ...p, specHash: 'old' }));
      }),
    phase: 'Updating',
    reason: 'MemberUpdating',
    actions: [keep3, 'deletePod orders-1'],
    events: ['MemberUpdating'],
  },
  {
    name: 'rollout: only the leader left → leadership to an updated member first',
    sc: (sc) => {
      sc.spec.version = '0.2.1';
    },
    observe: (sc) =>
      healthy(sc, 3, (o) => {
        o.pods[0] = { ...pod(sc, 0), specHash: 'old' };
      }),
    phase: 'Updating',
    reason: 'LeadershipMoved',
    actions: [keep3, 'moveLeader m1'],
    events: ['LeadershipMoved'],
  },
  {
    name: 'rollout: a replaced member not ready after 5 minutes stops it (Degraded), nothing else replaced',
    sc: (sc) => {
      sc.spec.version = '0.2.1';
    },
    observe: (sc) =>
      healthy(sc, 3, (o) => {
        o.pods = [pod(sc, 0, { specHash: 'old' }), pod(sc, 1, { ready: false, createdAt: sixMinutesAgo }), pod(sc, 2, { specHash: 'old' })];
      }),
    phase: 'Degraded',
    reason: 'RolloutStuck',
    actions: [keep3],
    check: (s) => assert.equal(s.degraded, true),
  },
  {
    name: 'rollout: an outdated member while another is not ready → waits',
    sc: (sc) => {
      sc.spec.version = '0.2.1';
    },
    observe: (sc) =>
      healthy(sc, 3, (o) => {
        o.pods = [pod(sc, 0), pod(sc, 1, { ready: false }), pod(sc, 2, { specHash: 'old' })];
      }),
    phase: 'Updating',
    reason: 'WaitingForHealthyMembers',
    actions: [keep3],
  },
  {
    name: 'repair: a member that lost its data, the others ready → removed, its claim and pod deleted',
    observe: (sc) =>
      healthy(sc, 3, (o) => {
        o.pods[2] = pod(sc, 2, { dataLost: true, ready: false });
      }),
    phase: 'Repairing',
    reason: 'MemberRemovedForRepair',
    actions: ['remove m2', 'deleteClaim data-orders-2', 'deletePod orders-2 now', keep3],
    events: ['MemberRemovedForRepair'],
  },
  {
    name: 'repair waits while another member is not ready (the smaller configuration must keep its quorum)',
    observe: (sc) =>
      healthy(sc, 3, (o) => {
        o.pods[2] = pod(sc, 2, { dataLost: true, ready: false });
        o.pods[1] = pod(sc, 1, { ready: false });
      }),
    phase: 'Repairing',
    reason: 'WaitingForHealthyMembers',
    actions: [keep3],
  },
  {
    name: 'repair: the removed member is added back empty as a learner',
    observe: (sc) =>
      healthy(sc, 3, (o) => {
        o.members = o.members!.slice(0, 2);
      }),
    phase: 'Repairing',
    reason: 'MemberReAdded',
    actions: ['addLearner orders-2', 'applyStatefulSet 3 existing [orders-0 orders-1 orders-2]'],
    events: ['MemberReAdded'],
  },
  {
    name: 'members not ready, nothing else to do → Degraded, waiting',
    observe: (sc) =>
      healthy(sc, 3, (o) => {
        o.pods[1] = pod(sc, 1, { ready: false });
      }),
    phase: 'Degraded',
    reason: 'WaitingForMembers',
    actions: [keep3],
  },
  {
    name: 'paused: status says so; nothing applied or done, and no timed look again',
    sc: (sc) => {
      sc.metadata.annotations = { [pausedAnnotation]: 'paused' };
      sc.spec.replicas = 5;
    },
    phase: 'Paused',
    reason: 'Paused',
    actions: [],
    requeueMs: undefined,
    check: (s) => assert.equal(s.ensureObjects, false),
  },
  {
    name: "a downgrade the members' data cannot survive is refused: nothing applied or replaced",
    sc: (sc) => {
      sc.spec.version = '0.1.0';
    },
    phase: 'Degraded',
    reason: 'DowngradeRefused',
    actions: [],
    events: ['DowngradeRefused'],
    requeueMs: undefined,
    check: (s) => {
      assert.equal(s.ensureObjects, false);
      assert.match(s.progressing.message, /Set spec\.version back to 0\.2\.0/);
    },
  },
  {
    name: 'the members refuse the operator (auth on, no root credentials): Degraded, saying which Secret',
    observe: (sc) =>
      healthy(sc, 3, (o) => {
        o.leaderId = '';
        o.members = undefined;
        o.authProblem = 'etcdserver: user name is empty';
      }),
    phase: 'Degraded',
    reason: 'AuthCredentials',
    actions: [],
    check: (s) => assert.match(s.progressing.message, /orders-root/),
  },
  {
    name: 'spec.auth on, store auth off, root credentials there → enabled as root',
    sc: (sc) => {
      sc.spec.auth = { enabled: true };
    },
    observe: (sc) =>
      healthy(sc, 3, (o) => {
        o.hasRootCredentials = true;
      }),
    phase: 'Updating',
    reason: 'AuthEnabled',
    actions: [keep3, 'enableAuth'],
    events: ['AuthEnabled'],
    check: (s) => {
      assert.equal(s.authEnabled, true);
      assert.equal(s.ifFailed?.instead.progressing.reason, 'AuthNeedsUpgrade');
    },
  },
  {
    name: 'spec.auth on without a password in its Secret → Degraded, saying what to do',
    sc: (sc) => {
      sc.spec.auth = { enabled: true };
    },
    phase: 'Degraded',
    reason: 'AuthCredentials',
    actions: [keep3],
  },
  {
    name: 'spec.auth on while a member runs 0.1.x (no auth) → Degraded until the upgrade is done',
    sc: (sc) => {
      sc.spec.auth = { enabled: true };
    },
    observe: (sc) =>
      healthy(sc, 3, (o) => {
        o.auth = 'unsupported';
        o.hasRootCredentials = true;
      }),
    phase: 'Degraded',
    reason: 'AuthNeedsUpgrade',
    actions: [keep3],
  },
  {
    name: 'spec.auth off, store auth on → disabled',
    observe: (sc) =>
      healthy(sc, 3, (o) => {
        o.auth = 'on';
        o.hasRootCredentials = true;
      }),
    phase: 'Updating',
    reason: 'AuthDisabled',
    actions: [keep3, 'disableAuth'],
    events: ['AuthDisabled'],
  },
  {
    name: 'the leader did not say whether auth is on → asks again, changes nothing',
    observe: (sc) =>
      healthy(sc, 3, (o) => {
        o.auth = 'unknown';
      }),
    phase: 'Updating',
    reason: 'WaitingForLeader',
    actions: [keep3],
    requeueMs: 3_000,
  },
];

describe('StoreCluster plan: the one step for what was observed', () => {
  for (const c of cases) {
    it(c.name, () => {
      const sc = cluster(c.sc);
      const s = plan(sc, (c.observe ?? healthy)(sc));
      assert.equal(`${s.phase}/${s.progressing.reason}`, `${c.phase}/${c.reason}`, s.progressing.message);
      assert.deepEqual(actions(s), c.actions);
      if (c.events)
        assert.deepEqual(
          s.events.map((e) => e.reason),
          c.events,
        );
      if ('requeueMs' in c) assert.equal(s.requeueMs, c.requeueMs);
      c.check?.(s);
    });
  }

  it('no step ever removes, replaces or deletes while the quorum is lost, whatever else is asked', () => {
    for (const change of [
      (sc: StoreCluster) => {
        sc.spec.replicas = 5;
      },
      (sc: StoreCluster) => {
        sc.spec.replicas = 1;
      },
      (sc: StoreCluster) => {
        sc.spec.version = '0.2.1';
      },
      (sc: StoreCluster) => {
        sc.spec.auth = { enabled: true };
      },
    ]) {
      const sc = cluster(change);
      const s = plan(
        sc,
        healthy(sc, 3, (o) => {
          o.leaderId = '';
          o.members = undefined;
          o.pods[2] = pod(sc, 2, { dataLost: true });
        }),
      );
      assert.deepEqual(actions(s), []);
    }
  });
});

describe('StoreCluster status for a step', () => {
  it('quorum lost: Available False with the recovery steps, Degraded True; roles unknown for members that did not answer', () => {
    const sc = cluster();
    const o = healthy(sc, 3, (x) => {
      x.leaderId = '';
      x.pods = x.pods.map((p, i) => (i > 0 ? { ...p, appliedIndex: undefined, ready: false } : p));
    });
    const { status } = planStatus(sc, o, plan(sc, o));
    const byType = new Map(status.conditions?.map((c) => [c.type, c]));
    assert.equal(byType.get('Available')?.status, 'False');
    assert.match(byType.get('Available')?.message ?? '', /does not act destructively.*Bring the members' pods back/);
    assert.equal(byType.get('Degraded')?.reason, 'QuorumLost');
    assert.deepEqual(
      status.members?.map((m) => `${m.name}:${m.role}`),
      ['orders-0:follower', 'orders-1:unknown', 'orders-2:unknown'],
    );
  });

  it('ready: every condition as expected, the leader named, the version the pods run', () => {
    const sc = cluster();
    const o = healthy(sc);
    const { status, events } = planStatus(sc, o, plan(sc, o));
    assert.equal(status.phase, 'Ready');
    assert.equal(status.leader, 'orders-0');
    assert.equal(status.currentVersion, '0.2.0');
    assert.deepEqual(
      status.conditions?.map((c) => `${c.type}=${c.status}`),
      ['Ready=True', 'Available=True', 'Progressing=False', 'Degraded=False'],
    );
    assert.deepEqual(events, []);
  });

  it('the status is written against the version it was planned from (a stale cache gets 409, not a lost recovery record)', () => {
    const sc = cluster((c) => {
      c.metadata.resourceVersion = '4711';
    });
    const o = healthy(sc);
    const { status } = planStatus(sc, o, plan(sc, o));
    assert.deepEqual(statusPatch(sc, status), { metadata: { resourceVersion: '4711' }, status });
  });

  it('a member OOM-killed since the last status: a Warning naming its memory limit', () => {
    const sc = cluster((x) => {
      x.status = {
        ...x.status,
        members: [{ name: 'orders-1', id: 'm1', role: 'follower', ready: true, restarts: 0 }],
      } as StoreCluster['status'];
    });
    const o = healthy(sc, 3, (x) => {
      x.pods[1] = pod(sc, 1, { restarts: 1, lastTermination: { reason: 'OOMKilled', exitCode: 137 }, memoryLimit: '256Mi' });
    });
    const { events } = planStatus(sc, o, plan(sc, o));
    assert.equal(events.length, 1);
    assert.equal(events[0]?.reason, 'MemberOOMKilled');
    assert.match(events[0]?.message ?? '', /orders-1 stopped \(OOMKilled, exit code 137\) at its memory limit of 256Mi/);
  });
});
