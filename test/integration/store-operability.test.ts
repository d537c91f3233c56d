// What an operator of `ballast store` relies on: health and readiness endpoints, etcd's metric
// names, a graceful leader hand-off on SIGTERM, request limits, and clear start-up errors.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { KvClient } from '../support/linearizability.ts';
import { StoreCluster, bin } from '../support/store-cluster.ts';

describe('ballast store operability', { timeout: 120_000 }, () => {
  let c: StoreCluster;
  before(async () => {
    c = await StoreCluster.start(3);
  });
  after(() => c?.shutdown());

  it('/health and /readyz answer on the metrics URL', async () => {
    for (const m of c.members) {
      const h = await fetch(`http://127.0.0.1:${m.metricsPort}/health`);
      assert.equal(h.status, 200);
      assert.deepEqual(await h.json(), { health: 'true', reason: '' });
      assert.equal((await fetch(`http://127.0.0.1:${m.metricsPort}/readyz`)).status, 200);
    }
  });

  it("/metrics carries etcd's metric names, so etcd dashboards and alerts work", async () => {
    c.etcdctl(['put', 'metrics-probe', 'x'], { endpoints: `127.0.0.1:${c.members[0]!.clientPort}` });
    const text = await (await fetch(`http://127.0.0.1:${c.members[0]!.metricsPort}/metrics`)).text();
    for (const name of [
      'etcd_server_has_leader 1',
      'etcd_server_leader_changes_seen_total',
      'etcd_server_proposals_committed_total',
      'etcd_disk_wal_fsync_duration_seconds_bucket',
      'etcd_mvcc_db_total_size_in_bytes',
      'ballast_store_requests_total{method="Put",code="OK"}',
      'process_resident_memory_bytes',
    ]) {
      assert.ok(text.includes(name), `missing ${name}`);
    }
  });

  it("refuses a request over --max-request-bytes with etcd's message", async () => {
    const kv = new KvClient(`127.0.0.1:${c.members[0]!.clientPort}`);
    await assert.rejects(
      kv.call('Put', { key: Buffer.from('big'), value: Buffer.alloc(1.6 * 1024 * 1024) }),
      /request is too large|larger than max/,
    );
    kv.close();
  });

  it('SIGTERM on the leader hands leadership over before it stops', async () => {
    const lead = await c.waitLeader();
    await c.stop(lead);
    const rest = c.members.filter((m) => m.name !== lead);
    const next = await c.waitLeader(3000);
    assert.notEqual(next, lead);
    const log = spawnSync('grep', ['-c', 'transferred leadership before stopping', `${c.dir}/${lead}.log`], { encoding: 'utf8' });
    assert.equal(log.stdout.trim(), '1', 'the old leader logged the hand-off');
    const r = c.etcdctl(['put', 'after-handoff', 'ok'], { endpoints: rest.map((m) => `127.0.0.1:${m.clientPort}`).join(',') });
    assert.equal(r.status, 0, r.stderr);
    c.restart(lead);
    await c.waitHealthy();
  });

  it('contradictory flags fail at start, naming them, with exit code 2', () => {
    const r = spawnSync(
      bin,
      [
        'store',
        '--name=a',
        '--initial-cluster=b=http://127.0.0.1:1',
        '--heartbeat-interval=100',
        '--election-timeout=300',
        '--bogus-flag=1',
      ],
      { encoding: 'utf8' },
    );
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--bogus-flag/);
    assert.match(r.stderr, /--election-timeout: got 300 .* at least 5 times --heartbeat-interval/);
    assert.match(r.stderr, /--initial-cluster: .* an entry for this member's --name "a"/);
  });

  it('the storage quota raises NOSPACE and refuses writes, keeps reads and deletes, until disarmed', async () => {
    const q = await StoreCluster.start(1, { extraArgs: ['--quota-backend-bytes=20000'] });
    try {
      const big = 'x'.repeat(1000);
      let refused = '';
      for (let i = 0; i < 40 && !refused; i++) {
        const r = q.etcdctl(['put', `q/${i}`, big]);
        if (r.status !== 0) refused = r.stderr;
      }
      assert.match(refused, /etcdserver: mvcc: database space exceeded/);
      assert.match(q.etcdctl(['alarm', 'list']).stdout, /alarm:NOSPACE/);
      assert.equal(q.etcdctl(['get', 'q/0', '--print-value-only']).stdout.trim(), big, 'reads still work');
      assert.equal(q.etcdctl(['del', 'q/', '--prefix']).status, 0, 'deletes still work');
      const rev = (JSON.parse(q.etcdctl(['get', 'q/0', '-w', 'json']).stdout) as { header: { revision: number } }).header.revision;
      assert.equal(q.etcdctl(['compact', String(rev)]).status, 0);
      assert.equal(q.etcdctl(['alarm', 'disarm']).status, 0);
      assert.equal(q.etcdctl(['alarm', 'list']).stdout.trim(), '');
      assert.equal(q.etcdctl(['put', 'q/after', 'ok']).status, 0, 'writes work again after disarm');
    } finally {
      await q.shutdown();
    }
  });

  it('refuses a data directory that belongs to another cluster', () => {
    const m = c.members[0]!;
    const r = spawnSync(
      bin,
      [
        'store',
        `--name=${m.name}`,
        `--data-dir=${m.dataDir}`,
        '--initial-cluster-token=other',
        `--initial-cluster=${c.initialCluster()}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${m.peerPort}`,
        '--listen-client-urls=http://127.0.0.1:1',
        '--listen-peer-urls=http://127.0.0.1:1',
      ],
      { encoding: 'utf8', timeout: 10_000 },
    );
    assert.equal(r.status, 1);
    assert.match(r.stderr, /belongs to cluster [0-9a-f]+, not this one/);
  });
});
