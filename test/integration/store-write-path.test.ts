// Fault: one follower's disk is slow (every WAL fsync held 2 s by the walBeforeSync failpoint).
// Promise kept: a write answered through that follower waits for the sync of its own entry, not
// for the sync of a later write's entry (the member applies committed entries, which are on its
// disk already, while it syncs newer ones, as etcd does); both writes read back everywhere.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { StoreCluster, freePort } from '../support/store-cluster.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const syncMs = 2000;

describe('write path: applying beside the disk sync', { timeout: 120_000 }, () => {
  let c: StoreCluster | undefined;
  after(() => c?.shutdown());

  it("a follower with a slow disk answers a write after that write's own sync, not after the next write's", async () => {
    const failpoints = new Map<string, number>();
    c = await StoreCluster.start(3, {
      place: async (name, dir) => {
        const fp = await freePort();
        failpoints.set(name, fp);
        return {
          host: '127.0.0.1',
          clientPort: await freePort(),
          peerPort: await freePort(),
          metricsPort: await freePort(),
          dataDir: `${dir}/${name}`,
          env: { BALLAST_FAILPOINTS_HTTP: `127.0.0.1:${fp}` },
        };
      },
    });
    const lead = await c.waitLeader();
    const f = c.members.find((m) => m.name !== lead)!;
    const viaFollower = new Etcd3({ hosts: `http://127.0.0.1:${f.clientPort}` });
    const viaLeader = new Etcd3({ hosts: `http://127.0.0.1:${c.member(lead).clientPort}` });
    try {
      await viaFollower.put('wp/warm').value('1'); // connections and the cluster are up
      const set = await fetch(`http://127.0.0.1:${failpoints.get(f.name)}/walBeforeSync`, { method: 'PUT', body: `sleep(${syncMs})` });
      assert.equal(set.status, 204);

      // The first write through the slow follower: answered once its entry is synced there.
      let firstAnswered = 0;
      const first = viaFollower
        .put('wp/1')
        .value('1')
        .then(() => (firstAnswered = performance.now()));
      // The second, through the leader, reaches the follower while it still syncs the first: the
      // follower's next batch holds the second's entry to sync and the first's commit to apply.
      await sleep(300);
      await viaLeader.put('wp/2').value('2');
      // When the follower has applied the second (after that entry's own sync there).
      let secondApplied = 0;
      for (let i = 0; !secondApplied; i++) {
        assert.ok(i < 3000, 'the follower never applied the second write');
        if ((await viaFollower.get('wp/2').serializable(true).string()) === '2') secondApplied = performance.now();
        else await sleep(10);
      }
      await first;
      const gap = secondApplied - firstAnswered;
      assert.ok(
        gap >= syncMs / 2,
        `the first write was answered ${gap.toFixed(0)} ms before the follower applied the second: it waited for the second's ${syncMs} ms sync`,
      );
      await fetch(`http://127.0.0.1:${failpoints.get(f.name)}/walBeforeSync`, { method: 'DELETE' });
    } finally {
      viaFollower.close();
      viaLeader.close();
    }
    for (const m of c.members) {
      const one = new Etcd3({ hosts: `http://127.0.0.1:${m.clientPort}` });
      try {
        assert.deepEqual(await one.getAll().prefix('wp/').strings(), { 'wp/warm': '1', 'wp/1': '1', 'wp/2': '2' }, m.name);
      } finally {
        one.close();
      }
    }
  });
});
