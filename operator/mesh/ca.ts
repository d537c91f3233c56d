/**
 * The mesh's certificate authority (no Kubernetes, no network): a trust anchor (a self-signed
 * root), an issuer (an intermediate CA the anchor signs; the operator signs workload certificates
 * with it), and workload certificates for SPIFFE IDs, signed from a sidecar's CSR. The identity
 * in a workload certificate is the one the operator decided (from the sidecar's ServiceAccount
 * token): whatever names the CSR asks for are ignored; the CSR proves only that the sidecar holds
 * the private key.
 */
import { X509Certificate, randomBytes, webcrypto } from 'node:crypto';
import { ecdsa, x509 } from '../../lib/x509.ts';

const day = 86_400_000;

/** A certificate with its private key, PEM. */
export interface KeyedCert {
  certPem: string;
  keyPem: string;
}

export interface Issued {
  /** The workload certificate, then the issuer's: what the sidecar presents. */
  chainPem: string;
  notAfter: Date;
}

/** A refusal of a certificate request: the `code` says which rule it broke. */
export class CsrError extends Error {
  readonly code: 'OPERATOR_ERR_MESH_CSR_INVALID';
  constructor(message: string) {
    super(message);
    this.code = 'OPERATOR_ERR_MESH_CSR_INVALID';
  }
}

const serial = (): string => {
  const b = randomBytes(16);
  b[0] = (b[0] as number) & 0x7f; // positive
  return b.toString('hex');
};

async function keyPem(k: webcrypto.CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', k), 'PRIVATE KEY');
}

async function importKey(pem: string): Promise<webcrypto.CryptoKey> {
  const der = x509.PemConverter.decodeFirst(pem);
  return webcrypto.subtle.importKey('pkcs8', der, ecdsa, false, ['sign']);
}

/** A new trust anchor for the trust domain (ECDSA P-256), valid `days`. */
export async function makeTrustAnchor(trustDomain: string, now: Date, days = 3650): Promise<KeyedCert> {
  const keys = (await webcrypto.subtle.generateKey(ecdsa, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=ballast mesh trust anchor ${now.toISOString().slice(0, 10)}, O=${trustDomain}`,
    notBefore: new Date(now.getTime() - 5 * 60_000),
    notAfter: new Date(now.getTime() + days * day),
    keys,
    signingAlgorithm: ecdsa,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: await keyPem(keys.privateKey) };
}

/** A new issuer (an intermediate CA that may sign only leaves) signed by the anchor, valid `days` but never past the anchor. */
export async function makeIssuer(anchor: KeyedCert, trustDomain: string, now: Date, days = 365): Promise<KeyedCert> {
  const anchorCert = new x509.X509Certificate(anchor.certPem);
  const keys = (await webcrypto.subtle.generateKey(ecdsa, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const notAfter = new Date(Math.min(now.getTime() + days * day, anchorCert.notAfter.getTime()));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=ballast mesh issuer ${now.toISOString().slice(0, 10)}, O=${trustDomain}`,
    issuer: anchorCert.subject,
    notBefore: new Date(now.getTime() - 5 * 60_000),
    notAfter,
    signingKey: await importKey(anchor.keyPem),
    publicKey: keys.publicKey,
    signingAlgorithm: ecdsa,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(anchorCert),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: await keyPem(keys.privateKey) };
}

/** The public-key algorithms a workload may use: ECDSA P-256/P-384, Ed25519, RSA of 2048 bits or more. */
function keyProblem(alg: webcrypto.KeyAlgorithm & { namedCurve?: string; modulusLength?: number }): string | undefined {
  if (alg.name === 'ECDSA') return alg.namedCurve === 'P-256' || alg.namedCurve === 'P-384' ? undefined : `curve ${alg.namedCurve}`;
  if (alg.name === 'Ed25519') return undefined;
  if (alg.name === 'RSASSA-PKCS1-v1_5' || alg.name === 'RSA-PSS')
    return (alg.modulusLength ?? 0) >= 2048 ? undefined : `RSA of ${alg.modulusLength} bits`;
  return alg.name;
}

/**
 * A workload certificate for `spiffeId` with the CSR's public key, signed by the issuer, valid
 * `ttlMs` from `now` (never past the issuer). Throws {@link CsrError} for a CSR that is not PEM,
 * whose signature does not verify (the sender does not hold the key), or whose key is weak.
 */
export function signWorkload(issuer: KeyedCert, csrPem: string, spiffeId: string, now: Date, ttlMs: number): Promise<Issued> {
  return signLeaf(issuer, csrPem, { uri: spiffeId }, now, ttlMs);
}

/** A leaf certificate for the names given (a SPIFFE ID and/or DNS names), as {@link signWorkload}. */
export async function signLeaf(
  issuer: KeyedCert,
  csrPem: string,
  names: { uri?: string; dns?: string[] },
  now: Date,
  ttlMs: number,
): Promise<Issued> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
  } catch (err) {
    throw new CsrError(`the certificate request is not a PEM PKCS#10 CSR: ${(err as Error).message}`);
  }
  let publicKey: webcrypto.CryptoKey;
  try {
    publicKey = await csr.publicKey.export();
  } catch (err) {
    throw new CsrError(`the certificate request's public key cannot be used: ${(err as Error).message}`);
  }
  const weak = keyProblem(publicKey.algorithm);
  if (weak) throw new CsrError(`the certificate request's key (${weak}) is not allowed; use ECDSA P-256 or P-384, Ed25519, or RSA ≥ 2048`);
  const signed = await csr.verify().catch(() => false);
  if (!signed) throw new CsrError("the certificate request's signature does not verify: it was not signed with its key");
  const issuerCert = new x509.X509Certificate(issuer.certPem);
  const notAfter = new Date(Math.min(now.getTime() + ttlMs, issuerCert.notAfter.getTime()));
  const sans = [
    ...(names.uri ? [{ type: 'url' as const, value: names.uri }] : []),
    ...(names.dns ?? []).map((value) => ({ type: 'dns' as const, value })),
  ];
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: '',
    issuer: issuerCert.subject,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter,
    signingKey: await importKey(issuer.keyPem),
    publicKey,
    signingAlgorithm: ecdsa,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      // An empty subject makes the SAN critical (RFC 5280 4.2.1.6).
      new x509.SubjectAlternativeNameExtension(sans, true),
      await x509.AuthorityKeyIdentifierExtension.create(issuerCert),
    ],
  });
  return { chainPem: `${leaf.toString('pem').trimEnd()}\n${issuer.certPem.trimEnd()}\n`, notAfter };
}

/** The certificates of a PEM bundle, split (in order). */
export function splitPem(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)?.map((c) => `${c}\n`) ?? [];
}

/** A certificate's validity end, or undefined when the PEM is not a certificate. */
export function notAfterOf(pem: string): Date | undefined {
  try {
    return new Date(new X509Certificate(pem).validTo);
  } catch {
    return undefined;
  }
}

/** Whether `cert` was signed by `ca` (PEM). */
export function signedBy(cert: string, ca: string): boolean {
  try {
    return new X509Certificate(cert).verify(new X509Certificate(ca).publicKey);
  } catch {
    return false;
  }
}
