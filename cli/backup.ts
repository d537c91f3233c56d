/**
 * `ballast backup save|list|restore`: store snapshots in S3-compatible object storage
 * (store/backup-s3.ts). Credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, as for
 * every S3 tool (in a pod, from a Secret); the rest from flags or BALLAST_BACKUP_* variables.
 *
 * - save: stream a snapshot from a follower of the cluster at --endpoints into
 *   `<bucket>/<prefix><name>.snap`, then write its manifest `<name>.json`; prints the manifest
 *   (and writes it to --result-file, e.g. a pod's termination log).
 * - list: the completed backups (those with a manifest), oldest first.
 * - restore NAME|latest: download one, check it against its manifest, and build a member's data
 *   directory from it (as `ballast store restore` does from a file).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { f, loadConfig, renderFlags } from '../lib/config.ts';
import { ExitCode } from '../lib/lifecycle.ts';
import { isBallastError } from '../lib/errors.ts';
import { parseAge } from '../lib/retention.ts';
import { restoreMember, restoreState } from '../store/backup.ts';
import { catalogue } from '../store/errors.ts';
import { normalizeUrl, parseInitialCluster } from '../store/members.ts';
import { buildInfo } from './build-info.ts';
import type { Command, Io } from './command.ts';

const storageFlags = {
  s3Endpoint: f.string("the object store's S3 endpoint, http(s)://host:port", { required: true }),
  s3Bucket: f.string('the bucket', { required: true }),
  s3Prefix: f.string("key prefix of this cluster's backups (for example orders/)", { default: '' }),
  s3Region: f.string('the S3 region', { default: 'us-east-1' }),
  s3CaFile: f.string("PEM file of the CA that signed the endpoint's certificate (https with a private CA)", { default: '' }),
};

/** How to reach the cluster's members (save streams from a follower, archive watches one). */
const sourceFlags = {
  endpoints: f.list("the cluster's client endpoints (host:port); a follower is used when one answers", { required: true }),
  user: f.string("the user when the store's auth is on (a root user: Snapshot needs the root role): name, or name:password", {
    default: '',
  }),
  password: f.string("the user's password, when --user gives only the name", { default: '' }),
  cacert: f.string("the CA of the members' client certificates (a cluster with client TLS)", { default: '' }),
  cert: f.string('a client certificate the members accept', { default: '' }),
  key: f.string('its key', { default: '' }),
};

/** The source options those flags say. */
function sourceOf(v: { endpoints: string[]; user: string; password: string; cacert: string; cert: string; key: string }) {
  const user = v.user && v.password && !v.user.includes(':') ? `${v.user}:${v.password}` : v.user;
  return { endpoints: v.endpoints, user: user || undefined, credentials: v.cacert ? grpcTls(v.cacert, v.cert, v.key) : undefined };
}

const saveFlags = {
  ...storageFlags,
  ...sourceFlags,
  name: f.string("the backup's name (default: backup-<UTC time>)", { default: '' }),
  resultFile: f.string('also write the manifest here (for example /dev/termination-log)', { default: '' }),
  pruneSchedule: f.string(
    "after the backup succeeds, delete this schedule's older backups (named <schedule>-<time>) as --keep and --max-age say",
    { default: '' },
  ),
  keep: f.int('with --prune-schedule: successful backups to keep (the newest is always kept)', { default: 0, min: 0 }),
  maxAge: f.string('with --prune-schedule: delete backups older than this (30d, 168h, 90m)', {
    default: '',
    pattern: /^(\d+(s|m|h|d))?$/,
    patternHelp: 'a number and s, m, h or d, like 30d or 168h',
  }),
};

const restoreFlags = {
  ...storageFlags,
  dataDir: f.string('path to the new data directory (must not exist or be empty)', { required: true }),
  name: f.string('human-readable name for the restored member', { default: 'default' }),
  initialCluster: f.string('the restored cluster: name=peerURL,...', { default: 'default=http://localhost:2380' }),
  initialClusterToken: f.string("the restored cluster's token", { default: 'etcd-cluster' }),
  initialAdvertisePeerUrls: f.list("this member's peer URLs", { default: ['http://localhost:2380'] }),
  ifEmpty: f.bool('restore only into an empty data directory, and succeed doing nothing when it has data (an init container on a restart)'),
  toRevision: f.int(
    'point-in-time: restore the cluster as it was at this revision (the newest backup at or below it, then the archive replayed)',
    { default: 0, min: 0 },
  ),
  toTime: f.string(
    'point-in-time: restore the cluster as it was at this time (RFC 3339, e.g. 2026-12-02T14:03:00Z): the last revision archived by then',
    {
      default: '',
      pattern: /^$|^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/,
      patternHelp: 'an RFC 3339 time such as 2026-12-02T14:03:00Z',
    },
  ),
};

