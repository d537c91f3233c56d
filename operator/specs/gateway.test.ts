import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import type { GatewayRoute, ReferenceGrant } from '../../api/gateway.ts';
import { buildSnapshot, routeOnlyPolicy } from './discovery.ts';
import { routesForCaller, translateRoute } from './gateway.ts';

const svc = (
  ns: string,
  name: string,
  ports: Array<{ port: number; name?: string; appProtocol?: string }>,
  ip = '10.96.0.9',
): V1Service => ({
  metadata: { namespace: ns, name },
  spec: { clusterIP: ip, clusterIPs: [ip], ports: ports.map((p) => ({ ...p, targetPort: 8080 + (p.port % 10) })) },
});
const slice = (ns: string, name: string, ip: string, ports: number[]): V1EndpointSlice => ({
  addressType: 'IPv4',
  metadata: { namespace: ns, name: `${name}-x`, labels: { 'kubernetes.io/service-name': name } },
  ports: ports.map((p, i) => ({ name: i === 0 ? 'http' : `p${p}`, port: 8080 + (p % 10) })),
  endpoints: [{ addresses: [ip], conditions: { ready: true } }],
});
const services = [
  svc('shop', 'echo', [
    { port: 80, name: 'http' },
    { port: 9090, name: 'tcp' },
    { port: 7070, name: 'grpc', appProtocol: 'grpc' },
  ]),
  svc('shop', 'echo-v1', [{ port: 80, name: 'http' }], '10.96.0.10'),
  svc('shop', 'echo-v2', [{ port: 80, name: 'http' }], '10.96.0.11'),
  svc('other', 'db', [{ port: 80, name: 'http' }], '10.96.0.12'),
];
const route = (spec: GatewayRoute['spec'], ns = 'shop', name = 'r', kind: GatewayRoute['kind'] = 'HTTPRoute'): GatewayRoute => ({
  kind,
  metadata: { namespace: ns, name, generation: 3, creationTimestamp: '2026-12-01T00:00:00Z' as unknown as Date },
  spec,
});
const view = (grants: ReferenceGrant[] = []) => ({ routes: [], grants, services });
const now = '2026-12-03T00:00:00Z';

it('a route attached to a Service: accepted, its backends resolved, attached to the HTTP ports only when no port is named', () => {
  const t = translateRoute(
    route({
      parentRefs: [{ group: '', kind: 'Service', name: 'echo' }, { name: 'some-gateway' }],
      rules: [
        {
          matches: [{ path: { type: 'PathPrefix', value: '/v2' } }],
          backendRefs: [
            { name: 'echo-v1', port: 80, weight: 30 },
            { name: 'echo-v2', port: 80, weight: 70 },
          ],
          timeouts: { request: '2s', backendRequest: '500ms' },
          retry: { codes: [500, 503], attempts: 2, backoff: '100ms' },
        },
      ],
    }),
    view(),
    now,
  );
  assert.equal(t.status.length, 1, "a Gateway's parentRef is another controller's");
  const [accepted, resolved] = t.status[0]!.conditions;
  assert.deepEqual([accepted?.status, accepted?.reason, accepted?.observedGeneration], ['True', 'Accepted', 3]);
  assert.deepEqual([resolved?.status, resolved?.reason], ['True', 'ResolvedRefs']);
  assert.equal(t.status[0]!.controllerName, 'ballast.dev/mesh');
  assert.deepEqual(
    t.attached.map((a) => a.parent),
    ['shop/echo:80', 'shop/echo:7070'],
    'not the tcp port',
  );
  const rule = t.attached[0]!.route.rules[0]!;
  assert.deepEqual(rule.backends, [
    { upstream: 'shop/echo-v1:80', weight: 30 },
    { upstream: 'shop/echo-v2:80', weight: 70 },
  ]);
  assert.deepEqual(rule.timeouts, { requestMs: 2000, backendRequestMs: 500 });
  // HTTPRouteRetry (experimental channel) goes to the sidecars as it is, the back-off in ms.
  assert.deepEqual(rule.retry, { codes: [500, 503], attempts: 2, backoffMs: 100 });
});

