/**
 * The local cluster for e2e suites: `ballast cluster up` into a fresh state directory (control
 * plane and the real node), kubectl against it, the node's containerd and CRI for what a test
 * must do below Kubernetes (tag an image, find a container's process), and `down`.
 */
import assert from 'node:assert/strict';
import { type SpawnSyncReturns, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { containerdSocket } from '../../cluster/node-config.ts';
import { runDir } from '../../cluster/node.ts';
import { binaries, cacheDir } from '../../cluster/toolchain.ts';
import { bin, freePort } from './store-cluster.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const socket = containerdSocket({ runDir } as Parameters<typeof containerdSocket>[0]);

export class LocalCluster {
  readonly stateDir: string;
  readonly kubeconfig: string;
  readonly store: 'etcd' | 'ballast';
  port = 0;

  constructor(name: string, store: 'etcd' | 'ballast' = 'etcd') {
    this.stateDir = mkdtempSync(join(tmpdir(), `ballast-${name}-`));
    this.kubeconfig = join(this.stateDir, 'admin.kubeconfig');
    this.store = store;
  }

  /** `ballast cluster <sub>` on this cluster's state directory. */
  cluster(sub: string, extra: string[] = [], env?: NodeJS.ProcessEnv): SpawnSyncReturns<string> {
    return spawnSync(
      bin,
      ['cluster', sub, `--state-dir=${this.stateDir}`, `--store=${this.store}`, `--apiserver-port=${this.port}`, ...extra],
      { encoding: 'utf8', timeout: 240_000, env: env ?? process.env },
    );
  }

  /** Bring it up (asserting success); returns how long it took. */
  async up(): Promise<number> {
    this.port = await freePort();
    const start = Date.now();
    const r = this.cluster('up');
    assert.equal(r.status, 0, `cluster up failed:\n${r.stderr}${r.stdout}`);
    return Date.now() - start;
  }

  /** Stop it and remove its state; returns `cluster down`'s result. */
  down(): SpawnSyncReturns<string> {
    const r = this.cluster('down');
    if (r.status === 0) rmSync(this.stateDir, { recursive: true, force: true });
    return r;
  }

  kubectl(args: string[], input?: string, timeout = 60_000): SpawnSyncReturns<string> {
    return spawnSync('kubectl', [`--kubeconfig=${this.kubeconfig}`, ...args], {
      encoding: 'utf8',
      input: input ?? '',
      timeout,
      maxBuffer: 64 * 1024 * 1024,
    });
  }

  /** kubectl that must succeed; its output. */
  ok(args: string[], input?: string): string {
    const r = this.kubectl(args, input);
    assert.equal(r.status, 0, `kubectl ${args.join(' ')}: ${r.stderr}${r.stdout}`);
    return r.stdout;
  }

  apply(yaml: string | object[]): string {
    return this.ok(['apply', '-f', '-'], typeof yaml === 'string' ? yaml : yaml.map((d) => JSON.stringify(d)).join('\n'));
  }

  jsonpath(what: string[], path: string): string {
    return this.kubectl(['get', ...what, '-o', `jsonpath=${path}`]).stdout.trim();
  }

  async until(cond: () => boolean, what: string, ms = 90_000): Promise<void> {
    const end = Date.now() + ms;
    while (Date.now() < end && !cond()) await sleep(250);
    assert.ok(cond(), what);
  }
}

/** ctr against the node's containerd, in the namespace the CRI uses. */
export function ctr(args: string[]): SpawnSyncReturns<string> {
  return spawnSync(binaries(cacheDir()).ctr, ['--address', socket, '--namespace', 'k8s.io', ...args], {
    encoding: 'utf8',
    timeout: 120_000,
  });
}

/** crictl against the node's containerd. */
export function crictl(args: string[]): SpawnSyncReturns<string> {
  return spawnSync(binaries(cacheDir()).crictl, ['--runtime-endpoint', `unix://${socket}`, ...args], { encoding: 'utf8', timeout: 60_000 });
}

/** The host pid of a pod's running container (through the CRI, as the kubelet sees it). */
export function containerPid(pod: string, container: string): number | undefined {
  const id = crictl(['ps', '--quiet', '--state', 'running', '--label', `io.kubernetes.pod.name=${pod}`, '--name', `^${container}$`])
    .stdout.trim()
    .split('\n')[0];
  if (!id) return undefined;
  const info = JSON.parse(crictl(['inspect', id]).stdout || '{}') as { info?: { pid?: number } };
  return info.info?.pid;
}

/**
 * Wait until the CRDs are Established. (`kubectl wait --for=condition=Established` right after
 * the CRDs are created fails when the CRD has no status yet: "status.conditions accessor error".)
 */
export async function crdsEstablished(
  kubectl: (args: string[]) => SpawnSyncReturns<string>,
  names: string[] = ['storeclusters.ballast.dev', 'resiliencepolicies.ballast.dev'],
): Promise<void> {
  const established = (n: string) =>
    kubectl(['get', 'crd', n, '-o', 'jsonpath={.status.conditions[?(@.type=="Established")].status}']).stdout.trim() === 'True';
  const end = Date.now() + 60_000;
  while (Date.now() < end && !names.every(established)) await sleep(250);
  assert.ok(names.every(established), `CRDs established: ${names.join(', ')}`);
}

/** The Gateway API's standard CRDs (`make gateway-api` fetches them into the cache). */
export function gatewayApiCrds(): string {
  const dir = process.env['BALLAST_GATEWAY_API_CRDS'] ?? join(cacheDir(), 'gateway-api-v1.6.3', 'standard');
  assert.ok(
    existsSync(join(dir, 'gateway.networking.k8s.io_httproutes.yaml')),
    `${dir}: the Gateway API CRDs are missing; run make gateway-api`,
  );
  return dir;
}
