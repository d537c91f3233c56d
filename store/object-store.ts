/**
 * Backups in S3-compatible object storage, through the AWS SDK (`@aws-sdk/client-s3`, with
 * `@aws-sdk/lib-storage` for streamed multipart uploads): the library every S3-compatible server
 * is tested against, with retries, SigV4 and multipart handled by its maintainers. It is loaded
 * only by the commands that reach object storage, never by the store or the sidecar.
 *
 * Layout under `<bucket>/<prefix>`: `<name>.snap` (a store snapshot, store/backup.ts) and
 * `<name>.json` (its manifest: revision, size, sha256, times); `wal/` holds the point-in-time
 * archive (store/archive.ts). An upload becomes visible only when
 * its multipart upload completes, and the manifest is written only after that: a backup without a
 * manifest is not listed as usable, so a failed or cut-off backup is never restored from.
 *
 * Failures name their fix: wrong credentials, a missing bucket, an unreachable endpoint or an
 * untrusted certificate each have their own code (store/errors.ts).
 */
import { readFileSync } from 'node:fs';
import { Agent as HttpsAgent } from 'node:https';
import type { Readable } from 'node:stream';
import {
  GetObjectCommand,
  HeadBucketCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  DeleteObjectsCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { catalogue } from './errors.ts';

export interface ObjectStoreConfig {
  /** http(s)://host:port of the S3 API. */
  endpoint: string;
  bucket: string;
  /** Key prefix, e.g. `orders/` (a trailing slash is added when missing). */
  prefix: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** PEM file of the CA that signed the endpoint's certificate (https endpoints with a private CA). */
  caFile?: string | undefined;
}

/** A completed backup's manifest, `<name>.json` next to `<name>.snap`. */
export interface BackupManifest {
  name: string;
  /** The object key of the snapshot. */
  key: string;
  revision: number;
  size: number;
  sha256: string;
  startedAt: string;
  finishedAt: string;
  /** The member it was streamed from. */
  member: string;
  /**
   * That member's HashKV at `revision`, asked right after the snapshot, and the compaction
   * revision it hashed from: what a verified restore must reproduce (absent before 0.3).
   */
  hashKV?: number;
  compactRevision?: number;
}

/** Multipart part size: memory held by an upload is about this times the queue size (2). */
export const partBytes = 8 * 1024 * 1024;

export class ObjectStore {
  readonly #s3: S3Client;
  readonly #cfg: ObjectStoreConfig;
  readonly prefix: string;

  constructor(cfg: ObjectStoreConfig) {
    this.#cfg = cfg;
    this.prefix = cfg.prefix === '' || cfg.prefix.endsWith('/') ? cfg.prefix : `${cfg.prefix}/`;
    let ca: Buffer | undefined;
    if (cfg.caFile) {
      try {
        ca = readFileSync(cfg.caFile);
      } catch (cause) {
        throw catalogue.error(
          'STORE_ERR_BACKUP_STORAGE_TLS',
          `cannot read the object store's CA file ${cfg.caFile}: ${(cause as Error).message}`,
          { cause },
        );
      }
    }
    this.#s3 = new S3Client({
      endpoint: cfg.endpoint,
      region: cfg.region,
      forcePathStyle: true,
      maxAttempts: 3,
      credentials: { accessKeyId: cfg.accessKeyId, secretAccessKey: cfg.secretAccessKey },
      requestHandler: new NodeHttpHandler({
        connectionTimeout: 5_000,
        requestTimeout: 60_000,
        ...(ca ? { httpsAgent: new HttpsAgent({ ca, keepAlive: true }) } : {}),
      }),
    });
  }

  /** The key of a name under the prefix. */
  key(name: string): string {
    return `${this.prefix}${name}`;
  }

  /** Fails with what to fix unless the bucket exists and the credentials may use it. */
  async check(): Promise<void> {
    await this.#call(() => this.#s3.send(new HeadBucketCommand({ Bucket: this.#cfg.bucket })), 'reach the bucket');
  }

  /**
   * Stream `body` to `name` as a multipart upload (visible only once complete; aborted, with its
   * parts deleted, on failure).
   */
  async upload(name: string, body: Readable): Promise<void> {
    const up = new Upload({
      client: this.#s3,
      params: { Bucket: this.#cfg.bucket, Key: this.key(name), Body: body },
      partSize: partBytes,
      queueSize: 2,
      leavePartsOnError: false,
    });
    await this.#call(() => up.done(), `upload ${this.key(name)}`);
  }

  async putText(name: string, text: string): Promise<void> {
    await this.#call(
      () =>
        this.#s3.send(new PutObjectCommand({ Bucket: this.#cfg.bucket, Key: this.key(name), Body: text, ContentType: 'application/json' })),
      `write ${this.key(name)}`,
    );
  }

  async putBytes(name: string, body: Buffer): Promise<void> {
    await this.#call(
      () =>
        this.#s3.send(
          new PutObjectCommand({ Bucket: this.#cfg.bucket, Key: this.key(name), Body: body, ContentType: 'application/octet-stream' }),
        ),
      `write ${this.key(name)}`,
    );
  }

  async getBytes(key: string): Promise<Buffer> {
    const r = await this.#call(() => this.#s3.send(new GetObjectCommand({ Bucket: this.#cfg.bucket, Key: key })), `read ${key}`);
    return Buffer.from(await (r.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray());
  }

  /** The object's bytes as a stream. */
  async download(key: string): Promise<Readable> {
    const r = await this.#call(() => this.#s3.send(new GetObjectCommand({ Bucket: this.#cfg.bucket, Key: key })), `read ${key}`);
    return r.Body as Readable;
  }

  async getText(key: string): Promise<string> {
    const r = await this.#call(() => this.#s3.send(new GetObjectCommand({ Bucket: this.#cfg.bucket, Key: key })), `read ${key}`);
    return await (r.Body as { transformToString(): Promise<string> }).transformToString();
  }

  /** Every key under the prefix (and `more`), oldest first. */
  async list(more = ''): Promise<Array<{ key: string; size: number; modified: number }>> {
    const out: Array<{ key: string; size: number; modified: number }> = [];
    let token: string | undefined;
    do {
      const r = await this.#call(
        () =>
          this.#s3.send(
            new ListObjectsV2Command({
              Bucket: this.#cfg.bucket,
              Prefix: `${this.prefix}${more}`,
              ...(token ? { ContinuationToken: token } : {}),
            }),
          ),
        `list ${this.prefix}${more}`,
      );
      for (const o of r.Contents ?? []) if (o.Key) out.push({ key: o.Key, size: o.Size ?? 0, modified: o.LastModified?.getTime() ?? 0 });
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
    return out.sort((a, b) => a.modified - b.modified || a.key.localeCompare(b.key));
  }

  /** The completed backups (those with a manifest), oldest first. */
  async backups(): Promise<BackupManifest[]> {
    // The point-in-time archive (`wal/`, store/archive.ts) is not a backup.
    const keys = (await this.list()).filter((o) => o.key.endsWith('.json') && !o.key.startsWith(`${this.prefix}wal/`));
    const out: BackupManifest[] = [];
    for (const k of keys) {
      try {
        out.push(JSON.parse(await this.getText(k.key)) as BackupManifest);
      } catch {
        // A manifest that does not parse names no usable backup.
      }
    }
    return out.sort((a, b) => a.finishedAt.localeCompare(b.finishedAt));
  }

  async remove(keys: string[]): Promise<void> {
    if (keys.length === 0) return;
    await this.#call(
      () => this.#s3.send(new DeleteObjectsCommand({ Bucket: this.#cfg.bucket, Delete: { Objects: keys.map((Key) => ({ Key })) } })),
      `delete ${keys.join(', ')}`,
    );
  }

  close(): void {
    this.#s3.destroy();
  }

  /** Run a call; a failure becomes a catalogued error that names the fix. */
  async #call<T>(fn: () => Promise<T>, what: string): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw describeFailure(err, what, this.#cfg);
    }
  }
}

