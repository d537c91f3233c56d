/**
 * Object storage beside the local cluster, for backups: SeaweedFS's `weed server` (master,
 * volume server, filer and S3 gateway in one process) on the node's address, where pods reach
 * it. `ballast cluster up --object-store` runs it with the other components; the tests start
 * their own (test/support/seaweedfs.ts) with the same arguments. One identity, whose keys are
 * made once per state directory, may do anything.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';

export interface WeedPorts {
  master: number;
  volume: number;
  filer: number;
  s3: number;
}

/** The ports `cluster up --object-store` uses (each gRPC port is its HTTP port + 10000). */
export const clusterObjectStorePorts: WeedPorts = { master: 19333, volume: 18081, filer: 18889, s3: 18334 };

export interface ObjectStoreCredentials {
  accessKeyId: string;
  secretAccessKey: string;
}

/** `weed server`'s arguments (pure): data under `dir`, listening on `host`, the S3 identities in `config`. */
export function weedArgs(dir: string, host: string, ports: WeedPorts & { grpc?: Partial<WeedPorts> }, config: string): string[] {
  const grpc = (k: keyof WeedPorts) => ports.grpc?.[k] ?? ports[k] + 10000;
  return [
    'server',
    `-dir=${join(dir, 'data')}`,
    `-ip=${host}`,
    `-ip.bind=${host}`,
    `-master.port=${ports.master}`,
    `-master.port.grpc=${grpc('master')}`,
    '-master.volumeSizeLimitMB=64',
    `-volume.port=${ports.volume}`,
    `-volume.port.grpc=${grpc('volume')}`,
    '-volume.max=16',
    '-filer',
    `-filer.port=${ports.filer}`,
    `-filer.port.grpc=${grpc('filer')}`,
    '-s3',
    `-s3.port=${ports.s3}`,
    `-s3.port.grpc=${grpc('s3')}`,
    `-s3.config=${config}`,
    '-s3.port.iceberg=0',
    '-s3.port.lance=0',
  ];
}

/** The S3 identities file for these credentials. */
export function writeS3Config(path: string, c: ObjectStoreCredentials): void {
  writeFileSync(
    path,
    JSON.stringify({
      identities: [
        {
          name: 'ballast',
          credentials: [{ accessKey: c.accessKeyId, secretKey: c.secretAccessKey }],
          actions: ['Admin', 'Read', 'Write', 'List', 'Tagging'],
        },
      ],
    }),
    { mode: 0o600 },
  );
}

/** The state directory's credentials, made (random) the first time. */
export function ensureCredentials(dir: string): ObjectStoreCredentials {
  const file = join(dir, 'credentials.json');
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as ObjectStoreCredentials;
  mkdirSync(dir, { recursive: true });
  const c = { accessKeyId: `ballast-${randomBytes(6).toString('hex')}`, secretAccessKey: randomBytes(24).toString('base64url') };
  writeFileSync(file, `${JSON.stringify(c, null, 2)}\n`, { mode: 0o600 });
  return c;
}

export const s3Endpoint = (host: string, port: number) => `http://${host.includes(':') ? `[${host}]` : host}:${port}`;

export function s3Client(endpoint: string, c: ObjectStoreCredentials): S3Client {
  return new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: c });
}

/**
 * Make the bucket once the store takes requests (the S3 gateway answers and a filer and a volume
 * server run); an existing bucket is fine. Returns the last error if it is not ready in time.
 */
export async function ensureBucket(
  s3: S3Client,
  bucket: string,
  timeoutMs: number,
  alive: () => boolean = () => true,
): Promise<string | undefined> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline && alive()) {
    last = await s3.send(new CreateBucketCommand({ Bucket: bucket })).then(
      () => '',
      (err: unknown) => {
        const name = (err as { name?: string }).name ?? '';
        return name === 'BucketAlreadyOwnedByYou' || name === 'BucketAlreadyExists' ? '' : (err as Error).message || name || String(err);
      },
    );
    if (last === '') return undefined;
    await new Promise((r) => setTimeout(r, 300));
  }
  return last || 'the object store exited';
}
