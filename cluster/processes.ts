/**
 * The local cluster's processes: started detached with their output in the state directory's
 * logs, recorded by pid, health-checked over HTTP(S), and stopped by pid only (SIGTERM, then
 * SIGKILL after a grace period).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Component {
  name: string;
  pid: number;
  /** How to tell it is healthy: a URL answering 200 ('' : healthy while it runs). */
  health: string;
}

/**
 * Whether a process runs. A component whose parent has exited may linger as a zombie until
 * something reaps it; a zombie does not run, though kill(pid, 0) still succeeds on it.
 */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Start a long-running component detached from this process, its output appended to logs/<name>.log. */
export function spawnLogged(stateDir: string, name: string, cmd: string, args: string[], env?: NodeJS.ProcessEnv): ChildProcess {
  const logs = join(stateDir, 'logs');
  mkdirSync(logs, { recursive: true });
  const fd = openSync(join(logs, `${name}.log`), 'a');
  const p = spawn(cmd, args, { stdio: ['ignore', fd, fd], detached: true, env: env ?? process.env });
  p.unref();
  return p;
}

/** Whether a URL answers 200 (HTTPS with the cluster's admin certificate, as the components want it). */
export function isHealthy(url: string, pki: string): boolean {
  try {
    const out = execFileSync(
      'curl',
      [
        '-sk',
        '--max-time',
        '2',
        '--cert',
        join(pki, 'admin.crt'),
        '--key',
        join(pki, 'admin.key'),
        '-o',
        '/dev/null',
        '-w',
        '%{http_code}',
        url,
      ],
      { encoding: 'utf8' },
    );
    return out.trim() === '200';
  } catch {
    return false;
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Poll until the condition holds or the time is up; returns whether it held. */
export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 250): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() >= end) return false;
    await sleep(everyMs);
  }
}

/** Stop processes by pid: SIGTERM, SIGKILL for those still running after the grace period. */
export async function stopProcesses(pids: number[], graceMs: number): Promise<void> {
  const running = pids.filter(isRunning);
  for (const pid of running) process.kill(pid, 'SIGTERM');
  await waitFor(() => !running.some(isRunning), graceMs, 100);
  for (const pid of running) if (isRunning(pid)) process.kill(pid, 'SIGKILL');
  await waitFor(() => !running.some(isRunning), 5_000, 100);
}
