import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import type { ResiliencePolicy } from '../api/resiliencepolicy.ts';
import { buildSnapshot } from './discovery.ts';

const svc: V1Service = { metadata: { name: 'orders', namespace: 'shop' }, spec: { ports: [{ name: 'http', port: 80, targetPort: 8080 }, { name: 'admin', port: 9000 }] } };
const slice = (ready: boolean[], extra: Partial<V1EndpointSlice> = {}): V1EndpointSlice => ({
  addressType: 'IPv4',
  metadata: { name: `orders-${ready.length}`, namespace: 'shop', labels: { 'kubernetes.io/service-name': 'orders' } },
  ports: [{ name: 'http', port: 8080 }, { name: 'admin', port: 9090 }],
  endpoints: ready.map((r, i) => ({ addresses: [`10.0.0.${i + 1}`], conditions: { ready: r } })),
  ...extra,
});
const policy = (o: Partial<ResiliencePolicy['spec']> = {}): ResiliencePolicy => ({
  apiVersion: 'ballast.dev/v1alpha1', kind: 'ResiliencePolicy', metadata: { name: 'orders', namespace: 'shop' },
  spec: { service: { name: 'orders', port: 80 }, protocol: 'auto', localPort: 0, policy: { retries: { maxAttempts: 2 } }, ...o },
});

it('a policy becomes an upstream: ready endpoints at the target port, proxy host names, the policy', () => {
  const { upstreams, version } = buildSnapshot('shop', { policies: [policy()], services: [svc], slices: [slice([true, false, true])] });
  assert.equal(upstreams.length, 1);
  const u = upstreams[0]!;
  assert.equal(u.name, 'orders.shop');
  assert.deepEqual(u.endpoints, [{ address: '10.0.0.1:8080' }, { address: '10.0.0.3:8080' }], 'not-ready endpoints left out; the named port resolved');
  assert.ok(u.hosts!.includes('orders') && u.hosts!.includes('orders.shop.svc.cluster.local:80'));
  assert.deepEqual(u.policy, { retries: { maxAttempts: 2 } });
  assert.equal(u.listen, undefined);
  assert.match(version, /^[0-9a-f]{16}$/);
});

it('the version changes with the content only; other namespaces and services are not included', () => {
  const a = buildSnapshot('shop', { policies: [policy()], services: [svc], slices: [slice([true])] });
  const b = buildSnapshot('shop', { policies: [policy()], services: [svc], slices: [slice([true])] });
  const c = buildSnapshot('shop', { policies: [policy()], services: [svc], slices: [slice([true, true])] });
  assert.equal(a.version, b.version);
  assert.notEqual(a.version, c.version);
  assert.deepEqual(buildSnapshot('other', { policies: [policy()], services: [svc], slices: [slice([true])] }).upstreams, []);
  const local = buildSnapshot('shop', { policies: [policy({ localPort: 15001 })], services: [], slices: [] });
  assert.deepEqual(local.upstreams[0]!.endpoints, [], 'no Service yet: no endpoints');
  assert.equal(local.upstreams[0]!.listen, '127.0.0.1:15001');
});
