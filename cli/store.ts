/**
 * `ballast store`: takes etcd's flags with etcd's meaning (and ETCD_* environment variables),
 * so scripts can swap one for the other.
 */
import { f, loadConfig, renderFlags, type ConfigProblem } from '../lib/config.ts';
import { realClock } from '../lib/clock.ts';
import { Lifecycle, ExitCode } from '../lib/lifecycle.ts';
import { startTelemetry, telemetryComponent } from '../lib/otel.ts';
import { childLogger, createLogger } from '../lib/log.ts';
import { processMetrics } from '../lib/metrics.ts';
import { normalizeUrl, parseInitialCluster } from '../store/members.ts';
import { restoreMember } from '../store/backup.ts';
import { failpointsFromEnv } from '../store/failpoints.ts';
import { StoreServer } from '../store/server.ts';
import { defaultBcryptCost } from '../store/auth/password.ts';
import { parseAuthToken } from '../store/auth/tokens.ts';
import { isBallastError } from '../lib/errors.ts';
import { buildInfo } from './build-info.ts';
import type { Command } from './command.ts';

export const storeFlags = {
  name: f.string('human-readable name for this member', { default: 'default' }),
  dataDir: f.string('path to the data directory', { default: '${name}.etcd' }),
  listenClientUrls: f.urls('URLs to listen on for client traffic', { default: [new URL('http://localhost:2379')] }),
  advertiseClientUrls: f.list("this member's client URLs to advertise to the cluster", { default: ['http://localhost:2379'] }),
  listenPeerUrls: f.urls('URLs to listen on for peer traffic', { default: [new URL('http://localhost:2380')] }),
  initialAdvertisePeerUrls: f.list("this member's peer URLs to advertise to the cluster", { default: ['http://localhost:2380'] }),
  initialCluster: f.string('initial cluster configuration for bootstrapping: name=peerURL,...', {
    default: 'default=http://localhost:2380',
  }),
  initialClusterState: f.oneOf(['new', 'existing'], 'initial cluster state: new (bootstrap) or existing (join)', { default: 'new' }),
  initialClusterToken: f.string('initial cluster token, shared by every member of one cluster', { default: 'etcd-cluster' }),
  forceNewCluster: f.bool(
    "start as a one-member cluster from this member's data, removing every other member from the configuration (to recover from a lost quorum when the others' data is gone); every entry in its log is kept",
  ),
  forceNewClusterMember: f.string(
    'force the new cluster only if --name is this (one setting for every member of a StatefulSet names the survivor)',
    { default: '' },
  ),
  forceNewClusterId: f.string(
    'force the new cluster once per id: a restart with an id this data directory was already forced under starts normally',
    { default: '' },
  ),
  heartbeatInterval: f.duration('time (in milliseconds) of a heartbeat interval', { default: 100, min: 1 }),
  electionTimeout: f.duration('time (in milliseconds) for an election to time out', { default: 1000, min: 1 }),
  snapshotCount: f.int('number of committed transactions to trigger a snapshot to disk', { default: 100_000, min: 1 }),
  diskSpaceReserveBytes: f.bytes(
    "raise the NOSPACE alarm (refusing writes cluster-wide) while the data directory's volume has less free space than this, before a WAL write can fail; 0 turns the check off",
    { default: 64 * 1024 ** 2, min: 0 },
  ),
  quotaBackendBytes: f.bytes('raise the NOSPACE alarm when the key space exceeds this size', { default: 2 * 1024 ** 3, min: 1 }),
  maxRequestBytes: f.bytes('maximum client request size in bytes the server will accept', { default: 1.5 * 1024 * 1024, min: 1 }),
  listenMetricsUrls: f.urls('URLs to serve /metrics, /health and /readyz on', { default: [] }),
  experimentalWatchProgressNotifyInterval: f.duration('period of progress notifications to watchers that asked for them', {
    default: 600_000,
    min: 100,
  }),
  autoCompactionMode: f.oneOf(['periodic', 'revision'], 'auto compaction: keep history for a period of time, or a number of revisions', {
    default: 'periodic',
  }),
  autoCompactionRetention: f.string(
    'auto compaction retention: a duration for periodic (1h, 30m; a bare number is hours), a count for revision; 0 disables',
    { default: '0' },
  ),
  certFile: f.string('path to the client server TLS certificate', { default: '' }),
  keyFile: f.string('path to the client server TLS key', { default: '' }),
  trustedCaFile: f.string('path to the client server TLS trusted CA file', { default: '' }),
  clientCertAuth: f.bool('enable client certificate authentication'),
  peerCertFile: f.string('path to the peer server TLS certificate', { default: '' }),
  peerKeyFile: f.string('path to the peer server TLS key', { default: '' }),
  peerTrustedCaFile: f.string('path to the peer server TLS trusted CA file', { default: '' }),
  peerClientCertAuth: f.bool('enable peer client certificate authentication'),
  authToken: f.string('auth token kind: simple, or jwt,pub-key=PATH,priv-key=PATH,sign-method=RS256[,ttl=5m]', { default: 'simple' }),
  authTokenTtl: f.int('seconds a simple token lives after its last use', { default: 300, min: 1 }),
  bcryptCost: f.int('bcrypt cost of password hashes (4-31)', { default: defaultBcryptCost, min: 4, max: 31 }),
  logLevel: f.oneOf(['trace', 'debug', 'info', 'warn', 'error', 'fatal'], 'log level', { default: 'info', env: 'BALLAST_LOG_LEVEL' }),
};

