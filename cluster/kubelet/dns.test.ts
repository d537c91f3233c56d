import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { V1EndpointSlice, V1Pod } from '@kubernetes/client-node';
import { hostsFile } from './dns.ts';

const slice = (ns: string, svc: string, eps: Array<{ ip: string; ready?: boolean; hostname?: string }>): V1EndpointSlice => ({
  metadata: { namespace: ns, name: `${svc}-abc`, labels: { 'kubernetes.io/service-name': svc } },
  addressType: 'IPv4',
  endpoints: eps.map((e) => ({ addresses: [e.ip], ...(e.hostname ? { hostname: e.hostname } : {}), conditions: e.ready === undefined ? {} : { ready: e.ready } })),
});
const lookup = (hosts: string, name: string) => hosts.split('\n').filter((l) => !l.startsWith('#') && l.split(/\s+/).slice(1).includes(name)).map((l) => l.split(/\s+/)[0]);

describe('cluster DNS as hosts files', () => {
  const view = {
    apiserverIp: '10.244.0.1',
    slices: [
      slice('default', 'echo', [{ ip: '10.244.0.5' }, { ip: '10.244.0.6', ready: false }, { ip: '10.244.0.7', ready: true }]),
      slice('db', 'store', [{ ip: '10.244.0.9', hostname: 'store-0' }]),
    ],
  };
  const pod: V1Pod = { metadata: { name: 'client', namespace: 'default' }, spec: { containers: [] } };
  const hosts = hostsFile(pod, '10.244.0.3', view);

  it('a Service resolves to its ready endpoints only, by every short form in its own namespace', () => {
    for (const n of ['echo', 'echo.default', 'echo.default.svc', 'echo.default.svc.cluster.local']) assert.deepEqual(lookup(hosts, n), ['10.244.0.5', '10.244.0.7'], n);
  });
  it('another namespace\'s Service needs its namespace in the name', () => {
    assert.deepEqual(lookup(hosts, 'store'), []);
    assert.deepEqual(lookup(hosts, 'store.db'), ['10.244.0.9']);
  });
  it('a pod behind a headless Service has its own name (StatefulSet peers)', () => {
    assert.deepEqual(lookup(hosts, 'store-0.store.db.svc.cluster.local'), ['10.244.0.9']);
    assert.deepEqual(lookup(hosts, 'store-0.store.db.svc'), ['10.244.0.9']);
  });
  it('the apiserver and the pod itself resolve', () => {
    assert.deepEqual(lookup(hosts, 'kubernetes.default.svc'), ['10.244.0.1']);
    assert.deepEqual(lookup(hosts, 'client'), ['10.244.0.3']);
    assert.deepEqual(lookup(hosts, 'localhost'), ['127.0.0.1', '::1']);
  });
  it('a StatefulSet pod knows its own FQDN', () => {
    const p: V1Pod = { metadata: { name: 'store-0', namespace: 'db' }, spec: { hostname: 'store-0', subdomain: 'store', containers: [] } };
    const h = hostsFile(p, '10.244.0.9', view);
    assert.deepEqual(lookup(h, 'store-0.store.db.svc.cluster.local'), ['10.244.0.9']);
    assert.equal(h.split('\n').filter((l) => l.includes('store-0.store.db.svc.cluster.local')).length, 1, 'no duplicate line for itself');
  });
});
