// The sidecar's mesh identity (sidecar/identity.ts) on virtual time, with certificates from the operator's CA.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { X509Certificate } from 'node:crypto';
import { VirtualClock } from '../lib/clock.ts';
import { silentLogger } from '../lib/log.ts';
import { Metrics } from '../lib/metrics.ts';
import { SeededRandom } from '../lib/random.ts';
import { makeIssuer, makeTrustAnchor, signWorkload } from '../operator/mesh/ca.ts';
import { WorkloadIdentity } from '../sidecar/identity.ts';
import { SidecarMetrics } from '../sidecar/metrics.ts';

it('renews half-way through the life it has, and within seconds when the operator says another issuer signs now', async () => {
  const start = Date.parse('2026-12-03T00:00:00Z');
  const clock = new VirtualClock(0, start);
  const anchor = await makeTrustAnchor('cluster.local', new Date(start));
  const [a, b] = [await makeIssuer(anchor, 'cluster.local', new Date(start)), await makeIssuer(anchor, 'cluster.local', new Date(start))];
  let signer = a;
  const asked: number[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'ballast-identity-'));
  writeFileSync(join(dir, 'token'), 'tok');
  const id = new WorkloadIdentity({
    tokenFile: join(dir, 'token'),
    certify: async (csr, token) => {
      assert.equal(token, 'tok');
      asked.push(clock.wallNow());
      const issued = await signWorkload(signer, csr, 'spiffe://cluster.local/ns/shop/sa/web', new Date(clock.wallNow()), 3_600_000);
      return {
        chainPem: issued.chainPem,
        bundlePem: anchor.certPem,
        spiffeId: 'spiffe://cluster.local/ns/shop/sa/web',
        notAfter: issued.notAfter.getTime(),
      };
    },
    clock,
    random: new SeededRandom(1),
    log: silentLogger,
    metrics: new SidecarMetrics(new Metrics({ defaultMetrics: false })),
  });
  const settle = async () => {
    for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
  };
  id.start();
  for (let i = 0; i < 200 && !id.material; i++) await new Promise((r) => setTimeout(r, 10));
  await settle();
  assert.equal(asked.length, 1);
  const fp = (pem: string) => new X509Certificate(pem).fingerprint256;
  id.noteIssuer(fp(a.certPem));
  await clock.advanceAsync(60_000);
  await settle();
  assert.equal(asked.length, 1, 'the same issuer: nothing to do');
  signer = b;
  id.noteIssuer(fp(b.certPem));
  id.noteIssuer(fp(b.certPem));
  await clock.advanceAsync(5_000);
  await settle();
  // The timer fired; the key and CSR are made in real time (WebCrypto's thread pool).
  for (let i = 0; i < 500 && asked.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(asked.length, 2, 'renewed once, within 5 s');
  assert.ok((asked[1] as number) - start <= 65_000, 'within 5 s of the news');
  for (let i = 0; i < 200 && !id.material?.chainPem.includes(b.certPem.trim()); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(id.material?.chainPem.includes(b.certPem.trim()), "the new certificate's chain carries the new issuer");
  // Half-way through an hour's certificate (±10 %): the next renewal comes between 24 and 36 minutes on.
  const before = asked.length;
  const realWait = async (cond: () => boolean) => {
    for (let i = 0; i < 300 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  };
  await clock.advanceAsync(23 * 60_000);
  await realWait(() => asked.length > before);
  assert.equal(asked.length, before, 'not before 24 minutes');
  await clock.advanceAsync(14 * 60_000);
  await realWait(() => asked.length > before);
  assert.equal(asked.length, before + 1, 'by 37 minutes');
  id.stop();
});
