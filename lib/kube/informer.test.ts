import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { it } from 'node:test';

// A program whose only work is an informer (the local volume provisioner) must not exit when its
// first list fails (RBAC not in place yet, the apiserver restarting): the restart is pending work.
// It did exit: the restart timer was unref'd, nothing else held the event loop, and the cluster's
// claims were never provisioned (found in a CI run).
it('an informer whose first list fails keeps its process alive and retries', () => {
  const script = `
    import { KubeConfig } from '@kubernetes/client-node';
    import { realClock } from ${JSON.stringify(join(import.meta.dirname, '..', 'clock.ts'))};
    import { silentLogger } from ${JSON.stringify(join(import.meta.dirname, '..', 'log.ts'))};
    import { SharedInformer } from ${JSON.stringify(join(import.meta.dirname, 'informer.ts'))};
    const kc = new KubeConfig();
    kc.loadFromOptions({ clusters: [{ name: 'c', server: 'http://127.0.0.1:1' }], users: [{ name: 'u' }], contexts: [{ name: 'x', cluster: 'c', user: 'u' }], currentContext: 'x' });
    let lists = 0;
    const informer = new SharedInformer({ kubeconfig: kc, path: '/api/v1/persistentvolumeclaims', clock: realClock, log: silentLogger, restartDelayMs: 100,
      list: async () => { lists++; if (lists >= 3) { console.log('retried ' + lists); await informer.stop(); process.exit(0); } throw new Error('forbidden'); } });
    await informer.start();
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 30_000,
    cwd: join(import.meta.dirname, '..', '..'),
  });
  assert.match(r.stdout, /retried 3/, `the process exited after ${r.stdout.trim() || 'no'} retries: ${r.stderr}`);
});