const archiveFlags = {
  ...storageFlags,
  ...sourceFlags,
  segmentSeconds: f.int('write a segment at least this often while changes wait: about the recovery point objective', {
    default: 5,
    min: 1,
    max: 3600,
  }),
  segmentBytes: f.int('... and as soon as this many bytes of changes wait', { default: 8 * 1024 * 1024, min: 64 * 1024 }),
  metricsAddr: f.string('host:port for /metrics and /healthz (empty: none)', { default: '' }),
  logLevel: f.oneOf(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], 'log level', { default: 'info' }),
};

const verifyFlags = {
  ...storageFlags,
  workDir: f.string("where the throw-away member's data directory goes (removed afterwards)", { default: '' }),
  resultFile: f.string('also write the verdict here (for example /dev/termination-log)', { default: '' }),
};

const usage = `Usage: ballast backup save|list|restore|verify|archive [flags]

  save                 stream a snapshot from a follower into object storage, then its manifest
  list                 the completed backups (with a manifest), oldest first, and the archive's window
  restore NAME|latest  build a member's data directory from a backup, checked against its manifest;
                       with --to-revision or --to-time, replay the archive onto it (point in time)
  archive              watch the cluster and archive every change (point-in-time recovery), until stopped
  verify NAME|latest   restore a backup into a throw-away member and compare its HashKV at the
                       backup's revision with the one the cluster gave when it was taken

Credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY. Flags: ballast backup SUBCOMMAND --help.
`;

async function openStore(v: { s3Endpoint: string; s3Bucket: string; s3Prefix: string; s3Region: string; s3CaFile: string }, io: Io) {
  const { ObjectStore } = await import('../store/object-store.ts');
  return new ObjectStore({
    endpoint: v.s3Endpoint,
    bucket: v.s3Bucket,
    prefix: v.s3Prefix,
    region: v.s3Region,
    caFile: v.s3CaFile || undefined,
    accessKeyId: io.env['AWS_ACCESS_KEY_ID'] ?? '',
    secretAccessKey: io.env['AWS_SECRET_ACCESS_KEY'] ?? '',
  });
}

/** Client TLS to the members, as etcdctl's --cacert, --cert and --key. */
function grpcTls(ca: string, cert: string, key: string) {
  return credentials.createSsl(readFileSync(ca), key ? readFileSync(key) : null, cert ? readFileSync(cert) : null);
}

/** Print a subcommand's usage; exit code 0. */
function usageOf(io: Io, text: string): number {
  io.out(text);
  return 0;
}

const stamp = (d: Date) =>
  d
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');

