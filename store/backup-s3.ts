/**
 * Backups to and from object storage (store/object-store.ts). Saving streams a member's Snapshot
 * RPC (a follower's, when one answers: the leader keeps serving writes) straight into a multipart
 * upload, hashing as it goes: memory stays at a few parts, whatever the store's size. The
 * manifest is written only after the upload completed and the stream ended where the member said
 * it would. Fetching downloads to a file and checks it against its manifest before anything is
 * restored from it.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as grpc from '@grpc/grpc-js';
import { loadProtos } from './api/protos.ts';
import { catalogue } from './errors.ts';
import type { BackupManifest, ObjectStore } from './object-store.ts';
import { backupNamePattern, expired, type Retention } from '../lib/retention.ts';
import { parseSegmentKey } from './archive.ts';

type Wire = Record<string, unknown>;
interface MaintenanceClient extends grpc.Client {
  Status(r: Wire, md: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: Wire) => void): void;
  Snapshot(
    r: Wire,
    md: grpc.Metadata,
    o?: grpc.CallOptions,
  ): grpc.ClientReadableStream<{ blob: Buffer; remaining_bytes: string; header?: { revision?: string } }>;
  HashKV(r: Wire, md: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: Wire) => void): void;
}
interface AuthClient extends grpc.Client {
  Authenticate(r: Wire, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: Wire) => void): void;
}

export interface SourceOptions {
  /** host:port of each member's client URL. */
  endpoints: string[];
  /** user:password, when the store's auth is on (a root user: Snapshot needs the root role). */
  user?: string | undefined;
  credentials?: grpc.ChannelCredentials | undefined;
}

let protos: grpc.GrpcObject | undefined;
export function ctor(name: 'Maintenance' | 'Auth' | 'Watch' | 'Lease' | 'KV'): grpc.ServiceClientConstructor {
  protos ??= loadProtos();
  return (protos['etcdserverpb'] as grpc.GrpcObject)[name] as grpc.ServiceClientConstructor;
}

export async function token(ep: string, o: SourceOptions): Promise<grpc.Metadata> {
  const md = new grpc.Metadata();
  if (!o.user) return md;
  const [name, ...rest] = o.user.split(':');
  const auth = new (ctor('Auth'))(ep, o.credentials ?? grpc.credentials.createInsecure()) as unknown as AuthClient;
  try {
    const r = await new Promise<Wire>((resolve, reject) =>
      auth.Authenticate({ name, password: rest.join(':') }, { deadline: Date.now() + 5_000 }, (e, res) =>
        e ? reject(e) : resolve(res ?? {}),
      ),
    );
    md.set('token', String(r['token'] ?? ''));
    return md;
  } finally {
    auth.close();
  }
}

/** The member to stream from: a follower that answers, else the leader. */
export async function pickSource(o: SourceOptions): Promise<{ endpoint: string; memberId: string; isLeader: boolean }> {
  const answers: Array<{ endpoint: string; memberId: string; isLeader: boolean }> = [];
  const problems: string[] = [];
  for (const ep of o.endpoints) {
    const c = new (ctor('Maintenance'))(ep, o.credentials ?? grpc.credentials.createInsecure()) as unknown as MaintenanceClient;
    try {
      const md = await token(ep, o);
      const st = await new Promise<Wire>((resolve, reject) =>
        c.Status({}, md, { deadline: Date.now() + 3_000 }, (e, r) => (e ? reject(e) : resolve(r ?? {}))),
      );
      const id = String((st['header'] as Wire | undefined)?.['member_id'] ?? '');
      if (String(st['leader'] ?? '0') === '0') problems.push(`${ep}: no leader`);
      else answers.push({ endpoint: ep, memberId: BigInt(id || 0).toString(16), isLeader: String(st['leader']) === id });
    } catch (err) {
      problems.push(`${ep}: ${(err as grpc.ServiceError).details || (err as Error).message}`);
    } finally {
      c.close();
    }
  }
  const pick = answers.find((a) => !a.isLeader) ?? answers[0];
  if (!pick)
    throw catalogue.error(
      'STORE_ERR_NO_LEADER',
      `no member to back up from answers with a leader known (${problems.join('; ')}); a backup needs a member that is part of a working cluster`,
    );
  return pick;
}

/**
 * Stream a snapshot of the member at `source` into `<name>.snap`, then write `<name>.json`.
 * Returns the manifest.
 */
