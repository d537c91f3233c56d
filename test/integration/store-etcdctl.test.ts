// Debian's etcdctl (a client nobody here wrote) against a 3-member `ballast store` cluster.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { loadProtos } from '../../store/api/server.ts';
import { StoreCluster } from '../support/store-cluster.ts';

describe('ballast store with etcdctl', { timeout: 300_000 }, () => {
  let c: StoreCluster;
  before(async () => {
    c = await StoreCluster.start(3);
  });
  after(() => c?.shutdown());

  const ok = (args: string[], input?: string) => {
    const r = c.etcdctl(args, input === undefined ? {} : { input });
    assert.equal(r.status, 0, `etcdctl ${args.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  };

  it('put and get, by prefix and at a past revision', () => {
    assert.equal(ok(['put', 'app/a', '1']).trim(), 'OK');
    ok(['put', 'app/b', '2']);
    ok(['put', 'app/a', '3']);
    assert.equal(ok(['get', 'app/', '--prefix']), 'app/a\n3\napp/b\n2\n');
    const rev = JSON.parse(ok(['get', 'app/a', '-w', 'json'])) as {
      kvs: Array<{ create_revision: number; mod_revision: number; version: number }>;
    };
    const kv = rev.kvs[0]!;
    assert.equal(kv.version, 2);
    assert.equal(ok(['get', 'app/a', `--rev=${kv.create_revision}`, '--print-value-only']), '1\n');
  });

  it('del removes keys and says how many', () => {
    ok(['put', 'tmp/x', '1']);
    ok(['put', 'tmp/y', '1']);
    assert.equal(ok(['del', 'tmp/', '--prefix']).trim(), '2');
    assert.equal(ok(['get', 'tmp/', '--prefix']), '');
  });

  it('txn from stdin takes the success or the failure branch', () => {
    ok(['put', 'lock', 'free']);
    // compares, blank line, success requests, blank line, failure requests, blank line
    const script = (v: string) => `value("lock") = "free"\n\nput lock ${v}\nget lock\n\nget lock\n\n`;
    assert.match(ok(['txn'], script('taken')), /^SUCCESS\n\nOK\n\nlock\ntaken\n/);
    assert.match(ok(['txn'], script('again')), /^FAILURE\n\nlock\ntaken\n/);
  });

  it("refuses an empty key and a compacted revision with etcd's messages", () => {
    const empty = c.etcdctl(['put', '', 'x']);
    assert.notEqual(empty.status, 0);
    assert.match(empty.stderr, /etcdserver: key is not provided/);
    ok(['put', 'c', '1']);
    const rev = (JSON.parse(ok(['put', 'c', '2', '-w', 'json'])) as { header: { revision: number } }).header.revision;
    ok(['compact', String(rev)]);
    const old = c.etcdctl(['get', 'c', `--rev=${rev - 1}`]);
    assert.notEqual(old.status, 0);
    assert.match(old.stderr, /required revision has been compacted/);
  });

  it('endpoint status and health answer for every member, with one leader', () => {
    const status = JSON.parse(ok(['endpoint', 'status', '-w', 'json'])) as Array<{
      Status: { leader: number; header: { member_id: number; revision: number } };
    }>;
    assert.equal(status.length, 3);
    assert.equal(new Set(status.map((s) => String(s.Status.leader))).size, 1, 'every member names the same leader');
    const health = c.etcdctl(['endpoint', 'health']);
    assert.equal(health.status, 0, health.stderr);
    // etcdctl 3.4 prints the verdicts on stderr.
    assert.equal(
      (health.stdout + health.stderr).split('\n').filter((l) => /is healthy: successfully committed proposal/.test(l)).length,
      3,
    );
    const hashes = ok(['endpoint', 'hashkv', '-w', 'json']);
    assert.equal(
      new Set((JSON.parse(hashes) as Array<{ HashKV: { hash: number } }>).map((h) => h.HashKV.hash)).size,
      1,
      'HashKV equal on every member',
    );
  });

  it("MemberAdd and MemberUpdate with peer URLs that are not http(s)://host:port are refused (INVALID_ARGUMENT, etcd's message)", async () => {
    const Cluster = (loadProtos()['etcdserverpb'] as Record<string, grpc.ServiceClientConstructor>)[
      'Cluster'
    ] as grpc.ServiceClientConstructor;
    const client = new Cluster(c.addr(c.members[0]!), grpc.credentials.createInsecure()) as unknown as Record<
      string,
      (r: object, cb: (e: grpc.ServiceError | null) => void) => void
    > & { close(): void };
    const call = (method: string, r: object) => new Promise<grpc.ServiceError | null>((res) => client[method]!(r, res));
    try {
      for (const peerURLs of [[], ['127.0.0.1:2380'], ['http://127.0.0.1:2380/path']]) {
        const e = await call('MemberAdd', { peerURLs, isLearner: true });
        assert.equal(e?.code, grpc.status.INVALID_ARGUMENT, JSON.stringify(peerURLs));
        assert.equal(e?.details, 'etcdserver: given member URLs are invalid');
      }
      const e = await call('MemberUpdate', { ID: 1, peerURLs: ['ftp://x:1'] });
      assert.equal(e?.code, grpc.status.INVALID_ARGUMENT);
      assert.equal(ok(['member', 'list']).split('\n').filter(Boolean).length, 3, 'nothing was added');
    } finally {
      client.close();
    }
  });

  it('member add --learner, the learner catches up, promote, then remove; the same URL added again gets a new id and joins', async () => {
    const m4 = await c.addSpec('m4');
    const added = ok(['member', 'add', 'm4', '--learner', `--peer-urls=http://127.0.0.1:${m4.peerPort}`]);
    assert.match(added, /Member +[0-9a-f]+ added to cluster/);
    c.spawn(m4, 'existing');
    const id = added.match(/Member +([0-9a-f]+) added/)![1]!;
    let promoted = '';
    for (let i = 0; i < 50 && !promoted.includes('promoted'); i++) {
      await new Promise((r) => setTimeout(r, 200));
      const r = c.etcdctl(['member', 'promote', id]);
      promoted = r.stdout + r.stderr;
    }
    assert.match(promoted, /Member +[0-9a-f]+ promoted in cluster/);
    let list = '';
    for (let i = 0; i < 50 && !list.includes(', started, m4'); i++) {
      list = ok(['member', 'list']);
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(list, new RegExp(`${id}, started, m4, http://127.0.0.1:${m4.peerPort}, http://127.0.0.1:${m4.clientPort}, false`));
    assert.equal(
      c.etcdctl(['get', 'app/a', '--print-value-only'], { endpoints: `127.0.0.1:${m4.clientPort}` }).stdout,
      '3\n',
      'the new member serves the data',
    );
    // Remove it again: its process learns it was removed and exits.
    const p = c.procs.get('m4')!;
    const exited = new Promise<number | null>((resolve) => p.once('exit', (code) => resolve(code)));
    // etcd refuses a removal while the cluster looks unhealthy (a member not heard from lately, as
    // on a busy machine), saying so; etcdctl users try again, and so does this test.
    let removed = c.etcdctl(['member', 'remove', id]);
    for (let i = 0; i < 50 && /unhealthy cluster/.test(removed.stderr); i++) {
      await new Promise((r) => setTimeout(r, 200));
      removed = c.etcdctl(['member', 'remove', id]);
    }
    assert.match(removed.stdout, /removed from cluster/, removed.stderr);
    assert.equal(await exited, 0, 'the removed member exits cleanly');
    c.members.splice(c.members.indexOf(m4), 1);
    assert.doesNotMatch(ok(['member', 'list']), /m4/);
    // The same peer URL can be added again (scale down, then up): it gets a new id (a removed
    // id never returns), and the new process, starting empty, learns that id from the cluster.
    const again = ok(['member', 'add', 'm4', '--learner', `--peer-urls=http://127.0.0.1:${m4.peerPort}`]);
    const id2 = again.match(/Member +([0-9a-f]+) added/)![1]!;
    assert.notEqual(id2, id, 'a new id for the re-added URL');
    m4.dataDir = `${m4.dataDir}-again`;
    c.members.push(m4);
    c.spawn(m4, 'existing');
    let promoted2 = '';
    for (let i = 0; i < 50 && !promoted2.includes('promoted'); i++) {
      await new Promise((r) => setTimeout(r, 200));
      const r = c.etcdctl(['member', 'promote', id2]);
      promoted2 = r.stdout + r.stderr;
    }
    assert.match(promoted2, /promoted in cluster/);
    assert.equal(
      c.etcdctl(['get', 'app/a', '--print-value-only'], { endpoints: `127.0.0.1:${m4.clientPort}` }).stdout,
      '3\n',
      'the re-added member serves the data',
    );
    const p2 = c.procs.get('m4')!;
    const exited2 = new Promise<number | null>((resolve) => p2.once('exit', (code) => resolve(code)));
    assert.match(ok(['member', 'remove', id2], undefined), /removed from cluster/);
    assert.equal(await exited2, 0);
    c.members.splice(c.members.indexOf(m4), 1);
  });

  it("promoting a member that is not a learner is refused with etcd's message", () => {
    const first = ok(['member', 'list']).split('\n')[0]!.split(',')[0]!;
    const r = c.etcdctl(['member', 'promote', first]);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /can only promote a learner member/);
  });

  it('move-leader hands leadership to the chosen member', () => {
    const lead = c.leader()!;
    const target = c.members.find((m) => m.name !== lead)!;
    const list = ok(['member', 'list']);
    const targetId = list
      .split('\n')
      .find((l) => l.includes(`, ${target.name}, `))!
      .split(',')[0]!;
    const r = c.etcdctl(['move-leader', targetId], { endpoints: `127.0.0.1:${c.member(lead).clientPort}` });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /Leadership transferred from [0-9a-f]+ to [0-9a-f]+/);
    assert.equal(c.leader(), target.name);
  });

  it('check perf --load=s passes', { timeout: 120_000 }, () => {
    const out = ok(['check', 'perf', '--load=s']);
    assert.match(out, /PASS: Throughput is \d+ writes\/s/);
    assert.match(out, /\nPASS\n?$/);
  });
});
