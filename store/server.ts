/**
 * One `ballast store` process: the member (StoreNode), etcd's gRPC API on the client URLs, and
 * /health, /readyz and /metrics on the metrics URLs, started and stopped as one lifecycle.
 */
import * as grpc from '@grpc/grpc-js';
import type { Tracer } from '@opentelemetry/api';
import { statfs } from 'node:fs/promises';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { realClock } from '../lib/clock.ts';
import { GrpcServer } from '../lib/grpc-server.ts';
import { checkRoute, endpointApp, listen, metricsRoute } from '../lib/endpoints.ts';
import { isBallastError } from '../lib/errors.ts';
import type { Component } from '../lib/lifecycle.ts';
import type { Metrics } from '../lib/metrics.ts';
import { systemRandom } from '../lib/random.ts';
import { registerHealth } from './api/health.ts';
import { tokenProvider, type TokenConfig, type TokenProvider } from './auth/tokens.ts';
import { StoreApi } from './api/server.ts';
import { Compactor } from './compactor.ts';
import { DiskSpaceGuard } from './disk-guard.ts';
import { StoreMetrics } from './metrics.ts';
import type { StoreNodeConfig } from './node-config.ts';
import { StoreNode } from './node.ts';
import { type TlsFiles, certRefreshMs, clientServerContext } from './tls.ts';

/** The member's own settings come from StoreNodeConfig; the rest are the process's edges. */
export interface StoreServerConfig extends Pick<
  StoreNodeConfig,
  | 'name'
  | 'dataDir'
  | 'listenPeerUrls'
  | 'advertisePeerUrls'
  | 'advertiseClientUrls'
  | 'initialCluster'
  | 'initialClusterState'
  | 'forceNewCluster'
  | 'token'
  | 'heartbeatMs'
  | 'electionMs'
  | 'snapshotCount'
  | 'maxRequestBytes'
  | 'watchProgressNotifyMs'
  | 'peerTls'
  | 'failpoints'
> {
  listenClientUrls: URL[];
  quotaBytes: number;
  /** Raise NOSPACE when the data directory's volume has less free than this (0: never). */
  diskReserveBytes: number;
  listenMetricsUrls: URL[];
  /** The etcd API version reported to clients (etcdctl endpoint status). */
  version: string;
  /** This build's version (published into the member table; recorded with the data directory's format). */
  ballastVersion: string;
  unsafeStaleReads: boolean;
  clientTls?: TlsFiles | undefined;
  autoCompaction?: { mode: 'periodic' | 'revision'; retention: number } | undefined;
  /** OpenTelemetry is on: a server span per unary gRPC call. */
  tracer?: Tracer | undefined;
  /** `--auth-token` (parsed), `--auth-token-ttl` (simple tokens, seconds) and `--bcrypt-cost`. */
  authToken: TokenConfig;
  authTokenTtlSeconds: number;
  bcryptCost: number;
}

/** gRPC adds framing to each request; allow it on top of --max-request-bytes, as etcd does. */
const grpcOverheadBytes = 512 * 1024;
/** A member is ready when it has applied to within this many entries of its commit index. */
const readyLag = 100;

export class StoreServer {
  node!: StoreNode;
  readonly #cfg: StoreServerConfig;
  readonly #log: Logger;
  readonly #metrics: Metrics;
  readonly #storeMetrics: StoreMetrics;
  #grpc: GrpcServer | undefined;
  #compactor: Compactor | undefined;
  #diskGuard: DiskSpaceGuard | undefined;
  #api: StoreApi | undefined;
  #tokens: TokenProvider | undefined;
  readonly #http: FastifyInstance[] = [];
  /** Set when this member was removed from the cluster: the process should exit. */
  onRemoved: (() => void) | undefined;
  /** Storage failed; the member stopped itself and the process must exit non-zero. */
  onFatal: ((err: Error) => void) | undefined;

  constructor(cfg: StoreServerConfig, log: Logger, metrics: Metrics) {
    this.#cfg = cfg;
    this.#log = log;
    this.#metrics = metrics;
    this.#storeMetrics = new StoreMetrics(metrics);
  }