export async function saveBackup(
  store: ObjectStore,
  name: string,
  o: SourceOptions,
  now: () => Date = () => new Date(),
): Promise<BackupManifest> {
  const source = await pickSource(o);
  const startedAt = now();
  // The default HTTP/2 window (64 KiB) on purpose: it paces the member. A 16 MiB window streamed
  // twice as fast alone (1.2 s instead of 2.8 s for 128 MiB) and made the backup 25% shorter, but
  // the member then spent its event loop pushing bytes and write p99 during the backup doubled
  // (bench/backup.ts --quick: 99 ms → 202 ms; 49 ms without a backup). Writes come first.
  const c = new (ctor('Maintenance'))(source.endpoint, o.credentials ?? grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': -1,
  }) as unknown as MaintenanceClient;
  const hash = createHash('sha256');
  let size = 0;
  let revision = 0;
  let remaining = -1;
  try {
    const call = c.Snapshot({}, await token(source.endpoint, o));
    // Pulled as the upload takes parts: gRPC flow control holds the member back meanwhile.
    const bytes = Readable.from(
      (async function* () {
        for await (const m of call) {
          if (revision === 0) revision = Number(m.header?.revision ?? 0);
          remaining = Number(m.remaining_bytes);
          hash.update(m.blob);
          size += m.blob.length;
          yield m.blob;
        }
        if (remaining !== 0)
          throw catalogue.error(
            'STORE_ERR_BACKUP_DAMAGED',
            `the snapshot stream from ${source.endpoint} ended with ${remaining} bytes still to come; the upload is abandoned`,
          );
      })(),
    );
    await store.upload(`${name}.snap`, bytes);
  } finally {
    c.close();
  }
  // What a verified restore must reproduce. A member that cannot hash that revision (compacted
  // past it already) leaves the backup unverifiable, not failed.
  const h = await hashKV(source.endpoint, revision, o).catch(() => undefined);
  const manifest: BackupManifest = {
    name,
    key: store.key(`${name}.snap`),
    revision,
    size,
    sha256: hash.digest('hex'),
    startedAt: startedAt.toISOString(),
    finishedAt: now().toISOString(),
    member: source.memberId,
    ...(h ? { hashKV: h.hash, compactRevision: h.compactRevision } : {}),
  };
  await store.putText(`${name}.json`, `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

/**
 * Delete a schedule's backups its retention lets go (lib/retention.ts), each manifest before its
 * snapshot, so a backup stops being listed before any of its bytes go; then the archive's
 * segments older than every backup left. Only backups named `<schedule>-<time>` are looked at.
 * Returns the names deleted.
 */
export async function pruneBackups(store: ObjectStore, schedule: string, r: Retention, now: number): Promise<string[]> {
  const pattern = backupNamePattern(schedule);
  const mine = (await store.backups()).filter((m) => pattern.test(m.name));
  const names = expired(
    mine.map((m) => ({ name: m.name, at: Date.parse(m.finishedAt), ok: true })),
    r,
    now,
  );
  for (const name of names) {
    await store.remove([store.key(`${name}.json`)]);
    await store.remove([store.key(`${name}.snap`)]);
  }
  await pruneArchive(store);
  return names;
}

/**
 * Delete the point-in-time archive's segments no restore can use: those wholly at or below the
 * oldest backup left (a restore starts from a backup and replays what comes after it). Returns
 * how many were deleted.
 */
export async function pruneArchive(store: ObjectStore): Promise<number> {
  const left = await store.backups();
  if (left.length === 0) return 0;
  const oldest = Math.min(...left.map((b) => b.revision));
  const useless = (await store.list('wal/'))
    .map((o) => parseSegmentKey(o.key))
    .filter((r) => r !== undefined && r.last <= oldest)
    .map((r) => (r as { key: string }).key);
  for (let i = 0; i < useless.length; i += 500) await store.remove(useless.slice(i, i + 500));
  return useless.length;
}

/** A member's HashKV at `revision` (etcdctl endpoint hashkv --rev). */
export async function hashKV(
  endpoint: string,
  revision: number,
  o: Pick<SourceOptions, 'user' | 'credentials'>,
): Promise<{ hash: number; compactRevision: number }> {
  const c = new (ctor('Maintenance'))(endpoint, o.credentials ?? grpc.credentials.createInsecure()) as unknown as MaintenanceClient;
  try {
    const md = await token(endpoint, { endpoints: [endpoint], ...o });
    const r = await new Promise<Wire>((resolve, reject) =>
      c.HashKV({ revision }, md, { deadline: Date.now() + 30_000 }, (e, res) => (e ? reject(e) : resolve(res ?? {}))),
    );
    return { hash: Number(r['hash'] ?? 0), compactRevision: Number(r['compact_revision'] ?? 0) };
  } finally {
    c.close();
  }
}

export interface Verification {
  name: string;
  revision: number;
  verified: boolean;
  /** The source member's HashKV at the revision (the manifest's), and the restored member's. */
  expected?: number | undefined;
  got: number;
  compactRevision: number;
  message: string;
}

/**
 * The verdict on a backup restored into a throw-away member (pure): its HashKV at the backup's
 * revision must be the one the source member gave right after the snapshot. Throws
 * STORE_ERR_BACKUP_UNVERIFIED on a mismatch, STORE_ERR_BACKUP_NOT_VERIFIABLE when there is
 * nothing to compare against.
 */
export function verdict(m: BackupManifest, got: { hash: number; compactRevision: number }): Verification {
  const base = { name: m.name, revision: m.revision, expected: m.hashKV, got: got.hash, compactRevision: got.compactRevision };
  if (m.hashKV === undefined)
    throw catalogue.error(
      'STORE_ERR_BACKUP_NOT_VERIFIABLE',
      `backup ${m.name} has no HashKV in its manifest (taken by an older build): it restores (HashKV ${got.hash} at revision ${m.revision}) but cannot be compared with the cluster`,
    );
  if (m.compactRevision !== undefined && m.compactRevision !== got.compactRevision) {
    throw catalogue.error(
      'STORE_ERR_BACKUP_NOT_VERIFIABLE',
      `backup ${m.name}: the source hashed from compaction revision ${m.compactRevision}, the restore holds history from ${got.compactRevision} (the cluster compacted between the snapshot and its hash); not comparable`,
    );
  }
  if (m.hashKV !== got.hash) {
    throw catalogue.error(
      'STORE_ERR_BACKUP_UNVERIFIED',
      `backup ${m.name} restored into a throw-away member hashes ${got.hash} at revision ${m.revision}, but the member it was taken from hashed ${m.hashKV}: it does not hold what the cluster held; do not rely on it`,
    );
  }
  return {
    ...base,
    verified: true,
    message: `restored into a throw-away member: HashKV ${got.hash} at revision ${m.revision}, as the member it was taken from`,
  };
}

/** The manifest of `name` (`latest`: the newest completed backup). */
export async function findBackup(store: ObjectStore, name: string): Promise<BackupManifest> {
  const all = await store.backups();
  const m = name === 'latest' ? all[all.length - 1] : all.find((b) => b.name === name);
  if (!m) {
    throw catalogue.error(
      'STORE_ERR_BACKUP_NOT_FOUND',
      `no completed backup ${name === 'latest' ? 'at all' : `named ${name}`} under ${store.prefix || 'the bucket root'}${
        all.length > 0
          ? ` (the newest: ${all
              .slice(-3)
              .map((b) => b.name)
              .join(', ')})`
          : ''
      }`,
    );
  }
  return m;
}

/** Download a backup's snapshot to `file`, checking its size and sha256 against the manifest. */
export async function fetchBackup(store: ObjectStore, m: BackupManifest, file: string): Promise<void> {
  const hash = createHash('sha256');
  let size = 0;
  const body = await store.download(m.key);
  await pipeline(
    body,
    async function* (src: AsyncIterable<Buffer>) {
      for await (const chunk of src) {
        hash.update(chunk);
        size += chunk.length;
        yield chunk;
      }
    },
    createWriteStream(file),
  );
  const sha = hash.digest('hex');
  if (size !== m.size || sha !== m.sha256) {
    throw catalogue.error(
      'STORE_ERR_BACKUP_DAMAGED',
      `backup object ${m.key} is ${size !== m.size ? `truncated or padded (${size} bytes, its manifest says ${m.size})` : `damaged (sha256 ${sha.slice(0, 16)}…, its manifest says ${m.sha256.slice(0, 16)}…)`}; nothing was restored. Restore another backup`,
    );
  }
}