/**
 * etcd's --auto-compaction-retention: for `periodic`, a duration (a bare number is hours, as in
 * etcd); for `revision`, a count of revisions to keep. 0 disables.
 */
export function parseRetention(
  mode: 'periodic' | 'revision',
  raw: string,
): { mode: 'periodic' | 'revision'; retention: number } | undefined {
  const s = raw.trim();
  if (s === '0' || s === '') return undefined;
  if (mode === 'revision') return { mode, retention: Number(s) };
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(s);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m?.[2] ?? 'h') as 'ms' | 's' | 'm' | 'h'];
  return { mode, retention: Number(m?.[1]) * unit };
}

/** The contradictions etcd refuses, with its wording where scripts might match on it. */
function checkStoreFlags(v: Record<string, unknown>): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const hb = v['heartbeatInterval'] as number;
  const et = v['electionTimeout'] as number;
  if (et < 5 * hb)
    problems.push({ field: '--election-timeout', value: et, allowed: `at least 5 times --heartbeat-interval (${5 * hb})`, source: 'flag' });
  if (et > 50_000) problems.push({ field: '--election-timeout', value: et, allowed: 'at most 50000 ms', source: 'flag' });
  let cluster: Map<string, string[]> | undefined;
  try {
    cluster = parseInitialCluster(v['initialCluster'] as string);
  } catch (err) {
    problems.push({
      field: '--initial-cluster',
      value: v['initialCluster'],
      allowed: (err as Error).message.replace(/^--initial-cluster: got "[^"]*"; expected /, ''),
      source: 'flag',
    });
  }
  const name = v['name'] as string;
  const adv = (v['initialAdvertisePeerUrls'] as string[]).map((u) => (URL.canParse(u) ? normalizeUrl(u) : u));
  if ((cluster && v['initialClusterState'] === 'new') || (cluster && cluster.has(name))) {
    const mine = cluster?.get(name);
    if (!mine)
      problems.push({
        field: '--initial-cluster',
        value: v['initialCluster'],
        allowed: `an entry for this member's --name "${name}"`,
        source: 'flag',
      });
    else if ([...mine].sort().join(',') !== [...adv].sort().join(',')) {
      problems.push({
        field: '--initial-advertise-peer-urls',
        value: adv.join(','),
        allowed: `the same URLs as --initial-cluster gives ${name} (${mine.join(',')})`,
        source: 'flag',
      });
    }
  }
  // TLS: https URLs need a certificate and key; certificate auth needs a CA to check against.
  const https = (list: unknown) => (list as URL[]).some((u) => u.protocol === 'https:');
  for (const [side, urlsKey, cert, key, ca, auth] of [
    ['', 'listenClientUrls', 'certFile', 'keyFile', 'trustedCaFile', 'clientCertAuth'],
    ['peer-', 'listenPeerUrls', 'peerCertFile', 'peerKeyFile', 'peerTrustedCaFile', 'peerClientCertAuth'],
  ] as const) {
    if (https(v[urlsKey]) && (!v[cert] || !v[key]))
      problems.push({
        field: `--${side}cert-file`,
        value: v[cert] || undefined,
        allowed: `a certificate and --${side}key-file, because --listen-${side || 'client-'}urls are https`,
        source: 'flag',
      });
    if (v[auth] && !v[ca])
      problems.push({
        field: `--${side}trusted-ca-file`,
        value: undefined,
        allowed: `a CA file, because --${side}client-cert-auth is on`,
        source: 'flag',
      });
    if ((v[cert] || v[key]) && !(v[cert] && v[key]))
      problems.push({
        field: `--${side}${v[cert] ? 'key' : 'cert'}-file`,
        value: undefined,
        allowed: `a value: --${side}cert-file and --${side}key-file go together`,
        source: 'flag',
      });
  }
  try {
    parseAuthToken(String(v['authToken']));
  } catch (err) {
    problems.push({ field: '--auth-token', value: v['authToken'], allowed: (err as Error).message, source: 'flag' });
  }
  const retention = String(v['autoCompactionRetention']).trim();
  const okRetention = v['autoCompactionMode'] === 'revision' ? /^\d+$/.test(retention) : /^\d+(\.\d+)?(ms|s|m|h)?$/.test(retention);
  if (!okRetention)
    problems.push({
      field: '--auto-compaction-retention',
      value: retention,
      allowed:
        v['autoCompactionMode'] === 'revision'
          ? 'a whole number of revisions (0 disables)'
          : 'a duration such as 1h, 30m or 90s (a bare number is hours; 0 disables)',
      source: 'flag',
    });
  for (const [flag, list] of [
    ['--advertise-client-urls', v['advertiseClientUrls']],
    ['--initial-advertise-peer-urls', v['initialAdvertisePeerUrls']],
  ] as const) {
    for (const u of list as string[])
      if (!URL.canParse(u)) problems.push({ field: flag, value: u, allowed: 'URLs like http://127.0.0.1:2379', source: 'flag' });
  }
  return problems;
}