/** What an S3 failure means for a person: which setting to fix. */
export function describeFailure(err: unknown, what: string, cfg: Pick<ObjectStoreConfig, 'endpoint' | 'bucket'>): Error {
  const e = err as {
    name?: string;
    Code?: string;
    code?: string;
    message?: string;
    $metadata?: { httpStatusCode?: number };
    cause?: { code?: string };
  };
  const name = e.name ?? e.Code ?? '';
  const code = e.code ?? e.cause?.code ?? '';
  const status = e.$metadata?.httpStatusCode;
  const at = `${cfg.endpoint}, bucket ${cfg.bucket}`;
  if (/InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied|InvalidToken|Forbidden/.test(name) || status === 403) {
    return catalogue.error(
      'STORE_ERR_BACKUP_STORAGE_CREDENTIALS',
      `could not ${what}: the object store (${at}) refused the credentials (${name || status}); check the access key id and secret key in the credentials Secret, and that they may use this bucket`,
      { cause: err },
    );
  }
  if (/NoSuchBucket/.test(name) || (status === 404 && /bucket/.test(what))) {
    return catalogue.error(
      'STORE_ERR_BACKUP_STORAGE_BUCKET',
      `could not ${what}: bucket ${cfg.bucket} does not exist at ${cfg.endpoint}; create it, or fix the bucket name`,
      { cause: err },
    );
  }
  if (/NoSuchKey|NotFound/.test(name) || status === 404) {
    return catalogue.error(
      'STORE_ERR_BACKUP_NOT_FOUND',
      `could not ${what}: no such object in ${at}; list the backups (ballast backup list) and pick one that exists`,
      { cause: err },
    );
  }
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|unable to verify|self-signed|certificate/i.test(`${code} ${e.message ?? ''}`)) {
    return catalogue.error(
      'STORE_ERR_BACKUP_STORAGE_TLS',
      `could not ${what}: the certificate of ${cfg.endpoint} is not trusted (${code || e.message}); give the CA that signed it (the CA Secret, or --s3-ca-file)`,
      { cause: err },
    );
  }
  if (/ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|ETIMEDOUT|ECONNRESET|EAI_AGAIN|TimeoutError/.test(`${code} ${name} ${e.message ?? ''}`)) {
    return catalogue.error(
      'STORE_ERR_BACKUP_STORAGE_UNREACHABLE',
      `could not ${what}: cannot reach the object store at ${cfg.endpoint} (${code || name || e.message}); check the endpoint URL and that the server runs`,
      { cause: err },
    );
  }
  return catalogue.error('STORE_ERR_BACKUP_STORAGE', `could not ${what} at ${at}: ${name ? `${name}: ` : ''}${e.message ?? String(err)}`, {
    cause: err,
  });
}
