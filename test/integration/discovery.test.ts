// The operator's discovery service and the sidecar's client, together: policies and endpoints
// reach a real `Sidecar` over a real gRPC stream; changes arrive without a restart; a bad policy
// is refused by the sidecar (the last good configuration keeps serving) and counted by the
// operator. The Kubernetes side is an in-memory cache here (the e2e suite covers informers).
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, it } from 'node:test';
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { realClock } from '../../lib/clock.ts';
import { silentLogger } from '../../lib/log.ts';
import { Metrics } from '../../lib/metrics.ts';
import { SeededRandom } from '../../lib/random.ts';
import type { ResiliencePolicy } from '../../api/resiliencepolicy.ts';
import { DiscoveryServer } from '../../operator/discovery/server.ts';
import { MemCache } from '../support/mem-cache.ts';
import { resolveConfig } from '../../sidecar/config.ts';
import { Sidecar } from '../../sidecar/sidecar.ts';
import { startUpstreams } from '../support/upstreams.ts';

const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

it('policies and endpoints flow from the discovery service to a sidecar; a refused policy leaves the last good one serving', async () => {
  const ups = await startUpstreams(2);
  cleanups.push(async () => {
    for (const u of ups) await u.stop();
  });
  const policies = new MemCache<ResiliencePolicy>();
  const services = new MemCache<V1Service>();
  const slices = new MemCache<V1EndpointSlice>();
  const metrics = new Metrics({ defaultMetrics: false });
  const server = new DiscoveryServer({ policies, services, slices, clock: realClock, log: silentLogger, metrics, debounceMs: 20 });
  const port = await server.listen('127.0.0.1:0');
  cleanups.push(() => server.stop());

  const endpointSlice = (ports: number[]): V1EndpointSlice => ({
    addressType: 'IPv4',
    metadata: { name: 'orders-abc', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'orders' } },
    // The test's upstreams all listen on 127.0.0.1 at different ports: one slice per port is how
    // Kubernetes would say it, each with its own target port.
    ports: [{ name: 'http', port: ports[0]! }],
    endpoints: [{ addresses: ['127.0.0.1'], conditions: { ready: true } }],
  });
  services.set([{ metadata: { name: 'orders', namespace: 'shop' }, spec: { ports: [{ name: 'http', port: 80 }] } }]);
  slices.set([endpointSlice([ups[0]!.port])]);
  const rp = (policy: unknown): ResiliencePolicy => ({
    apiVersion: 'ballast.dev/v1alpha1',
    kind: 'ResiliencePolicy',
    metadata: { name: 'orders', namespace: 'shop', generation: 1 },
    spec: { service: { name: 'orders', port: 80 }, protocol: 'auto', localPort: 0, policy },
  });
  policies.set([rp({ retries: { maxAttempts: 2 } })]);

  const sc = new Sidecar(
    resolveConfig({ admin: '127.0.0.1:0', proxy: { listen: '127.0.0.1:0' }, discovery: { address: `127.0.0.1:${port}` } }, 'test'),
    { clock: realClock, random: new SeededRandom(3), log: silentLogger, metrics: new Metrics({ defaultMetrics: false }) },
  );
  await sc.start();
  sc.startDiscovery('shop/web-0');
  cleanups.push(() => sc.stop(100));
  const viaProxy = (host: string) =>
    new Promise<number>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: sc.port('proxy'), path: `http://${host}/x`, headers: { host } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end();
    });
  await until(() => sc.upstream('orders.shop') !== undefined, 'the discovered upstream');
  assert.equal(await viaProxy('orders.shop.svc.cluster.local'), 200);
  assert.equal(ups[0]!.seen.length, 1);

  // The endpoints move: the sidecar follows.
  slices.set([endpointSlice([ups[1]!.port])]);
  await until(() => sc.upstream('orders.shop')?.endpointList[0]?.id === ups[1]!.address, 'the new endpoint');
  assert.equal(await viaProxy('orders'), 200);
  assert.equal(ups[1]!.seen.length, 1);

  // A bad policy: the sidecar refuses it, the operator counts the refusal, traffic still flows.
  policies.set([rp({ retries: { maxAttempts: 0 } })]);
  await until(
    async () =>
      /ballast_operator_discovery_nacks_total 1/.test(
        await metrics.registry.getSingleMetricAsString('ballast_operator_discovery_nacks_total'),
      ),
    'the nack',
  );
  assert.equal(await viaProxy('orders.shop'), 200);
  assert.match(
    await metrics.registry.getSingleMetricAsString('ballast_operator_discovery_streams'),
    /ballast_operator_discovery_streams 1/,
  );
});
