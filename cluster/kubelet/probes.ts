/**
 * Container probes, as the kubelet runs them: HTTP GET (2xx/3xx passes), TCP connect, and exec
 * inside the pod's network namespace (exit 0 passes); each with initial delay, period, timeout
 * and success/failure thresholds. A startup probe holds the others back until it passes.
 */
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { connect } from 'node:net';
import type { V1Probe } from '@kubernetes/client-node';
import type { Clock, TimerHandle } from '../../lib/clock.ts';

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
  if (probe.exec?.command?.length) {
    const cmd = probe.exec.command;
    return new Promise((resolve) => {
      const p = spawn('ip', ['netns', 'exec', t.netns, ...cmd], { stdio: 'ignore', timeout: timeoutMs });
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
