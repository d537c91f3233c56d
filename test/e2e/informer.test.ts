// lib/kube's informer and work queue against a real kube-apiserver (on a ballast store):
// list-then-watch into a cache, keys for every change, and recovery after the apiserver restarts.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CoreV1Api, KubeConfig, type V1ConfigMap } from '@kubernetes/client-node';
import { realClock } from '../../lib/clock.ts';
import { SharedInformer } from '../../lib/kube/informer.ts';
import { WorkQueue } from '../../lib/kube/workqueue.ts';
import { ApiServer } from '../support/apiserver.ts';
import { StoreCluster } from '../support/store-cluster.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(cond: () => boolean, ms = 15_000): Promise<void> {
  for (let t = 0; t < ms && !cond(); t += 100) await sleep(100);
  assert.ok(cond(), 'condition reached in time');
}

describe('lib/kube informer and work queue on a real apiserver', { timeout: 180_000 }, () => {
  let store: StoreCluster;
  let api: ApiServer;
  let informer: SharedInformer<V1ConfigMap>;
  let core: CoreV1Api;
  const seen: string[] = [];
  const queue = new WorkQueue(realClock);

  before(async () => {
    store = await StoreCluster.start(3);
    api = await ApiServer.start(store.members.map((m) => `127.0.0.1:${m.clientPort}`));
    const kc = new KubeConfig();
    kc.loadFromFile(api.kubeconfig);
    core = kc.makeApiClient(CoreV1Api);
    await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'before-start' }, data: { a: '1' } } });
    informer = new SharedInformer<V1ConfigMap>({
      kubeconfig: kc,
      path: '/api/v1/namespaces/default/configmaps',
      list: () => core.listNamespacedConfigMap({ namespace: 'default' }),
      clock: realClock,
      restartDelayMs: 200,
    });
    informer.onChange((key) => {
      seen.push(key);
      queue.add(key);
    });
    await informer.start();
  });
  after(async () => {
    queue.shutdown();
    await informer?.stop();
    await api?.stop();
    await store?.shutdown();
  });

  it('lists into the cache before it reports synced', () => {
    assert.ok(informer.synced);
    assert.equal(informer.get('default/before-start')?.data?.['a'], '1');
    assert.ok(seen.includes('default/before-start'));
  });

  it('turns adds, updates and deletes into keys, deduplicated by the queue; the cache follows', async () => {
    await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'c1' }, data: { v: '1' } } });
    await core.patchNamespacedConfigMap({ name: 'c1', namespace: 'default', body: [{ op: 'replace', path: '/data/v', value: '2' }] });
    await until(() => informer.get('default/c1')?.data?.['v'] === '2');
    const keys = new Set<string>();
    while (queue.length > 0) {
      const k = (await queue.get()) as string;
      keys.add(k);
      queue.done(k);
    }
    assert.ok(keys.has('default/c1'), 'the key was queued (once, though it changed twice)');
    await core.deleteNamespacedConfigMap({ name: 'c1', namespace: 'default' });
    await until(() => informer.get('default/c1') === undefined);
  });

  it('recovers after the apiserver restarts: changes made while it was away reach the cache', async () => {
    await api.stop();
    api = await ApiServer.restartLike(
      api,
      store.members.map((m) => `127.0.0.1:${m.clientPort}`),
    );
    await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'after-restart' }, data: { ok: 'yes' } } });
    await until(() => informer.get('default/after-restart')?.data?.['ok'] === 'yes', 60_000);
  });
});
