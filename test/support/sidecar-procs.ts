/** Upstream-server and `ballast sidecar` processes for the fault suite and the benchmark. */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { bin } from './store-cluster.ts';

const upstreamScript = fileURLToPath(new URL('./upstream-server.ts', import.meta.url));

/** Every process started here, killed when the test process exits (a failed test skips its own stop). */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of running) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
});

export class Proc {
  readonly p: ChildProcess;
  output = '';
  constructor(p: ChildProcess) {
    this.p = p;
    running.add(p);
    p.once('exit', () => running.delete(p));
    p.stdout?.on('data', (c: Buffer) => {
      this.output += c.toString();
    });
    p.stderr?.on('data', (c: Buffer) => {
      this.output += c.toString();
    });
  }
  get pid(): number {
    return this.p.pid as number;
  }
  async waitFor(re: RegExp, ms = 10_000): Promise<RegExpMatchArray> {
    const end = Date.now() + ms;
    for (;;) {
      const m = re.exec(this.output);
      if (m) return m;
      if (this.p.exitCode !== null || Date.now() > end) throw new Error(`waiting for ${re}: ${this.output.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (this.p.exitCode !== null || this.p.signalCode !== null) return;
    const done = new Promise((r) => this.p.once('exit', r));
    this.p.kill(signal);
    await done;
  }
}

/** Start an upstream server process; resolves with its address once it listens. */
export async function startUpstream(addr: string, mode: string): Promise<{ proc: Proc; address: string }> {
  const proc = new Proc(spawn(process.execPath, [upstreamScript, addr, mode], { stdio: ['ignore', 'pipe', 'pipe'] }));
  const m = await proc.waitFor(/listening (\S+)/);
  return { proc, address: m[1] as string };
}

/** Start `ballast sidecar` with this configuration; resolves once /ready answers. */
export async function startSidecar(
  config: Record<string, unknown>,
  adminPort: number,
  env: Record<string, string> = {},
): Promise<{ proc: Proc; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'ballast-sidecar-'));
  const file = join(dir, 'sidecar.yaml');
  writeFileSync(file, stringify({ admin: `127.0.0.1:${adminPort}`, ...config }));
  const proc = new Proc(
    spawn(bin, ['sidecar', `--config=${file}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, BALLAST_LOG_LEVEL: 'warn', ...env },
    }),
  );
  proc.p.stderr?.on('data', (c: Buffer) => process.stderr.write(c));
  const end = Date.now() + 15_000;
  for (;;) {
    try {
      const r = await fetch(`http://127.0.0.1:${adminPort}/ready`);
      if (r.status === 200) break;
    } catch {
      // not yet
    }
    if (proc.p.exitCode !== null || Date.now() > end) throw new Error(`sidecar did not become ready: ${proc.output.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { proc, dir };
}

/** Resident set size of a process, in MiB (Linux). */
export async function rssMiB(pid: number): Promise<number> {
  const { readFileSync } = await import('node:fs');
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** CPU seconds (user + system) a process has used (Linux). */
export async function cpuSeconds(pid: number): Promise<number> {
  const { readFileSync } = await import('node:fs');
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}
