/**
 * `ballast sidecar`: listeners, upstreams and the admin endpoint, and hot reload. A new
 * configuration (file change or discovery) is validated whole before anything changes; then
 * upstreams are updated in place (endpoint state kept), new listeners open, and removed ones
 * drain. Requests in flight finish on what they started with, and open connections stay open.
 */
import { watch, type FSWatcher, readFileSync, statSync } from 'node:fs';
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { basename, dirname } from 'node:path';
import type { Clock, TimerHandle } from '../lib/clock.ts';
import type { Logger } from '../lib/log.ts';
import type { Metrics } from '../lib/metrics.ts';
import type { Random } from '../lib/random.ts';
import { type InboundConfig, type ListenTls, type SidecarConfig, type UpstreamConfig, loadConfigFile, resolveConfig } from './config.ts';
import { mergeDiscovered } from './config-merge.ts';
import { meshStatus, startAdmin } from './admin.ts';
import { DiscoveryClient } from './discovery.ts';
import { RequestHandlers } from './handlers.ts';
import { catalogue } from './errors.ts';
import { SidecarMetrics } from './metrics.ts';
import { type Handler, type Listener, type ListenerMesh, type UpgradeHandler, listen, splitAddress } from './server/listener.ts';
import { FileIdentity, type MeshIdentity, WorkloadIdentity } from './identity.ts';
import { Interception, type ServiceOf } from './interception.ts';
import { RouteTable } from './routing/routes.ts';
import type { Tracing } from './tracing.ts';
import type { Telemetry } from '../lib/otel.ts';
import { eventLoopBusy } from '../lib/event-loop.ts';
import { Upstream, type UpstreamSpec } from './upstream/upstream.ts';

/** The pod's projected token, as it is now ('' when it cannot be read: the operator says so). */
function readToken(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return '';
  }
}

export interface SidecarDeps {
  clock: Clock;
  random: Random;
  log: Logger;
  metrics: Metrics;
  /**
   * The process' OpenTelemetry SDK, started from OTEL_* variables (lib/otel.ts): spans go there
   * unless the file names its own collector.
   */
  telemetry?: Telemetry;
  /** Where an intercepted connection was going (default: SO_ORIGINAL_DST); tests without iptables give their own. */
  originalDestination?: (socket: Socket) => { host: string; port: number } | undefined;
  /** Whether the sidecar's event loop is saturated (default: lib/event-loop.ts over the real loop). */
  proxyBusy?: () => boolean;
}

export class Sidecar {
  readonly #deps: SidecarDeps;
  readonly #proxyBusy: () => boolean;
  readonly #metrics: SidecarMetrics;
  readonly #handlers: RequestHandlers;
  /** What is in force: the file's configuration plus the upstreams discovery sent. */
  #config: SidecarConfig;
  /** The last good configuration file, and the last good discovered upstreams. */
  #file: SidecarConfig;
  #discovered: UpstreamConfig[] = [];
  #discoveredInbound: InboundConfig[] = [];
  #discoveredVersion = '';
  #discovery: DiscoveryClient | undefined;
  #identity: MeshIdentity | undefined;
  /** The pod's namespace (bare ServiceAccount names in authorization rules are in it). */
  #namespace = 'default';
  /** Proxy mode: host (with and without port, as configured) → upstream name; rebuilt on apply. */
  #byHost = new Map<string, string>();
  /** Upstreams with Gateway API routes → their compiled table. */
  #tables = new Map<string, RouteTable>();
  readonly #upstreams = new Map<string, Upstream>();
  /** What a listener serves (up:<name>, in:<name>, proxy) → the listener and its configured address. */
  readonly #listeners = new Map<string, { listener: Listener; addr: string }>();
  #admin: Server | undefined;
  #adminPort = 0;
  #watcher: FSWatcher | undefined;
  #poll: TimerHandle | undefined;
  #started = false;
  #lastReload: { at: string; source: string; ok: boolean; error?: string } | undefined;
  #tracing: Tracing | undefined;
  #interception: Interception | undefined;

