import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { V1Pod } from '@kubernetes/client-node';
import { injectionPatch, sidecarContainer } from './inject.ts';

const o = {
  image: 'ballast:0.2.0',
  imagePullPolicy: 'IfNotPresent',
  discoveryAddress: 'ballast-operator-discovery.ballast-system.svc:8081',
  proxyPort: 15080,
  adminPort: 15000,
};

/** Apply the subset of JSONPatch the injector uses. */
function apply(doc: unknown, ops: ReturnType<typeof injectionPatch>): unknown {
  const out = structuredClone(doc) as Record<string, unknown>;
  for (const op of ops) {
    const parts = op.path
      .split('/')
      .slice(1)
      .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
    let at: Record<string, unknown> | unknown[] = out;
    for (const p of parts.slice(0, -1)) at = (at as Record<string, unknown>)[p] as Record<string, unknown>;
    const last = parts.at(-1) as string;
    if (Array.isArray(at)) {
      if (last === '-') at.push(op.value);
      else at.splice(Number(last), 0, op.value);
    } else at[last] = op.value;
  }
  return out;
}

it('injects a native sidecar first among init containers and points every app container at its proxy', () => {
  const pod: V1Pod = {
    metadata: { name: 'web', namespace: 'shop' },
    spec: {
      initContainers: [{ name: 'migrate', image: 'm' }],
      containers: [
        { name: 'app', image: 'a' },
        { name: 'worker', image: 'w', env: [{ name: 'HTTP_PROXY', value: 'http://mine:3128' }] },
      ],
    },
  };
  const out = apply(pod, injectionPatch(pod, o)) as V1Pod;
  assert.deepEqual(
    out.spec!.initContainers!.map((c) => c.name),
    ['ballast-sidecar', 'migrate'],
  );
  const sc = out.spec!.initContainers![0]!;
  assert.equal(sc.restartPolicy, 'Always', 'a native sidecar: runs beside the app, stops after it');
  assert.ok(sc.args!.includes('--discovery-address=ballast-operator-discovery.ballast-system.svc:8081'));
  assert.equal(out.spec!.containers[0]!.env!.find((e) => e.name === 'HTTP_PROXY')!.value, 'http://127.0.0.1:15080');
  assert.equal(out.spec!.containers[1]!.env!.find((e) => e.name === 'HTTP_PROXY')!.value, 'http://mine:3128', 'a proxy the app set stays');
  assert.equal(out.metadata!.annotations!['ballast.dev/injected'], 'true');
  assert.deepEqual(injectionPatch(out, o), [], 'a second call changes nothing');
});

it('opting out, and a pod with no init containers or annotations', () => {
  assert.deepEqual(
    injectionPatch({ metadata: { annotations: { 'ballast.dev/inject': 'false' } }, spec: { containers: [{ name: 'a' }] } }, o),
    [],
  );
  const pod: V1Pod = { metadata: { name: 'p' }, spec: { containers: [{ name: 'a', image: 'a' }] } };
  const out = apply(pod, injectionPatch(pod, o)) as V1Pod;
  assert.equal(out.spec!.initContainers!.length, 1);
  assert.equal(out.metadata!.annotations!['ballast.dev/injected'], 'true');
});

it('extra sidecar environment (injection.sidecarEnv) is added, never overriding what the sidecar needs', () => {
  const c = sidecarContainer({
    ...o,
    env: [
      { name: 'OTEL_EXPORTER_OTLP_ENDPOINT', value: 'http://collector:4318' },
      { name: 'POD_NAME', value: 'spoofed' },
    ],
  });
  assert.deepEqual(
    c.env?.map((e) => e.name),
    ['POD_NAME', 'POD_NAMESPACE', 'OTEL_EXPORTER_OTLP_ENDPOINT'],
  );
  assert.equal(c.env?.find((e) => e.name === 'POD_NAME')?.valueFrom?.fieldRef?.fieldPath, 'metadata.name');
});

