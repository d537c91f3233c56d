/**
 * A fresh private key (ECDSA P-256) and a PKCS#10 certificate request signed with it: how a
 * sidecar asks the operator for its mesh certificate. The request names nothing: the operator
 * decides the identity; the request only proves the key is held.
 */
import { webcrypto } from 'node:crypto';
import { ecdsa, x509 } from './x509.ts';

export async function newKeyAndCsr(): Promise<{ keyPem: string; csrPem: string }> {
  const keys = (await webcrypto.subtle.generateKey(ecdsa, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm: ecdsa });
  const keyPem = x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY');
  return { keyPem, csrPem: csr.toString('pem') };
}
