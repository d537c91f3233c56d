/**
 * A real S3-compatible object store for the backup tests: SeaweedFS (`weed server` with its
 * master, volume server, filer and S3 gateway in one process, on loopback), built from its Go
 * module by cluster/go/build into the cache. One identity with the keys below may do anything.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readdirSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { freePort } from './store-cluster.ts';

const cache = process.env['BALLAST_CACHE'] ?? join(homedir(), '.cache', 'ballast');

/** The `weed` binary cluster/go/build made (the newest pseudo-version in the cache). */
export function weedBin(): string {
  const dirs = existsSync(cache) ? readdirSync(cache).filter((d) => d.startsWith('seaweedfs-')).sort() : [];
  const bin = dirs.length > 0 ? join(cache, dirs[dirs.length - 1] as string, 'weed') : '';
  if (!bin || !existsSync(bin)) throw new Error(`no SeaweedFS in ${cache}: run make control-plane (cluster/go/build builds it)`);
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

/** Free ports p where p + 10000 is free too (SeaweedFS's gRPC ports default to port + 10000; set here anyway). */
async function ports(n: number): Promise<number[]> {
  const out: number[] = [];
  while (out.length < n) out.push(await freePort());
  return out;
}

/** `host`: the address it listens on (default loopback; the node's address for pods to reach it). */
export async function startSeaweed(dir: string, host = '127.0.0.1'): Promise<Seaweed> {
  mkdirSync(join(dir, 'data'), { recursive: true });
  const accessKeyId = 'ballast-test';
  const secretAccessKey = 'ballast-test-secret-key';
  const config = join(dir, 's3.json');
  writeFileSync(config, JSON.stringify({ identities: [{ name: 'tests', credentials: [{ accessKey: accessKeyId, secretKey: secretAccessKey }], actions: ['Admin', 'Read', 'Write', 'List', 'Tagging'] }] }));
  const [master, masterGrpc, volume, volumeGrpc, filer, filerGrpc, s3Port, s3Grpc] = await ports(8);
  const log = openSync(join(dir, 'weed.log'), 'a');
  const p: ChildProcess = spawn(weedBin(), [
    'server', `-dir=${join(dir, 'data')}`, `-ip=${host}`, `-ip.bind=${host}`,
    `-master.port=${master}`, `-master.port.grpc=${masterGrpc}`, '-master.volumeSizeLimitMB=64',
    `-volume.port=${volume}`, `-volume.port.grpc=${volumeGrpc}`, '-volume.max=16',
    '-filer', `-filer.port=${filer}`, `-filer.port.grpc=${filerGrpc}`,
    '-s3', `-s3.port=${s3Port}`, `-s3.port.grpc=${s3Grpc}`, `-s3.config=${config}`, '-s3.port.iceberg=0', '-s3.port.lance=0',
  ], { stdio: ['ignore', log, log] });
  const endpoint = `http://${host.includes(':') ? `[${host}]` : host}:${s3Port}`;
  const s3 = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId, secretAccessKey } });
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
  // Ready when a bucket can be made (the S3 gateway answers and the filer and a volume server run).
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (p.exitCode !== null) throw new Error(`weed server exited (${p.exitCode}); its log: ${join(dir, 'weed.log')}`);
    const last = await createBucket('ready-probe').then(() => '', (err: unknown) => (err as Error).message || String(err));
    if (last === '') break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`SeaweedFS not ready in 60 s (${last}); its log: ${join(dir, 'weed.log')}`);
    }
    await new Promise((r) => setTimeout(r, 300));
  }
  return { endpoint, accessKeyId, secretAccessKey, dir, s3, createBucket, stop };
}