it("mesh: the sidecar gets its pod's projected token for the mesh audience, and the flag naming it", () => {
  const pod: V1Pod = {
    metadata: { name: 'p' },
    spec: { containers: [{ name: 'app', image: 'x' }], volumes: [{ name: 'data', emptyDir: {} }] },
  };
  const out = apply(pod, injectionPatch(pod, { ...o, mesh: true })) as V1Pod;
  const vol = out.spec?.volumes?.find((v) => v.name === 'ballast-mesh-token');
  assert.deepEqual(vol?.projected?.sources, [
    { serviceAccountToken: { audience: 'ballast.dev/mesh', expirationSeconds: 3600, path: 'token' } },
  ]);
  assert.equal(out.spec?.volumes?.[0]?.name, 'data', "the pod's own volumes stay");
  const sc = out.spec?.initContainers?.[0];
  assert.ok(sc?.args?.includes('--identity-token-file=/var/run/secrets/ballast.dev/mesh/token'));
  assert.deepEqual(sc?.volumeMounts, [{ name: 'ballast-mesh-token', mountPath: '/var/run/secrets/ballast.dev/mesh', readOnly: true }]);
  const off = apply(pod, injectionPatch(pod, o)) as V1Pod;
  assert.equal(off.spec?.volumes?.length, 1, 'no mesh: no token');
});

it("mesh with TLS discovery: the sidecar gets the trust bundle to check the operator with, and a user's env cannot replace it", () => {
  const pod: V1Pod = { metadata: { name: 'p' }, spec: { containers: [{ name: 'app', image: 'x' }] } };
  const pem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
  const env = [{ name: 'BALLAST_SIDECAR_DISCOVERY_TRUST_BUNDLE', value: 'mine' }];
  const out = apply(pod, injectionPatch(pod, { ...o, mesh: true, trustBundlePem: pem, env })) as V1Pod;
  const vars = out.spec?.initContainers?.[0]?.env?.filter((e) => e.name === 'BALLAST_SIDECAR_DISCOVERY_TRUST_BUNDLE');
  assert.deepEqual(vars, [{ name: 'BALLAST_SIDECAR_DISCOVERY_TRUST_BUNDLE', value: pem }]);
  const plain = apply(pod, injectionPatch(pod, { ...o, mesh: false, trustBundlePem: pem })) as V1Pod;
  assert.equal(
    plain.spec?.initContainers?.[0]?.env?.some((e) => e.name === 'BALLAST_SIDECAR_DISCOVERY_TRUST_BUNDLE'),
    false,
  );
});

it('interception: mesh-init first (root, NET_ADMIN and NET_RAW only), the sidecar as its own uid with capture listeners, no HTTP_PROXY', () => {
  const io = {
    ...o,
    interception: { enabled: true, excludeOutboundPorts: '5432', excludeOutboundCidrs: '', excludeInboundPorts: '' },
  };
  const pod: V1Pod = {
    metadata: { name: 'web', namespace: 'shop', annotations: { 'ballast.dev/exclude-outbound-ports': '6379, 11211' } },
    spec: { initContainers: [{ name: 'migrate', image: 'm' }], containers: [{ name: 'app', image: 'a' }] },
  };
  const out = apply(pod, injectionPatch(pod, io)) as V1Pod;
  assert.deepEqual(
    out.spec!.initContainers!.map((c) => c.name),
    ['ballast-mesh-init', 'ballast-sidecar', 'migrate'],
  );
  const init = out.spec!.initContainers![0]!;
  assert.equal(init.restartPolicy, undefined, 'an ordinary init container: runs once, before the sidecar');
  assert.deepEqual(init.securityContext?.capabilities, { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] });
  assert.equal(init.securityContext?.runAsUser, 0);
  assert.ok(init.args!.includes('--exclude-outbound-ports=5432,6379,11211'), "the operator-wide exclusion and the pod's together");
  assert.ok(init.args!.includes('--admin-port=15000'));
  const sc = out.spec!.initContainers![1]!;
  assert.equal(sc.securityContext?.runAsUser, 15532);
  assert.ok(sc.args!.includes('--capture-outbound=127.0.0.1:15001'));
  assert.ok(sc.args!.includes('--capture-inbound=0.0.0.0:15006'));
  assert.equal(out.spec!.containers[0]!.env, undefined, 'no proxy settings: the rules take the traffic');
  // The pod's annotation decides for it, either way.
  const optOut: V1Pod = { ...pod, metadata: { ...pod.metadata, annotations: { 'ballast.dev/interception': 'false' } } };
  const plain = apply(optOut, injectionPatch(optOut, io)) as V1Pod;
  assert.deepEqual(
    plain.spec!.initContainers!.map((c) => c.name),
    ['ballast-sidecar', 'migrate'],
  );
  assert.equal(plain.spec!.containers[0]!.env!.find((e) => e.name === 'HTTP_PROXY')!.value, 'http://127.0.0.1:15080');
  const optIn: V1Pod = { ...pod, metadata: { ...pod.metadata, annotations: { 'ballast.dev/interception': 'true' } } };
  assert.equal((apply(optIn, injectionPatch(optIn, o)) as V1Pod).spec!.initContainers![0]!.name, 'ballast-mesh-init');
});
