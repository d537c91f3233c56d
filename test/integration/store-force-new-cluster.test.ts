// Recovering from a lost quorum with one member's data (`ballast store --force-new-cluster`).
// Fault: two of three members die under writes and their data directories are lost for good.
// Promise: the survivor, restarted with --force-new-cluster, serves every write the cluster
// acknowledged before the loss at the same revisions; the others come back empty as learners,
// catch up and are promoted, with the same key-space hash; a second start with the same
// --force-new-cluster-id starts normally (the re-added members stay); a member with no data
// refuses to force anything.
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { after, describe, it } from 'node:test';
import { loadProtos } from '../../store/api/protos.ts';
import { StoreCluster } from '../support/store-cluster.ts';

type Kv = {
  Put(r: object, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: { header: { revision: string } }) => void): void;
  close(): void;
};

describe('ballast store --force-new-cluster', { timeout: 180_000 }, () => {
  let c: StoreCluster | undefined;
  after(() => c?.shutdown());

  it('two of three members lose their data under writes: the survivor starts a one-member cluster with every acknowledged write, and the others rejoin as learners', async (t) => {
    c = await StoreCluster.start(3);
    const survivor = await c.waitLeader();
    const lost = c.members.map((m) => m.name).filter((n) => n !== survivor);
    // Writes through the leader, one at a time; each acknowledged one is remembered with its revision.
    const KV = (loadProtos()['etcdserverpb'] as Record<string, grpc.ServiceClientConstructor>)['KV'] as grpc.ServiceClientConstructor;
    const kv = new KV(c.addr(c.member(survivor)), grpc.credentials.createInsecure()) as unknown as Kv;
    t.after(() => kv.close());
    const acked = new Map<string, number>();
    let writing = true;
    let n = 0;
    const writer = (async () => {
      while (writing) {
        const key = `k/${n++}`;
        const rev = await new Promise<number | undefined>((res) =>
          kv.Put({ key: Buffer.from(key), value: Buffer.from(`v${n}`) }, { deadline: Date.now() + 500 }, (e, r) =>
            res(e ? undefined : Number(r?.header.revision)),
          ),
        );
        if (rev !== undefined) acked.set(key, rev);
      }
    })();
    while (acked.size < 300) await new Promise((r) => setTimeout(r, 20));
    // Both followers die at once; their data is gone for good.
    await Promise.all(lost.map((name) => c!.kill9(name)));
    for (const name of lost) rmSync(c.member(name).dataDir, { recursive: true, force: true });
    await new Promise((r) => setTimeout(r, 1500));
    writing = false;
    await writer;
    t.diagnostic(`${acked.size} writes acknowledged of ${n} attempted before and after the loss`);
    assert.notEqual(c.etcdctl(['put', 'k/probe', 'x'], { endpoints: c.addr(c.member(survivor)) }).status, 0, 'no quorum: writes fail');

    // The survivor restarts with --force-new-cluster (once, under an id).
    await c.stop(survivor);
    c.extraArgs = ['--force-new-cluster', '--force-new-cluster-id=plan-1'];
    c.restart(survivor);
    c.extraArgs = [];
    const only = [c.member(survivor)];
    await c.waitHealthy(30_000);
    const list = c.etcdctl(['member', 'list', '-w', 'json'], { endpoints: c.endpoints(only) });
    assert.deepEqual(
      (JSON.parse(list.stdout) as { members: Array<{ name: string }> }).members.map((m) => m.name),
      [survivor],
      'a one-member cluster',
    );
    const got = JSON.parse(c.etcdctl(['get', 'k/', '--prefix', '-w', 'json'], { endpoints: c.endpoints(only) }).stdout) as {
      kvs?: Array<{ key: string; mod_revision: number }>;
    };
    const have = new Map((got.kvs ?? []).map((x) => [Buffer.from(x.key, 'base64').toString(), x.mod_revision]));
    const missing = [...acked].filter(([k, rev]) => have.get(k) !== rev);
    assert.deepEqual(missing, [], 'every acknowledged write is there, at the revision it was acknowledged with');
    assert.equal(c.etcdctl(['put', 'k/after', 'y'], { endpoints: c.endpoints(only) }).status, 0, 'it takes writes');

    // The lost members come back empty, one learner at a time, and are promoted once caught up.
    for (const name of lost) {
      const m = c.member(name);
      const added = c.etcdctl(['member', 'add', name, '--learner', `--peer-urls=http://127.0.0.1:${m.peerPort}`], {
        endpoints: c.endpoints(),
      });
      const id = /Member +([0-9a-f]+) added/.exec(added.stdout)?.[1];
      assert.ok(id, added.stdout + added.stderr);
      c.spawn(m, 'existing');
      const deadline = Date.now() + 60_000;
      for (;;) {
        const r = c.etcdctl(['member', 'promote', id], { endpoints: c.addr(c.member(survivor)) });
        if (r.status === 0) break;
        assert.ok(Date.now() < deadline, `promoting ${name}: ${r.stderr}`);
        await new Promise((res) => setTimeout(res, 500));
      }
    }
    await c.waitHealthy(30_000);
    const hashes = () =>
      (JSON.parse(c!.etcdctl(['endpoint', 'hashkv', '-w', 'json']).stdout || '[]') as Array<{ HashKV: { hash: number } }>).map(
        (h) => h.HashKV.hash,
      );
    const deadline = Date.now() + 30_000;
    while (new Set(hashes()).size !== 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 500));
    assert.equal(hashes().length, 3);
    assert.equal(new Set(hashes()).size, 1, "the three members' key spaces hash the same");

    // The same id again: a normal start, the re-added members stay.
    await c.stop(survivor);
    c.extraArgs = ['--force-new-cluster', '--force-new-cluster-id=plan-1'];
    c.restart(survivor);
    c.extraArgs = [];
    await c.waitHealthy(30_000);
    assert.equal(
      (JSON.parse(c.etcdctl(['member', 'list', '-w', 'json']).stdout) as { members: unknown[] }).members.length,
      3,
      'not forced twice',
    );
  });

  it('--force-new-cluster-member names the survivor: the other members start normally; a member without data refuses', async () => {
    const m = c!.member(c!.members[1]!.name);
    await c!.stop(m.name);
    c!.extraArgs = [`--force-new-cluster-member=${c!.members[0]!.name}`, '--force-new-cluster-id=plan-2'];
    c!.restart(m.name);
    c!.extraArgs = [];
    await c!.waitHealthy(30_000);
    assert.equal(
      (JSON.parse(c!.etcdctl(['member', 'list', '-w', 'json']).stdout) as { members: unknown[] }).members.length,
      3,
      'the member not named started as it was',
    );

    const empty = await c!.addSpec('empty');
    c!.extraArgs = ['--force-new-cluster'];
    const p = c!.spawn(empty, 'existing');
    c!.extraArgs = [];
    const code = await new Promise<number | null>((r) => p.once('exit', (x) => r(x)));
    assert.equal(code, 1);
    const log = readFileSync(join(c!.dir, 'empty.log'), 'utf8');
    assert.match(
      log,
      /--force-new-cluster: \S+ holds no data to start the new cluster from; give the data directory of the member that survived/,
    );
    assert.match(log, /"code":"STORE_ERR_DATA_DIR"/);
  });
});
