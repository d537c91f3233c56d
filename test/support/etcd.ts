/**
 * One etcd v3.5 member (built from its Go module by `make control-plane`, into the cache) as the
 * anchor for compatibility tests: the same client commands run against it and against
 * `ballast store`, and their answers are compared.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { binaries, cacheDir, versions } from '../../cluster/toolchain.ts';
import { freePort } from './store-cluster.ts';

export class EtcdMember {
  readonly dir: string;
  readonly endpoint: string;
  readonly #proc: ChildProcess;

  private constructor(dir: string, endpoint: string, proc: ChildProcess) {
    this.dir = dir;
    this.endpoint = endpoint;
    this.#proc = proc;
  }

  static get binary(): string {
    return binaries(cacheDir()).etcd;
  }

  static get version(): string {
    return versions.etcd;
  }

  /** Start a one-member cluster with `extraArgs` (etcd's flags) and wait until it answers. */
  static async start(extraArgs: string[] = [], scheme: 'http' | 'https' = 'http', etcdctlArgs: string[] = []): Promise<EtcdMember> {
    const bin = EtcdMember.binary;
    if (!existsSync(bin))
      throw new Error(`${bin} is missing: run \`make control-plane\` (it builds etcd ${versions.etcd} from its Go module, once)`);
    const dir = mkdtempSync(join(tmpdir(), 'ballast-etcd-anchor-'));
    const [client, peer] = [await freePort(), await freePort()];
    const cu = `${scheme}://127.0.0.1:${client}`;
    const pu = `http://127.0.0.1:${peer}`;
    const log = openSync(join(dir, 'etcd.log'), 'a');
    const proc = spawn(
      bin,
      [
        '--name=anchor',
        `--data-dir=${join(dir, 'data')}`,
        `--listen-client-urls=${cu}`,
        `--advertise-client-urls=${cu}`,
        `--listen-peer-urls=${pu}`,
        `--initial-advertise-peer-urls=${pu}`,
        `--initial-cluster=anchor=${pu}`,
        '--log-level=warn',
        ...extraArgs,
      ],
      { stdio: ['ignore', log, log] },
    );
    const m = new EtcdMember(dir, `127.0.0.1:${client}`, proc);
    for (let i = 0; i < 200; i++) {
      const r = spawnSync('etcdctl', [`--endpoints=${m.endpoint}`, ...etcdctlArgs, '--dial-timeout=1s', 'endpoint', 'health'], {
        encoding: 'utf8',
        env: { ...process.env, ETCDCTL_API: '3' },
      });
      // With auth on, health may say so; either way etcd answers.
      if (r.status === 0 || /user name is empty|permission denied/.test(r.stderr)) return m;
      if (proc.exitCode !== null) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    await m.stop();
    throw new Error(`etcd ${versions.etcd} did not start: ${readFileSync(join(dir, 'etcd.log'), 'utf8').slice(-2000)}`);
  }

  async stop(): Promise<void> {
    if (this.#proc.exitCode === null && this.#proc.signalCode === null) {
      const exited = new Promise((res) => this.#proc.once('exit', res));
      this.#proc.kill('SIGTERM');
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