  /** The components, in start order. */
  components(): Component[] {
    return [
      {
        name: 'member',
        start: () => this.#startNode(),
        stop: async () => {
          this.#compactor?.stop();
          this.#diskGuard?.stop();
          this.#tokens?.stop();
          await this.node?.stop();
        },
      },
      { name: 'grpc', start: () => this.#startGrpc(), stop: () => this.#stopGrpc() },
      { name: 'http', start: () => this.#startHttp(), stop: () => this.#stopHttp() },
    ];
  }

  async #startNode(): Promise<void> {
    const c = this.#cfg;
    // Key files are read first: a bad --auth-token stops the start before the member joins.
    this.#tokens = tokenProvider(c.authToken, {
      clock: realClock,
      simpleTtlMs: c.authTokenTtlSeconds * 1000,
      waitApplied: (index) => this.node.waitApplied(index, 5000),
    });
    this.node = await StoreNode.open({
      name: c.name,
      dataDir: c.dataDir,
      version: c.ballastVersion,
      listenPeerUrls: c.listenPeerUrls,
      advertisePeerUrls: c.advertisePeerUrls,
      advertiseClientUrls: c.advertiseClientUrls,
      initialCluster: c.initialCluster,
      initialClusterState: c.initialClusterState,
      forceNewCluster: c.forceNewCluster,
      token: c.token,
      heartbeatMs: c.heartbeatMs,
      electionMs: c.electionMs,
      snapshotCount: c.snapshotCount,
      snapshotCatchUpEntries: Math.min(5000, c.snapshotCount),
      requestTimeoutMs: 5000 + 2 * c.electionMs,
      maxRequestBytes: c.maxRequestBytes,
      clock: realClock,
      random: systemRandom,
      log: this.#log,
      metrics: this.#storeMetrics,
      unsafeStaleReads: c.unsafeStaleReads,
      ...(c.watchProgressNotifyMs ? { watchProgressNotifyMs: c.watchProgressNotifyMs } : {}),
      peerTls: c.peerTls,
      failpoints: c.failpoints,
    });
    if (c.autoCompaction) {
      const node = this.node;
      this.#compactor = new Compactor(
        c.autoCompaction.mode,
        c.autoCompaction.retention,
        realClock,
        {
          get isLeader() {
            return node.isLeader;
          },
          get revision() {
            return node.sm.mvcc.revision;
          },
          get compactRevision() {
            return node.sm.mvcc.compactRevision;
          },
          compact: async (rev) => {
            const r = await node.write({ op: 'compact', revision: rev });
            if (r.error) throw new Error(r.error.message);
          },
        },
        (rev) => this.#log.info({ member: node.id, revision: rev, mode: c.autoCompaction?.mode }, 'auto-compacted history'),
      );
      this.#compactor.start();
    }
    this.node.onRemoved = () => this.onRemoved?.();
    this.node.onFatal = (err) => {
      if (!isBallastError(err, 'STORE_ERR_NO_DISK_SPACE') || !this.#api) return this.onFatal?.(err);
      // This member cannot write its log; the others can. Raise NOSPACE through them, so the
      // cluster refuses writes as it would had the guard caught the volume filling up.
      void this.#api.raiseAlarmElsewhere('NOSPACE').then((ok) => {
        if (ok)
          this.#log.error(
            { member: this.node.id },
            'the volume is full: raised the NOSPACE alarm through another member; stopping. Free space, restart this member, then `etcdctl alarm disarm`',
          );
        else this.#log.error({ member: this.node.id }, 'the volume is full and no other member took the NOSPACE alarm; stopping');
        this.onFatal?.(err);
      });
    };
    await this.node.start();
    if (c.diskReserveBytes > 0) {
      const node = this.node;
      const alarm = async (action: 'activate' | 'deactivate'): Promise<void> => {
        const r = await node.write({ op: 'alarm', action, memberId: node.id, alarm: 'NOSPACE' });
        if (r.error) throw new Error(r.error.message);
      };
      this.#diskGuard = new DiskSpaceGuard(c.diskReserveBytes, {
        clock: realClock,
        log: this.#log,
        freeBytes: async () => {
          const st = await statfs(c.dataDir);
          return st.bavail * st.bsize;
        },
        raise: () => alarm('activate'),
        clear: () => alarm('deactivate'),
      });
      this.#diskGuard.start();
    }
  }

  async #startGrpc(): Promise<void> {
    // The client API's gRPC server is Ballast's own on node:http2 (lib/grpc-server.ts): grpc-js's
    // server spent 1.2–1.7× its CPU per call (bench/grpc-server.ts), most of the put gap to etcd.
    const server = new GrpcServer({ clock: realClock, maxReceiveMessageLength: this.#cfg.maxRequestBytes + grpcOverheadBytes });
    const m = this.#storeMetrics;
    this.#api = new StoreApi({
      node: this.node,
      maxRequestBytes: this.#cfg.maxRequestBytes,
      quotaBytes: this.#cfg.quotaBytes,
      version: this.#cfg.version,
      minLeaseTtl: Math.ceil((1.5 * this.#cfg.electionMs) / 1000),
      tokens: this.#tokens as TokenProvider,
      bcryptCost: this.#cfg.bcryptCost,
      ...(this.#cfg.tracer ? { tracer: this.#cfg.tracer } : {}),
      onRequest: (method, code, seconds) => {
        m.requests.inc({ method, code: grpc.status[code] ?? String(code) });
        m.requestDuration.observe({ method }, seconds);
      },
    });
    this.#api.register(server);
    registerHealth(server, () => this.health().ok);
    for (const u of this.#cfg.listenClientUrls) {
      const tlsFiles = u.protocol === 'https:' ? this.#cfg.clientTls : undefined;
      const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
      await server.listen(
        host,
        Number(u.port),
        tlsFiles ? { context: () => clientServerContext(tlsFiles), refreshMs: certRefreshMs } : undefined,
      );
    }
    this.#grpc = server;
    this.#log.info({ member: this.node.id, urls: this.#cfg.listenClientUrls.map((u) => u.href) }, 'serving client requests');
  }

  async #stopGrpc(): Promise<void> {
    const s = this.#grpc;
    if (!s) return;
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        s.forceShutdown();
        resolve();
      }, 2000);
      s.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
  }

  async #startHttp(): Promise<void> {
    for (const u of this.#cfg.listenMetricsUrls) {
      const app = endpointApp();
      metricsRoute(app, this.#metrics, () => this.#updateGauges());
      // etcd's /health (and /livez): JSON with the verdict as a string, as etcdctl and probes read it.
      const health = {
        type: 'object',
        properties: { health: { type: 'string' }, reason: { type: 'string' } },
        required: ['health', 'reason'],
      };
      for (const path of ['/health', '/livez']) {
        app.get(path, { schema: { response: { 200: health, 503: health } } }, async (_req, reply) => {
          const h = this.health();
          return reply.code(h.ok ? 200 : 503).send({ health: String(h.ok), reason: h.reason });
        });
      }
      checkRoute(app, '/readyz', () => this.ready());
      await listen(app, u.hostname, Number(u.port));
      this.#http.push(app);
    }
  }

  async #stopHttp(): Promise<void> {
    await Promise.all(this.#http.map((app) => app.close()));
  }

  /** Healthy: a leader is known and no alarm is raised (etcd's /health). */
  health(): { ok: boolean; reason: string } {
    if (!this.node || this.node.leaderId === '') return { ok: false, reason: 'RAFT NO LEADER' };
    const alarm = this.node.sm.alarms[0];
    if (alarm) return { ok: false, reason: `ALARM ${alarm.alarm}` };
    return { ok: true, reason: '' };
  }

  /** Ready: a leader is known and this member has applied to within a small lag of its commit. */
  ready(): { ok: boolean; reason: string } {
    if (!this.node || this.node.leaderId === '') return { ok: false, reason: 'no leader' };
    const lag = this.node.commitIndex - this.node.appliedIndex;
    if (lag > readyLag) return { ok: false, reason: `applied index is ${lag} entries behind the commit index` };
    return { ok: true, reason: '' };
  }

  #updateGauges(): void {
    const m = this.#storeMetrics;
    if (!this.node) return;
    m.dbSize.set(this.node.sm.mvcc.bytes);
    m.dbSizeInUse.set(this.node.sm.mvcc.bytes);
    m.keys.set(this.node.sm.mvcc.keyCount);
    m.applyLag.set(this.node.commitIndex - this.node.appliedIndex);
    m.watchers.set(this.node.watchHub.watcherCount());
    const conf = this.node.raftStatus().conf;
    m.voters.reset();
    m.voters.set({ cluster_id: this.node.clusterId }, conf.voters.length);
  }
}
