/**
 * bench/node: the local cluster's real node. `ballast cluster up` to a Ready node with CoreDNS;
 * ten pods applied at once to all Ready (create → Ready, each and all); the node's idle memory
 * (RSS) and CPU over --idle seconds: containerd, the kubelet, kube-proxy, and per pod (its shim
 * and its pause container); `ballast cluster down`. Three runs by default (--runs), medians.
 *
 *   node bench/node.ts [--runs=3] [--idle=30]
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { machine, root, table, writeResult } from './lib.ts';

const arg = (name: string, def: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? def;
const runs = Number(arg('runs', '3'));
const idleSeconds = Number(arg('idle', '30'));
const bin = join(root, 'bin', 'ballast');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

const statOf = (pid: number) => {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
    return { cpu: (Number(st[11]) + Number(st[12])) / 100, rss };
  } catch {
    return { cpu: 0, rss: 0 };
  }
};
/** Processes whose command line contains `needle` (the node's shims and pause containers). */
const pidsWith = (needle: string) =>
  readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number)
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(needle);
      } catch {
        return false;
      }
    });

const results: Array<Record<string, number>> = [];
for (let run = 0; run < runs; run++) {
  const dir = mkdtempSync(join(tmpdir(), 'ballast-bench-node-'));
  const kubectl = (args: string[], input?: string) =>
    spawnSync('kubectl', [`--kubeconfig=${join(dir, 'admin.kubeconfig')}`, ...args], { encoding: 'utf8', input: input ?? '' });
  const t0 = Date.now();
  execFileSync(bin, ['cluster', 'up', `--state-dir=${dir}`, '--store=etcd', '--apiserver-port=26443'], { stdio: 'ignore' });
  const upMs = Date.now() - t0;
  try {
    const pods = Array.from(
      { length: 10 },
      (_, i) =>
        `apiVersion: v1\nkind: Pod\nmetadata: {name: p${i}}\nspec:\n  containers:\n  - name: echo\n    image: ballast-test/http-echo:dev\n    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}\n`,
    ).join('---\n');
    const t1 = Date.now();
    kubectl(['apply', '-f', '-'], pods);
    let readyMs = 0;
    for (;;) {
      const items = (
        JSON.parse(kubectl(['get', 'pods', '-o', 'json']).stdout) as {
          items: Array<{ status: { conditions?: Array<{ type: string; status: string }> } }>;
        }
      ).items;
      if (items.length === 10 && items.every((p) => p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'))) {
        readyMs = Date.now() - t1;
        break;
      }
      if (Date.now() - t1 > 120_000) throw new Error('10 pods not Ready in 2 minutes');
      await sleep(100);
    }
    // Each pod's create → Ready, from the API's own timestamps (second resolution).
    const perPod = (
      JSON.parse(kubectl(['get', 'pods', '-o', 'json']).stdout) as {
        items: Array<{
          metadata: { creationTimestamp: string };
          status: { conditions: Array<{ type: string; lastTransitionTime: string }> };
        }>;
      }
    ).items.map(
      (p) => Date.parse(p.status.conditions.find((c) => c.type === 'Ready')!.lastTransitionTime) - Date.parse(p.metadata.creationTimestamp),
    );
    const state = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as { components: Array<{ name: string; pid: number }> };
    const pid = (n: string) => state.components.find((c) => c.name === n)?.pid ?? 0;
    const shims = pidsWith('containerd-shim-runc-v2');
    const pauses = pidsWith('/pause').filter((p) => !shims.includes(p));
    const watched = { containerd: [pid('containerd')], kubelet: [pid('kubelet')], 'kube-proxy': [pid('kube-proxy')], shims, pauses };
    await sleep(5000); // settle after the burst
    const before = Object.fromEntries(Object.entries(watched).map(([k, ps]) => [k, ps.reduce((s, p) => s + statOf(p).cpu, 0)]));
    await sleep(idleSeconds * 1000);
    const row: Record<string, number> = {
      upMs,
      tenPodsReadyMs: readyMs,
      podReadyMedianMs: median(perPod),
      podReadyMaxMs: Math.max(...perPod),
    };
    for (const [k, ps] of Object.entries(watched)) {
      row[`${k} RSS MiB`] = ps.reduce((s, p) => s + statOf(p).rss, 0);
      row[`${k} CPU %`] = (100 * (ps.reduce((s, p) => s + statOf(p).cpu, 0) - (before[k] ?? 0))) / idleSeconds;
    }
    row['per pod (shim + pause) RSS MiB'] = (row['shims RSS MiB']! + row['pauses RSS MiB']!) / Math.max(1, shims.length);
    results.push(row);
    console.log(`run ${run + 1}: ${JSON.stringify(row)}`);
  } finally {
    execFileSync(bin, ['cluster', 'down', `--state-dir=${dir}`], { stdio: 'ignore' });
    rmSync(dir, { recursive: true, force: true });
  }
}
const keys = Object.keys(results[0] ?? {});
const summary = keys.map((k) => ({
  measure: k,
  median: Number(median(results.map((r) => r[k] as number)).toFixed(1)),
  min: Number(Math.min(...results.map((r) => r[k] as number)).toFixed(1)),
  max: Number(Math.max(...results.map((r) => r[k] as number)).toFixed(1)),
}));
console.log(`\n${table(summary, 'the node')}`);
console.log(`wrote ${writeResult('node', { machine: machine(), runs, idleSeconds, results, summary })}`);
