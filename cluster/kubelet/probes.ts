/**
 * Container probes, as the kubelet runs them: HTTP GET (2xx/3xx passes), TCP connect, gRPC
 * (`grpc.health.v1.Health/Check` answers SERVING), and exec inside the pod's network namespace
 * (exit 0 passes); each with initial delay, period, timeout and success/failure thresholds. A
 * startup probe holds the others back until it passes.
 */
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { connect } from 'node:net';
import { Client, credentials, Metadata } from '@grpc/grpc-js';
import type { V1Container, V1Probe } from '@kubernetes/client-node';
import type { Clock, TimerHandle } from '../../lib/clock.ts';
import { argvOf } from './network.ts';
import type { PodRuntime, RunningContainer } from './runtime.ts';

export interface ProbeTarget {
  ip: string;
  netns: string;
  /** Named container ports, for probes that name their port. */
  ports: Record<string, number>;
}

function portOf(p: number | string | undefined, t: ProbeTarget): number {
  return typeof p === 'number' ? p : Number(p !== undefined && /^\d+$/.test(p) ? p : t.ports[p ?? ''] ?? 0);
}

/** Run one probe once; true when it passes. */
export function probeOnce(probe: V1Probe, t: ProbeTarget): Promise<boolean> {
  const timeoutMs = (probe.timeoutSeconds ?? 1) * 1000;
  if (probe.httpGet) {
    const g = probe.httpGet;
    return new Promise((resolve) => {
      const req = request({ host: t.ip, port: portOf(g.port, t), path: g.path ?? '/', timeout: timeoutMs, headers: Object.fromEntries((g.httpHeaders ?? []).map((h) => [h.name, h.value])) }, (res) => {
        res.resume();
        resolve((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 400);
      });
      req.on('timeout', () => req.destroy());
      req.on('error', () => resolve(false));
      req.end();
    });
  }
  if (probe.tcpSocket) {
    const port = portOf(probe.tcpSocket.port, t);
    return new Promise((resolve) => {
      const s = connect({ host: t.ip, port, timeout: timeoutMs });
      s.on('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.on('timeout', () => {
        s.destroy();
        resolve(false);
      });
      s.on('error', () => resolve(false));
    });
  }
  if (probe.grpc) {
    return grpcHealth(`${t.ip}:${probe.grpc.port}`, probe.grpc.service ?? '', timeoutMs);
  }
  if (probe.exec?.command?.length) {
    const cmd = probe.exec.command;
    return new Promise((resolve) => {
      const p = spawn(...argvOf(t.netns ? ['ip', 'netns', 'exec', t.netns, ...cmd] : cmd), { stdio: 'ignore', timeout: timeoutMs });
      p.on('exit', (code) => resolve(code === 0));
      p.on('error', () => resolve(false));
    });
  }
  return Promise.resolve(true);
}

/** A probe running on its schedule, tracking its verdict with the thresholds. */
export class ProbeWorker {
  readonly #probe: V1Probe;
  readonly #target: ProbeTarget;
  readonly #clock: Clock;
  readonly #onChange: (ok: boolean) => void;
  #timer: TimerHandle | undefined;
  #successes = 0;
  #failures = 0;
  #running = false;
  /** The verdict: undefined until the thresholds decide. */
  ok: boolean | undefined;

  constructor(probe: V1Probe, target: ProbeTarget, clock: Clock, onChange: (ok: boolean) => void) {
    this.#probe = probe;
    this.#target = target;
    this.#clock = clock;
    this.#onChange = onChange;
  }

  start(): void {
    const period = (this.#probe.periodSeconds ?? 10) * 1000;
    this.#timer = this.#clock.setTimeout(() => {
      void this.#tick();
      this.#timer = this.#clock.setInterval(() => void this.#tick(), period, { unref: true });
    }, (this.#probe.initialDelaySeconds ?? 0) * 1000, { unref: true });
  }

  stop(): void {
    this.#timer?.cancel();
  }

  async #tick(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    const pass = await probeOnce(this.#probe, this.#target).finally(() => (this.#running = false));
    if (pass) {
      this.#failures = 0;
      this.#successes++;
      if (this.ok !== true && this.#successes >= (this.#probe.successThreshold ?? 1)) this.#set(true);
    } else {
      this.#successes = 0;
      this.#failures++;
      if (this.ok !== false && this.#failures >= (this.#probe.failureThreshold ?? 3)) this.#set(false);
    }
  }

  #set(ok: boolean): void {
    this.ok = ok;
    this.#onChange(ok);
  }
}

/**
 * One `grpc.health.v1.Health/Check` call. The messages are tiny, so they are encoded by hand:
 * HealthCheckRequest { string service = 1 }, HealthCheckResponse { ServingStatus status = 1 },
 * where SERVING is 1.
 */
export function grpcHealth(address: string, service: string, timeoutMs: number): Promise<boolean> {
  const name = Buffer.from(service);
  const request = name.length === 0 ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x0a, name.length]), name]);
  // A private subchannel pool: grpc-js otherwise shares one connection (and its reconnect
  // back-off, which grows to minutes) between every client of an address, so a probe that
  // failed while the server was starting would keep failing long after it came up.
  const client = new Client(address, credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1, 'grpc.initial_reconnect_backoff_ms': 100 });
  return new Promise((resolve) => {
    client.makeUnaryRequest('/grpc.health.v1.Health/Check', (b: Buffer) => b, (b: Buffer) => b, request, new Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
      client.close();
      resolve(!err && res !== undefined && res.length >= 2 && res[0] === 0x08 && res[1] === 1);
    });
  });
}

/**
 * Startup, liveness and readiness probes for a started container. Until the startup probe
 * passes, the others wait; a failed liveness or startup probe calls `kill` (the restart policy
 * brings the container back); readiness decides whether the container counts as ready.
 * `changed` is called whenever `rc.started` or `rc.ready` changes.
 */
export function startProbes(rt: PodRuntime, c: V1Container, rc: RunningContainer, clock: Clock, on: { changed: () => void; kill: (why: string) => void }): void {
  const target = { ip: rt.sandbox.ip, netns: rt.sandbox.netns, ports: Object.fromEntries((c.ports ?? []).filter((p) => p.name).map((p) => [p.name as string, p.containerPort])) };
  const run = (probe: V1Probe, onResult: (ok: boolean) => void) => {
    const w = new ProbeWorker(probe, target, clock, onResult);
    rc.probes.push(w);
    w.start();
  };
  rc.started = !c.startupProbe;
  rc.ready = !c.readinessProbe;
  const others = () => {
    if (c.livenessProbe) run(c.livenessProbe, (ok) => { if (!ok) on.kill('liveness'); });
    if (c.readinessProbe) {
      run(c.readinessProbe, (ok) => {
        rc.ready = ok;
        on.changed();
      });
    }
  };
  if (!c.startupProbe) return others();
  run(c.startupProbe, (ok) => {
    if (!ok) return on.kill('startup');
    rc.started = true;
    on.changed();
    others();
  });
}
