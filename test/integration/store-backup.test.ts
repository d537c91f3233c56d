// Backup and restore: `etcdctl snapshot save` from a running cluster, `ballast store restore`
// into a new 3-member cluster, which serves the same keys at the same revision.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { StoreCluster, bin } from '../support/store-cluster.ts';

describe('ballast store backup and restore', { timeout: 120_000 }, () => {
  const clusters: StoreCluster[] = [];
  after(async () => {
    for (const c of clusters) await c.shutdown();
  });

  it('snapshot save from a live cluster, restore into a new cluster: same keys, same revision', async () => {
    const a = await StoreCluster.start(3);
    clusters.push(a);
    for (let i = 0; i < 20; i++) a.etcdctl(['put', `b/${i}`, `v${i}`]);
    a.etcdctl(['del', 'b/0']);
    const rev = (JSON.parse(a.etcdctl(['get', 'b/1', '-w', 'json']).stdout) as { header: { revision: number } }).header.revision;
    const file = join(a.dir, 'backup.db');
    const saved = a.etcdctl(['snapshot', 'save', file], { endpoints: `127.0.0.1:${a.members[0]!.clientPort}` });
    assert.equal(saved.status, 0, saved.stderr);
    assert.match(saved.stdout + saved.stderr, /Snapshot saved at/);

    // Restore three members of a new cluster from the one file.
    const b = new StoreCluster();
    clusters.push(b);
    for (const name of ['n1', 'n2', 'n3']) await b.addSpec(name);
    for (const m of b.members) {
      const r = spawnSync(
        bin,
        [
          'store',
          'restore',
          file,
          `--name=${m.name}`,
          `--data-dir=${m.dataDir}`,
          `--initial-cluster=${b.initialCluster()}`,
          `--initial-cluster-token=${b.token}`,
          `--initial-advertise-peer-urls=http://127.0.0.1:${m.peerPort}`,
        ],
        { encoding: 'utf8' },
      );
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`restored snapshot \\(revision ${rev}\\)`));
    }
    for (const m of b.members) b.spawn(m, 'existing');
    await b.waitHealthy();
    assert.equal(b.etcdctl(['get', 'b/', '--prefix', '--keys-only']).stdout.split('\n').filter(Boolean).length, 19);
    const got = JSON.parse(b.etcdctl(['get', 'b/5', '-w', 'json']).stdout) as {
      header: { revision: number };
      kvs: Array<{ value: string }>;
    };
    assert.equal(Buffer.from(got.kvs[0]!.value, 'base64').toString(), 'v5');
    assert.equal(got.header.revision, rev, 'the revision carries over');
    assert.match(b.etcdctl(['member', 'list']).stdout, /n1.*\n.*n2|n2.*\n.*n1/s, 'membership comes from the restore flags');
    assert.equal(b.etcdctl(['put', 'b/new', 'x']).status, 0, 'the restored cluster takes writes');
  });

  it('refuses a damaged snapshot, naming the problem', async () => {
    const a = clusters[0]!;
    const file = join(a.dir, 'backup.db');
    const bad = join(a.dir, 'bad.db');
    const data = readFileSync(file);
    const mid = data.length >> 1;
    data[mid] = (data[mid] ?? 0) ^ 0xff;
    writeFileSync(bad, data);
    const r = spawnSync(
      bin,
      ['store', 'restore', bad, `--data-dir=${join(a.dir, 'never')}`, '--initial-cluster=default=http://localhost:2380'],
      { encoding: 'utf8' },
    );
    assert.equal(r.status, 1);
    assert.match(r.stderr, /STORE_ERR_BACKUP_INVALID: .*fails its sha256 check/);
  });
});
