// A store's data outlives the build that wrote it. Promises: a data directory written by 0.1.0
// (format 1: v8 clones; committed as a fixture, test/fixtures/store-format1, with what it held)
// is read by this build with every key, value, revision, lease and the same HashKV, and migrated:
// what is written from then on is format 2, recorded in member/format, and read back after a
// restart; a directory in a format newer than this build reads is refused, naming both versions,
// and left untouched.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { bin, freePort } from '../support/store-cluster.ts';

const fixture = join(import.meta.dirname, '..', 'fixtures', 'store-format1');
const expected = JSON.parse(readFileSync(join(fixture, 'expected.json'), 'utf8')) as {
  revision: number;
  hashkv: { hash: number; compact_revision: number };
  kvs: Array<{ key: string; value: string; create_revision: number; mod_revision: number; version: number; lease: number }>;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('on-disk formats across versions', { timeout: 120_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'ballast-format-'));
  const data = join(dir, 'data');
  cpSync(join(fixture, 'data'), data, { recursive: true });
  let proc: ChildProcess | undefined;
  let clientPort = 0;
  after(() => proc?.kill('SIGKILL'));
  // The fixture's member: its id and cluster come from this peer URL and token.
  const start = async (extra: string[] = []) => {
    clientPort = await freePort();
    proc = spawn(
      bin,
      [
        'store',
        '--name=fx',
        `--data-dir=${data}`,
        `--listen-client-urls=http://127.0.0.1:${clientPort}`,
        `--advertise-client-urls=http://127.0.0.1:${clientPort}`,
        '--listen-peer-urls=http://127.0.0.1:24380',
        '--initial-advertise-peer-urls=http://127.0.0.1:24380',
        '--initial-cluster=fx=http://127.0.0.1:24380',
        '--initial-cluster-token=fixture',
        ...extra,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    proc.stdout?.on('data', (c: Buffer) => (out += c.toString()));
    proc.stderr?.on('data', (c: Buffer) => (out += c.toString()));
    for (let i = 0; i < 200; i++) {
      if (etcdctl(['endpoint', 'health']).status === 0) return;
      if (proc.exitCode !== null) throw new Error(`ballast store exited ${proc.exitCode}: ${out}`);
      await sleep(100);
    }
    throw new Error(`ballast store did not become healthy: ${out}`);
  };
  const stop = async () => {
    const p = proc!;
    const done = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    await done;
  };
  const etcdctl = (args: string[]) =>
    spawnSync('etcdctl', [`--endpoints=127.0.0.1:${clientPort}`, '--command-timeout=5s', ...args], {
      encoding: 'utf8',
      env: { ...process.env, ETCDCTL_API: '3' },
    });
  const everything = () => {
    const r = etcdctl(['get', '', '--prefix', '-w', 'json']);
    assert.equal(r.status, 0, r.stderr);
    const d = JSON.parse(r.stdout) as {
      header: { revision: number };
      kvs: Array<{ key: string; value?: string; create_revision: number; mod_revision: number; version: number; lease?: number }>;
    };
    return {
      revision: d.header.revision,
      kvs: d.kvs.map((k) => ({
        key: Buffer.from(k.key, 'base64').toString('latin1'),
        value: Buffer.from(k.value ?? '', 'base64').toString('latin1'),
        create_revision: k.create_revision,
        mod_revision: k.mod_revision,
        version: k.version,
        lease: k.lease ?? 0,
      })),
    };
  };
  const hashAt = (rev: number) =>
    (
      JSON.parse(etcdctl(['endpoint', 'hashkv', `--rev=${rev}`, '-w', 'json']).stdout) as Array<{
        HashKV: { hash: number; compact_revision: number };
      }>
    )[0]!.HashKV;

  it('a data directory written by 0.1.0 (format 1) is read whole: keys, values, revisions, leases, HashKV', async () => {
    await start();
    const got = everything();
    assert.equal(got.revision, expected.revision);
    assert.deepEqual(got.kvs, expected.kvs);
    assert.deepEqual(
      { hash: hashAt(expected.revision).hash, compact_revision: hashAt(expected.revision).compact_revision },
      expected.hashkv,
    );
    assert.match(etcdctl(['lease', 'list']).stdout, /found 2 leases/);
  });

  it('and migrated: new writes and the next snapshot are in format 2, recorded in member/format, and read back after a restart', async () => {
    for (let i = 0; i < 30; i++) assert.equal(etcdctl(['put', `after/${i}`, `v${i}`]).status, 0);
    const before = everything();
    const hash = hashAt(before.revision);
    await stop();
    // A snapshot is taken every --snapshot-count entries: restart with a small one and write again.
    await start(['--snapshot-count=10']);
    for (let i = 30; i < 50; i++) assert.equal(etcdctl(['put', `after/${i}`, `v${i}`]).status, 0);
    const now = everything();
    await stop();
    const record = JSON.parse(readFileSync(join(data, 'member', 'format'), 'utf8')) as { format: number; writtenBy: string };
    assert.equal(record.format, 2);
    const snaps = readdirSync(join(data, 'member', 'snap'))
      .filter((f) => f.endsWith('.snap'))
      .sort();
    assert.equal(
      readFileSync(join(data, 'member', 'snap', snaps.at(-1)!))
        .subarray(0, 4)
        .toString(),
      'BSNP',
      'the newest snapshot is in format 2',
    );
    await start();
    assert.deepEqual(everything(), now, 'everything, after a restart from the format-2 snapshot');
    assert.equal(hashAt(before.revision).hash, hash.hash, 'the history before the migration hashes the same');
    await stop();
  });

  it('a directory in a newer format is refused, naming both versions, and left as it was', async () => {
    const formatFile = join(data, 'member', 'format');
    const kept = readFileSync(formatFile, 'utf8');
    writeFileSync(formatFile, JSON.stringify({ format: 3, writtenBy: '9.9.9' }));
    const walBefore = readdirSync(join(data, 'member', 'wal')).map((f) => readFileSync(join(data, 'member', 'wal', f)).length);
    const r = spawnSync(
      bin,
      [
        'store',
        '--name=fx',
        `--data-dir=${data}`,
        '--listen-client-urls=http://127.0.0.1:0',
        '--listen-peer-urls=http://127.0.0.1:24380',
        '--initial-advertise-peer-urls=http://127.0.0.1:24380',
        '--initial-cluster=fx=http://127.0.0.1:24380',
        '--initial-cluster-token=fixture',
      ],
      { encoding: 'utf8', timeout: 30_000 },
    );
    assert.notEqual(r.status, 0);
    assert.match(r.stderr + r.stdout, /STORE_ERR_FORMAT_TOO_NEW/);
    assert.match(r.stderr + r.stdout, /in format 3, written by ballast 9\.9\.9; this ballast \(\d+\.\d+\.\d+\) reads formats up to 2/);
    assert.deepEqual(
      readdirSync(join(data, 'member', 'wal')).map((f) => readFileSync(join(data, 'member', 'wal', f)).length),
      walBefore,
      'nothing written',
    );
    writeFileSync(formatFile, kept);
  });
});
