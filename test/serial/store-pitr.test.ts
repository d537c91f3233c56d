// In the serial tier: SeaweedFS, a 3-member source, an archiver and restored clusters load both cores.
// Point-in-time recovery against real object storage (SeaweedFS) and real store processes:
// `ballast backup archive` watches a 3-member cluster under a steady mixed load (puts, txns,
// deletes, keys on leases granted and revoked after the base backup) and writes segments;
// `ballast backup restore --to-revision|--to-time` replays them onto the newest backup before
// the target. Promise: the restored cluster has the source's keys and HashKV at the target,
// a time restores the last change archived by then, an archiver killed with SIGKILL and started
// again loses nothing. Faults: a target past the archive, a damaged segment, revisions compacted
// while the archiver was down: each is refused by code with what to do, and nothing is restored.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DeleteObjectsCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { Etcd3 } from 'etcd3';
import { type Segment, decodeSegment, revisionAtTime } from '../../store/archive.ts';
import { type Seaweed, startSeaweed } from '../support/seaweedfs.ts';
import { StoreCluster, bin } from '../support/store-cluster.ts';

describe('ballast backup: point-in-time recovery', { timeout: 300_000 }, () => {
  let weed: Seaweed;
  let src: StoreCluster;
  let client: Etcd3;
  let archiver: ChildProcess | undefined;
  const clusters: StoreCluster[] = [];
  const env = () => ({ ...process.env, AWS_ACCESS_KEY_ID: weed.accessKeyId, AWS_SECRET_ACCESS_KEY: weed.secretAccessKey });
  const backup = (args: string[]) => spawnSync(bin, ['backup', ...args], { encoding: 'utf8', timeout: 120_000, env: env() });
  const s3 = ['--s3-prefix=orders/', '--s3-bucket=pitr'];
  const s3e = () => [`--s3-endpoint=${weed.endpoint}`, ...s3];
  /** Every segment the archive holds, decoded. */
  const archivedSegments = async (): Promise<Segment[]> => {
    const keys: string[] = [];
    for (let token: string | undefined, first = true; first || token; first = false) {
      const page = await weed.s3.send(
        new ListObjectsV2Command({ Bucket: 'pitr', Prefix: 'orders/wal/', ...(token ? { ContinuationToken: token } : {}) }),
      );
      keys.push(...(page.Contents ?? []).map((o) => o.Key!).filter((k) => k.endsWith('.seg')));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    }
    const segments: Segment[] = [];
    for (const key of keys) {
      const body = await (await weed.s3.send(new GetObjectCommand({ Bucket: 'pitr', Key: key }))).Body!.transformToByteArray();
      segments.push(decodeSegment(Buffer.from(body), key));
    }
    return segments;
  };
  const startArchiver = () => {
    archiver = spawn(bin, ['backup', 'archive', ...s3e(), `--endpoints=${src.endpoints()}`, '--segment-seconds=1'], {
      env: env(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    archiver.stdout?.on('data', (d: Buffer) => process.env['PITR_DEBUG'] && process.stderr.write(d));
    archiver.stderr?.resume();
  };
  const stopArchiver = async (signal: NodeJS.Signals) => {
    const a = archiver;
    if (!a || a.exitCode !== null) return null;
    const done = new Promise<number | null>((r) => a.once('exit', (code) => r(code)));
    a.kill(signal);
    return await done;
  };
  const progress = async () => {
    try {
      return JSON.parse(
        await (await weed.s3.send(new GetObjectCommand({ Bucket: 'pitr', Key: 'orders/wal/progress.json' }))).Body!.transformToString(),
      ) as { revision: number; at: number };
    } catch {
      return { revision: 0, at: 0 };
    }
  };
  const archivedTo = async (rev: number) => {
    for (const deadline = Date.now() + 60_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 250)))
      if ((await progress()).revision >= rev) return;
    assert.fail(`the archive did not reach revision ${rev} (it is at ${(await progress()).revision})`);
  };
  const revisionOf = (r: { header: { revision: string } }) => Number(r.header.revision);
  const hash = (c: StoreCluster, rev: number) =>
    (
      JSON.parse(c.etcdctl(['endpoint', 'hashkv', '--rev', String(rev), '-w', 'json']).stdout) as Array<{
        HashKV: { hash: number; compact_revision?: number };
      }>
    ).map((h) => h.HashKV.hash);
  const keysAt = (c: StoreCluster, rev: number) =>
    c.etcdctl(['get', '', '--from-key', '--rev', String(rev), '-w', 'json']).stdout.replace(/"header":\{[^}]*\},?/, '');

  /** Restore `n` members to a target and start them; returns the cluster and the restore's output. */
  const restore = async (n: number, target: string[], base: string[] = []) => {
    const c = new StoreCluster();
    clusters.push(c);
    for (let i = 1; i <= n; i++) await c.addSpec(`r${i}`);
    let out = '';
    for (const m of c.members) {
      const r = backup([
        'restore',
        ...base,
        ...target,
        ...s3e(),
        `--name=${m.name}`,
        `--data-dir=${m.dataDir}`,
        `--initial-cluster=${c.initialCluster()}`,
        `--initial-cluster-token=${c.token}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${m.peerPort}`,
      ]);
      assert.equal(r.status, 0, r.stderr);
      out = r.stdout;
    }
    for (const m of c.members) c.spawn(m, 'existing');
    await c.waitHealthy(30_000);
    return { c, out };
  };

  /** A mixed load: puts over a key set, txns, deletes, keys on leases (granted and revoked as it goes). */
  async function load(ops: number, marks: Array<{ rev: number; at: number }> = []): Promise<number> {
    let rev = 0;
    let lease = client.lease(30, { autoKeepAlive: false });
    for (let i = 0; i < ops; i++) {
      const k = `load/${String(i % 97).padStart(3, '0')}`;
      if (i % 50 === 49) {
        await lease.revoke();
        lease = client.lease(30, { autoKeepAlive: false });
      }
      if (i % 10 === 3)
        rev = revisionOf(
          (await client
            .if(k, 'Version', '>', 0)
            .then(client.put(k).value(`txn ${i}`), client.delete().key(`load/${String((i + 1) % 97).padStart(3, '0')}`))
            .else(client.put(k).value(`new ${i}`))
            .commit()) as never,
        );
      else if (i % 10 === 7) rev = revisionOf((await lease.put(`lease/${i}`).value(`on a lease ${i}`).exec()) as never);
      else if (i % 10 === 9) rev = Math.max(rev, revisionOf((await client.delete().key(k).exec()) as never));
      else
        rev = revisionOf(
          (await client
            .put(k)
            .value(Buffer.from([i & 0xff, 0, 0xff, i >> 8]))
            .exec()) as never,
        );
      if (i % 25 === 0) marks.push({ rev, at: Date.now() });
    }
    await lease.revoke();
    return Math.max(rev, Number((await client.get('x').exec()).header.revision));
  }

  before(async () => {
    src = await StoreCluster.start(3);
    clusters.push(src);
    weed = await startSeaweed(join(src.dir, 'weed'));
    await weed.createBucket('pitr');
    client = new Etcd3({ hosts: src.members.map((m) => `http://127.0.0.1:${m.clientPort}`) });
  });
  after(async () => {
    await stopArchiver('SIGKILL');
    client?.close();
    for (const c of clusters) await c.shutdown();
    await weed?.stop();
  });

  const marks: Array<{ rev: number; at: number }> = [];
  let end = 0;
  it('the archiver follows a cluster under a mixed load, killed and started again on the way, and loses nothing: the archive is one unbroken span from the base backup on', async () => {
    await load(200);
    const base = backup(['save', ...s3e(), `--endpoints=${src.endpoints()}`, '--name=base']);
    assert.equal(base.status, 0, base.stderr);
    startArchiver();
    await load(600, marks);
    assert.equal(await stopArchiver('SIGKILL'), null, 'killed');
    await load(300, marks);
    startArchiver();
    end = await load(600, marks);
    await archivedTo(end);
    const list = backup(['list', ...s3e()]);
    assert.equal(list.status, 0, list.stderr);
    const baseRev = (JSON.parse(base.stdout) as { revision: number }).revision;
    assert.match(list.stdout, new RegExp(`point in time: revisions ${baseRev + 1}\\.\\.${end}, received `), list.stdout);
    assert.match(list.stdout, new RegExp(`archive reaches revision ${end}: everything received before `));
  });

  it("restore to a revision in the middle, into 3 members: the source's keys and HashKV at that revision on each", async () => {
    const mid = marks[Math.floor(marks.length / 2)]!.rev;
    const { c, out } = await restore(3, [`--to-revision=${mid}`]);
    assert.match(out, new RegExp(`restored backup base \\(revision \\d+\\) and the archive to revision ${mid}, replaying \\d+ segments?`));
    const [want] = hash(src, mid);
    assert.deepEqual(hash(c, mid), [want, want, want]);
    assert.equal(keysAt(c, mid), keysAt(src, mid));
    // Nothing after the target: the restored cluster's next write takes the next revision.
    assert.equal(JSON.parse(c.etcdctl(['put', 'after', 'x', '-w', 'json']).stdout).header.revision, mid + 1);
    await c.shutdown();
  });

  it("restore to a time: the last change the archive received by then (by the archive's own stamps), and nothing written after the time", async () => {
    const i = Math.floor(marks.length * 0.75);
    const at = marks[i]!.at;
    const { c, out } = await restore(1, [`--to-time=${new Date(at).toISOString()}`]);
    const rev = Number(/archive to revision (\d+) \(the last change archived at or before /.exec(out)?.[1]);
    // The archiver stamps each revision with the time it received it; how long after its
    // acknowledgement that was depends on the machine, so the answer is read from the stamps.
    assert.equal(rev, revisionAtTime(await archivedSegments(), at), 'the last revision the archive received at or before the time');
    // Causal: the next mark was written after this one was acknowledged, so received after it.
    assert.ok(rev <= marks[i + 1]!.rev, `revision ${rev} has nothing written after the time`);
    assert.deepEqual(hash(c, rev), [hash(src, rev)[0]]);
    await c.shutdown();
  });

  it("restore to the archive's last revision (across the archiver's kill): the source's HashKV there", async () => {
    const { c } = await restore(1, [`--to-revision=${end}`]);
    assert.deepEqual(hash(c, end), [hash(src, end)[0]]);
    await c.shutdown();
  });

  it('a target past the archive, or a damaged segment, is refused by code with what to do; no data directory is made', async () => {
    const dir = join(src.dir, 'never');
    const past = backup(['restore', `--to-revision=${end + 1000}`, ...s3e(), `--data-dir=${dir}`]);
    assert.equal(past.status, 1);
    assert.match(
      past.stderr,
      new RegExp(`STORE_ERR_ARCHIVE_NOT_COVERED: revision ${end + 1000} is beyond the archive: the archive reaches revision ${end}`),
    );
    const future = backup(['restore', `--to-time=${new Date(Date.now() + 3_600_000).toISOString()}`, ...s3e(), `--data-dir=${dir}`]);
    assert.equal(future.status, 1);
    assert.match(future.stderr, /STORE_ERR_ARCHIVE_NOT_COVERED: .* is after the archive's newest point/);
    const segs = ((await weed.s3.send(new ListObjectsV2Command({ Bucket: 'pitr', Prefix: 'orders/wal/' }))).Contents ?? [])
      .map((o) => o.Key!)
      .filter((k) => k.endsWith('.seg'))
      .sort();
    const victim = segs[Math.floor(segs.length / 2)]!;
    const original = Buffer.from(
      await (await weed.s3.send(new GetObjectCommand({ Bucket: 'pitr', Key: victim }))).Body!.transformToByteArray(),
    );
    const flipped = Buffer.from(original);
    flipped[20] = (flipped[20] ?? 0) ^ 0xff;
    await weed.s3.send(new PutObjectCommand({ Bucket: 'pitr', Key: victim, Body: flipped }));
    const damaged = backup(['restore', `--to-revision=${end}`, ...s3e(), `--data-dir=${dir}`]);
    assert.equal(damaged.status, 1);
    assert.match(
      damaged.stderr,
      new RegExp(`STORE_ERR_ARCHIVE_DAMAGED: archive segment ${victim.replace(/[.]/g, '\\.')} fails its sha256 check`),
    );
    assert.equal(existsSync(dir), false);
    await weed.s3.send(new PutObjectCommand({ Bucket: 'pitr', Key: victim, Body: original }));
  });

  it('revisions compacted while the archiver was down: it says so and goes on; a restore across the gap is refused, one after a later backup works', async () => {
    await stopArchiver('SIGTERM');
    const before = await load(100);
    src.etcdctl(['compact', String(before)]);
    startArchiver();
    const after2 = await load(100);
    await archivedTo(after2);
    const across = backup(['restore', `--to-revision=${before}`, ...s3e(), `--data-dir=${join(src.dir, 'gap')}`]);
    assert.equal(across.status, 1);
    assert.match(across.stderr, new RegExp(`STORE_ERR_ARCHIVE_GAP: revisions ${end + 1}\\.\\.\\d+ are not in the archive`));
    const later = backup(['save', ...s3e(), `--endpoints=${src.endpoints()}`, '--name=later']);
    assert.equal(later.status, 0, later.stderr);
    const last = await load(50);
    await archivedTo(last);
    const { c, out } = await restore(1, [`--to-revision=${last}`]);
    assert.match(out, /restored backup later /);
    assert.deepEqual(hash(c, last), [hash(src, last)[0]]);
  });

  it("retention: once the older backup is gone, a schedule's prune deletes the segments no restore can use any more (at or below the oldest backup left)", async () => {
    const segments = async () =>
      ((await weed.s3.send(new ListObjectsV2Command({ Bucket: 'pitr', Prefix: 'orders/wal/' }))).Contents ?? [])
        .map((o) => o.Key!)
        .filter((k) => k.endsWith('.seg'));
    const lastOf = (k: string) => Number(/wal\/\d{16}-(\d{16})-/.exec(k)?.[1]);
    const later = (
      JSON.parse(backup(['list', ...s3e(), '--output=json']).stdout) as { backups: Array<{ name: string; revision: number }> }
    ).backups.find((b) => b.name === 'later')!.revision;
    assert.ok(
      (await segments()).some((k) => lastOf(k) <= later),
      'segments before the later backup exist',
    );
    await weed.s3.send(
      new DeleteObjectsCommand({ Bucket: 'pitr', Delete: { Objects: [{ Key: 'orders/base.json' }, { Key: 'orders/base.snap' }] } }),
    );
    const r = backup([
      'save',
      ...s3e(),
      `--endpoints=${src.endpoints()}`,
      '--name=hourly-20261202000000',
      '--prune-schedule=hourly',
      '--keep=1',
    ]);
    assert.equal(r.status, 0, r.stderr);
    const left = await segments();
    assert.ok(left.length > 0 && left.every((k) => lastOf(k) > later), left.join(' '));
  });
});
