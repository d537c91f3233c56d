// `ballast cluster`: the local control plane comes up (warm cache), reports its health, is a
// no-op when already up, runs controllers against the store, and down leaves no process behind.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { isRunning } from '../../cluster/control-plane.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { bin, freePort } from '../support/store-cluster.ts';

for (const store of ['ballast', 'etcd'] as const) {
  describe(`ballast cluster on ${store}`, { timeout: 180_000 }, () => {
    const stateDir = mkdtempSync(join(tmpdir(), `ballast-cluster-${store}-`));
    let port = 0;
    const cluster = (...args: string[]) => spawnSync(bin, ['cluster', ...args, `--state-dir=${stateDir}`, `--store=${store}`, `--apiserver-port=${port}`], { encoding: 'utf8', timeout: 150_000 });
    const kubectl = (...args: string[]) => spawnSync('kubectl', [`--kubeconfig=${join(stateDir, 'admin.kubeconfig')}`, ...args], { encoding: 'utf8', timeout: 30_000 });
    after(() => cluster('down'));

    it('up reaches /readyz, status says every component is healthy, up again is a no-op', async () => {
      port = await freePort();
      const up = cluster('up');
      assert.equal(up.status, 0, up.stderr + up.stdout);
      assert.match(up.stdout, /kube-apiserver ready on https:\/\/127\.0\.0\.1:\d+ after [\d.]+s/);
      let st = cluster('status');
      for (let i = 0; i < 40 && st.status !== 0; i++) {
        await new Promise((r) => setTimeout(r, 500));
        st = cluster('status');
      }
      assert.equal(st.status, 0, st.stdout);
      assert.match(st.stdout, /kube-apiserver\s+pid \d+\s+healthy/);
      assert.match(st.stdout, /kube-controller-manager\s+pid \d+\s+healthy/);
      assert.match(st.stdout, /kube-scheduler\s+pid \d+\s+healthy/);
      assert.match(cluster('up').stdout, /already running/);
      assert.match(kubectl('version').stdout, /Server Version: v1\.36\.3/);
    });

    it('controllers work against the store: a Deployment gets its ReplicaSet and Pods', async () => {
      assert.equal(kubectl('create', 'deployment', 'web', '--image=nginx', '--replicas=2').status, 0);
      let pods = '';
      for (let i = 0; i < 60 && pods.split('\n').filter(Boolean).length < 2; i++) {
        await new Promise((r) => setTimeout(r, 500));
        pods = kubectl('get', 'pods', '-l', 'app=web', '-o', 'name').stdout;
      }
      assert.equal(pods.split('\n').filter(Boolean).length, 2, 'the ReplicaSet controller created two pods');
      assert.match(kubectl('get', 'configmap', 'kube-root-ca.crt', '-o', 'name').stdout, /kube-root-ca\.crt/);
    });

    it('down stops every process it started', () => {
      const pids = (JSON.parse(readFileSync(join(stateDir, 'state.json'), 'utf8')) as { components: Array<{ pid: number }> }).components.map((c) => c.pid);
      const down = cluster('down');
      assert.equal(down.status, 0, down.stderr);
      assert.deepEqual(pids.filter(isRunning), [], 'no component is left running');
      assert.equal(cluster('status').status, 1);
    });
  });
}