const restoreFlags = {
  name: f.string('human-readable name for the restored member', { default: 'default' }),
  dataDir: f.string('path to the new data directory (must not exist or be empty)', { required: true }),
  initialCluster: f.string('the restored cluster: name=peerURL,...', { default: 'default=http://localhost:2380' }),
  initialClusterToken: f.string("the restored cluster's token", { default: 'etcd-cluster' }),
  initialAdvertisePeerUrls: f.list("this member's peer URLs", { default: ['http://localhost:2380'] }),
};

/** `ballast store restore SNAPSHOT`: as `etcdutl snapshot restore`. */
async function restoreCommand(args: string[], io: Parameters<Command['run']>[1]): Promise<number> {
  const { values: v, help, positionals } = loadConfig(restoreFlags, { argv: args, env: io.env, envPrefix: 'ETCD', positionals: true });
  if (help) {
    io.out(
      `Usage: ballast store restore SNAPSHOT [flags]\n\nBuilds a new member data directory from a snapshot saved with \`etcdctl snapshot save\`.\nRestore every member of the new cluster with the same --initial-cluster and token.\n\nFlags:\n${renderFlags(restoreFlags, 'ETCD')}\n`,
    );
    return 0;
  }
  if (positionals.length !== 1) {
    io.err(
      `ballast store restore: give exactly one snapshot file (got ${positionals.length})\nRun 'ballast store restore --help' for usage.\n`,
    );
    return ExitCode.usage;
  }
  const r = restoreMember({
    backup: positionals[0] as string,
    dataDir: v.dataDir,
    name: v.name,
    initialCluster: parseInitialCluster(v.initialCluster),
    advertisePeerUrls: v.initialAdvertisePeerUrls.map(normalizeUrl),
    token: v.initialClusterToken,
    version: buildInfo().version,
  });
  io.out(`restored snapshot (revision ${r.revision}) into ${v.dataDir} as member ${r.memberId}\n`);
  return 0;
}

