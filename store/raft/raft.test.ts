// The Raft core on a deterministic simulated network. Every scenario is seeded, so a failure
// replays exactly; the simulator checks election safety and state-machine safety on every step.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RaftError } from './raft-error.ts';
import { SimCluster } from '../../test/support/raft-sim.ts';

const ids3 = ['a', 'b', 'c'];
const ids5 = ['a', 'b', 'c', 'd', 'e'];
const seeds = [1, 2, 3, 4, 5];

function elect(c: SimCluster): string {
  assert.ok(
    c.runUntil(() => c.leader() !== undefined && c.converged(), 500),
    'a leader is elected',
  );
  return c.leader()!;
}

/** Propose through whoever leads, retrying through elections, until committed everywhere live. */
function commit(c: SimCluster, value: string, maxTicks = 2000): void {
  for (let t = 0; t < maxTicks; t += 20) {
    const l = c.leader();
    if (l && c.propose(l, value) && c.runUntil(() => c.committedValues().includes(value), 60)) return;
    c.run(20);
  }
  assert.fail(`${value} never committed`);
}

describe('raft: elections', () => {
  for (const seed of seeds) {
    it(`initial election elects exactly one leader that everyone follows (seed ${seed})`, () => {
      const c = new SimCluster({ seed, ids: ids3 });
      const l = elect(c);
      c.run(50);
      assert.deepEqual(c.leaders(), [l]);
      for (const id of ids3) assert.equal(c.raft(id).lead, l);
      const term = c.raft(l).term;
      c.run(200);
      assert.equal(c.raft(l).term, term, 'a stable cluster keeps its term (no spurious elections)');
    });
  }

  it('re-elects after the leader is cut off, and the old leader steps down (check-quorum)', () => {
    const c = new SimCluster({ seed: 7, ids: ids3 });
    const l1 = elect(c);
    c.isolate(l1);
    assert.ok(
      c.runUntil(() => c.leaders().some((l) => l !== l1), 300),
      'the majority elects a new leader',
    );
    assert.ok(
      c.runUntil(() => c.raft(l1).role !== 'leader', 100),
      'the isolated leader steps down when it loses its quorum',
    );
    c.heal();
    assert.ok(c.runUntil(() => c.leaders().length === 1 && c.converged(), 300));
  });

  it('pre-vote: a partitioned follower that rejoins does not disrupt the leader', () => {
    const c = new SimCluster({ seed: 8, ids: ids3 });
    const l = elect(c);
    const f = ids3.find((id) => id !== l)!;
    const term = c.raft(l).term;
    c.isolate(f);
    c.run(300); // f campaigns repeatedly, but only pre-votes: its term does not grow
    assert.equal(c.raft(f).term, term);
    c.heal();
    c.run(100);
    assert.equal(c.leader(), l);
    assert.equal(c.raft(l).term, term);
  });
});

