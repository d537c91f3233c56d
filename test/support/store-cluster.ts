/**
 * Real `ballast store` processes on loopback for integration tests: start a cluster, kill -9 or
 * stop a member, restart it on the same data directory, and run Debian's etcdctl against it.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, openSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const bin = fileURLToPath(new URL('../../bin/ballast', import.meta.url));

/** A port nothing listens on right now. */
/** Ports handed out by this process (never twice). */
const handedOut = new Set<number>();
/** Fixed ports of `ballast cluster up --store ballast` (members 2 and 3), never handed out. */
const reserved = new Set([23379, 23380, 23381]);

/**
 * A free port on 127.0.0.1, chosen below the kernel's ephemeral range (32768+): a port from
 * that range (what `listen(0)` returns) can be taken by any outgoing connection's source port
 * between this check and the server binding it, which made members fail with EADDRINUSE.
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 15000 + Math.floor(Math.random() * 17000);
    if (handedOut.has(port) || reserved.has(port)) continue;
    const ok = await new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (ok) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('no free port found in 15000-31999');
}

export interface MemberSpec {
  name: string;
  /** The address the member binds and is reached at (127.0.0.1, or its namespace's address). */
  host: string;
  clientPort: number;
  peerPort: number;
  metricsPort: number;
  dataDir: string;
  /** Run the member's command through this (e.g. `ip netns exec NS`); none on loopback. */
  wrap?: (argv: string[]) => string[];
  /** Extra environment for this member only. */
  env?: Record<string, string>;
}

/** Where a member runs: loopback ports by default, or a placement (test/chaos/net.ts). */
export type Placement = (name: string, dir: string) => Promise<Omit<MemberSpec, 'name'>>;

export interface StoreClusterOptions {
  env?: Record<string, string>;
  extraArgs?: string[];
  scheme?: 'http' | 'https';
  /** The peer URLs' scheme when it differs from the client URLs' (default: `scheme`). */
  peerScheme?: 'http' | 'https';
  etcdctlArgs?: string[];
  place?: Placement;
  /** `ballast store` (default) or Debian's etcd, with the same flags: the chaos suite's anchor. */
  binary?: 'ballast' | 'etcd';
}

export class StoreCluster {
  readonly dir = mkdtempSync(join(tmpdir(), 'ballast-store-'));
  readonly members: MemberSpec[] = [];
  readonly procs = new Map<string, ChildProcess>();
  readonly token = `t-${process.pid}-${Date.now()}`;
  env: Record<string, string> = {};
  extraArgs: string[] = [];
  /** https for client and peer URLs (with TLS flags in extraArgs and etcdctlArgs). */
  scheme: 'http' | 'https' = 'http';
  peerScheme: 'http' | 'https' = 'http';
  etcdctlArgs: string[] = [];
  place: Placement | undefined;
  binary: 'ballast' | 'etcd' = 'ballast';

  static async start(n: number, o: StoreClusterOptions = {}): Promise<StoreCluster> {
    const c = new StoreCluster();
    c.env = o.env ?? {};
    c.extraArgs = o.extraArgs ?? [];
    c.scheme = o.scheme ?? 'http';
    c.peerScheme = o.peerScheme ?? c.scheme;
    c.etcdctlArgs = o.etcdctlArgs ?? [];
    c.place = o.place;
    c.binary = o.binary ?? 'ballast';
    for (let i = 1; i <= n; i++) c.members.push(await c.#spec(`m${i}`));
    for (const m of c.members) c.spawn(m, 'new');
    await c.waitHealthy();
    return c;
  }

  async #spec(name: string): Promise<MemberSpec> {
    if (this.place) return { name, ...(await this.place(name, this.dir)) };
    return {
      name,
      host: '127.0.0.1',
      clientPort: await freePort(),
      peerPort: await freePort(),
      metricsPort: await freePort(),
      dataDir: join(this.dir, name),
    };
  }

  initialCluster(members = this.members): string {
    return members.map((m) => `${m.name}=${this.peerScheme}://${m.host}:${m.peerPort}`).join(',');
  }

  endpoints(members = this.members): string {
    return members
      .filter((m) => this.procs.has(m.name))
      .map((m) => this.addr(m))
      .join(',');
  }

  /** host:port of a member's client URL. */
  addr(m: MemberSpec): string {
    return `${m.host}:${m.clientPort}`;
  }

  member(name: string): MemberSpec {
    const m = this.members.find((x) => x.name === name);
    if (!m) throw new Error(`no member ${name}`);
    return m;
  }