async function run(sub: string, args: string[], io: Io): Promise<number> {
  const { saveBackup, findBackup, fetchBackup, pruneBackups } = await import('../store/backup-s3.ts');
  if (sub === 'save') {
    const { values: v, help } = loadConfig(saveFlags, { argv: args, env: io.env, envPrefix: 'BALLAST_BACKUP' });
    if (help) return usageOf(io, `Usage: ballast backup save [flags]\n\nFlags:\n${renderFlags(saveFlags, 'BALLAST_BACKUP')}\n`);
    const store = await openStore(v, io);
    try {
      await store.check();
      const m = await saveBackup(store, v.name || `backup-${stamp(new Date())}`, sourceOf(v));
      const text = `${JSON.stringify(m)}\n`;
      if (v.resultFile) writeFileSync(v.resultFile, text);
      io.out(text);
      if (v.pruneSchedule) {
        // The backup is safe either way; a prune that fails is tried again after the next one.
        try {
          const gone = await pruneBackups(
            store,
            v.pruneSchedule,
            { keep: v.keep || undefined, maxAgeMs: v.maxAge ? parseAge(v.maxAge) : undefined },
            Date.now(),
          );
          if (gone.length > 0)
            io.err(
              `ballast backup save: retention deleted ${gone.length} older backup${gone.length === 1 ? '' : 's'} of schedule ${v.pruneSchedule}: ${gone.join(', ')}\n`,
            );
        } catch (err) {
          io.err(
            `ballast backup save: the backup succeeded, but deleting older backups failed (tried again after the next backup): ${(err as Error).message}\n`,
          );
        }
      }
      return 0;
    } finally {
      store.close();
    }
  }
  if (sub === 'list') {
    const { values: v, help } = loadConfig(
      { ...storageFlags, output: f.oneOf(['table', 'json'], 'output format', { default: 'table' }) },
      { argv: args, env: io.env, envPrefix: 'BALLAST_BACKUP' },
    );
    if (help)
      return usageOf(
        io,
        `Usage: ballast backup list [flags]\n\nFlags:\n${renderFlags(storageFlags, 'BALLAST_BACKUP')}\n  --output table|json\n`,
      );
    const store = await openStore(v, io);
    try {
      const all = await store.backups();
      const { archiveSpans } = await import('../store/archive.ts');
      const { readArchive } = await import('../store/archiver.ts');
      const archive = await readArchive(store);
      const spans = archiveSpans(archive.segments);
      if (v.output === 'json') {
        io.out(
          `${JSON.stringify(spans.length > 0 || archive.progress ? { backups: all, archive: { spans: spans.map((x) => ({ ...x, from: new Date(x.fromMs).toISOString(), to: new Date(x.toMs).toISOString() })), ...(archive.progress ? { progress: { ...archive.progress, time: new Date(archive.progress.at).toISOString() } } : {}) } } : all, null, 2)}\n`,
        );
        return 0;
      }
      for (const b of all)
        io.out(`${b.name}\trevision ${b.revision}\t${b.size} bytes\tsha256 ${b.sha256.slice(0, 16)}…\t${b.finishedAt}\n`);
      for (const x of spans)
        io.out(
          `point in time: revisions ${x.first}..${x.last}, received ${new Date(x.fromMs).toISOString()} .. ${new Date(x.toMs).toISOString()}\n`,
        );
      if (archive.progress)
        io.out(
          `archive reaches revision ${archive.progress.revision}: everything received before ${new Date(archive.progress.at).toISOString()}\n`,
        );
      return 0;
    } finally {
      store.close();
    }
  }
  if (sub === 'verify') return await verify(args, io);
  if (sub === 'archive') return await archive(args, io);
  const {
    values: v,
    help,
    positionals,
  } = loadConfig(restoreFlags, { argv: args, env: io.env, envPrefix: 'BALLAST_BACKUP', positionals: true });
  if (help)
    return usageOf(io, `Usage: ballast backup restore NAME|latest [flags]\n\nFlags:\n${renderFlags(restoreFlags, 'BALLAST_BACKUP')}\n`);
  const pointInTime = v.toRevision > 0 || v.toTime !== '';
  if (v.toRevision > 0 && v.toTime !== '') {
    io.err('ballast backup restore: give --to-revision or --to-time, not both\n');
    return ExitCode.usage;
  }
  if (positionals.length > 1 || (positionals.length === 0 && !pointInTime)) {
    io.err(
      `ballast backup restore: give exactly one backup name, or latest (got ${positionals.length}); with --to-revision or --to-time the name may be left out (the newest backup before the target is the base)\n`,
    );
    return ExitCode.usage;
  }
  if (existsSync(v.dataDir) && readdirSync(v.dataDir).length > 0 && v.ifEmpty) {
    io.out(`${v.dataDir} has data already: nothing restored (--if-empty)\n`);
    return 0;
  }
  if (existsSync(v.dataDir) && readdirSync(v.dataDir).length > 0)
    throw catalogue.error('STORE_ERR_DATA_DIR', `--data-dir ${v.dataDir} is not empty; restore into a new directory`);
  const store = await openStore(v, io);
  // Downloaded next to the data directory (same volume), removed whatever happens.
  const file = join(dirname(v.dataDir), `.${v.name}.restore-${process.pid}.snap`);
  try {
    mkdirSync(dirname(file), { recursive: true });
    const member = {
      dataDir: v.dataDir,
      name: v.name,
      initialCluster: parseInitialCluster(v.initialCluster),
      advertisePeerUrls: v.initialAdvertisePeerUrls.map(normalizeUrl),
      token: v.initialClusterToken,
      version: buildInfo().version,
    };
    if (pointInTime) {
      const { pointInTimeState } = await import('../store/pitr.ts');
      const base = positionals[0] === undefined || positionals[0] === 'latest' ? undefined : await findBackup(store, positionals[0]);
      const pit = await pointInTimeState(
        store,
        await store.backups(),
        v.toTime ? { time: Date.parse(v.toTime) } : { revision: v.toRevision },
        file,
        base,
      );
      const r = restoreState(member, pit.state);
      io.out(
        `restored backup ${pit.plan.base} (revision ${pit.plan.baseRevision}) and the archive to revision ${r.revision}${pit.time !== undefined ? ` (the last change archived at or before ${new Date(pit.time).toISOString()})` : ''}, replaying ${pit.plan.segments.length} segment${pit.plan.segments.length === 1 ? '' : 's'}, into ${v.dataDir} as member ${r.memberId}\n`,
      );
      return 0;
    }
    const m = await findBackup(store, positionals[0] as string);
    await fetchBackup(store, m, file);
    const r = restoreMember({
      backup: file,
      dataDir: v.dataDir,
      name: v.name,
      initialCluster: parseInitialCluster(v.initialCluster),
      advertisePeerUrls: v.initialAdvertisePeerUrls.map(normalizeUrl),
      token: v.initialClusterToken,
      version: buildInfo().version,
    });
    io.out(
      `restored backup ${m.name} (revision ${r.revision}, ${m.size} bytes, sha256 ${m.sha256.slice(0, 16)}…) into ${v.dataDir} as member ${r.memberId}\n`,
    );
    return 0;
  } finally {
    rmSync(file, { force: true });
    store.close();
  }
}

