import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { clusterObjectStorePorts, ensureCredentials, s3Endpoint, weedArgs } from './object-store.ts';

describe('the local object store', () => {
  it('weed server on the given address only, every port set (gRPC at +10000 unless given), the S3 identities from the file', () => {
    const args = weedArgs('/state/object-store', '10.250.0.1', clusterObjectStorePorts, '/state/object-store/s3.json');
    assert.equal(args[0], 'server');
    for (const a of [
      '-dir=/state/object-store/data',
      '-ip=10.250.0.1',
      '-ip.bind=10.250.0.1',
      '-s3',
      '-s3.port=18334',
      '-s3.port.grpc=28334',
      '-master.port.grpc=29333',
      '-s3.config=/state/object-store/s3.json',
      '-filer',
    ])
      assert.ok(args.includes(a), a);
    const own = weedArgs(
      '/d',
      '127.0.0.1',
      { master: 1, volume: 2, filer: 3, s3: 4, grpc: { master: 5, volume: 6, filer: 7, s3: 8 } },
      '/c',
    );
    assert.ok(own.includes('-s3.port.grpc=8') && own.includes('-volume.port.grpc=6'));
    assert.equal(s3Endpoint('10.250.0.1', 18334), 'http://10.250.0.1:18334');
    assert.equal(s3Endpoint('::1', 9), 'http://[::1]:9');
  });

  it('keys are made once per state directory, readable by its owner only', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ballast-os-'));
    try {
      const first = ensureCredentials(dir);
      assert.match(first.accessKeyId, /^ballast-[0-9a-f]{12}$/);
      assert.ok(first.secretAccessKey.length >= 32);
      assert.deepEqual(ensureCredentials(dir), first);
      assert.equal(statSync(join(dir, 'credentials.json')).mode & 0o777, 0o600);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