describe('raft: replication', () => {
  it('agrees with a follower disconnected, and the follower catches up', () => {
    const c = new SimCluster({ seed: 11, ids: ids3 });
    const l = elect(c);
    const f = ids3.find((id) => id !== l)!;
    c.isolate(f);
    for (let i = 0; i < 10; i++) commit(c, `v${i}`);
    assert.equal(c.node(f).applied.length, 0);
    c.heal();
    assert.ok(c.runUntil(() => c.converged(), 300));
    assert.deepEqual(
      c.node(f).applied,
      Array.from({ length: 10 }, (_, i) => `v${i}`),
    );
  });

  it('makes no progress without a quorum, then commits once it returns', () => {
    const c = new SimCluster({ seed: 12, ids: ids5 });
    const l = elect(c);
    const others = ids5.filter((id) => id !== l);
    c.partition([l, others[0]!], others.slice(1));
    c.propose(l, 'x');
    c.run(30);
    assert.ok(!c.committedValues().includes('x'), 'no commit with 2 of 5');
    c.heal();
    assert.ok(c.runUntil(() => c.converged() && c.leader() !== undefined, 500));
    commit(c, 'y');
    assert.ok(c.committedValues().includes('y'));
  });

  for (const seed of seeds) {
    it(`concurrent proposals from every member commit once each, in one order (seed ${seed})`, () => {
      const c = new SimCluster({ seed, ids: ids5 });
      elect(c);
      const want: string[] = [];
      for (let round = 0; round < 20; round++) {
        for (const id of ids5) {
          const v = `${id}-${round}`;
          if (c.propose(id, v)) want.push(v);
        }
        c.run(1);
      }
      assert.ok(c.runUntil(() => c.converged() && c.committedValues().length >= want.length, 500));
      const got = c.committedValues();
      assert.deepEqual([...got].sort(), [...want].sort());
      for (const id of ids5) assert.deepEqual(c.node(id).applied, got);
    });
  }

  it('a partitioned leader rejoins and its uncommitted entries are replaced', () => {
    const c = new SimCluster({ seed: 13, ids: ids3 });
    const l1 = elect(c);
    commit(c, 'before');
    c.isolate(l1);
    for (let i = 0; i < 5; i++) c.propose(l1, `lost${i}`);
    assert.ok(c.runUntil(() => c.leaders().some((l) => l !== l1), 300));
    commit(c, 'after');
    c.heal();
    assert.ok(c.runUntil(() => c.converged() && c.leaders().length === 1, 500));
    const vals = c.node(l1).applied;
    assert.deepEqual(vals, ['before', 'after']);
  });

  it('fast back-up: a follower with a long divergent log converges in few round trips', () => {
    const c = new SimCluster({ seed: 14, ids: ids5 });
    const l1 = elect(c);
    const [f1, f2, f3, f4] = ids5.filter((id) => id !== l1) as [string, string, string, string];
    // The old leader and one follower accumulate 100 uncommitted entries in a minority.
    c.partition([l1, f1], [f2, f3, f4]);
    for (let i = 0; i < 100; i++) c.propose(l1, `stale${i}`);
    c.run(5);
    assert.ok(c.runUntil(() => c.leaders().some((l) => l !== l1 && l !== f1), 300));
    for (let i = 0; i < 100; i++) c.propose(c.leader()!, `new${i}`);
    c.run(20);
    c.heal();
    const before = c.delivered.get('appResp') ?? 0;
    assert.ok(c.runUntil(() => c.converged(), 500));
    const rejections = (c.delivered.get('appResp') ?? 0) - before;
    assert.ok(rejections < 150, `converged with ${rejections} append responses (one per entry would be ~200+)`);
    assert.ok(c.node(l1).applied.every((v) => !v.startsWith('stale')));
  });
});

describe('raft: crashes and persistence', () => {
  it('committed entries survive every member crashing and restarting', () => {
    const c = new SimCluster({ seed: 21, ids: ids3 });
    elect(c);
    for (let i = 0; i < 20; i++) commit(c, `d${i}`);
    for (const id of ids3) c.crash(id);
    for (const id of ids3) c.restart(id);
    elect(c);
    assert.ok(c.runUntil(() => c.converged() && c.node('a').applied.length === 20, 500));
    commit(c, 'after-restart');
    for (const id of ids3)
      assert.deepEqual(
        c.node(id).applied.slice(0, 20),
        Array.from({ length: 20 }, (_, i) => `d${i}`),
      );
  });

  for (const [name, unreliable] of [
    ['reliable', false],
    ['unreliable', true],
  ] as const) {
    it(`Figure 8 (${name}): leaders crash mid-replication; nothing committed is ever lost or changed`, () => {
      for (const seed of [31, 32, 33]) {
        const c = new SimCluster({ seed, ids: ids5 });
        if (unreliable) {
          c.dropRate = 0.1;
          c.maxDelay = 3;
        }
        const acknowledged: string[] = [];
        for (let iter = 0; iter < 60; iter++) {
          const l = c.leader();
          if (l) c.propose(l, `f8-${seed}-${iter}`);
          c.run(1 + c.random.int(unreliable ? 30 : 15));
          if (l && c.isUp(l) && c.random.next() < 0.5) c.crash(l);
          const down = ids5.filter((id) => !c.isUp(id));
          if (down.length > 2 || (down.length > 0 && c.random.next() < 0.4)) c.restart(down[c.random.int(down.length)]!);
          acknowledged.push(...c.committedValues().filter((v) => !acknowledged.includes(v)));
        }
        for (const id of ids5) c.restart(id);
        c.dropRate = 0;
        c.maxDelay = 0;
        commit(c, `final-${seed}`, 3000);
        assert.ok(c.runUntil(() => c.converged(), 1000));
        const applied = c.node('a').applied;
        for (const v of acknowledged) assert.ok(applied.includes(v), `${v} was committed, then lost (seed ${seed})`);
      }
    });
  }

  it('churn: random crashes, restarts and proposals keep every member consistent', () => {
    const c = new SimCluster({ seed: 41, ids: ids5 });
    c.dropRate = 0.05;
    for (let iter = 0; iter < 200; iter++) {
      const id = ids5[c.random.int(5)]!;
      const roll = c.random.next();
      if (roll < 0.1) c.crash(id);
      else if (roll < 0.3) c.restart(id);
      else if (c.isUp(id)) c.propose(id, `churn${iter}`);
      c.run(1 + c.random.int(5));
    }
    for (const id of ids5) c.restart(id);
    c.dropRate = 0;
    commit(c, 'churn-final', 3000);
    assert.ok(c.runUntil(() => c.converged(), 1000));
  });
});

