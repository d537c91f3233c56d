/**
 * The webhook's self-managed serving certificate. The operator keeps a CA and a serving
 * certificate for `<service>.<namespace>.svc` in a Secret (made on first start, remade 30 days
 * before expiry), serves with it, and writes the CA into the webhook configurations' caBundle —
 * so installing Ballast needs no cert-manager, and a Helm upgrade that blanks the caBundle is
 * repaired within the check interval. Replicas race safely: whoever creates the Secret first
 * wins, the others read it.
 *
 * Rotation without an outage: a renewal keeps the previous CA in the Secret (`ca-previous.crt`)
 * and the caBundle trusts both until the previous one expires, so replicas still serving the old
 * certificate (until their next check picks up the new one) stay trusted meanwhile.
 */
import { X509Certificate, webcrypto } from 'node:crypto';
import type { AdmissionregistrationV1Api, CoreV1Api } from '@kubernetes/client-node';
import { unlessNotFound } from '../../lib/kube/read.ts';
import { ecdsa, x509 } from '../../lib/x509.ts';

const alg = ecdsa;
const day = 86_400_000;

export interface ServingCert {
  caPem: string;
  certPem: string;
  keyPem: string;
  notAfter: Date;
  /** The CA before the last renewal, trusted alongside until it expires. */
  previousCaPem?: string;
}

type Key = webcrypto.CryptoKey;
type KeyPair = webcrypto.CryptoKeyPair;

async function keyPem(k: Key): Promise<string> {
  return x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', k), 'PRIVATE KEY');
}

/** A new CA and a serving certificate for the given DNS names (ECDSA P-256), valid `days`. */
export async function makeServingCert(dnsNames: string[], now: Date, days = 365): Promise<ServingCert> {
  const notBefore = new Date(now.getTime() - 5 * 60_000);
  const notAfter = new Date(now.getTime() + days * day);
  const caKeys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as KeyPair;
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: Date.now().toString(16),
    name: 'CN=ballast-webhook-ca',
    notBefore,
    notAfter,
    keys: caKeys,
    signingAlgorithm: alg,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ],
  });
  const leafKeys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as KeyPair;
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: (Date.now() + 1).toString(16),
    subject: `CN=${dnsNames[0]}`,
    issuer: ca.subject,
    notBefore,
    notAfter,
    signingKey: caKeys.privateKey,
    publicKey: leafKeys.publicKey,
    signingAlgorithm: alg,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(dnsNames.map((value) => ({ type: 'dns' as const, value }))),
    ],
  });
  return { caPem: ca.toString('pem'), certPem: leaf.toString('pem'), keyPem: await keyPem(leafKeys.privateKey), notAfter };
}

const b64 = (s: string) => Buffer.from(s).toString('base64');
const unb64 = (s: string | undefined) => (s ? Buffer.from(s, 'base64').toString() : '');

export interface CertManagerOptions {
  core: CoreV1Api;
  admission: AdmissionregistrationV1Api;
  namespace: string;
  secretName: string;
  service: string;
  webhookConfig: string;
  /** The ValidatingWebhookConfiguration whose caBundle is kept too ('' when there is none). */
  validatingConfig?: string;
  now: () => Date;
}

/** Read the Secret's certificate, or make (or remake) one; then make sure the webhook trusts its CA. */
export async function ensureServingCert(o: CertManagerOptions): Promise<ServingCert> {
  const names = [
    `${o.service}.${o.namespace}.svc`,
    `${o.service}.${o.namespace}.svc.cluster.local`,
    `${o.service}.${o.namespace}`,
    o.service,
  ];
  const read = async (): Promise<ServingCert | undefined> => {
    const s = await unlessNotFound(o.core.readNamespacedSecret({ name: o.secretName, namespace: o.namespace }));
    const d = s?.data ?? {};
    const cert = {
      caPem: unb64(d['ca.crt']),
      certPem: unb64(d['tls.crt']),
      keyPem: unb64(d['tls.key']),
      ...(d['ca-previous.crt'] ? { previousCaPem: unb64(d['ca-previous.crt']) } : {}),
    };
    if (!cert.caPem || !cert.certPem || !cert.keyPem) return undefined;
    const parsed = new X509Certificate(cert.certPem);
    if (!parsed.checkHost(names[0] as string)) return undefined;
    return { ...cert, notAfter: new Date(parsed.validTo) };
  };
  let cert = await read();
  const stale = !cert || cert.notAfter.getTime() - o.now().getTime() < 30 * day;
  if (stale) {
    const fresh = await makeServingCert(names, o.now());
    const previous: Record<string, string> = cert && stillValid(cert.caPem, o.now()) ? { 'ca-previous.crt': b64(cert.caPem) } : {};
    const body = {
      metadata: { name: o.secretName, namespace: o.namespace, labels: { 'app.kubernetes.io/part-of': 'ballast' } },
      type: 'kubernetes.io/tls',
      data: { 'ca.crt': b64(fresh.caPem), 'tls.crt': b64(fresh.certPem), 'tls.key': b64(fresh.keyPem), ...previous },
    };
    try {
      if (cert) await o.core.replaceNamespacedSecret({ name: o.secretName, namespace: o.namespace, body });
      else await o.core.createNamespacedSecret({ namespace: o.namespace, body });
      cert = { ...fresh, ...(cert && stillValid(cert.caPem, o.now()) ? { previousCaPem: cert.caPem } : {}) };
    } catch (err) {
      // Another replica got there first: use its certificate.
      if ((err as { code?: number }).code !== 409) throw err;
      cert = await read();
      if (!cert) throw err;
    }
  }
  const c = cert as ServingCert;
  // Trust the previous CA too while it is valid: replicas still serving its certificate stay trusted.
  await trustCa(
    o,
    c.previousCaPem && stillValid(c.previousCaPem, o.now()) ? `${c.caPem.trimEnd()}\n${c.previousCaPem.trimEnd()}\n` : c.caPem,
  );
  return c;
}

function stillValid(pem: string, now: Date): boolean {
  try {
    return new Date(new X509Certificate(pem).validTo).getTime() > now.getTime();
  } catch {
    return false;
  }
}

/** Put the CA into every webhook of both configurations (when it is not there already). */
async function trustCa(o: CertManagerOptions, bundlePem: string): Promise<void> {
  const bundle = b64(bundlePem);
  type Cfg = { webhooks?: Array<{ clientConfig: { caBundle?: string } }> };
  const keep = async (read: () => Promise<Cfg>, replace: (cfg: Cfg) => Promise<unknown>): Promise<void> => {
    for (let i = 0; i < 5; i++) {
      let cfg: Cfg;
      try {
        cfg = await read();
      } catch (err) {
        if ((err as { code?: number }).code === 404) return; // not installed (that webhook is off)
        throw err;
      }
      if ((cfg.webhooks ?? []).every((w) => w.clientConfig.caBundle === bundle)) return;
      for (const w of cfg.webhooks ?? []) w.clientConfig.caBundle = bundle;
      try {
        await replace(cfg);
        return;
      } catch (err) {
        if ((err as { code?: number }).code !== 409) throw err; // conflict: read again
      }
    }
  };
  await keep(
    () => o.admission.readMutatingWebhookConfiguration({ name: o.webhookConfig }),
    (cfg) => o.admission.replaceMutatingWebhookConfiguration({ name: o.webhookConfig, body: cfg as never }),
  );
  const v = o.validatingConfig;
  if (v)
    await keep(
      () => o.admission.readValidatingWebhookConfiguration({ name: v }),
      (cfg) => o.admission.replaceValidatingWebhookConfiguration({ name: v, body: cfg as never }),
    );
}
