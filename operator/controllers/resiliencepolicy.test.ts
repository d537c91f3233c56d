import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { CustomObjectsApi } from '@kubernetes/client-node';
import { VirtualClock } from '../../lib/clock.ts';
import type { Logger } from '../../lib/log.ts';
import type { ResiliencePolicy } from '../../api/resiliencepolicy.ts';
import { buildSnapshot } from '../specs/discovery.ts';
import { ResiliencePolicyStatus, policyStatus } from './resiliencepolicy.ts';

const rp: ResiliencePolicy = {
  apiVersion: 'ballast.dev/v1alpha1',
  kind: 'ResiliencePolicy',
  metadata: { name: 'echo', namespace: 'shop', generation: 2 },
  spec: { service: { name: 'echo', port: 80 }, protocol: 'auto', localPort: 0 },
};
const now = '2026-11-22T12:00:00.000Z';

it('status says what sidecars are sent: no Service, no such port, no ready endpoints, or how many', () => {
  assert.equal(policyStatus(rp, { policies: [rp], services: [], slices: [] }, now).conditions![0]!.reason, 'ServiceNotFound');
  const svc = { metadata: { name: 'echo', namespace: 'shop' }, spec: { ports: [{ name: 'http', port: 8080 }] } };
  assert.equal(policyStatus(rp, { policies: [rp], services: [svc], slices: [] }, now).conditions![0]!.reason, 'PortNotFound');
  svc.spec.ports[0]!.port = 80;
  assert.equal(policyStatus(rp, { policies: [rp], services: [svc], slices: [] }, now).conditions![0]!.reason, 'NoReadyEndpoints');
  const slice = {
    addressType: 'IPv4',
    metadata: { name: 'e', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'echo' } },
    ports: [{ name: 'http', port: 8080 }],
    endpoints: [{ addresses: ['10.0.0.1'] }, { addresses: ['10.0.0.2'] }],
  };
  const st = policyStatus(rp, { policies: [rp], services: [svc], slices: [slice] }, now);
  assert.deepEqual(
    { endpoints: st.endpoints, gen: st.observedGeneration, status: st.conditions![0]!.status },
    { endpoints: 2, gen: 2, status: 'True' },
  );
});

it('status counts the selected sidecars that run their current configuration, and names those that refused it and why', () => {
  const view = { policies: [rp], services: [], slices: [] };
  const version = buildSnapshot('shop', {}, view).version;
  const pod = (name: string, annotations: Record<string, string>, phase = 'Running', labels: Record<string, string> = {}) => ({
    metadata: { name, namespace: 'shop', annotations, labels },
    status: { phase },
  });
  const none = policyStatus(rp, view, now, []);
  assert.deepEqual({ s: none.selectedPods, a: none.acceptedPods, c: none.conditions![1]!.reason }, { s: 0, a: 0, c: 'AllAccepted' });
  const pods = [
    pod('a', { 'ballast.dev/discovery-version': version }),
    pod('b', { 'ballast.dev/discovery-version': 'old' }),
    pod('c', {
      'ballast.dev/discovery-version': 'old',
      'ballast.dev/discovery-rejected': `${version}: listen 127.0.0.1:15000: address already in use`,
    }),
    pod('d', { 'ballast.dev/discovery-rejected': 'older: something else' }),
    pod('e', {}, 'Pending'),
    { metadata: { name: 'x', namespace: 'other', annotations: {} }, status: { phase: 'Running' } },
  ];
  const st = policyStatus(rp, view, now, pods);
  assert.equal(st.selectedPods, 4, "running pods of the policy's namespace");
  assert.equal(st.acceptedPods, 1);
  assert.deepEqual(
    st.rejections,
    [{ pod: 'c', reason: 'listen 127.0.0.1:15000: address already in use' }],
    'only refusals of the current version',
  );
  assert.equal(st.conditions![1]!.type, 'Accepted');
  assert.equal(st.conditions![1]!.reason, 'Rejected');
  assert.match(
    st.conditions![1]!.message!,
    /^1 of 4 selected sidecar\(s\) refused .* c: listen 127\.0\.0\.1:15000: address already in use$/,
  );
  const fine = policyStatus(rp, view, now, [pod('a', { 'ballast.dev/discovery-version': version }), pod('b', {})]);
  assert.equal(fine.conditions![1]!.reason, 'Propagating');
  // With a selector, only the pods it selects count.
  const selective: ResiliencePolicy = { ...rp, spec: { ...rp.spec, selector: { matchLabels: { app: 'web' } } } };
  const sel = policyStatus(selective, { ...view, policies: [selective] }, now, [
    pod('w', {}, 'Running', { app: 'web' }),
    pod('o', {}, 'Running', { app: 'other' }),
  ]);
  assert.equal(sel.selectedPods, 1);
});

it('a policy naming an upstream another policy (first by name) already configures for a pod is not Ready: Conflict, saying which', () => {
  const other: ResiliencePolicy = { ...rp, metadata: { ...rp.metadata, name: 'another' } };
  const st = policyStatus(rp, { policies: [rp, other], services: [], slices: [] }, now, [
    { metadata: { name: 'p', namespace: 'shop' }, status: { phase: 'Running' } },
  ]);
  assert.equal(st.conditions![0]!.reason, 'Conflict');
  assert.match(st.conditions![0]!.message!, /upstream echo\.shop is also in ResiliencePolicy another/);
});

