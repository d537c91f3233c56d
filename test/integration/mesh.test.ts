// The mesh's identities and mTLS, end to end on loopback with a real kube-apiserver: the operator's
// issuer keeps its trust anchor and issuer in Secrets; sidecars prove who they are with real
// pod-bound ServiceAccount tokens (the apiserver's TokenRequest, checked with its TokenReview) and
// get certificates for their SPIFFE IDs over the discovery service; one sidecar calls the other
// over mTLS, checking the callee's identity, and the callee tells its app who called. Promises:
// the caller's identity reaches the app and cannot be forged; a strict listener refuses plaintext
// with a stable code; a wrong peer identity, an expired certificate, another trust domain, a token
// for another audience or pod, a deleted ServiceAccount and a forged CSR are refused with a clear
// code and counted; certificates renew under steady traffic with no failed request.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { AuthenticationV1Api, CoreV1Api, KubeConfig, type V1EndpointSlice, type V1Pod, type V1Service } from '@kubernetes/client-node';
import { realClock } from '../../lib/clock.ts';
import { newKeyAndCsr } from '../../lib/csr.ts';
import { silentLogger } from '../../lib/log.ts';
import { Metrics } from '../../lib/metrics.ts';
import { SeededRandom } from '../../lib/random.ts';
import type { ResiliencePolicy } from '../../api/resiliencepolicy.ts';
import { DiscoveryServer } from '../../operator/discovery/server.ts';
import { MemCache } from '../support/mem-cache.ts';
import { makeIssuer, makeTrustAnchor, signWorkload } from '../../operator/mesh/ca.ts';
import { MeshIssuer } from '../../operator/mesh/issuer.ts';
import { resolveConfig } from '../../sidecar/config.ts';
import { DiscoveryClient } from '../../sidecar/discovery.ts';
import { Sidecar } from '../../sidecar/sidecar.ts';
import { ApiServer } from '../support/apiserver.ts';
import { EtcdMember } from '../support/etcd.ts';
import { freePort } from '../support/store-cluster.ts';

async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const ttlMs = 8_000;
const rotationStepMs = 4_000;
const td = 'cluster.local';
const webId = `spiffe://${td}/ns/shop/sa/web`;
const apiId = `spiffe://${td}/ns/shop/sa/api`;
const discoveryName = 'ballast-operator-discovery.ballast-system.svc';

