import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import type { ResiliencePolicy } from '../../api/resiliencepolicy.ts';
import { buildSnapshot } from './discovery.ts';

const svc: V1Service = {
  metadata: { name: 'orders', namespace: 'shop' },
  spec: {
    ports: [
      { name: 'http', port: 80, targetPort: 8080 },
      { name: 'admin', port: 9000 },
    ],
  },
};
const slice = (ready: boolean[], extra: Partial<V1EndpointSlice> = {}): V1EndpointSlice => ({
  addressType: 'IPv4',
  metadata: { name: `orders-${ready.length}`, namespace: 'shop', labels: { 'kubernetes.io/service-name': 'orders' } },
  ports: [
    { name: 'http', port: 8080 },
    { name: 'admin', port: 9090 },
  ],
  endpoints: ready.map((r, i) => ({ addresses: [`10.0.0.${i + 1}`], conditions: { ready: r } })),
  ...extra,
});
const policy = (o: Partial<ResiliencePolicy['spec']> = {}): ResiliencePolicy => ({
  apiVersion: 'ballast.dev/v1alpha1',
  kind: 'ResiliencePolicy',
  metadata: { name: 'orders', namespace: 'shop' },
  spec: { service: { name: 'orders', port: 80 }, protocol: 'auto', localPort: 0, policy: { retries: { maxAttempts: 2 } }, ...o },
});

it('a policy becomes an upstream: ready endpoints at the target port, proxy host names, the policy', () => {
  const { upstreams, version } = buildSnapshot('shop', {}, { policies: [policy()], services: [svc], slices: [slice([true, false, true])] });
  assert.equal(upstreams.length, 1);
  const u = upstreams[0]!;
  assert.equal(u.name, 'orders.shop');
  assert.deepEqual(
    u.endpoints,
    [{ address: '10.0.0.1:8080' }, { address: '10.0.0.3:8080' }],
    'not-ready endpoints left out; the named port resolved',
  );
  assert.ok(u.hosts!.includes('orders') && u.hosts!.includes('orders.shop.svc.cluster.local:80'));
  assert.deepEqual(u.policy, { retries: { maxAttempts: 2 } });
  assert.equal(u.listen, undefined);
  assert.match(version, /^[0-9a-f]{16}$/);
});

it('the version changes with the content only; other namespaces and services are not included', () => {
  const a = buildSnapshot('shop', {}, { policies: [policy()], services: [svc], slices: [slice([true])] });
  const b = buildSnapshot('shop', {}, { policies: [policy()], services: [svc], slices: [slice([true])] });
  const c = buildSnapshot('shop', {}, { policies: [policy()], services: [svc], slices: [slice([true, true])] });
  assert.equal(a.version, b.version);
  assert.notEqual(a.version, c.version);
  assert.deepEqual(buildSnapshot('other', {}, { policies: [policy()], services: [svc], slices: [slice([true])] }).upstreams, []);
  const local = buildSnapshot('shop', {}, { policies: [policy({ localPort: 15001 })], services: [], slices: [] });
  assert.deepEqual(local.upstreams[0]!.endpoints, [], 'no Service yet: no endpoints');
  assert.equal(local.upstreams[0]!.listen, '127.0.0.1:15001');
});

it('a selector picks the pods a policy configures; pods not known yet get only policies without one', () => {
  const web = policy({ selector: { matchLabels: { app: 'web' } } });
  const view = { policies: [web], services: [svc], slices: [slice([true])] };
  assert.equal(buildSnapshot('shop', { app: 'web', tier: 'a' }, view).upstreams.length, 1);
  assert.equal(buildSnapshot('shop', { app: 'batch' }, view).upstreams.length, 0);
  assert.equal(buildSnapshot('shop', undefined, view).upstreams.length, 0, 'unknown pod: selectors do not match');
  const expr = policy({
    selector: {
      matchExpressions: [
        { key: 'tier', operator: 'In', values: ['a', 'b'] },
        { key: 'canary', operator: 'DoesNotExist' },
      ],
    },
  });
  assert.equal(buildSnapshot('shop', { tier: 'b' }, { ...view, policies: [expr] }).upstreams.length, 1);
  assert.equal(buildSnapshot('shop', { tier: 'b', canary: 'yes' }, { ...view, policies: [expr] }).upstreams.length, 0);
});

it('several upstreams and inbound listeners per policy; an upstream two policies name goes to the first by name', () => {
  const payments: V1Service = { metadata: { name: 'payments', namespace: 'shop' }, spec: { ports: [{ name: 'grpc', port: 50051 }] } };
  const many: ResiliencePolicy = {
    apiVersion: 'ballast.dev/v1alpha1',
    kind: 'ResiliencePolicy',
    metadata: { name: 'a-web', namespace: 'shop' },
    spec: {
      upstreams: [
        { service: { name: 'orders', port: 80 }, policy: { retries: { maxAttempts: 4 } } },
        { service: { name: 'payments', port: 50051 }, protocol: 'http2', localPort: 15001 },
      ],
      inbound: [{ name: 'http', port: 18080, targetPort: 8080, policy: { rateLimit: { perSecond: 100 } } }],
    },
  };
  const snap = buildSnapshot('shop', {}, { policies: [many, policy()], services: [svc, payments], slices: [slice([true])] });
  assert.deepEqual(
    snap.upstreams.map((u) => `${u.name} ${u.protocol} ${u.listen ?? '-'}`),
    ['orders.shop auto -', 'payments.shop http2 127.0.0.1:15001'],
  );
  assert.deepEqual(snap.upstreams[0]!.policy, { retries: { maxAttempts: 4 } }, 'the first policy by name wins orders');
  assert.deepEqual(snap.conflicts, [{ policy: 'orders', what: 'upstream orders.shop', winner: 'a-web' }]);
  assert.deepEqual(snap.inbound, [
    { name: 'a-web-http', listen: '0.0.0.0:18080', target: '127.0.0.1:8080', policy: { rateLimit: { perSecond: 100 } } },
  ]);
});

