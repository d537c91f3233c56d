import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { ResiliencePolicy } from '../api/resiliencepolicy.ts';
import { policyStatus } from './resiliencepolicy.ts';

const rp: ResiliencePolicy = { apiVersion: 'ballast.dev/v1alpha1', kind: 'ResiliencePolicy', metadata: { name: 'echo', namespace: 'shop', generation: 2 }, spec: { service: { name: 'echo', port: 80 }, protocol: 'auto', localPort: 0 } };
const now = '2026-11-22T12:00:00.000Z';

it('status says what sidecars are sent: no Service, no such port, no ready endpoints, or how many', () => {
  assert.equal(policyStatus(rp, { policies: [rp], services: [], slices: [] }, now).conditions![0]!.reason, 'ServiceNotFound');
  const svc = { metadata: { name: 'echo', namespace: 'shop' }, spec: { ports: [{ name: 'http', port: 8080 }] } };
  assert.equal(policyStatus(rp, { policies: [rp], services: [svc], slices: [] }, now).conditions![0]!.reason, 'PortNotFound');
  svc.spec.ports[0]!.port = 80;
  assert.equal(policyStatus(rp, { policies: [rp], services: [svc], slices: [] }, now).conditions![0]!.reason, 'NoReadyEndpoints');
  const slice = { addressType: 'IPv4', metadata: { name: 'e', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'echo' } }, ports: [{ name: 'http', port: 8080 }], endpoints: [{ addresses: ['10.0.0.1'] }, { addresses: ['10.0.0.2'] }] };
  const st = policyStatus(rp, { policies: [rp], services: [svc], slices: [slice] }, now);
  assert.deepEqual({ endpoints: st.endpoints, gen: st.observedGeneration, status: st.conditions![0]!.status }, { endpoints: 2, gen: 2, status: 'True' });
});
