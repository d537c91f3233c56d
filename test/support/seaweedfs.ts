/**
 * A real S3-compatible object store for the backup tests: SeaweedFS (`weed server` with its
 * master, volume server, filer and S3 gateway in one process, on loopback), built from its Go
 * module by cluster/go/build into the cache. One identity with the keys below may do anything.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { ensureBucket, s3Client, s3Endpoint, weedArgs, writeS3Config } from '../../cluster/object-store.ts';
import { binaries, cacheDir } from '../../cluster/toolchain.ts';
import { freePort } from './store-cluster.ts';

/** The `weed` binary cluster/go/build made. */
export function weedBin(): string {
  const bin = binaries(cacheDir()).weed;
  if (!existsSync(bin)) throw new Error(`${bin} is missing: run make control-plane (cluster/go/build builds SeaweedFS)`);
  return bin;
}

export interface Seaweed {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  dir: string;
  /** An S3 client with the working credentials (for the tests' own setup and damage). */
  s3: S3Client;
  createBucket(name: string): Promise<void>;
  stop(): Promise<void>;
}

/** `host`: the address it listens on (default loopback; the node's address for pods to reach it). */
export async function startSeaweed(dir: string, host = '127.0.0.1'): Promise<Seaweed> {
  mkdirSync(join(dir, 'data'), { recursive: true });
  const creds = { accessKeyId: 'ballast-test', secretAccessKey: 'ballast-test-secret-key' };
  const config = join(dir, 's3.json');
  writeS3Config(config, creds);
  const free: number[] = [];
  while (free.length < 8) free.push(await freePort());
  const [master, masterGrpc, volume, volumeGrpc, filer, filerGrpc, s3Port, s3Grpc] = free;
  const log = openSync(join(dir, 'weed.log'), 'a');
  const ports = {
    master: master!,
    volume: volume!,
    filer: filer!,
    s3: s3Port!,
    grpc: { master: masterGrpc!, volume: volumeGrpc!, filer: filerGrpc!, s3: s3Grpc! },
  };
  const p: ChildProcess = spawn(weedBin(), weedArgs(dir, host, ports, config), { stdio: ['ignore', log, log] });
  const endpoint = s3Endpoint(host, s3Port!);
  const s3 = s3Client(endpoint, creds);
  const stop = async () => {
    s3.destroy();
    if (p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
    p.kill('SIGTERM');
    const t = setTimeout(() => p.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(t);
  };
  const createBucket = async (name: string) => {
    await s3.send(new CreateBucketCommand({ Bucket: name }));
  };
  const failed = await ensureBucket(s3, 'ready-probe', 60_000, () => p.exitCode === null);
  if (failed) {
    await stop();
    throw new Error(`SeaweedFS not ready in 60 s (${failed}); its log: ${join(dir, 'weed.log')}`);
  }
  return { endpoint, ...creds, dir, s3, createBucket, stop };
}