describe('ResiliencePolicyStatus: status through a work queue', () => {
  const policy = (name: string, uid = `uid-${name}`): ResiliencePolicy => ({ ...rp, metadata: { ...rp.metadata, name, uid } });
  const setup = (failures: number, items = [policy('a'), policy('b')]) => {
    const clock = new VirtualClock(Date.parse(now));
    const listeners: Array<(key: string) => void> = [];
    const cache = <T>(items: T[]) => ({ list: () => items, onChange: (fn: (key: string) => void) => void listeners.push(fn) });
    const writes: Array<{ name: string; at: number }> = [];
    let failing = failures;
    const custom = {
      patchNamespacedCustomObjectStatus: (r: { name: string }) => {
        if (failing-- > 0) return Promise.reject(new Error('the apiserver is unavailable'));
        writes.push({ name: r.name, at: clock.now() });
        return Promise.resolve({});
      },
    } as unknown as CustomObjectsApi;
    const log = { warn: () => undefined } as unknown as Logger;
    const status = new ResiliencePolicyStatus({
      policies: cache(items),
      services: cache([]),
      slices: cache([]),
      sidecars: cache([]),
      custom,
      clock,
      log,
      group: 'ballast.dev',
      version: 'v1alpha1',
    });
    return { clock, status, writes, changed: () => listeners.forEach((fn) => fn('shop/a')) };
  };

  it('a burst of changes is one pass: each policy written once', async () => {
    const { clock, status, writes, changed } = setup(0);
    status.leading = true;
    for (let i = 0; i < 20; i++) changed();
    await clock.advanceAsync(1000);
    assert.deepEqual(writes.map((w) => w.name).sort(), ['a', 'b']);
    changed();
    await clock.advanceAsync(1000);
    assert.equal(writes.length, 2, 'an unchanged status is not written again');
    status.stop();
  });

  it("a policy deleted and made again under the same name gets its status, though it is the same as its predecessor's", async () => {
    const items = [policy('a')];
    const { clock, status, writes, changed } = setup(0, items);
    status.leading = true;
    await clock.advanceAsync(1000);
    assert.equal(writes.length, 1);
    items.splice(0, 1); // deleted: no key left to sync, so nothing learns it went
    changed();
    await clock.advanceAsync(1000);
    items.push(policy('a', 'uid-a-again')); // made again: a new object, no status yet
    changed();
    await clock.advanceAsync(1000);
    assert.equal(writes.length, 2, 'the new object is written');
    status.stop();
  });

  it('a failed write is retried after its back-off (a success resets it), and the other policy is not held up', async () => {
    const { clock, status, writes } = setup(3);
    status.leading = true;
    await clock.advanceAsync(300);
    // The first three writes failed (a, b, then a's retry or b's): nothing written yet, back-off running.
    assert.equal(writes.length, 0);
    assert.ok(status.retries('shop/a') + status.retries('shop/b') >= 2);
    await clock.advanceAsync(5_000);
    assert.deepEqual(writes.map((w) => w.name).sort(), ['a', 'b']);
    assert.equal(status.retries('shop/a') + status.retries('shop/b'), 0, 'a success resets the back-off');
    status.stop();
  });

  it('writes nothing until this replica leads', async () => {
    const { clock, status, writes, changed } = setup(0);
    changed();
    await clock.advanceAsync(1000);
    assert.equal(writes.length, 0);
    status.leading = true;
    await clock.advanceAsync(1000);
    assert.equal(writes.length, 2);
    status.stop();
  });
});

it("a Gateway API route with timeouts sending to the policy's Service is named as overriding them; the status compares what sidecars are sent, routes included", () => {
  const svc = { metadata: { name: 'echo', namespace: 'shop' }, spec: { clusterIP: '10.96.0.5', ports: [{ name: 'http', port: 80 }] } };
  const attached = [
    {
      parent: 'shop/echo:80',
      namespace: 'shop',
      producer: true,
      route: {
        name: 'shop/r',
        created: '',
        rules: [
          { backends: [{ upstream: 'shop/echo:80', weight: 1 }], timeouts: { requestMs: 2000 } },
          { backends: [{ upstream: 'shop/echo:80', weight: 1 }] },
          { backends: [{ upstream: 'shop/echo:80', weight: 1 }], retry: { codes: [500], attempts: 2 } },
        ],
      },
    },
  ];
  const view = { policies: [rp], services: [svc], slices: [], routes: attached };
  const st = policyStatus(rp, view, now);
  const c = st.conditions!.find((x) => x.type === 'RouteOverrides')!;
  assert.equal(c.status, 'True');
  assert.match(c.message ?? '', /route shop\/r rule 0 sets timeouts\.requestMs for echo:80.*the route wins/);
  assert.match(c.message ?? '', /route shop\/r rule 2 sets retries\.retryOn and retries\.maxAttempts for echo:80/);
  assert.equal(policyStatus(rp, { ...view, routes: [] }, now).conditions!.find((x) => x.type === 'RouteOverrides')!.reason, 'NoOverrides');
  // A sidecar that applied what it is sent (with the route) counts as accepted.
  const version = buildSnapshot('shop', {}, view).version;
  assert.notEqual(version, buildSnapshot('shop', {}, { ...view, routes: [] }).version, 'routes are part of the snapshot');
  const pod = {
    metadata: { name: 'a', namespace: 'shop', annotations: { 'ballast.dev/discovery-version': version } },
    status: { phase: 'Running' },
  };
  assert.equal(policyStatus(rp, view, now, [pod]).acceptedPods, 1);
});
