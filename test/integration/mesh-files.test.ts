// Mesh mTLS with identities from files (as SPIRE's agent or cert-manager's csi-driver keep them),
// no operator: two sidecars, one calling the other's strict inbound listener. Promises: the call
// is mTLS with the caller's identity passed on; a key that does not match its certificate is
// refused at start with a message naming the files, and the listener says it has no certificate.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { realClock } from '../../lib/clock.ts';
import { newKeyAndCsr } from '../../lib/csr.ts';
import { silentLogger } from '../../lib/log.ts';
import { Metrics } from '../../lib/metrics.ts';
import { SeededRandom } from '../../lib/random.ts';
import { makeIssuer, makeTrustAnchor, signWorkload } from '../../operator/mesh/ca.ts';
import { resolveConfig } from '../../sidecar/config.ts';
import { Sidecar } from '../../sidecar/sidecar.ts';
import { freePort } from '../support/store-cluster.ts';

const cleanups: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

it('two sidecars with identities from files talk mTLS; a mismatched key is refused, naming the files', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ballast-mesh-files-'));
  const anchor = await makeTrustAnchor('example.org', new Date());
  const issuer = await makeIssuer(anchor, 'example.org', new Date());
  const files = async (sa: string) => {
    const { keyPem, csrPem } = await newKeyAndCsr();
    const issued = await signWorkload(issuer, csrPem, `spiffe://example.org/ns/prod/sa/${sa}`, new Date(), 3_600_000);
    const f = (n: string, v: string) => {
      const p = join(dir, `${sa}-${n}`);
      writeFileSync(p, v);
      return p;
    };
    return { certFile: f('cert.pem', issued.chainPem), keyFile: f('key.pem', keyPem), bundleFile: f('bundle.pem', anchor.certPem) };
  };
  const app = http.createServer((req, res) => res.end(String(req.headers['x-forwarded-client-cert'] ?? '')));
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  cleanups.push(() => void app.close());
  const [inPort, outPort] = [await freePort(), await freePort()];
  const start = async (doc: object) => {
    const sc = new Sidecar(resolveConfig({ admin: '127.0.0.1:0', ...doc }, 'test'), {
      clock: realClock,
      random: new SeededRandom(2),
      log: silentLogger,
      metrics: new Metrics({ defaultMetrics: false }),
    });
    await sc.start();
    cleanups.push(() => sc.stop(100));
    return sc;
  };
  await start({
    identity: await files('api'),
    inbound: [
      { name: 'api', listen: `127.0.0.1:${inPort}`, target: `127.0.0.1:${(app.address() as { port: number }).port}`, mtls: 'strict' },
    ],
  });
  await start({
    identity: await files('web'),
    upstreams: [
      {
        name: 'api',
        listen: `127.0.0.1:${outPort}`,
        mtls: 'strict',
        endpoints: [{ address: `127.0.0.1:${inPort}`, identity: 'spiffe://example.org/ns/prod/sa/api' }],
      },
    ],
  });
  const r = await fetch(`http://127.0.0.1:${outPort}/`);
  assert.equal(r.status, 200);
  assert.equal(await r.text(), 'URI=spiffe://example.org/ns/prod/sa/web');
  // A key that is not the certificate's.
  const web = await files('web2');
  const other = await files('other');
  const bad = await start({
    identity: { ...web, keyFile: other.keyFile },
    inbound: [{ name: 'x', listen: '127.0.0.1:0', target: '127.0.0.1:1' }],
  });
  const ready = (await (await fetch(`http://127.0.0.1:${bad.adminPort}/ready`)).json()) as { mesh: { state: string; reason: string } };
  assert.equal(ready.mesh.state, 'no-certificate');
  assert.match(ready.mesh.reason, /other-key\.pem is not the key of .*web2-cert\.pem/);
});