describe('raft: snapshots', () => {
  it('a member that fell behind the compacted log is caught up by InstallSnapshot', () => {
    const c = new SimCluster({ seed: 51, ids: ids3, snapshotEvery: 10 });
    const l = elect(c);
    const f = ids3.find((id) => id !== l)!;
    c.crash(f);
    for (let i = 0; i < 50; i++) commit(c, `s${i}`);
    assert.ok(c.raft(l).log.firstIndex() > 10, 'the leader compacted its log');
    const snapsBefore = c.delivered.get('snap') ?? 0;
    c.restart(f);
    assert.ok(c.runUntil(() => c.converged(), 500));
    assert.ok((c.delivered.get('snap') ?? 0) > snapsBefore, 'caught up through a snapshot');
    assert.equal(c.node(f).applied.length, 50);
  });

  it('snapshots with crashes and unreliable links keep everyone consistent', () => {
    const c = new SimCluster({ seed: 52, ids: ids5, snapshotEvery: 7 });
    c.dropRate = 0.1;
    c.maxDelay = 2;
    for (let iter = 0; iter < 150; iter++) {
      const l = c.leader();
      if (l) c.propose(l, `u${iter}`);
      c.run(1 + c.random.int(4));
      if (c.random.next() < 0.1) c.crash(ids5[c.random.int(5)]!);
      if (c.random.next() < 0.3) c.restart(ids5[c.random.int(5)]!);
    }
    for (const id of ids5) c.restart(id);
    c.dropRate = 0;
    c.maxDelay = 0;
    commit(c, 'u-final', 3000);
    assert.ok(c.runUntil(() => c.converged(), 1000));
  });
});

describe('raft: leadership transfer', () => {
  it('moves leadership to a caught-up follower without losing entries', () => {
    const c = new SimCluster({ seed: 61, ids: ids3 });
    const l = elect(c);
    commit(c, 'x');
    const target = ids3.find((id) => id !== l)!;
    c.raft(l).transferLeadership(target);
    assert.ok(
      c.runUntil(() => c.leader() === target && c.leaders().length === 1, 100),
      'target leads within a few ticks',
    );
    commit(c, 'y');
    assert.ok(c.runUntil(() => c.converged(), 200));
    assert.deepEqual(c.node(l).applied, ['x', 'y']);
  });

  it('refuses proposals while the transfer is in flight and refuses a non-voter target', () => {
    const c = new SimCluster({ seed: 62, ids: ids3 });
    const l = elect(c);
    c.isolate(ids3.find((id) => id !== l)!);
    const target = ids3.find((id) => id !== l && c.raft(l).status().progress[id])!;
    c.raft(l).transferLeadership(target);
    assert.throws(
      () => c.raft(l).propose(new Uint8Array([1])),
      (e: unknown) => e instanceof RaftError && e.code === 'PROPOSAL_DROPPED',
    );
    assert.throws(
      () => c.raft(l).transferLeadership('zz'),
      (e: unknown) => e instanceof RaftError && e.code === 'TRANSFEREE_NOT_FOUND',
    );
  });
});