it("mesh: an endpoint whose pod's sidecar takes mTLS on that port carries the pod's identity; others do not", () => {
  const meshSlice = slice([true, true, true], {
    endpoints: [
      { addresses: ['10.0.0.1'], conditions: { ready: true }, targetRef: { kind: 'Pod', name: 'orders-a', namespace: 'shop' } },
      { addresses: ['10.0.0.2'], conditions: { ready: true }, targetRef: { kind: 'Pod', name: 'orders-b', namespace: 'shop' } },
      // No targetRef: matched by IP.
      { addresses: ['10.0.0.3'], conditions: { ready: true } },
    ],
  });
  const pod = (name: string, ip: string, labels: Record<string, string>, sa?: string) => ({
    metadata: { name, namespace: 'shop', labels },
    spec: { containers: [], ...(sa ? { serviceAccountName: sa } : {}) },
    status: { phase: 'Running', podIP: ip },
  });
  // The orders pods' sidecars listen on 8080 in front of the app (an inbound listener).
  const inbound: ResiliencePolicy = {
    ...policy(),
    metadata: { name: 'orders-inbound', namespace: 'shop' },
    spec: { selector: { matchLabels: { app: 'orders' } }, inbound: [{ name: 'http', port: 8080, targetPort: 8081 }] },
  };
  const view = {
    policies: [policy({ mtls: 'strict' }), inbound],
    services: [svc],
    slices: [meshSlice],
    mesh: {
      trustDomain: 'example.org',
      pods: [
        pod('orders-a', '10.0.0.1', { app: 'orders' }, 'orders'),
        pod('orders-b', '10.0.0.2', { app: 'legacy' }),
        pod('x', '10.0.0.3', { app: 'orders' }),
      ],
    },
  };
  const snap = buildSnapshot('shop', { app: 'web' }, view);
  const up = snap.upstreams.find((u) => u.name === 'orders.shop')!;
  assert.equal(up.mtls, 'strict');
  assert.deepEqual(up.endpoints, [
    { address: '10.0.0.1:8080', identity: 'spiffe://example.org/ns/shop/sa/orders' },
    { address: '10.0.0.2:8080' }, // its sidecar has no inbound listener on 8080: not meshed there
    { address: '10.0.0.3:8080', identity: 'spiffe://example.org/ns/shop/sa/default' },
  ]);
  // The admin port (9090) has no inbound listener in front of it: plaintext.
  const admin = buildSnapshot('shop', {}, { ...view, policies: [policy({ service: { name: 'orders', port: 9000 } })] });
  assert.deepEqual(admin.upstreams[0]!.endpoints, [
    { address: '10.0.0.1:9090' },
    { address: '10.0.0.2:9090' },
    { address: '10.0.0.3:9090' },
  ]);
  // Without the mesh, no identities; and the version tells the two apart.
  const plain = buildSnapshot('shop', { app: 'web' }, { ...view, mesh: undefined });
  assert.ok(plain.upstreams[0]!.endpoints.every((e) => e.identity === undefined));
  assert.notEqual(plain.version, snap.version);
});

it("an inbound listener's authorization reaches the sidecar with bare ServiceAccount names in the policy's namespace", () => {
  const p: ResiliencePolicy = {
    ...policy(),
    spec: {
      inbound: [
        {
          name: 'http',
          port: 18080,
          targetPort: 8080,
          mtls: 'strict',
          authorization: {
            default: 'deny',
            rules: [{ action: 'allow', from: { serviceAccounts: ['web', 'ops/admin'] }, pathPrefixes: [], methods: [] }],
          },
        },
        { name: 'open', port: 18081, targetPort: 8081 },
      ],
    },
  };
  const [a, b] = buildSnapshot('shop', {}, { policies: [p], services: [], slices: [] }).inbound;
  assert.equal(a?.mtls, 'strict');
  assert.deepEqual(a?.authorization, {
    default: 'deny',
    rules: [{ action: 'allow', from: { serviceAccounts: ['shop/web', 'ops/admin'] }, pathPrefixes: [], methods: [] }],
  });
  assert.equal(b?.authorization, undefined, 'none given: none sent (everyone may call)');
});

it("an upstream carries its Service's cluster IPs with the port, for intercepted connections (none when headless)", () => {
  const withIps: V1Service = { ...svc, spec: { ...svc.spec, clusterIP: '10.96.0.20', clusterIPs: ['10.96.0.20', 'fd00::20'] } };
  const u = buildSnapshot('shop', {}, { policies: [policy()], services: [withIps], slices: [slice([true])] }).upstreams[0]!;
  assert.deepEqual(u.addresses, ['10.96.0.20:80', '[fd00::20]:80']);
  const headless: V1Service = { ...svc, spec: { ...svc.spec, clusterIP: 'None', clusterIPs: ['None'] } };
  const h = buildSnapshot('shop', {}, { policies: [policy()], services: [headless], slices: [slice([true])] }).upstreams[0]!;
  assert.equal(h.addresses, undefined, "a headless Service's pods are reached at their endpoints' addresses");
});
