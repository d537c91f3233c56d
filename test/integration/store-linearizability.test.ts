// Linearizability of `ballast store` under faults, checked by Porcupine; and proof that the
// checker catches a store that is not linearizable.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { loadProtos } from '../../store/api/server.ts';
import { checkLinearizable, runRegisterWorkload } from '../support/linearizability.ts';
import { StoreCluster } from '../support/store-cluster.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Ask the leader to hand leadership to another member (Maintenance.MoveLeader). */
async function moveLeader(c: StoreCluster): Promise<void> {
  const lead = c.leader();
  if (!lead) return;
  const list = c.etcdctl(['member', 'list']).stdout.split('\n').filter(Boolean);
  const target = list.find((l) => !l.includes(`, ${lead}, `) && c.procs.has(l.split(', ')[2] ?? ''));
  if (!target) return;
  const targetId = BigInt(`0x${target.split(',')[0]}`).toString();
  const Maintenance = (loadProtos()['etcdserverpb'] as Record<string, grpc.ServiceClientConstructor>)[
    'Maintenance'
  ] as grpc.ServiceClientConstructor;
  const client = new Maintenance(`127.0.0.1:${c.member(lead).clientPort}`, grpc.credentials.createInsecure());
  await new Promise<void>((resolve) => {
    (client as unknown as Record<string, (req: object, opts: grpc.CallOptions, cb: () => void) => void>)['MoveLeader']!.call(
      client,
      { targetID: targetId },
      { deadline: Date.now() + 3000 },
      () => resolve(),
    );
  });
  client.close();
}

describe('linearizability (Porcupine)', { timeout: 240_000 }, () => {
  let c: StoreCluster | undefined;
  after(() => c?.shutdown());

  it('reads, writes and compare-and-set stay linearizable while members are killed -9, restarted and leadership moves', async () => {
    c = await StoreCluster.start(3);
    const cluster = c;
    const endpoints = c.members.map((m) => `127.0.0.1:${m.clientPort}`);
    let faults = 0;
    const nemesis = (async () => {
      await sleep(800);
      for (let round = 0; round < 4; round++) {
        const victim = round % 2 === 0 ? (cluster.leader() ?? 'm1') : cluster.members[round % 3]!.name;
        await cluster.kill9(victim);
        faults++;
        await sleep(900);
        cluster.restart(victim);
        await sleep(900);
        await moveLeader(cluster);
        faults++;
        await sleep(400);
      }
    })();
    // At least the nemesis's time, and until 250 writes had a definite outcome (a busy machine
    // takes longer to get there; the run must mean something either way).
    let nemesisDone = false;
    void nemesis.then(() => {
      nemesisDone = true;
    });
    const definiteWrites = (h: readonly { unknown: boolean; op: string }[]) => h.filter((x) => !x.unknown && x.op !== 'get').length;
    const history = await runRegisterWorkload({
      endpoints,
      clients: 8,
      keys: ['x', 'y', 'z'],
      durationMs: 9000,
      seed: 7,
      until: (h) => nemesisDone && definiteWrites(h) >= 250,
      maxDurationMs: 180_000,
    });
    await nemesis;
    const result = checkLinearizable(history, c.dir, 'faults');
    const definite = history.filter((h) => !h.unknown && h.op !== 'get').length;
    assert.ok(faults >= 6, `faults injected: ${faults}`);
    assert.ok(definite > 200, `enough acknowledged writes to mean something (${definite})`);
    assert.ok(result.linearizable, `Porcupine found a violation: ${result.output}\nsee ${result.html}`);
    console.log(`# ${result.output.trim().replace(/\n/g, '; ')}; faults ${faults}`);
  });

  it('the checker is not blind: a store serving reads from followers without ReadIndex is caught', async () => {
    await c?.shutdown();
    c = await StoreCluster.start(3, { env: { BALLAST_TEST_UNSAFE_STALE_READS: '1' } });
    const lead = await c.waitLeader();
    const leaderEp = `127.0.0.1:${c.member(lead).clientPort}`;
    const followerEps = c.members.filter((m) => m.name !== lead).map((m) => `127.0.0.1:${m.clientPort}`);
    // Writes go to the leader, reads to followers: without ReadIndex a follower answers from
    // whatever it has applied, which trails what the leader has acknowledged.
    let verdict = { linearizable: true, output: '', html: '' };
    for (let attempt = 0; attempt < 3 && verdict.linearizable; attempt++) {
      const history = await runRegisterWorkload({
        endpoints: [leaderEp, ...followerEps],
        clients: 8,
        keys: ['x'],
        durationMs: 3000,
        seed: 11 + attempt,
        route: (client, op) => (op === 'get' ? followerEps[client % followerEps.length]! : leaderEp),
      });
      verdict = checkLinearizable(history, c.dir, `unsafe-${attempt}`);
    }
    assert.equal(verdict.linearizable, false, `expected a violation, got: ${verdict.output}`);
    assert.match(verdict.output, /NOT linearizable/);
  });
});