  constructor(config: SidecarConfig, deps: SidecarDeps) {
    this.#config = config;
    this.#file = config;
    this.#deps = deps;
    this.#proxyBusy = deps.proxyBusy ?? eventLoopBusy();
    this.#metrics = new SidecarMetrics(deps.metrics);
    this.#handlers = new RequestHandlers({
      upstream: (n) => this.#upstreams.get(n),
      table: (n) => this.#tables.get(n),
      hostUpstream: (h) => this.#byHost.get(h),
      config: () => this.#config,
      namespace: () => this.#namespace,
      metrics: this.#metrics,
      log: deps.log,
      random: deps.random,
    });
  }

  get config(): SidecarConfig {
    return this.#config;
  }

  get adminPort(): number {
    return this.#adminPort;
  }

  /** The port a listener got (useful with port 0). */
  port(name: string): number | undefined {
    if (name === 'capture:outbound' || name === 'capture:inbound')
      return this.#interception?.port(name === 'capture:outbound' ? 'outbound' : 'inbound');
    return (this.#listeners.get(`up:${name}`) ?? this.#listeners.get(`in:${name}`) ?? this.#listeners.get(name))?.listener.port;
  }

  upstream(name: string): Upstream | undefined {
    return this.#upstreams.get(name);
  }

  async start(): Promise<void> {
    const t = this.#config.tracing;
    // The OpenTelemetry SDK is loaded only when traces are exported: to the file's collector
    // (a provider of the sidecar's own), else to the process' SDK when OTEL_* variables set one up.
    if (t.endpoint)
      this.#tracing = (await import('./tracing.ts')).Tracing.withCollector({
        endpoint: t.endpoint,
        sampleRatio: t.samplePercent / 100,
        serviceName: t.serviceName || 'ballast-sidecar',
      });
    else if (this.#deps.telemetry) this.#tracing = (await import('./tracing.ts')).Tracing.withTracer(this.#deps.telemetry.tracer);
    const id = this.#file.identity;
    if (id.certFile) this.#identity = new FileIdentity(id, this.#deps.clock, this.#deps.log, this.#metrics);
    await this.#startAdmin();
    await this.#apply(this.#config);
    this.#started = true;
    this.#deps.log.info(
      {
        upstreams: this.#config.upstreams.map((u) => u.name),
        inbound: this.#config.inbound.map((i) => i.name),
        admin: `${splitAddress(this.#config.admin).host}:${this.#adminPort}`,
      },
      'sidecar started',
    );
  }

  /** Apply a new configuration file (already validated); discovered upstreams stay. */
  async reload(file: SidecarConfig, source: string): Promise<void> {
    try {
      const next = mergeDiscovered(file, this.#discovered, this.#discoveredInbound);
      await this.#apply(next);
      this.#file = file;
      this.#config = next;
      this.#applied(source, source, {});
    } catch (err) {
      this.#refused(source, err as Error);
    }
  }

  /**
   * Apply upstreams and inbound listeners from discovery (raw, as the snapshot carries them):
   * validated with the file schema, merged with the file's, applied. Resolves to an error
   * message when refused, in which case nothing changed.
   */
  async applyDiscovered(raw: unknown, version: string, rawInbound: unknown = []): Promise<string | undefined> {
    let next: SidecarConfig;
    let discovered: UpstreamConfig[];
    let inbound: InboundConfig[];
    try {
      if (!Array.isArray(raw)) throw catalogue.error('SIDECAR_ERR_CONFIG_INVALID', "the snapshot's upstreams must be a list");
      if (!Array.isArray(rawInbound))
        throw catalogue.error('SIDECAR_ERR_CONFIG_INVALID', "the snapshot's inbound listeners must be a list");
      const resolved = resolveConfig(
        { admin: '127.0.0.1:0', discovery: { address: this.#file.discovery.address || 'discovery' }, upstreams: raw, inbound: rawInbound },
        `discovery version ${version}`,
      );
      discovered = resolved.upstreams;
      inbound = resolved.inbound;
      next = mergeDiscovered(this.#file, discovered, inbound);
      await this.#apply(next);
    } catch (err) {
      this.#refused('discovery', err as Error);
      return (err as Error).message;
    }
    this.#discovered = discovered;
    this.#discoveredInbound = inbound;
    this.#discoveredVersion = version;
    this.#config = next;
    this.#applied('discovery', `discovery ${version}`, {
      version,
      upstreams: discovered.map((u) => u.name),
      inbound: inbound.map((i) => i.name),
    });
    return undefined;
  }

  /** Connect to the operator's discovery service (config `discovery.address`). */
  startDiscovery(node: string): void {
    if (node.includes('/')) this.#namespace = node.slice(0, node.indexOf('/'));
    const address = this.#file.discovery.address;
    if (!address) return;
    const gauge = this.#metrics.discoveryConnected;
    gauge.set(0);
    this.#discovery = new DiscoveryClient({
      address,
      node,
      clock: this.#deps.clock,
      random: this.#deps.random,
      log: this.#deps.log,
      apply: (raw, version, inbound) => this.applyDiscovered(raw, version, inbound),
      onConnected: (c) => gauge.set(c ? 1 : 0),
      onBundle: (pem) => this.#identity?.setBundle(pem),
      onIssuer: (fp) => this.#identity?.noteIssuer(fp),
      ...(this.#file.discovery.trustBundle
        ? {
            tls: {
              bundlePem: this.#file.discovery.trustBundle,
              serverName: this.#file.discovery.serverName || splitAddress(address).host,
            },
          }
        : {}),
      ...(this.#file.identity.tokenFile ? { token: () => readToken(this.#file.identity.tokenFile) } : {}),
    });
    this.#discovery.start();
    const tokenFile = this.#file.identity.tokenFile;
    if (tokenFile) {
      const discovery = this.#discovery;
      const identity = new WorkloadIdentity({
        tokenFile,
        certify: (csr, token) => discovery.certify(csr, token),
        clock: this.#deps.clock,
        random: this.#deps.random,
        log: this.#deps.log,
        metrics: this.#metrics,
      });
      let had = false;
      identity.onChange((m) => {
        discovery.setIdentity(m.chainPem, m.keyPem);
        // The first certificate: connections made without one (plaintext) are replaced.
        if (!had) for (const up of this.#upstreams.values()) up.remesh();
        had = true;
      });
      this.#identity = identity;
      identity.start();
    }
  }

  #applied(source: string, label: string, fields: Record<string, unknown>): void {
    this.#metrics.configReloads.inc({ source, result: 'applied' });
    this.#lastReload = { at: new Date(this.#deps.clock.wallNow()).toISOString(), source: label, ok: true };
    this.#deps.log.info({ source: label, ...fields }, 'configuration applied');
  }

  #refused(source: string, err: Error): void {
    this.#metrics.configReloads.inc({ source, result: 'refused' });
    this.#lastReload = { at: new Date(this.#deps.clock.wallNow()).toISOString(), source, ok: false, error: err.message };
    this.#deps.log.error({ source, err: err.message }, 'configuration refused; the last good one stays in force');
  }

  /** Watch a config file (and the directory: a ConfigMap swaps a symlink), reloading on change. */
  watchFile(file: string, adjust?: (doc: Record<string, unknown>) => Record<string, unknown>): void {
    let last = '';
    const stamp = (): string => {
      try {
        const s = statSync(file);
        return `${s.mtimeMs}:${s.size}:${s.ino}`;
      } catch {
        return 'missing';
      }
    };
    last = stamp();
    const check = (): void => {
      const now = stamp();
      if (now === last || now === 'missing') return;
      last = now;
      let next: SidecarConfig;
      try {
        next = loadConfigFile(file, adjust);
      } catch (err) {
        return this.#refused('file', err as Error);
      }
      void this.reload(next, 'file');
    };
    try {
      this.#watcher = watch(dirname(file), (_e, name) => {
        if (name === null || name === basename(file) || name.startsWith('..')) check();
      });
    } catch {
      // No inotify: the poll below still notices.
    }
    this.#poll = this.#deps.clock.setInterval(check, 1000, { unref: true });
  }

  async #apply(c: SidecarConfig): Promise<void> {
    // Upstreams (and inbound listeners, which are upstreams with one target).
    const specs = new Map<string, UpstreamSpec>();
    for (const u of c.upstreams)
      specs.set(u.name, {
        name: u.name,
        protocol: u.protocol,
        tls: u.tls,
        mtls: u.mtls,
        endpoints: u.endpoints,
        policy: u.policy,
        routes: u.routes,
      });
    for (const ib of c.inbound)
      specs.set(`inbound:${ib.name}`, {
        name: `inbound:${ib.name}`,
        protocol: 'auto',
        tls: { enabled: false, caFile: '', serverName: '', insecureSkipVerify: false },
        endpoints: [{ address: ib.target, weight: 1 }],
        policy: ib.policy,
        routes: [],
        inbound: true,
      });
    for (const [name, spec] of specs) {
      const have = this.#upstreams.get(name);
      if (have) have.update(spec);
      else
        this.#upstreams.set(
          name,
          new Upstream(spec, {
            clock: this.#deps.clock,
            random: this.#deps.random,
            log: this.#deps.log,
            metrics: this.#metrics,
            tracing: this.#tracing,
            meshMaterial: () => this.#identity?.material,
            proxyBusy: this.#proxyBusy,
          }),
        );
    }
    // Listeners: what each serves → its address. Handlers look their upstream up per request,
    // so a listener whose address did not change is kept, with its open connections.
    const want = new Map<
      string,
      { addr: string; handler: Handler; upgrade: UpgradeHandler; tls?: ListenTls | undefined; mesh?: ListenerMesh | undefined }
    >();
    for (const u of c.upstreams)
      if (u.listen)
        want.set(`up:${u.name}`, {
          addr: u.listen,
          handler: this.#handlers.upstream(u.name),
          upgrade: this.#handlers.upgrade(() => u.name),
          tls: u.listenTls,
        });
    for (const ib of c.inbound)
      want.set(`in:${ib.name}`, {
        addr: ib.listen,
        handler: this.#handlers.inbound(ib.name, ib.mtls, ib.authorization),
        upgrade: this.#handlers.upgrade(() => `inbound:${ib.name}`),
        tls: ib.listenTls,
        mesh: ib.mtls !== 'off' && !ib.listenTls.certFile ? this.#listenerMesh(ib.name) : undefined,
      });
    if (c.proxy.listen)
      want.set('proxy', {
        addr: c.proxy.listen,
        handler: this.#handlers.proxy(),
        upgrade: this.#handlers.upgrade((req) => this.#handlers.hostOf(req).name),
      });
    // A listener is identified by its address and its TLS files: a change of either re-opens it.
    const ident = (w: { addr: string; tls?: ListenTls | undefined; mesh?: ListenerMesh | undefined }): string =>
      (w.tls?.certFile ? `${w.addr} tls:${w.tls.certFile}:${w.tls.keyFile}` : w.addr) + (w.mesh ? ' mesh' : '');
    const drain: Listener[] = [];
    for (const [key, l] of this.#listeners) {
      const w = want.get(key);
      if (!w || ident(w) !== l.addr) {
        this.#listeners.delete(key);
        drain.push(l.listener);
      }
    }
    await Promise.all(drain.map((l) => l.close(c.drainMs)));
    for (const [key, w] of want) {
      if (this.#listeners.has(key)) continue;
      const tls = w.tls?.certFile ? { cert: readFileSync(w.tls.certFile), key: readFileSync(w.tls.keyFile) } : undefined;
      const listener = await listen(w.addr, w.handler, {
        ...(tls ? { tls } : {}),
        ...(w.mesh ? { mesh: w.mesh } : {}),
        upgrade: w.upgrade,
      });
      this.#listeners.set(key, { listener, addr: ident(w) });
    }
    this.#byHost = new Map(c.upstreams.flatMap((u) => u.hosts.map((h) => [h, u.name] as const)));
    this.#tables = new Map(c.upstreams.filter((u) => u.httpRoutes.length > 0).map((u) => [u.name, new RouteTable(u.httpRoutes)]));
    if (c.capture.outbound || c.capture.inbound || this.#interception) {
      this.#interception ??= new Interception(this.#deps.log, this.#metrics, this.#deps.originalDestination);
      // Intercepted connections are served as the listeners serve them (one handler each).
      const services = new Map<string, { ident: string; make: () => ServiceOf }>();
      for (const u of c.upstreams)
        services.set(`up:${u.name}`, {
          ident: u.name,
          make: () => ({ handler: this.#handlers.upstream(u.name), options: { upgrade: this.#handlers.upgrade(() => u.name) } }),
        });
      for (const ib of c.inbound)
        services.set(`in:${ib.name}`, {
          ident: JSON.stringify([ib.mtls, ib.authorization ?? null]),
          make: () => ({
            handler: this.#handlers.inbound(ib.name, ib.mtls, ib.authorization),
            options: {
              upgrade: this.#handlers.upgrade(() => `inbound:${ib.name}`),
              ...(ib.mtls !== 'off' ? { mesh: this.#listenerMesh(ib.name) } : {}),
            },
          }),
        });
      await this.#interception.apply(c, services, c.drainMs);
    }
    for (const [name, up] of this.#upstreams) {
      if (!specs.has(name)) {
        this.#upstreams.delete(name);
        void up.close();
      }
    }
  }

  /** Mesh mTLS on an inbound listener (the sidecar's certificate, when it has one). */
  #listenerMesh(name: string): ListenerMesh {
    return {
      material: () => this.#identity?.material,
      count: (security, result, detail) => {
        this.#metrics.inboundConnections.inc({ listener: name, security, result });
        if (result !== 'accepted') this.#deps.log.warn({ listener: name, security, result, detail }, 'refused an inbound connection');
      },
    };
  }

  #meshOn(): boolean {
    return Boolean(this.#file.identity.tokenFile || this.#file.identity.certFile);
  }

  /** Point-in-time gauges, read when scraped: queues, slots in use, retry budget left. */
  #refreshGauges(): void {
    const now = this.#deps.clock.now();
    for (const up of this.#upstreams.values()) {
      this.#metrics.budget.set({ upstream: up.name }, up.budget.remaining(now));
      for (const r of [up.defaultRoute, ...up.routes]) {
        this.#metrics.queueLength.set({ upstream: up.name, route: r.name }, r.bulkhead.queued);
        this.#metrics.inflight.set({ upstream: up.name, route: r.name }, r.bulkhead.running);
      }
    }
  }

  async #startAdmin(): Promise<void> {
    const metricsHandler = this.#deps.metrics.handler();
    const mesh = (): Record<string, unknown> | undefined => (this.#meshOn() ? meshStatus(this.#identity) : undefined);
    const { server, port } = await startAdmin(this.#config.admin, {
      started: () => this.#started,
      upstreamsWithoutEndpoints: () => [...this.#upstreams.values()].filter((u) => u.endpointList.length === 0).map((u) => u.name),
      mesh,
      config: () => ({
        config: this.#config,
        lastReload: this.#lastReload ?? null,
        mesh: mesh() ?? null,
        discovery: this.#file.discovery.address
          ? { address: this.#file.discovery.address, connected: this.#discovery?.connected ?? false, version: this.#discoveredVersion }
          : null,
      }),
      endpoints: () => [...this.#upstreams.values()].map((u) => u.describe()),
      metrics: (req, res) => {
        this.#refreshGauges();
        metricsHandler(req, res);
      },
    });
    this.#admin = server;
    this.#adminPort = port;
  }

  async stop(drainMs = this.#config.drainMs): Promise<void> {
    this.#discovery?.stop();
    this.#identity?.stop();
    this.#watcher?.close();
    this.#poll?.cancel();
    this.#started = false;
    await Promise.all([...[...this.#listeners.values()].map((l) => l.listener.close(drainMs)), this.#interception?.close(drainMs)]);
    this.#listeners.clear();
    await Promise.all([...this.#upstreams.values()].map((u) => u.close()));
    await this.#tracing?.shutdown().catch(() => undefined);
    await new Promise<void>((resolve) => {
      if (!this.#admin) return resolve();
      this.#admin.closeAllConnections();
      this.#admin.close(() => resolve());
    });
  }
}
