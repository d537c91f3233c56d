// Faults: a snapshot that takes long (held 4 s by the raftBeforeSaveSnap failpoint, as a large key
// space's would: a million keys took 7 s to snapshot when it was made in one piece), and a crash
// while one is saved. Promises kept: members go on acknowledging writes and serving linearizable
// reads while their snapshots are made; a member restarted afterwards comes back from its snapshot
// with every acknowledged write; a crash in the middle of a snapshot loses nothing and leaves no
// half-written file. Client: the `etcd3` npm package, unchanged.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { StoreCluster } from '../support/store-cluster.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface LogLine {
  time: string;
  msg: string;
  index?: number;
  snapshotIndex?: number;
}

function logOf(c: StoreCluster, name: string): LogLine[] {
  return readFileSync(join(c.dir, `${name}.log`), 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine);
}

/** The first log line of `name` saying `msg` (after `from` lines), waited for. */
async function logged(c: StoreCluster, name: string, msg: string, from = 0, deadlineMs = 120_000): Promise<LogLine> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    const line = logOf(c, name)
      .slice(from)
      .find((l) => l.msg === msg);
    if (line) return line;
    assert.ok(Date.now() < end, `${name} never logged "${msg}" (logs in ${c.dir})`);
    await sleep(50);
  }
}

/** Writers putting unique keys until stopped; each acknowledged key with the time it was acknowledged. */
function writers(c: StoreCluster, n: number) {
  const client = new Etcd3({ hosts: c.members.map((m) => `http://127.0.0.1:${m.clientPort}`), dialTimeout: 2000 });
  const acked: Array<{ key: string; at: number }> = [];
  const reads: number[] = [];
  let stop = false;
  let seq = 0;
  const reader = (async () => {
    while (!stop) {
      try {
        await client.get('snap/0/0').string(); // linearizable (ReadIndex through the leader)
        reads.push(Date.now());
      } catch {
        // outcome unknown: not counted
      }
      await sleep(20);
    }
  })();
  const loops = Array.from({ length: n }, async (_, w) => {
    while (!stop) {
      const key = `snap/${w}/${seq++}`;
      try {
        await client.put(key).value('v'.repeat(200));
        acked.push({ key, at: Date.now() });
      } catch {
        await sleep(20); // outcome unknown: not counted
      }
    }
  });
  return {
    acked,
    reads,
    client,
    async finish() {
      stop = true;
      await Promise.all([...loops, reader]);
    },
  };
}

async function keysOn(c: StoreCluster, name: string): Promise<Set<string>> {
  const m = c.member(name);
  const client = new Etcd3({ hosts: `http://127.0.0.1:${m.clientPort}` });
  try {
    return new Set(await client.getAll().prefix('snap/').keys());
  } finally {
    client.close();
  }
}

describe('snapshots are made in the background', { timeout: 300_000 }, () => {
  const started: StoreCluster[] = [];
  after(() => Promise.all(started.map((x) => x.shutdown())));

  it('a snapshot held 4 s: writes and linearizable reads go on; restarted members recover from it; a crash mid-snapshot loses nothing', async () => {
    const c = await StoreCluster.start(3, {
      extraArgs: ['--snapshot-count=400'],
      env: { BALLAST_FAILPOINTS: 'raftBeforeSaveSnap=1*sleep(4000)' },
    });
    started.push(c);
    const w = writers(c, 4);
    // Every member reaches --snapshot-count and its snapshot is held before being written.
    const held = await Promise.all(c.members.map((m) => logged(c, m.name, 'failpoint: before saving a snapshot')));
    const saved = await Promise.all(c.members.map((m) => logged(c, m.name, 'saved snapshot and compacted the raft log')));
    const from = Math.max(...held.map((l) => Date.parse(l.time)));
    const to = Math.min(...saved.map((l) => Date.parse(l.time)));
    assert.ok(to > from, 'the three snapshots were held at the same time');
    const during = w.acked.filter((a) => a.at > from && a.at < to).length;
    assert.ok(
      during > 0,
      `writes acknowledged while every member's snapshot was held: ${during} (none means a snapshot blocks the member)`,
    );
    for (const l of saved) assert.ok((l.index ?? 0) >= 400, `snapshot at index ${l.index}`);

    await w.finish();
    const count1 = (await keysOn(c, 'm1')).size;
    assert.ok(count1 >= w.acked.length);

    // Restarted, m1 recovers from its snapshot (not from the whole log) with every acknowledged write.
    await c.stop('m1');
    const lines = logOf(c, 'm1').length;
    c.restart('m1');
    const recovered = await logged(c, 'm1', 'recovered member from data directory', lines);
    assert.ok((recovered.snapshotIndex ?? 0) >= 400, `m1 recovered from the snapshot at ${recovered.snapshotIndex}`);
    await c.waitHealthy();
    const on1 = await keysOn(c, 'm1');
    assert.deepEqual(
      w.acked.filter((a) => !on1.has(a.key)).slice(0, 5),
      [],
      'every acknowledged write is on m1 after its restart from the snapshot',
    );

    // Crash m2 in the middle of its next snapshot, then start it again without the failpoint.
    await c.stop('m2');
    c.member('m2').env = { BALLAST_FAILPOINTS: 'raftBeforeSaveSnap=1*crash' };
    const crashed = new Promise<NodeJS.Signals | null>((resolve) => c.restart('m2').once('exit', (_code, sig) => resolve(sig)));
    const w2 = writers(c, 4);
    assert.equal(await crashed, 'SIGKILL', 'm2 crashed at the failpoint, before saving its next snapshot');
    await w2.finish();
    c.member('m2').env = {};
    const lines2 = logOf(c, 'm2').length;
    c.restart('m2');
    await logged(c, 'm2', 'recovered member from data directory', lines2);
    await c.waitHealthy();
    const snapDir = join(c.member('m2').dataDir, 'member', 'snap');
    assert.deepEqual(
      readdirSync(snapDir).filter((f) => !f.endsWith('.snap')),
      [],
      'no temporary file left',
    );
    const on2 = await keysOn(c, 'm2');
    const all = [...w.acked, ...w2.acked];
    assert.deepEqual(all.filter((a) => !on2.has(a.key)).slice(0, 5), [], 'every acknowledged write is on m2 after the crash');
    w.client.close();
    w2.client.close();
  });
});
