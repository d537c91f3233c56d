// Fault: kill -9 members during sustained writes. Promise kept: every write acknowledged to a
// client is read back afterwards, from every member. Client: the `etcd3` npm package, unchanged.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { StoreCluster } from '../support/store-cluster.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Wait until `n` more writes are acknowledged (a busy machine acknowledges fewer per second: the
 * test runs until it has done enough work; the deadline only catches a hang).
 */
async function untilAcked(acked: readonly string[], n: number, what: string, deadlineMs = 120_000): Promise<void> {
  const target = acked.length + n;
  const end = Date.now() + deadlineMs;
  while (acked.length < target) {
    assert.ok(Date.now() < end, `${what}: only ${acked.length} of ${target} writes acknowledged after ${deadlineMs / 1000} s`);
    await sleep(50);
  }
}

/** Writers putting unique keys until stopped; returns the keys whose put was acknowledged. */
function writers(c: StoreCluster, n: number) {
  const client = new Etcd3({ hosts: c.members.map((m) => `http://127.0.0.1:${m.clientPort}`), dialTimeout: 2000 });
  const acked: string[] = [];
  let stop = false;
  let seq = 0;
  const loops = Array.from({ length: n }, async (_, w) => {
    while (!stop) {
      const key = `dur/${w}/${seq++}`;
      try {
        await client.put(key).value(key);
        acked.push(key);
      } catch {
        await sleep(20); // outcome unknown or refused: not counted as acknowledged
      }
    }
  });
  return {
    acked,
    async finish() {
      stop = true;
      await Promise.all(loops);
      client.close();
    },
  };
}

async function assertAllReadable(c: StoreCluster, keys: string[]): Promise<void> {
  for (const m of c.members) {
    const client = new Etcd3({ hosts: `http://127.0.0.1:${m.clientPort}` });
    const got = new Set(Object.keys(await client.getAll().prefix('dur/').strings()));
    client.close();
    const lost = keys.filter((k) => !got.has(k));
    assert.deepEqual(lost.slice(0, 10), [], `${lost.length} acknowledged writes missing on ${m.name}`);
  }
}

describe('durability under kill -9', { timeout: 180_000 }, () => {
  let c: StoreCluster | undefined;
  // Every cluster a test started is shut down, even one whose test failed before its own
  // shutdown (left running, its processes would keep this file from ever finishing).
  const started: StoreCluster[] = [];
  const start = async (n: number) => {
    c = await StoreCluster.start(n);
    started.push(c);
    return c;
  };
  after(() => Promise.all(started.map((x) => x.shutdown())));

  it('kill -9 the leader during sustained writes: every acknowledged write is read back', async () => {
    c = await start(3);
    const w = writers(c, 8);
    await untilAcked(w.acked, 100, 'before the fault');
    const leader = c.leader();
    assert.ok(leader, 'a leader before the fault');
    await c.kill9(leader);
    await untilAcked(w.acked, 100, 'after the leader was killed'); // the rest elect a new leader
    c.restart(leader);
    await untilAcked(w.acked, 50, 'after the old leader came back');
    await w.finish();
    await c.waitHealthy();
    await assertAllReadable(c, w.acked);
    await c.shutdown();
  });

  it('kill -9 every member at once during writes: acknowledged writes survive the restart (fsync)', async () => {
    c = await start(3);
    const w = writers(c, 8);
    await untilAcked(w.acked, 100, 'before the fault');
    await Promise.all(c.members.map((m) => c!.kill9(m.name)));
    await w.finish();
    for (const m of c.members) c.restart(m.name);
    await c.waitHealthy();
    await assertAllReadable(c, w.acked);
  });
});