  spawn(m: MemberSpec, state: 'new' | 'existing', members = this.members): ChildProcess {
    const log = openSync(join(this.dir, `${m.name}.log`), 'a');
    const argv = [
      ...(this.binary === 'etcd' ? ['etcd'] : [bin, 'store']),
      `--name=${m.name}`,
      `--data-dir=${m.dataDir}`,
      `--listen-client-urls=${this.scheme}://${m.host}:${m.clientPort}`,
      `--advertise-client-urls=${this.scheme}://${m.host}:${m.clientPort}`,
      `--listen-peer-urls=${this.peerScheme}://${m.host}:${m.peerPort}`,
      `--initial-advertise-peer-urls=${this.peerScheme}://${m.host}:${m.peerPort}`,
      `--initial-cluster=${this.initialCluster(members)}`,
      `--initial-cluster-state=${state}`,
      `--initial-cluster-token=${this.token}`,
      `--listen-metrics-urls=http://${m.host}:${m.metricsPort}`,
      ...this.extraArgs,
    ];
    const [cmd, ...args] = m.wrap ? m.wrap(argv) : argv;
    const p = spawn(cmd as string, args, {
      stdio: ['ignore', log, log],
      env: { ...process.env, BALLAST_LOG_LEVEL: 'info', ...this.env, ...m.env },
    });
    this.procs.set(m.name, p);
    p.once('exit', () => {
      if (this.procs.get(m.name) === p) this.procs.delete(m.name);
    });
    return p;
  }

  /** Add a fresh member spec (not started). */
  async addSpec(name: string): Promise<MemberSpec> {
    const m = await this.#spec(name);
    this.members.push(m);
    return m;
  }

  kill9(name: string): Promise<void> {
    return this.#signal(name, 'SIGKILL');
  }

  stop(name: string): Promise<void> {
    return this.#signal(name, 'SIGTERM');
  }

  async #signal(name: string, sig: NodeJS.Signals): Promise<void> {
    const p = this.procs.get(name);
    if (!p || p.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
    p.kill(sig);
    await exited;
    this.procs.delete(name);
  }

  restart(name: string): ChildProcess {
    return this.spawn(this.member(name), 'existing');
  }

  etcdctl(args: string[], o: { endpoints?: string; input?: string } = {}): { status: number | null; stdout: string; stderr: string } {
    const r = spawnSync(
      'etcdctl',
      [`--endpoints=${o.endpoints ?? this.endpoints()}`, '--dial-timeout=3s', '--command-timeout=10s', ...this.etcdctlArgs, ...args],
      {
        encoding: 'utf8',
        input: o.input ?? '',
        env: { ...process.env, ETCDCTL_API: '3' },
        timeout: 120_000,
      },
    );
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  /** As {@link etcdctl}, without blocking the event loop (clients in the same process keep running). */
  etcdctlAsync(args: string[], o: { endpoints?: string } = {}): Promise<{ status: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const p = spawn(
        'etcdctl',
        [`--endpoints=${o.endpoints ?? this.endpoints()}`, '--dial-timeout=3s', '--command-timeout=10s', ...this.etcdctlArgs, ...args],
        {
          env: { ...process.env, ETCDCTL_API: '3' },
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const t = setTimeout(() => p.kill('SIGKILL'), 120_000);
      p.on('close', (status) => {
        clearTimeout(t);
        resolve({ status, stdout, stderr });
      });
      p.on('error', (err) => {
        clearTimeout(t);
        resolve({ status: -1, stdout, stderr: String(err) });
      });
    });
  }

  /** Poll until `etcdctl endpoint health` passes on every running member. */
  async waitHealthy(timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      const r = await this.etcdctlAsync(['endpoint', 'health']);
      if (r.status === 0) return;
      last = r.stderr + r.stdout;
      await new Promise((res) => setTimeout(res, 200));
    }
    throw new Error(`cluster not healthy after ${timeoutMs}ms: ${last}\nlogs in ${this.dir}`);
  }

  /** The name of the member that leads, per `endpoint status`. */
  leader(): string | undefined {
    return this.#leaderOf(this.etcdctl(['endpoint', 'status', '-w', 'json']));
  }

  async leaderAsync(): Promise<string | undefined> {
    return this.#leaderOf(await this.etcdctlAsync(['endpoint', 'status', '-w', 'json']));
  }

  #leaderOf(r: { status: number | null; stdout: string }): string | undefined {
    if (r.status !== 0) return undefined;
    const rows = JSON.parse(r.stdout) as Array<{
      Endpoint: string;
      Status: { header: { member_id: number | string }; leader: number | string };
    }>;
    const lead = rows.find((x) => String(x.Status.leader) === String(x.Status.header.member_id));
    if (!lead) return undefined;
    return this.members.find((m) => lead.Endpoint.endsWith(`//${this.addr(m)}`) || lead.Endpoint === this.addr(m))?.name;
  }

  /** Wait until every running member agrees on one leader; its name. */
  async waitLeader(timeoutMs = 10_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const l = this.leader();
      if (l) return l;
      await new Promise((res) => setTimeout(res, 100));
    }
    throw new Error(`no leader after ${timeoutMs}ms; logs in ${this.dir}`);
  }

  async shutdown(): Promise<void> {
    await Promise.all([...this.procs.keys()].map((name) => this.kill9(name)));
  }
}
