import assert from 'node:assert/strict';
import { X509Certificate, generateKeyPairSync, webcrypto } from 'node:crypto';
import tls from 'node:tls';
import { describe, it } from 'node:test';
import { x509 } from '../../lib/x509.ts';
import { newKeyAndCsr } from '../../lib/csr.ts';
import { uriSans } from '../../api/mesh.ts';
import { CsrError, makeIssuer, makeTrustAnchor, notAfterOf, signWorkload, signedBy, splitPem } from './ca.ts';

const now = new Date('2026-12-03T00:00:00Z');
const hour = 3_600_000;

describe('mesh CA', () => {
  it('anchor → issuer → workload: the chain verifies, the SPIFFE ID is the URI SAN, the TTL is kept', async () => {
    const anchor = await makeTrustAnchor('cluster.local', now);
    const issuer = await makeIssuer(anchor, 'cluster.local', now);
    assert.ok(signedBy(issuer.certPem, anchor.certPem));
    const { csrPem } = await newKeyAndCsr();
    const id = 'spiffe://cluster.local/ns/shop/sa/web';
    const issued = await signWorkload(issuer, csrPem, id, now, 24 * hour);
    const [leaf, inter] = splitPem(issued.chainPem);
    assert.ok(leaf && inter);
    assert.ok(signedBy(leaf, issuer.certPem));
    assert.equal(inter, issuer.certPem.trimEnd() + '\n');
    const x = new X509Certificate(leaf);
    assert.deepEqual(uriSans(x.subjectAltName), [id]);
    assert.equal(x.ca, false);
    assert.equal(issued.notAfter.getTime(), now.getTime() + 24 * hour);
    assert.equal(notAfterOf(leaf)?.getTime(), Math.floor((now.getTime() + 24 * hour) / 1000) * 1000);
  });

  it('never past the issuer: a TTL longer than the issuer has left ends with the issuer', async () => {
    const anchor = await makeTrustAnchor('cluster.local', now);
    const issuer = await makeIssuer(anchor, 'cluster.local', now, 1);
    const issued = await signWorkload(issuer, (await newKeyAndCsr()).csrPem, 'spiffe://cluster.local/ns/a/sa/b', now, 48 * hour);
    assert.equal(issued.notAfter.getTime(), notAfterOf(issuer.certPem)?.getTime());
  });

  it('OpenSSL accepts the chain both ways in a real mTLS handshake checked against the anchor', async () => {
    const anchor = await makeTrustAnchor('cluster.local', now);
    const issuer = await makeIssuer(anchor, 'cluster.local', new Date());
    const mk = async (sa: string) => {
      const { keyPem, csrPem } = await newKeyAndCsr();
      const issued = await signWorkload(issuer, csrPem, `spiffe://cluster.local/ns/shop/sa/${sa}`, new Date(), hour);
      return { cert: issued.chainPem, key: keyPem, ca: anchor.certPem };
    };
    const [serverTls, clientTls] = [await mk('server'), await mk('client')];
    const server = tls.createServer({ ...serverTls, requestCert: true, rejectUnauthorized: true }, (s) => {
      s.end(uriSans(s.getPeerCertificate().subjectaltname).join(','));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    try {
      const got = await new Promise<string>((resolve, reject) => {
        const c = tls.connect({
          host: '127.0.0.1',
          port,
          secureContext: tls.createSecureContext(clientTls),
          checkServerIdentity: (_h, cert) =>
            uriSans(cert.subjectaltname).includes('spiffe://cluster.local/ns/shop/sa/server') ? undefined : new Error('wrong peer'),
        });
        let text = '';
        c.on('data', (d: Buffer) => (text += d.toString()));
        c.on('end', () => resolve(text));
        c.on('error', reject);
      });
      assert.equal(got, 'spiffe://cluster.local/ns/shop/sa/client', "the server sees the client's identity");
    } finally {
      server.close();
    }
  });

  it('refuses a CSR that is not PEM, one signed with another key, and a weak key, saying which', async () => {
    const anchor = await makeTrustAnchor('cluster.local', now);
    const issuer = await makeIssuer(anchor, 'cluster.local', now);
    const id = 'spiffe://cluster.local/ns/a/sa/b';
    await assert.rejects(
      signWorkload(issuer, 'hello', id, now, hour),
      (e: unknown) => e instanceof CsrError && /not a PEM/.test(e.message),
    );
    // A CSR whose signature does not match its content (its last byte, inside the signature, flipped).
    const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
    const keysA = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    const good = await x509.Pkcs10CertificateRequestGenerator.create({ keys: keysA, signingAlgorithm: alg });
    const raw = Buffer.from(good.rawData);
    raw[raw.length - 1] = (raw[raw.length - 1] as number) ^ 0x01;
    const forged = x509.PemConverter.encode(raw, 'CERTIFICATE REQUEST');
    await assert.rejects(
      signWorkload(issuer, forged, id, now, hour),
      (e: unknown) => e instanceof CsrError && /does not verify/.test(e.message),
    );
    // RSA 1024.
    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const rsaAlg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
    const keys = {
      privateKey: await webcrypto.subtle.importKey('pkcs8', weak.privateKey.export({ type: 'pkcs8', format: 'der' }), rsaAlg, true, [
        'sign',
      ]),
      publicKey: await webcrypto.subtle.importKey('spki', weak.publicKey.export({ type: 'spki', format: 'der' }), rsaAlg, true, ['verify']),
    };
    const weakCsr = await x509.Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm: rsaAlg });
    await assert.rejects(
      signWorkload(issuer, weakCsr.toString('pem'), id, now, hour),
      (e: unknown) => e instanceof CsrError && /RSA of 1024 bits/.test(e.message),
    );
  });
});
