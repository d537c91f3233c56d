/**
 * A real kube-apiserver (built by cluster/go/build) for e2e tests, with an admin client
 * certificate and a kubeconfig, pointed at whatever etcd-compatible endpoints it is given.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, openSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './store-cluster.ts';

export const k8sBin = join(process.env['BALLAST_CACHE'] ?? join(homedir(), '.cache', 'ballast'), 'k8s-v1.36.3');

export class ApiServer {
  readonly dir: string;
  readonly port: number;
  readonly kubeconfig: string;
  proc: ChildProcess | undefined;

  private constructor(dir: string, port: number) {
    this.dir = dir;
    this.port = port;
    this.kubeconfig = join(dir, 'kubeconfig');
  }

  static async start(etcdServers: string[], extraArgs: string[] = []): Promise<ApiServer> {
    const a = new ApiServer(mkdtempSync(join(tmpdir(), 'ballast-apiserver-')), await freePort());
    a.#makePki();
    a.#launch(etcdServers, extraArgs);
    return a.#ready();
  }

  /** Start again with the same port, certificates and kubeconfig (an apiserver restart). */
  static async restartLike(prev: ApiServer, etcdServers: string[], extraArgs: string[] = []): Promise<ApiServer> {
    const a = new ApiServer(prev.dir, prev.port);
    a.#launch(etcdServers, extraArgs);
    return a.#ready();
  }

  #makePki(): void {
    const ssl = (args: string[]) => execFileSync('openssl', args, { cwd: this.dir, stdio: 'ignore' });
    ssl([
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      'ca.key',
      '-out',
      'ca.crt',
      '-days',
      '2',
      '-subj',
      '/CN=e2e-ca',
    ]);
    ssl([
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      'admin.key',
      '-out',
      'admin.csr',
      '-subj',
      '/CN=admin/O=system:masters',
    ]);
    ssl(['x509', '-req', '-in', 'admin.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'admin.crt', '-days', '2']);
    ssl(['genrsa', '-out', 'sa.key', '2048']);
    ssl(['rsa', '-in', 'sa.key', '-pubout', '-out', 'sa.pub']);
    writeFileSync(
      this.kubeconfig,
      [
        'apiVersion: v1',
        'kind: Config',
        `clusters: [{name: e2e, cluster: {server: "https://127.0.0.1:${this.port}", insecure-skip-tls-verify: true}}]`,
        `users: [{name: admin, user: {client-certificate: ${join(this.dir, 'admin.crt')}, client-key: ${join(this.dir, 'admin.key')}}}]`,
        'contexts: [{name: e2e, context: {cluster: e2e, user: admin}}]',
        'current-context: e2e',
        '',
      ].join('\n'),
    );
  }

  #launch(etcdServers: string[], extraArgs: string[]): void {
    const log = openSync(join(this.dir, 'apiserver.log'), 'a');
    this.proc = spawn(
      join(k8sBin, 'kube-apiserver'),
      [
        `--etcd-servers=${etcdServers.map((e) => `http://${e}`).join(',')}`,
        '--bind-address=127.0.0.1',
        `--secure-port=${this.port}`,
        `--cert-dir=${join(this.dir, 'certs')}`,
        `--client-ca-file=${join(this.dir, 'ca.crt')}`,
        '--service-account-issuer=https://kubernetes.default.svc',
        `--service-account-key-file=${join(this.dir, 'sa.pub')}`,
        `--service-account-signing-key-file=${join(this.dir, 'sa.key')}`,
        '--authorization-mode=RBAC',
        '--service-cluster-ip-range=10.96.0.0/24',
        '--advertise-address=127.0.0.1',
        ...extraArgs,
      ],
      { stdio: ['ignore', log, log] },
    );
  }

  async #ready(): Promise<ApiServer> {
    for (let i = 0; i < 120; i++) {
      if (this.kubectl(['get', '--raw', '/readyz']).stdout.trim() === 'ok') return this;
      await new Promise((r) => setTimeout(r, 500));
    }
    throw new Error(`kube-apiserver not ready; see ${join(this.dir, 'apiserver.log')}`);
  }

  kubectl(args: string[], input?: string): { status: number | null; stdout: string; stderr: string } {
    const r = spawnSync('kubectl', [`--kubeconfig=${this.kubeconfig}`, ...args], { encoding: 'utf8', input: input ?? '', timeout: 60_000 });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  async stop(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
    p.kill('SIGKILL');
    await exited;
  }
}