describe('raft: membership', () => {
  it('adds a learner, catches it up, promotes it; the new voter counts toward quorum', () => {
    const c = new SimCluster({ seed: 71, ids: ids3 });
    const l = elect(c);
    for (let i = 0; i < 30; i++) commit(c, `m${i}`);
    c.addNode('d');
    c.raft(l).proposeConfChange({ type: 'addLearner', id: 'd' });
    assert.ok(
      c.runUntil(() => c.node('d').applied.length === 30, 300),
      'the learner receives the log',
    );
    assert.ok(
      c.runUntil(() => (c.raft(l).status().progress['d']?.match ?? 0) === c.raft(l).log.lastIndex(), 50),
      'the leader sees it caught up',
    );
    assert.equal(c.raft('d').role, 'follower');
    assert.deepEqual(c.raft(l).conf().learners, ['d']);
    c.raft(l).proposeConfChange({ type: 'promote', id: 'd' });
    assert.ok(c.runUntil(() => c.raft(l).conf().voters.includes('d'), 100));
    commit(c, 'with-d');
    assert.ok(c.runUntil(() => c.node('d').applied.includes('with-d'), 50));
    // Four voters now: quorum is 3. Cutting d and one original voter leaves 2: no commit, which
    // would not be so if d did not count.
    const others = ids3.filter((id) => id !== l);
    c.isolate('d');
    c.isolate(others[0]!);
    c.propose(l, 'needs-d');
    c.run(8);
    assert.ok(!c.committedValues().includes('needs-d'), 'd is counted in the quorum');
  });

  it('refuses to promote a lagging learner with a clear error', () => {
    const c = new SimCluster({ seed: 72, ids: ids3 });
    const l = elect(c);
    for (let i = 0; i < 30; i++) commit(c, `m${i}`);
    c.addNode('d');
    c.isolate('d');
    c.raft(l).proposeConfChange({ type: 'addLearner', id: 'd' });
    c.run(20);
    assert.throws(
      () => c.raft(l).proposeConfChange({ type: 'promote', id: 'd' }),
      (e: unknown) => e instanceof RaftError && e.code === 'LEARNER_NOT_READY' && /learner d has \d+ of \d+ entries/.test(e.message),
    );
  });

  it('removes a member; the rest keep committing; the removed leader steps down', () => {
    const c = new SimCluster({ seed: 73, ids: ids3 });
    const l = elect(c);
    commit(c, 'one');
    c.raft(l).proposeConfChange({ type: 'remove', id: l });
    assert.ok(
      c.runUntil(() => c.leaders().some((x) => x !== l), 400),
      'a remaining member takes over',
    );
    assert.notEqual(c.raft(l).role, 'leader');
    const rest = ids3.filter((id) => id !== l);
    c.crash(l);
    commit(c, 'two');
    assert.ok(c.runUntil(() => c.converged(), 200));
    for (const id of rest) assert.deepEqual(c.node(id).applied, ['one', 'two']);
  });

  it('one membership change at a time', () => {
    const c = new SimCluster({ seed: 74, ids: ids3 });
    const l = elect(c);
    c.addNode('d');
    c.addNode('e');
    c.raft(l).proposeConfChange({ type: 'addLearner', id: 'd' });
    assert.throws(
      () => c.raft(l).proposeConfChange({ type: 'addLearner', id: 'e' }),
      (e: unknown) => e instanceof RaftError && e.code === 'CONF_CHANGE_PENDING',
    );
  });
});

describe('raft: reads', () => {
  it('ReadIndex on the leader and on a follower returns a point at or after every acknowledged write', () => {
    const c = new SimCluster({ seed: 81, ids: ids3 });
    const l = elect(c);
    commit(c, 'w1');
    const commitIndex = c.raft(l).log.committed;
    const f = ids3.find((id) => id !== l)!;
    c.raft(l).readIndex('r-leader');
    c.raft(f).readIndex('r-follower');
    assert.ok(c.runUntil(() => c.node(l).reads.length > 0 && c.node(f).reads.length > 0, 50));
    assert.ok(c.node(l).reads[0]!.index >= commitIndex);
    assert.equal(c.node(f).reads[0]!.context, 'r-follower');
    assert.ok(c.node(f).reads[0]!.index >= commitIndex);
  });

  it('a leader cut off from its quorum does not answer reads', () => {
    const c = new SimCluster({ seed: 82, ids: ids3 });
    const l = elect(c);
    commit(c, 'w');
    c.isolate(l);
    c.raft(l).readIndex('stale?');
    c.run(30);
    assert.equal(c.node(l).reads.length, 0, 'no read served without a quorum confirming leadership');
  });
});