/** A port free on 127.0.0.1 now. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Verify a backup: download it (size and sha256 checked), restore it as a one-member cluster in
 * a scratch directory, start that member (this same program's `store`), ask it for HashKV at the
 * backup's revision and compare with the manifest's (the source member's, right after the
 * snapshot). The member and its directory are removed whatever happens.
 */
async function verify(args: string[], io: Io): Promise<number> {
  const { findBackup, fetchBackup, hashKV, verdict } = await import('../store/backup-s3.ts');
  const {
    values: v,
    help,
    positionals,
  } = loadConfig(verifyFlags, { argv: args, env: io.env, envPrefix: 'BALLAST_BACKUP', positionals: true });
  if (help)
    return usageOf(io, `Usage: ballast backup verify NAME|latest [flags]\n\nFlags:\n${renderFlags(verifyFlags, 'BALLAST_BACKUP')}\n`);
  if (positionals.length !== 1) {
    io.err(`ballast backup verify: give exactly one backup name, or latest (got ${positionals.length})\n`);
    return ExitCode.usage;
  }
  const store = await openStore(v, io);
  const work = mkdtempSync(join(v.workDir || tmpdir(), 'ballast-verify-'));
  let member: ChildProcess | undefined;
  const log: string[] = [];
  try {
    const m = await findBackup(store, positionals[0] as string);
    const file = join(work, 'backup.snap');
    await fetchBackup(store, m, file);
    const [clientPort, peerPort] = [await freePort(), await freePort()];
    const peer = `http://127.0.0.1:${peerPort}`;
    const client = `127.0.0.1:${clientPort}`;
    const token = `verify-${m.name}`;
    restoreMember({
      backup: file,
      dataDir: join(work, 'data'),
      name: 'verify',
      initialCluster: parseInitialCluster(`verify=${peer}`),
      advertisePeerUrls: [normalizeUrl(peer)],
      token,
      version: buildInfo().version,
    });
    rmSync(file, { force: true });
    member = spawn(
      process.execPath,
      [
        ...process.execArgv,
        process.argv[1] as string,
        'store',
        '--name=verify',
        `--data-dir=${join(work, 'data')}`,
        `--listen-client-urls=http://${client}`,
        `--advertise-client-urls=http://${client}`,
        `--listen-peer-urls=${peer}`,
        `--initial-advertise-peer-urls=${peer}`,
        `--initial-cluster=verify=${peer}`,
        '--initial-cluster-state=existing',
        `--initial-cluster-token=${token}`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const keep = (d: Buffer) => log.push(...d.toString().split('\n').filter(Boolean).slice(-20)) > 40 && log.splice(0, log.length - 20);
    member.stdout?.on('data', keep);
    member.stderr?.on('data', keep);
    const exited = new Promise<never>((_, reject) =>
      member?.once('exit', (code) =>
        reject(
          catalogue.error(
            'STORE_ERR_BACKUP_NOT_VERIFIABLE',
            `the throw-away member restored from ${m.name} exited (code ${code}) before it answered: ${log.slice(-5).join(' | ')}`,
          ),
        ),
      ),
    );
    const deadline = Date.now() + 120_000;
    let got: { hash: number; compactRevision: number } | undefined;
    for (let last: unknown; !got;) {
      if (Date.now() > deadline)
        throw catalogue.error(
          'STORE_ERR_BACKUP_NOT_VERIFIABLE',
          `the throw-away member restored from ${m.name} did not answer HashKV within 120 s (${(last as Error | undefined)?.message ?? 'no answer'})`,
        );
      got = await Promise.race([hashKV(client, m.revision, {}), exited]).catch((err: unknown) => {
        if (isBallastError(err)) throw err;
        last = err;
        return undefined;
      });
      if (!got) await new Promise((r) => setTimeout(r, 250));
    }
    const result = verdict(m, got);
    const text = `${JSON.stringify(result)}\n`;
    if (v.resultFile) writeFileSync(v.resultFile, text);
    io.out(text);
    return 0;
  } finally {
    if (member && member.exitCode === null) {
      const gone = new Promise((r) => member?.once('exit', r));
      member.kill('SIGKILL');
      await gone;
    }
    rmSync(work, { recursive: true, force: true });
    store.close();
  }
}

/** Archive every change of the cluster until SIGTERM or SIGINT; then write what waits and exit 0. */
async function archive(args: string[], io: Io): Promise<number> {
  const { values: v, help } = loadConfig(archiveFlags, { argv: args, env: io.env, envPrefix: 'BALLAST_BACKUP' });
  if (help) return usageOf(io, `Usage: ballast backup archive [flags]\n\nFlags:\n${renderFlags(archiveFlags, 'BALLAST_BACKUP')}\n`);
  const { Archiver } = await import('../store/archiver.ts');
  const { createLogger } = await import('../lib/log.ts');
  const { processMetrics } = await import('../lib/metrics.ts');
  const { serveMetrics } = await import('../lib/endpoints.ts');
  const { realClock } = await import('../lib/clock.ts');
  const log = createLogger({ level: v.logLevel, env: io.env, base: { program: 'archiver' } });
  const metrics = processMetrics();
  const store = await openStore(v, io);
  await store.check();
  const a = new Archiver(store, {
    source: sourceOf(v),
    segmentMs: v.segmentSeconds * 1000,
    segmentBytes: v.segmentBytes,
    clock: realClock,
    log,
    metrics,
  });
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  let served: Awaited<ReturnType<typeof serveMetrics>> | undefined;
  try {
    if (v.metricsAddr) {
      const at = v.metricsAddr.lastIndexOf(':');
      served = await serveMetrics(metrics, v.metricsAddr.slice(0, at) || '0.0.0.0', Number(v.metricsAddr.slice(at + 1)), {
        '/healthz': () => ({ ok: true, reason: '' }),
      });
    }
    log.info({ bucket: v.s3Bucket, prefix: store.prefix, segmentSeconds: v.segmentSeconds }, 'archiver started');
    await a.run(stop.signal);
    log.info({ next: a.next }, 'archiver stopped; everything received is archived');
    return 0;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    await served?.close();
    store.close();
  }
}

export const backupCommand: Command = {
  name: 'backup',
  summary:
    'store snapshots in S3-compatible object storage: save (from a follower, streamed), list, restore a member from one (or to a point in time), verify one by restoring it, archive every change',
  async run(args, io) {
    const [sub, ...rest] = args;
    if (sub !== 'save' && sub !== 'list' && sub !== 'restore' && sub !== 'verify' && sub !== 'archive') {
      (sub === '--help' || sub === '-h' ? io.out : io.err)(usage);
      return sub === '--help' || sub === '-h' ? 0 : ExitCode.usage;
    }
    try {
      return await run(sub, rest, io);
    } catch (err) {
      if (!isBallastError(err)) throw err;
      io.err(`ballast backup ${sub}: ${err.code}: ${err.message}\n`);
      return ExitCode.failure;
    }
  },
};