it('bad input is said in the status with the standard reasons', () => {
  const missingParent = translateRoute(route({ parentRefs: [{ kind: 'Service', group: '', name: 'nope' }] }), view(), now);
  assert.equal(missingParent.status[0]!.conditions[0]!.reason, 'NoMatchingParent');
  assert.equal(missingParent.attached.length, 0);
  const badPort = translateRoute(route({ parentRefs: [{ kind: 'Service', group: '', name: 'echo', port: 81 }] }), view(), now);
  assert.match(badPort.status[0]!.conditions[0]!.message, /has no port 81/);
  const refs = translateRoute(
    route({
      parentRefs: [{ kind: 'Service', group: '', name: 'echo', port: 80 }],
      rules: [
        {
          backendRefs: [
            { name: 'gone', port: 80 },
            { name: 'db', namespace: 'other', port: 80 },
            { group: 'example.com', kind: 'Bucket', name: 'b' },
          ],
        },
      ],
    }),
    view(),
    now,
  );
  const rr = refs.status[0]!.conditions[1]!;
  assert.equal(rr.status, 'False');
  assert.equal(rr.reason, 'BackendNotFound');
  assert.match(rr.message, /gone does not exist.*no ReferenceGrant.*not a Service/);
  assert.deepEqual(
    refs.attached[0]!.route.rules[0]!.backends!.map((b) => b.upstream),
    ['', '', ''],
    'unresolved backends stay, answered 500 for their share',
  );
  const granted = translateRoute(
    route({
      parentRefs: [{ kind: 'Service', group: '', name: 'echo', port: 80 }],
      rules: [{ backendRefs: [{ name: 'db', namespace: 'other', port: 80 }] }],
    }),
    view([
      {
        metadata: { namespace: 'other', name: 'g' },
        spec: {
          from: [{ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute', namespace: 'shop' }],
          to: [{ group: '', kind: 'Service' }],
        },
      },
    ]),
    now,
  );
  assert.equal(granted.attached[0]!.route.rules[0]!.backends![0]!.upstream, 'other/db:80', 'a ReferenceGrant lets it');
  const unsupported = translateRoute(
    route({ parentRefs: [{ kind: 'Service', group: '', name: 'echo', port: 80 }], rules: [{ filters: [{ type: 'RequestMirror' }] }] }),
    view(),
    now,
  );
  assert.deepEqual([unsupported.status[0]!.conditions[0]!.reason, unsupported.attached.length], ['UnsupportedValue', 0]);
});

it('GRPCRoute methods become paths; consumer routes replace producer routes for callers in their namespace', () => {
  const g = translateRoute(
    route(
      {
        parentRefs: [{ kind: 'Service', group: '', name: 'echo', port: 7070 }],
        rules: [
          {
            matches: [{ method: { service: 'grpc.Echo', method: 'Say' } }, { method: { service: 'grpc.Echo' } }],
            backendRefs: [{ name: 'echo', port: 7070 }],
          },
        ],
      },
      'shop',
      'g',
      'GRPCRoute',
    ),
    view(),
    now,
  );
  assert.deepEqual(
    g.attached[0]!.route.rules[0]!.matches!.map((m) => m.path),
    [
      { type: 'Exact', value: '/grpc.Echo/Say' },
      { type: 'RegularExpression', value: '/grpc\\.Echo/[^/]+' },
    ],
  );
  const producer = translateRoute(
    route({ parentRefs: [{ kind: 'Service', group: '', name: 'db', namespace: 'other', port: 80 }] }, 'other', 'p'),
    view(),
    now,
  );
  const consumer = translateRoute(
    route({ parentRefs: [{ kind: 'Service', group: '', name: 'db', namespace: 'other', port: 80 }] }, 'shop', 'c'),
    view(),
    now,
  );
  // A consumer route sends to the Service it is attached to without a ReferenceGrant (its callers
  // reach it already); to another Service in that namespace it needs one.
  const sendsBack = translateRoute(
    route(
      {
        parentRefs: [{ kind: 'Service', group: '', name: 'db', namespace: 'other', port: 80 }],
        rules: [{ backendRefs: [{ name: 'db', namespace: 'other', port: 80 }] }],
      },
      'shop',
      'back',
    ),
    view(),
    now,
  );
  assert.equal(sendsBack.status[0]!.conditions[1]!.status, 'True');
  assert.equal(sendsBack.attached[0]!.route.rules[0]!.backends![0]!.upstream, 'other/db:80');
  const elsewhere = translateRoute(
    route(
      {
        parentRefs: [{ kind: 'Service', group: '', name: 'echo-v1', port: 80 }],
        rules: [{ backendRefs: [{ name: 'db', namespace: 'other', port: 80 }] }],
      },
      'shop',
      'away',
    ),
    view(),
    now,
  );
  assert.equal(elsewhere.status[0]!.conditions[1]!.reason, 'RefNotPermitted');
  const all = [...producer.attached, ...consumer.attached];
  assert.deepEqual(
    routesForCaller('shop', all)
      .get('other/db:80')!
      .map((r) => r.name),
    ['shop/c'],
  );
  assert.deepEqual(
    routesForCaller('elsewhere', all)
      .get('other/db:80')!
      .map((r) => r.name),
    ['other/p'],
  );
});

it("the caller's snapshot: the parent's upstream gets the routes, every backend an upstream with its endpoints and cluster IP", () => {
  const t = translateRoute(
    route({
      parentRefs: [{ kind: 'Service', group: '', name: 'echo', port: 80 }],
      rules: [
        {
          backendRefs: [
            { name: 'echo-v1', port: 80, weight: 1 },
            { name: 'echo-v2', port: 80, weight: 1 },
          ],
        },
      ],
    }),
    view(),
    now,
  );
  const snap = buildSnapshot(
    'shop',
    {},
    {
      policies: [],
      services,
      slices: [
        slice('shop', 'echo', '10.1.0.1', [80]),
        slice('shop', 'echo-v1', '10.1.0.2', [80]),
        slice('shop', 'echo-v2', '10.1.0.3', [80]),
      ],
      routes: t.attached,
    },
  );
  const byName = new Map(snap.upstreams.map((u) => [u.name, u]));
  const parent = byName.get('echo.shop.80')!;
  assert.deepEqual(parent.addresses, ['10.96.0.9:80']);
  assert.ok(parent.hosts!.includes('echo') && parent.hosts!.includes('echo.shop.svc.cluster.local:80'));
  const rules = parent.httpRoutes as Array<{ rules: Array<{ backends: Array<{ upstream: string }> }> }>;
  assert.deepEqual(
    rules[0]!.rules[0]!.backends.map((b) => b.upstream),
    ['echo-v1.shop.80', 'echo-v2.shop.80'],
  );
  assert.deepEqual(byName.get('echo-v2.shop.80')!.endpoints, [{ address: '10.1.0.3:8080' }]);
  // Reached only through routes (no ResiliencePolicy names them): no shedding, throttling or
  // hedging unless a policy attaches them.
  for (const name of ['echo.shop.80', 'echo-v1.shop.80', 'echo-v2.shop.80']) assert.deepEqual(byName.get(name)!.policy, routeOnlyPolicy);
});

it("a ResiliencePolicy attached to a route: that route's requests to the Service get an upstream with the policy; the Service's other traffic keeps its own", () => {
  const r = translateRoute(
    route(
      {
        parentRefs: [{ kind: 'Service', group: '', name: 'echo', port: 80 }],
        rules: [{ backendRefs: [{ name: 'echo-v1', port: 80 }] }],
      },
      'shop',
      'canary',
    ),
    view(),
    now,
  );
  const policy = (name: string, spec: Record<string, unknown>) =>
    ({ apiVersion: 'ballast.dev/v1alpha1', kind: 'ResiliencePolicy', metadata: { name, namespace: 'shop' }, spec }) as never;
  const snap = buildSnapshot(
    'shop',
    {},
    {
      policies: [
        policy('a-route', {
          service: { name: 'echo-v1', port: 80 },
          gatewayRoute: { name: 'canary' },
          policy: { retries: { maxAttempts: 5 } },
        }),
        policy('b-service', { service: { name: 'echo-v1', port: 80 }, policy: { retries: { maxAttempts: 2 } } }),
      ],
      services,
      slices: [slice('shop', 'echo', '10.1.0.1', [80]), slice('shop', 'echo-v1', '10.1.0.2', [80])],
      routes: r.attached,
    },
  );
  const byName = new Map(snap.upstreams.map((u) => [u.name, u]));
  const through = byName.get('echo-v1.shop.80.route.shop.canary')!;
  assert.deepEqual(through.policy, { retries: { maxAttempts: 5 } });
  assert.deepEqual(through.endpoints, [{ address: '10.1.0.2:8080' }]);
  assert.equal(through.hosts, undefined, 'reached only through the route');
  const rules = byName.get('echo.shop.80')!.httpRoutes as Array<{ rules: Array<{ backends: Array<{ upstream: string }> }> }>;
  assert.equal(rules[0]!.rules[0]!.backends[0]!.upstream, 'echo-v1.shop.80.route.shop.canary');
  assert.deepEqual(byName.get('echo-v1.shop')!.policy, { retries: { maxAttempts: 2 } }, "the Service's own traffic keeps its policy");
  assert.deepEqual(snap.conflicts, [], 'the route attachment and the Service policy do not conflict');
});