describe('the mesh: identities from the operator, mTLS between sidecars', { timeout: 240_000 }, () => {
  let etcd: EtcdMember;
  let api: ApiServer;
  let core: CoreV1Api;
  let issuer: MeshIssuer;
  let server: DiscoveryServer;
  let discoveryPort = 0;
  const operatorMetrics = new Metrics({ defaultMetrics: false });
  const dir = mkdtempSync(join(tmpdir(), 'ballast-mesh-'));
  const cleanups: Array<() => Promise<void> | void> = [];
  const pods = new MemCache<V1Pod>();
  const policies = new MemCache<ResiliencePolicy>();
  const services = new MemCache<V1Service>();
  const slices = new MemCache<V1EndpointSlice>();
  let app: http.Server;
  let appPort = 0;
  let inboundPort = 0;
  let localPort = 0;
  let web: Sidecar;
  let apiSc: Sidecar;
  const webMetrics = new Metrics({ defaultMetrics: false });
  const apiMetrics = new Metrics({ defaultMetrics: false });
  const tokens: Record<string, string> = {};

  const kubectl = (...args: string[]) => {
    const r = api.kubectl(args);
    assert.equal(r.status, 0, `kubectl ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const token = (sa: string, pod: string | undefined, audience = 'ballast.dev/mesh'): string =>
    kubectl(
      'create',
      'token',
      sa,
      '-n',
      'shop',
      `--audience=${audience}`,
      '--duration=1h',
      ...(pod ? ['--bound-object-kind=Pod', `--bound-object-name=${pod}`] : []),
    ).trim();
  const tokenFile = (name: string, value: string): string => {
    const f = join(dir, name);
    writeFileSync(f, value);
    return f;
  };
  const podObject = (name: string, sa: string, app: string): V1Pod => ({
    metadata: { name, namespace: 'shop', labels: { app, 'ballast.dev/sidecar': 'injected' } },
    spec: { serviceAccountName: sa, containers: [{ name: 'app', image: 'app' }] },
    status: { phase: 'Running', podIP: '127.0.0.1' },
  });
  const sidecar = async (node: string, tokenPath: string, metrics: Metrics): Promise<Sidecar> => {
    const sc = new Sidecar(
      resolveConfig(
        {
          admin: '127.0.0.1:0',
          discovery: { address: `127.0.0.1:${discoveryPort}`, trustBundle: issuer.bundlePem, serverName: discoveryName },
          identity: { tokenFile: tokenPath },
        },
        'test',
      ),
      { clock: realClock, random: new SeededRandom(7), log: silentLogger, metrics },
    );
    await sc.start();
    sc.startDiscovery(node);
    cleanups.push(() => sc.stop(100));
    return sc;
  };
  const admin = async (sc: Sidecar, path: string): Promise<Record<string, unknown>> =>
    (await (await fetch(`http://127.0.0.1:${sc.adminPort}${path}`)).json()) as Record<string, unknown>;
  const metricsText = async (sc: Sidecar): Promise<string> => (await fetch(`http://127.0.0.1:${sc.adminPort}/metrics`)).text();
  const get = (port: number, path = '/'): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> =>
    new Promise((resolve, reject) => {
      const req = http.get(
        { host: '127.0.0.1', port, path, headers: { 'x-forwarded-client-cert': 'URI=spiffe://cluster.local/ns/kube-system/sa/root' } },
        (res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
        },
      );
      req.on('error', reject);
    });

  /** The issuer as the operator keeps it (to sign test certificates the mesh trusts). */
  const issuerNow = async () => {
    const secret = await core.readNamespacedSecret({ name: 'ballast-mesh-issuer', namespace: 'ballast-system' });
    const pem = (k: string) => Buffer.from(secret.data?.[k] ?? '', 'base64').toString();
    return { certPem: pem('tls.crt'), keyPem: pem('tls.key') };
  };
  /** GET path from api's inbound listener over TLS, as `id` (a certificate `by` signs at `when`; none: no client certificate). */
  const tlsGet = async (o: { id?: string; by?: { certPem: string; keyPem: string }; when?: Date; path?: string }): Promise<string> => {
    let options: tls.ConnectionOptions = {
      host: '127.0.0.1',
      port: inboundPort,
      ca: issuer.bundlePem,
      checkServerIdentity: () => undefined,
    };
    if (o.id) {
      const { keyPem, csrPem } = await newKeyAndCsr();
      const issued = await signWorkload(o.by ?? (await issuerNow()), csrPem, o.id, o.when ?? new Date(), 60_000);
      options = { ...options, cert: issued.chainPem, key: keyPem };
    }
    return new Promise((resolve) => {
      const c = tls.connect(options, () => c.write(`GET ${o.path ?? '/'} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`));
      let got = '';
      c.on('data', (d: Buffer) => (got += d.toString()));
      c.on('error', (e) => resolve(`error: ${e.message}`));
      c.on('close', () => resolve(got || 'closed'));
    });
  };

  before(async () => {
    etcd = await EtcdMember.start();
    api = await ApiServer.start([etcd.endpoint]);
    const kc = new KubeConfig();
    kc.loadFromFile(api.kubeconfig);
    core = kc.makeApiClient(CoreV1Api);
    kubectl('create', 'namespace', 'shop');
    kubectl('create', 'namespace', 'ballast-system');
    for (const sa of ['web', 'api', 'gone']) kubectl('create', 'serviceaccount', sa, '-n', 'shop');
    for (const [pod, sa] of [
      ['web-0', 'web'],
      ['api-0', 'api'],
      ['gone-0', 'gone'],
    ] as const)
      kubectl('run', pod, '-n', 'shop', '--image=app', `--overrides={"spec":{"serviceAccountName":"${sa}"}}`, '--restart=Never');
    tokens['web'] = token('web', 'web-0');
    tokens['api'] = token('api', 'api-0');
    issuer = new MeshIssuer({
      core,
      authn: kc.makeApiClient(AuthenticationV1Api),
      namespace: 'ballast-system',
      trustDomain: td,
      anchorSecret: 'ballast-mesh-trust-anchor',
      issuerSecret: 'ballast-mesh-issuer',
      certificateTtlMs: ttlMs,
      rotationStepMs,
      kubeconfig: kc,
      clock: realClock,
      log: silentLogger,
      metrics: operatorMetrics,
    });
    await issuer.start();
    cleanups.push(() => issuer.stop());
    server = new DiscoveryServer({
      policies,
      services,
      slices,
      sidecars: pods,
      mesh: issuer,
      tlsNames: [discoveryName],
      clock: realClock,
      log: silentLogger,
      metrics: operatorMetrics,
      debounceMs: 20,
    });
    discoveryPort = await server.listen('127.0.0.1:0');
    cleanups.push(() => server?.stop());
    // The api pod's app: answers with who its sidecar says called.
    app = http.createServer((req, res) =>
      res.end(JSON.stringify({ xfcc: req.headers['x-forwarded-client-cert'] ?? null, proto: req.httpVersion })),
    );
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    cleanups.push(() => void app.close());
    appPort = (app.address() as { port: number }).port;
    [inboundPort, localPort] = [await freePort(), await freePort()];
    pods.set([podObject('web-0', 'web', 'web'), podObject('api-0', 'api', 'api')]);
    services.set([{ metadata: { name: 'api', namespace: 'shop' }, spec: { ports: [{ name: 'http', port: 80 }] } }]);
    slices.set([
      {
        addressType: 'IPv4',
        metadata: { name: 'api-x', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'api' } },
        ports: [{ name: 'http', port: inboundPort }],
        endpoints: [
          { addresses: ['127.0.0.1'], conditions: { ready: true }, targetRef: { kind: 'Pod', name: 'api-0', namespace: 'shop' } },
        ],
      },
    ]);
    const rp = (name: string, spec: ResiliencePolicy['spec']): ResiliencePolicy => ({
      apiVersion: 'ballast.dev/v1alpha1',
      kind: 'ResiliencePolicy',
      metadata: { name, namespace: 'shop', generation: 1 },
      spec,
    });
    policies.set([
      rp('api-inbound', {
        selector: { matchLabels: { app: 'api' } },
        inbound: [
          {
            name: 'http',
            port: inboundPort,
            targetPort: appPort,
            mtls: 'strict',
            // web may call anything but /admin; nobody else may call.
            authorization: {
              default: 'deny',
              rules: [
                { action: 'deny', pathPrefixes: ['/admin'], methods: [] },
                { action: 'allow', from: { serviceAccounts: ['web'] }, pathPrefixes: [], methods: [] },
              ],
            },
          },
        ],
      }),
      rp('web', {
        selector: { matchLabels: { app: 'web' } },
        service: { name: 'api', port: 80 },
        localPort,
        policy: { retries: { maxAttempts: 1 } },
      }),
    ]);
    web = await sidecar('shop/web-0', tokenFile('web.token', tokens['web']), webMetrics);
    apiSc = await sidecar('shop/api-0', tokenFile('api.token', tokens['api']), apiMetrics);
  });

  after(async () => {
    for (const c of cleanups.reverse()) await c();
    await api?.stop();
    await etcd?.stop();
  });

  it('each sidecar proves its pod with its token and gets a certificate for its SPIFFE ID; the anchor and issuer live in Secrets', async () => {
    for (const [sc, id] of [
      [web, webId],
      [apiSc, apiId],
    ] as const) {
      await until(async () => ((await admin(sc, '/ready'))['mesh'] as { state: string }).state === 'certified', `${id} certified`);
      const mesh = (await admin(sc, '/ready'))['mesh'] as { spiffeId: string; notAfter: string; trustAnchors: number };
      assert.equal(mesh.spiffeId, id);
      assert.equal(mesh.trustAnchors, 1);
      assert.ok(Date.parse(mesh.notAfter) - Date.now() <= ttlMs, 'the configured lifetime');
      assert.doesNotMatch(JSON.stringify(await admin(sc, '/config')), /PRIVATE KEY/, '/config never shows the key');
    }
    const secrets = kubectl('get', 'secrets', '-n', 'ballast-system', '-o', 'jsonpath={.items[*].metadata.name}').split(' ').sort();
    assert.deepEqual(secrets, ['ballast-mesh-issuer', 'ballast-mesh-trust-anchor']);
    assert.match(await operatorMetrics.registry.metrics(), /ballast_operator_mesh_certificate_expiry_timestamp_seconds\{which="issuer"/);
  });

  it("web calls api over mTLS (HTTP/1.1 and HTTP/2): api's sidecar checks web's identity and tells the app; a forged header is dropped", async () => {
    await until(() => web.port('api.shop') !== undefined && apiSc.port('api-inbound-http') !== undefined, 'both listeners');
    await until(async () => (await get(localPort)).status === 200, 'a first answer through the mesh');
    const r = await get(localPort);
    assert.equal(r.status, 200, r.body);
    assert.equal((JSON.parse(r.body) as { xfcc: string }).xfcc, `URI=${webId}`, "the caller's proven identity, not the header it sent");
    // HTTP/2 (h2c to the local listener; ALPN h2 between the sidecars).
    const s = http2.connect(`http://127.0.0.1:${localPort}`);
    const body = await new Promise<string>((resolve, reject) => {
      const req = s.request({ ':path': '/h2' });
      let b = '';
      req.on('data', (d: Buffer) => (b += d.toString()));
      req.on('end', () => resolve(b));
      req.on('error', reject);
    });
    s.close();
    assert.equal((JSON.parse(body) as { xfcc: string }).xfcc, `URI=${webId}`);
    const m = await metricsText(apiSc);
    assert.match(m, /ballast_sidecar_inbound_connections_total\{listener="api-inbound-http",security="mtls",result="accepted"\} [1-9]/);
    const eps = (await admin(web, '/endpoints')) as unknown as Array<{
      name: string;
      endpoints: Array<{ identity?: string; mtls?: boolean }>;
    }>;
    assert.deepEqual(
      eps.find((u) => u.name === 'api.shop')?.endpoints.map((e) => [e.identity, e.mtls]),
      [[apiId, true]],
    );
  });

  it('a strict inbound listener answers a plaintext caller 403 SIDECAR_ERR_MTLS_REQUIRED, and counts it', async () => {
    const r = await get(inboundPort);
    assert.equal(r.status, 403);
    assert.equal(r.headers['x-ballast-error'], 'SIDECAR_ERR_MTLS_REQUIRED');
    assert.match(r.body, /mtls: strict/);
    assert.match(
      await metricsText(apiSc),
      /ballast_sidecar_inbound_connections_total\{listener="api-inbound-http",security="plaintext",result="refused-strict"\} 1/,
    );
  });

  it('refused at the handshake: an expired certificate, a certificate of another trust domain, one from another anchor, none at all', async () => {
    const attempt = (id: string | undefined, when: Date, by?: { certPem: string; keyPem: string }) =>
      tlsGet({ ...(id ? { id } : {}), when, ...(by ? { by } : {}) });
    const day = 86_400_000;
    assert.doesNotMatch(await attempt(webId, new Date(Date.now() - 2 * day)), /200 OK/, 'expired');
    assert.doesNotMatch(await attempt(`spiffe://evil.example/ns/shop/sa/web`, new Date()), /200 OK/, 'another trust domain');
    assert.doesNotMatch(await attempt(undefined, new Date()), /200 OK/, 'no client certificate');
    const otherAnchor = await makeTrustAnchor(td, new Date());
    const otherIssuer = await makeIssuer(otherAnchor, td, new Date());
    assert.doesNotMatch(await attempt(webId, new Date(), otherIssuer), /200 OK/, 'another trust anchor, the same trust domain');
    assert.match(await attempt(webId, new Date()), /200 OK/, 'a good one passes (the same path)');
    const m = await metricsText(apiSc);
    assert.match(m, /security="mtls",result="handshake"\} [2-9]/, 'the expired one and the unknown anchor');
    assert.match(m, /security="mtls",result="trust-domain"\} 1/);
    assert.match(m, /security="mtls",result="no-client-certificate"\} 1|security="mtls",result="handshake"\} [2-9]/);
  });

  it('authorization: web may call what its rule allows; /admin is denied to it and everything to another identity, with the caller named, counted', async () => {
    const admin403 = await get(localPort, '/admin/users');
    assert.equal(admin403.status, 403, admin403.body);
    assert.equal(admin403.headers['x-ballast-error'], 'SIDECAR_ERR_FORBIDDEN');
    assert.match(
      admin403.body,
      /spiffe:\/\/cluster\.local\/ns\/shop\/sa\/web may not GET \/admin\/users on inbound listener api-inbound-http \(rule 0 denies it\)/,
    );
    // Another workload of the mesh (a certificate the issuer signed for sa/other): no rule allows it.
    const answer = await tlsGet({ id: `spiffe://${td}/ns/shop/sa/other`, path: '/api' });
    assert.match(answer, /^HTTP\/1\.1 403/);
    assert.match(answer, /x-ballast-error: SIDECAR_ERR_FORBIDDEN/);
    assert.match(answer, /sa\/other may not GET \/api on inbound listener api-inbound-http \(no rule allows it\)/);
    const m = await metricsText(apiSc);
    assert.match(
      m,
      /ballast_sidecar_inbound_authorization_total\{listener="api-inbound-http",result="denied",caller="spiffe:\/\/cluster\.local\/ns\/shop\/sa\/other"\} 1/,
    );
    assert.match(
      m,
      /ballast_sidecar_inbound_authorization_total\{listener="api-inbound-http",result="denied",caller="spiffe:\/\/cluster\.local\/ns\/shop\/sa\/web"\} 1/,
    );
    assert.match(
      m,
      /ballast_sidecar_inbound_authorization_total\{listener="api-inbound-http",result="allowed",caller="spiffe:\/\/cluster\.local\/ns\/shop\/sa\/web"\} [1-9]/,
    );
  });

  it("the caller checks the callee's identity: an endpoint presenting another identity than its pod's is not called", async () => {
    // The operator now believes api-0 runs as ServiceAccount "payments": api's sidecar still presents sa/api.
    pods.set([podObject('web-0', 'web', 'web'), { ...podObject('api-0', 'payments', 'api') }]);
    await until(
      () => web.upstream('api.shop')?.endpointList[0]?.identity === `spiffe://${td}/ns/shop/sa/payments`,
      'the new expected identity',
    );
    const r = await get(localPort);
    assert.equal(r.status, 503);
    assert.equal(r.headers['x-ballast-error'], 'SIDECAR_ERR_UPSTREAM_UNREACHABLE');
    assert.match(
      r.body,
      /presented spiffe:\/\/cluster\.local\/ns\/shop\/sa\/api, not the expected spiffe:\/\/cluster\.local\/ns\/shop\/sa\/payments/,
    );
    pods.set([podObject('web-0', 'web', 'web'), podObject('api-0', 'api', 'api')]);
    await until(() => web.upstream('api.shop')?.endpointList[0]?.identity === apiId, 'the identity back');
  });

  it('certificate requests are refused with a code saying why: wrong audience, not a pod, another pod, a deleted ServiceAccount, a forged CSR', async () => {
    const client = new DiscoveryClient({
      address: `127.0.0.1:${discoveryPort}`,
      tls: { bundlePem: issuer.bundlePem, serverName: discoveryName },
      node: 'shop/web-0',
      clock: realClock,
      random: new SeededRandom(1),
      log: silentLogger,
      apply: async () => undefined,
    });
    cleanups.push(() => client.stop());
    const { csrPem } = await newKeyAndCsr();
    const refusal = async (tok: string, csr = csrPem): Promise<string> =>
      client.certify(csr, tok).then(
        () => 'issued',
        (e: { code: number; details: string }) => `${e.code} ${e.details}`,
      );
    assert.match(await refusal('')!, /^16 OPERATOR_ERR_MESH_TOKEN_MISSING/);
    assert.match(await refusal(token('web', 'web-0', 'https://kubernetes.default.svc')), /^16 OPERATOR_ERR_MESH_TOKEN_(AUDIENCE|INVALID)/);
    assert.match(await refusal(token('web', undefined)), /^7 OPERATOR_ERR_MESH_NOT_A_POD/);
    assert.match(await refusal(token('api', 'api-0')), /^7 OPERATOR_ERR_MESH_WRONG_POD: the sidecar says it is shop\/web-0/);
    assert.match(await refusal(tokens['web']!, 'not a csr'), /^3 OPERATOR_ERR_MESH_CSR_INVALID/);
    // A ServiceAccount deleted: its tokens stop working at once.
    const gone = token('gone', 'gone-0');
    kubectl('delete', 'serviceaccount', 'gone', '-n', 'shop');
    const goneClient = new DiscoveryClient({
      address: `127.0.0.1:${discoveryPort}`,
      tls: { bundlePem: issuer.bundlePem, serverName: discoveryName },
      node: 'shop/gone-0',
      clock: realClock,
      random: new SeededRandom(1),
      log: silentLogger,
      apply: async () => undefined,
    });
    cleanups.push(() => goneClient.stop());
    await until(
      async () =>
        /^16 OPERATOR_ERR_MESH_TOKEN_INVALID/.test(
          await goneClient.certify(csrPem, gone).then(
            () => 'issued',
            (e: { code: number; details: string }) => `${e.code} ${e.details}`,
          ),
        ),
      'the deleted ServiceAccount refused',
    );
    assert.equal(await refusal(tokens['web']!), 'issued', 'the right token still works');
    const m = await operatorMetrics.registry.metrics();
    for (const code of ['TOKEN_MISSING', 'NOT_A_POD', 'WRONG_POD', 'CSR_INVALID', 'TOKEN_INVALID'])
      assert.match(m, new RegExp(`ballast_operator_mesh_certificate_refusals_total\\{code="OPERATOR_ERR_MESH_${code}"\\} [1-9]`));
  });

  it("discovery is TLS and every stream is authenticated: plaintext, no token, another pod's name are refused; after an operator restart sidecars come back by their certificates", async () => {
    const stream = (o: { tls: boolean; node: string; token?: string }) =>
      new Promise<string>((resolve) => {
        const c = new DiscoveryClient({
          address: `127.0.0.1:${discoveryPort}`,
          node: o.node,
          clock: realClock,
          random: new SeededRandom(1),
          log: {
            ...silentLogger,
            warn: (f: { why?: string }) => {
              c.stop();
              resolve(`refused: ${f.why ?? ''}`);
            },
          } as unknown as typeof silentLogger,
          apply: async () => {
            c.stop();
            resolve('configured');
            return undefined;
          },
          ...(o.tls ? { tls: { bundlePem: issuer.bundlePem, serverName: discoveryName } } : {}),
          ...(o.token !== undefined ? { token: () => o.token! } : {}),
        });
        c.start();
      });
    assert.match(await stream({ tls: false, node: 'shop/web-0', token: tokens['web']! }), /^refused/, 'plaintext');
    assert.match(await stream({ tls: true, node: 'shop/web-0' }), /^refused: .*OPERATOR_ERR_MESH_TOKEN_MISSING/);
    assert.match(await stream({ tls: true, node: 'shop/api-0', token: tokens['web']! }), /^refused: .*OPERATOR_ERR_MESH_WRONG_POD/);
    assert.equal(await stream({ tls: true, node: 'shop/web-0', token: tokens['web']! }), 'configured');
    const byToken = /ballast_operator_discovery_authenticated_streams_total\{by="token"\} (\d+)/;
    assert.ok(Number(byToken.exec(await operatorMetrics.registry.metrics())?.[1]) >= 3, 'web and api first came with their tokens');
    // The operator restarts (a new server on the same port): both sidecars reconnect, now presenting their certificates.
    await server.stop();
    const restartedMetrics = new Metrics({ defaultMetrics: false });
    server = new DiscoveryServer({
      policies,
      services,
      slices,
      sidecars: pods,
      mesh: issuer,
      tlsNames: [discoveryName],
      clock: realClock,
      log: silentLogger,
      metrics: restartedMetrics,
      debounceMs: 20,
    });
    await server.listen(`127.0.0.1:${discoveryPort}`);
    await until(
      async () =>
        /ballast_operator_discovery_authenticated_streams_total\{by="certificate"\} 2/.test(await restartedMetrics.registry.metrics()),
      'both sidecars back by certificate',
      30_000,
    );
    assert.equal((await get(localPort)).status, 200);
  });

  it('a trust-anchor rotation under steady traffic: trusted next to the old, then signing, then alone; no request fails, and the old chain is refused after', async () => {
    const anchorSecret = async () => core.readNamespacedSecret({ name: 'ballast-mesh-trust-anchor', namespace: 'ballast-system' });
    const oldAnchor = Buffer.from((await anchorSecret()).data?.['tls.crt'] ?? '', 'base64').toString();
    const oldIssuer = await issuerNow();
    kubectl('annotate', 'secret', 'ballast-mesh-trust-anchor', '-n', 'ballast-system', 'mesh.ballast.dev/rotate=r1');
    let ok = 0;
    const failures: string[] = [];
    const anchorsSeen = new Set<number>();
    const done = async () => (await anchorSecret()).metadata?.annotations?.['mesh.ballast.dev/rotated'] === 'r1';
    const deadline = Date.now() + 10 * rotationStepMs + 30_000;
    while (!(await done()) && Date.now() < deadline) {
      const r = await get(localPort);
      if (r.status === 200) ok++;
      else failures.push(`${r.status} ${r.body}`);
      for (const sc of [web, apiSc]) anchorsSeen.add(((await admin(sc, '/ready'))['mesh'] as { trustAnchors: number }).trustAnchors);
    }
    assert.ok(await done(), 'the rotation finished');
    // Until both sidecars have the narrowed bundle, and a little after.
    await until(
      async () => {
        const r = await get(localPort);
        if (r.status === 200) ok++;
        else failures.push(`${r.status} ${r.body}`);
        const counts = await Promise.all(
          [web, apiSc].map(async (sc) => ((await admin(sc, '/ready'))['mesh'] as { trustAnchors: number }).trustAnchors),
        );
        return counts.every((c) => c === 1);
      },
      'both sidecars trust only the new anchor',
      30_000,
    );
    for (let i = 0; i < 20; i++) {
      const r = await get(localPort);
      if (r.status === 200) ok++;
      else failures.push(`${r.status} ${r.body}`);
    }
    assert.deepEqual(failures, [], `${ok} requests`);
    assert.ok(anchorsSeen.has(2), 'both anchors were trusted at once on the way');
    const after = await anchorSecret();
    const newAnchor = Buffer.from(after.data?.['tls.crt'] ?? '', 'base64').toString();
    assert.notEqual(newAnchor, oldAnchor);
    assert.equal(Buffer.from(after.data?.['ca.crt'] ?? '', 'base64').toString(), newAnchor, 'only the new anchor is trusted');
    assert.equal(after.metadata?.annotations?.['mesh.ballast.dev/rotation'], undefined);
    // A certificate from the old chain is refused now.
    const answer = await tlsGet({ id: webId, by: oldIssuer });
    assert.doesNotMatch(answer, /200 OK/);
    const m = await operatorMetrics.registry.metrics();
    for (const step of ['begin', 'activate', 'finish'])
      assert.match(m, new RegExp(`ballast_operator_mesh_anchor_rotation_steps_total\\{step="${step}"\\} 1`));
  });

  it(`certificates (${ttlMs / 1000} s) renew half-way under steady traffic: no request fails, connections stay`, async () => {
    const issued = async (sc: Sidecar): Promise<number> =>
      Number(/ballast_sidecar_certificate_requests_total\{result="issued"\} (\d+)/.exec(await metricsText(sc))?.[1] ?? 0);
    const [webStart, apiStart] = [await issued(web), await issued(apiSc)];
    let ok = 0;
    const failures: string[] = [];
    while ((await issued(web)) < webStart + 2 || (await issued(apiSc)) < apiStart + 2) {
      const r = await get(localPort);
      if (r.status === 200 && (JSON.parse(r.body) as { xfcc: string }).xfcc === `URI=${webId}`) ok++;
      else failures.push(`${r.status} ${r.body}`);
    }
    // Past the first certificates' end too: everything in use now is a renewed one.
    const end = Date.now() + ttlMs;
    while (Date.now() < end) {
      const r = await get(localPort);
      if (r.status === 200) ok++;
      else failures.push(`${r.status} ${r.body}`);
    }
    assert.deepEqual(failures, []);
    assert.ok(ok > 50, `${ok} requests`);
  });
});
