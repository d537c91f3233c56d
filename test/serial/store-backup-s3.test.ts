// In the serial tier: SeaweedFS and two store clusters load both cores, and the integration
// tier runs files two at a time beside timing-sensitive sidecar tests.
// Backups in real object storage (SeaweedFS's S3 gateway, built from its Go module): `ballast
// backup save` streams a follower's snapshot into a bucket with a manifest; `ballast backup
// restore` builds a new cluster from it with the same keys, revision and HashKV. Faults: wrong
// credentials, a missing bucket, an unreachable endpoint, a damaged or truncated object, an upload
// that never finished, a data directory that is not empty. Promise: each is refused with a code
// and a message that names the fix (or the object), nothing partial is listed as a backup, and
// nothing is restored from a bad object.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { type Seaweed, startSeaweed } from '../support/seaweedfs.ts';
import { StoreCluster, bin, freePort } from '../support/store-cluster.ts';

describe('ballast backup: object storage', { timeout: 240_000 }, () => {
  let weed: Seaweed;
  let src: StoreCluster;
  const clusters: StoreCluster[] = [];
  const backup = (args: string[], env: Record<string, string> = {}) =>
    spawnSync(bin, ['backup', ...args], {
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, AWS_ACCESS_KEY_ID: weed.accessKeyId, AWS_SECRET_ACCESS_KEY: weed.secretAccessKey, ...env },
    });
  const s3 = (bucket = 'backups') => [`--s3-endpoint=${weed.endpoint}`, `--s3-bucket=${bucket}`, '--s3-prefix=orders/'];

  before(async () => {
    src = await StoreCluster.start(3);
    clusters.push(src);
    weed = await startSeaweed(join(src.dir, 'weed'));
    await weed.createBucket('backups');
  });
  after(async () => {
    for (const c of clusters) await c.shutdown();
    await weed?.stop();
  });

  let revision = 0;
  it("save streams a follower's snapshot into the bucket with its manifest; list shows it", () => {
    for (let i = 0; i < 200; i++) src.etcdctl(['put', `k/${String(i).padStart(3, '0')}`, `value ${i}`.repeat(20)]);
    src.etcdctl(['del', 'k/000']);
    revision = (JSON.parse(src.etcdctl(['get', 'k/001', '-w', 'json']).stdout) as { header: { revision: number } }).header.revision;
    const r = backup(['save', ...s3(), `--endpoints=${src.endpoints()}`, '--name=first']);
    assert.equal(r.status, 0, r.stderr);
    const m = JSON.parse(r.stdout) as { name: string; key: string; revision: number; size: number; sha256: string; member: string };
    assert.equal(m.key, 'orders/first.snap');
    assert.equal(m.revision, revision);
    assert.match(m.sha256, /^[0-9a-f]{64}$/);
    const status = JSON.parse(src.etcdctl(['endpoint', 'status', '-w', 'json']).stdout) as Array<{
      Status: { header: { member_id: string | number }; leader: string | number };
    }>;
    const leader = BigInt(status[0]!.Status.leader).toString(16);
    assert.notEqual(m.member, leader, 'streamed from a follower');
    const list = backup(['list', ...s3(), '--output=json']);
    assert.equal(list.status, 0, list.stderr);
    assert.deepEqual(
      (JSON.parse(list.stdout) as Array<{ name: string }>).map((b) => b.name),
      ['first'],
    );
  });

  it('restore latest into a new 3-member cluster: same keys, same revision, same HashKV at that revision', async () => {
    const b = new StoreCluster();
    clusters.push(b);
    for (const name of ['r1', 'r2', 'r3']) await b.addSpec(name);
    for (const m of b.members) {
      const r = backup([
        'restore',
        'latest',
        ...s3(),
        `--name=${m.name}`,
        `--data-dir=${m.dataDir}`,
        `--initial-cluster=${b.initialCluster()}`,
        `--initial-cluster-token=${b.token}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${m.peerPort}`,
      ]);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`restored backup first \\(revision ${revision},`));
    }
    for (const m of b.members) b.spawn(m, 'existing');
    await b.waitHealthy(30_000);
    const keys = (c: StoreCluster) => c.etcdctl(['get', 'k/', '--prefix', '--rev', String(revision)]).stdout;
    assert.equal(keys(b), keys(src));
    assert.equal(
      (JSON.parse(b.etcdctl(['get', 'k/001', '-w', 'json']).stdout) as { header: { revision: number } }).header.revision,
      revision,
    );
    const hash = (c: StoreCluster) =>
      (
        JSON.parse(c.etcdctl(['endpoint', 'hashkv', '--rev', String(revision), '-w', 'json']).stdout) as Array<{ HashKV: { hash: number } }>
      ).map((h) => h.HashKV.hash);
    const [want] = hash(src);
    assert.deepEqual(hash(b), [want, want, want]);
  });

  it('wrong credentials, a missing bucket, an unreachable endpoint: refused with the fix named, and no backup listed', async () => {
    const wrong = backup(['save', ...s3(), `--endpoints=${src.endpoints()}`, '--name=nope'], { AWS_SECRET_ACCESS_KEY: 'not-the-secret' });
    assert.equal(wrong.status, 1);
    assert.match(wrong.stderr, /STORE_ERR_BACKUP_STORAGE_CREDENTIALS: .*refused the credentials .*check the access key id and secret key/);
    const missing = backup(['save', ...s3('no-such-bucket'), `--endpoints=${src.endpoints()}`, '--name=nope']);
    assert.equal(missing.status, 1);
    assert.match(
      missing.stderr,
      /STORE_ERR_BACKUP_STORAGE_BUCKET: .*bucket no-such-bucket does not exist at http:\/\/127\.0\.0\.1:\d+; create it/,
    );
    const down = backup([
      'save',
      `--s3-endpoint=http://127.0.0.1:${await freePort()}`,
      '--s3-bucket=backups',
      `--endpoints=${src.endpoints()}`,
      '--name=nope',
    ]);
    assert.equal(down.status, 1);
    assert.match(
      down.stderr,
      /STORE_ERR_BACKUP_STORAGE_UNREACHABLE: .*cannot reach the object store at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED/,
    );
    assert.deepEqual(
      (JSON.parse(backup(['list', ...s3(), '--output=json']).stdout) as Array<{ name: string }>).map((b) => b.name),
      ['first'],
    );
  });

  it('an upload that never finished (a snapshot without its manifest) is not a backup; restore latest skips it', async () => {
    await weed.s3.send(new PutObjectCommand({ Bucket: 'backups', Key: 'orders/cut-off.snap', Body: Buffer.alloc(1000) }));
    assert.deepEqual(
      (JSON.parse(backup(['list', ...s3(), '--output=json']).stdout) as Array<{ name: string }>).map((b) => b.name),
      ['first'],
    );
    const dir = join(src.dir, 'restore-latest');
    const r = backup(['restore', 'latest', ...s3(), `--data-dir=${dir}`]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /restored backup first/);
    const none = backup(['restore', 'cut-off', ...s3(), `--data-dir=${join(src.dir, 'never')}`]);
    assert.equal(none.status, 1);
    assert.match(none.stderr, /STORE_ERR_BACKUP_NOT_FOUND: no completed backup named cut-off under orders\/ \(the newest: first\)/);
  });

  it('a damaged or truncated object is refused, naming it, and nothing is restored; so is a data directory that is not empty', async () => {
    const original = Buffer.from(
      await (await weed.s3.send(new GetObjectCommand({ Bucket: 'backups', Key: 'orders/first.snap' }))).Body!.transformToByteArray(),
    );
    const flipped = Buffer.from(original);
    flipped[flipped.length >> 1] = (flipped[flipped.length >> 1] ?? 0) ^ 0xff;
    for (const [body, why] of [
      [flipped, /backup object orders\/first\.snap is damaged \(sha256/],
      [
        original.subarray(0, original.length - 4096),
        /backup object orders\/first\.snap is truncated or padded \(\d+ bytes, its manifest says \d+\)/,
      ],
    ] as const) {
      await weed.s3.send(new PutObjectCommand({ Bucket: 'backups', Key: 'orders/first.snap', Body: body }));
      const dir = join(src.dir, `damaged-${body.length}`);
      const r = backup(['restore', 'first', ...s3(), `--data-dir=${dir}`]);
      assert.equal(r.status, 1);
      assert.match(r.stderr, /STORE_ERR_BACKUP_DAMAGED: /);
      assert.match(r.stderr, why);
      assert.equal(existsSync(dir), false, 'no data directory was made');
    }
    await weed.s3.send(new PutObjectCommand({ Bucket: 'backups', Key: 'orders/first.snap', Body: original }));
    const full = join(src.dir, 'full');
    mkdirSync(full, { recursive: true });
    writeFileSync(join(full, 'something'), 'x');
    const r = backup(['restore', 'first', ...s3(), `--data-dir=${full}`]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /STORE_ERR_DATA_DIR: --data-dir .* is not empty; restore into a new directory/);
    const again = backup(['restore', 'first', ...s3(), `--data-dir=${full}`, '--if-empty']);
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stdout, /has data already: nothing restored/);
  });

  it('verify restores a backup into a throw-away member and finds the HashKV the cluster gave; a backup that hashes otherwise is refused by name, one without a hash is not verifiable', async () => {
    const ok = backup(['verify', 'first', ...s3()]);
    assert.equal(ok.status, 0, ok.stderr);
    const v = JSON.parse(ok.stdout) as { verified: boolean; expected: number; got: number; revision: number };
    assert.equal(v.verified, true);
    assert.equal(v.got, v.expected);
    assert.equal(v.revision, revision);
    // The same snapshot under a manifest that says the cluster hashed something else.
    const manifest = JSON.parse(
      await (await weed.s3.send(new GetObjectCommand({ Bucket: 'backups', Key: 'orders/first.json' }))).Body!.transformToString(),
    ) as Record<string, unknown>;
    await weed.s3.send(
      new PutObjectCommand({
        Bucket: 'backups',
        Key: 'orders/first.json',
        Body: JSON.stringify({ ...manifest, hashKV: (manifest['hashKV'] as number) ^ 1 }),
      }),
    );
    const bad = backup(['verify', 'first', ...s3()]);
    assert.equal(bad.status, 1);
    assert.match(
      bad.stderr,
      /STORE_ERR_BACKUP_UNVERIFIED: backup first restored into a throw-away member hashes \d+ at revision \d+, but the member it was taken from hashed \d+/,
    );
    const { hashKV: _dropped, compactRevision: _too, ...old } = manifest;
    await weed.s3.send(new PutObjectCommand({ Bucket: 'backups', Key: 'orders/first.json', Body: JSON.stringify(old) }));
    const unknown = backup(['verify', 'first', ...s3()]);
    assert.equal(unknown.status, 1);
    assert.match(unknown.stderr, /STORE_ERR_BACKUP_NOT_VERIFIABLE: backup first has no HashKV in its manifest/);
    await weed.s3.send(new PutObjectCommand({ Bucket: 'backups', Key: 'orders/first.json', Body: JSON.stringify(manifest) }));
  });

  it("a schedule's retention: after each good backup, its older ones past --keep are deleted (manifest and snapshot); other backups are not touched", async () => {
    const names = ['hourly-20261201010000', 'hourly-20261201020000', 'hourly-20261201030000'];
    for (const name of names) {
      const r = backup(['save', ...s3(), `--endpoints=${src.endpoints()}`, `--name=${name}`, '--prune-schedule=hourly', '--keep=2']);
      assert.equal(r.status, 0, r.stderr);
    }
    const listed = (JSON.parse(backup(['list', ...s3(), '--output=json']).stdout) as Array<{ name: string }>).map((b) => b.name);
    assert.deepEqual(
      listed.filter((n) => n.startsWith('hourly-')),
      names.slice(1),
    );
    assert.ok(listed.includes('first'), listed.join(', '));
    const keys = ((await weed.s3.send(new ListObjectsV2Command({ Bucket: 'backups', Prefix: 'orders/hourly-' }))).Contents ?? [])
      .map((o) => o.Key)
      .sort();
    assert.deepEqual(
      keys,
      names.slice(1).flatMap((n) => [`orders/${n}.json`, `orders/${n}.snap`]),
    );
  });
});