export const storeCommand: Command = {
  name: 'store',
  summary: 'run a member of a Raft-replicated key-value store speaking the etcd v3 API (restore: build a member from a snapshot)',
  async run(args, io) {
    if (args[0] === 'restore') return restoreCommand(args.slice(1), io);
    const { values: v, help } = loadConfig(storeFlags, {
      argv: args,
      env: io.env,
      envPrefix: 'ETCD',
      configFile: true,
      rules: [checkStoreFlags],
    });
    if (help) {
      io.out(
        `Usage: ballast store [flags]\n\nRuns one member of a Ballast store cluster. Flags and ETCD_* variables mean what they mean to etcd.\n\nFlags:\n${renderFlags(storeFlags, 'ETCD')}\n  --config-file PATH               YAML file of flag names and values\n`,
      );
      return 0;
    }
    const log = childLogger(createLogger({ level: v.logLevel, env: io.env, base: { program: 'store' } }), { name: v.name });
    const telemetry = await startTelemetry('store', io.env);
    const failpoints = failpointsFromEnv(io.env);
    const failpointAddr = io.env['BALLAST_FAILPOINTS_HTTP'];
    if (failpoints && failpointAddr) {
      await failpoints.serve(failpointAddr);
      log.warn({ addr: failpointAddr }, 'TEST ONLY: failpoints are enabled and served over HTTP');
    }
    const server = new StoreServer(
      {
        name: v.name,
        dataDir: v.dataDir === '${name}.etcd' ? `${v.name}.etcd` : v.dataDir,
        listenClientUrls: v.listenClientUrls,
        advertiseClientUrls: v.advertiseClientUrls.map(normalizeUrl),
        listenPeerUrls: v.listenPeerUrls,
        advertisePeerUrls: v.initialAdvertisePeerUrls.map(normalizeUrl),
        initialCluster: parseInitialCluster(v.initialCluster),
        initialClusterState: v.initialClusterState,
        token: v.initialClusterToken,
        forceNewCluster:
          v.forceNewCluster || (v.forceNewClusterMember !== '' && v.forceNewClusterMember === v.name)
            ? { ...(v.forceNewClusterId ? { once: v.forceNewClusterId } : {}) }
            : undefined,
        heartbeatMs: v.heartbeatInterval,
        electionMs: v.electionTimeout,
        snapshotCount: v.snapshotCount,
        quotaBytes: v.quotaBackendBytes,
        diskReserveBytes: v.diskSpaceReserveBytes,
        maxRequestBytes: v.maxRequestBytes,
        listenMetricsUrls: v.listenMetricsUrls,
        watchProgressNotifyMs: v.experimentalWatchProgressNotifyInterval,
        clientTls: v.certFile
          ? { certFile: v.certFile, keyFile: v.keyFile, trustedCaFile: v.trustedCaFile, clientCertAuth: v.clientCertAuth }
          : undefined,
        peerTls: v.peerCertFile
          ? { certFile: v.peerCertFile, keyFile: v.peerKeyFile, trustedCaFile: v.peerTrustedCaFile, clientCertAuth: v.peerClientCertAuth }
          : undefined,
        autoCompaction: parseRetention(v.autoCompactionMode, v.autoCompactionRetention),
        authToken: parseAuthToken(v.authToken),
        authTokenTtlSeconds: v.authTokenTtl,
        bcryptCost: v.bcryptCost,
        version: '3.5.0',
        ballastVersion: buildInfo().version,
        // Test-only: lets the linearizability checker prove it can catch stale reads.
        unsafeStaleReads: io.env['BALLAST_TEST_UNSAFE_STALE_READS'] === '1',
        // Test-only: the chaos suite's disk faults (store/failpoints.ts); nothing without the variables.
        failpoints,
        ...(telemetry ? { tracer: telemetry.tracer } : {}),
      },
      log,
      processMetrics(),
    );
    const drainTimeoutMs = 30_000;
    const fatalExitMs = drainTimeoutMs + 10_000;
    const lc = new Lifecycle({ log, drainTimeoutMs }).add(telemetryComponent(telemetry));
    for (const c of server.components()) lc.add(c);
    const done = new Promise<number>((resolve) => {
      lc.handleSignals((code) => resolve(code));
      server.onRemoved = () => {
        log.warn('this member was removed from the cluster; exiting');
        void lc.stop().then(resolve);
      };
      server.onFatal = () => {
        // A member that cannot write its log must not linger: it would keep answering serializable
        // reads from a state that no longer advances. The drain has its deadline; this bounds
        // whatever else (an alarm raised elsewhere, a handle a library left open) could hold it.
        realClock.setTimeout(
          () => {
            log.error({ afterMs: fatalExitMs }, 'storage failure: the member did not finish stopping in time; exiting now');
            resolve(ExitCode.failure);
          },
          fatalExitMs,
          { unref: true },
        );
        void lc.stop().then(() => resolve(ExitCode.failure));
      };
    });
    try {
      await lc.start();
    } catch (err) {
      log.error({ err }, 'store failed to start');
      io.err(`ballast store: ${(err as Error).message}\n`);
      // A member whose data is lost exits with its own code, so the operator (or a person)
      // can tell "remove and re-add me" from other start-up failures.
      let cause: unknown = err;
      while (cause && !isBallastError(cause, 'STORE_ERR_DATA_LOST')) cause = (cause as { cause?: unknown }).cause;
      return cause ? ExitCode.dataLost : ExitCode.failure;
    }
    log.info({ member: server.node.id, name: v.name }, 'store member started');
    return done;
  },
};
