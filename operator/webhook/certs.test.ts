import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { describe, it } from 'node:test';
import type { AdmissionregistrationV1Api, CoreV1Api } from '@kubernetes/client-node';
import { type CertManagerOptions, ensureServingCert } from './certs.ts';

const day = 86_400_000;

/** Just the calls the certificate manager makes, on in-memory objects (a unit test of one step). */
function fakes() {
  const secrets = new Map<string, { data?: Record<string, string> }>();
  const hooks = {
    mutating: { webhooks: [{ clientConfig: { caBundle: '' } }, { clientConfig: { caBundle: '' } }] },
    validating: { webhooks: [{ clientConfig: { caBundle: '' } }] },
  };
  const core = {
    readNamespacedSecret: async ({ name }: { name: string }) => {
      const s = secrets.get(name);
      if (!s) throw Object.assign(new Error('not found'), { code: 404 });
      return structuredClone(s);
    },
    createNamespacedSecret: async ({ body }: { body: { metadata: { name: string }; data: Record<string, string> } }) => {
      if (secrets.has(body.metadata.name)) throw Object.assign(new Error('exists'), { code: 409 });
      secrets.set(body.metadata.name, structuredClone(body));
    },
    replaceNamespacedSecret: async ({ name, body }: { name: string; body: { data: Record<string, string> } }) =>
      void secrets.set(name, structuredClone(body)),
  };
  const admission = {
    readMutatingWebhookConfiguration: async () => structuredClone(hooks.mutating),
    replaceMutatingWebhookConfiguration: async ({ body }: { body: typeof hooks.mutating }) => void (hooks.mutating = structuredClone(body)),
    readValidatingWebhookConfiguration: async () => structuredClone(hooks.validating),
    replaceValidatingWebhookConfiguration: async ({ body }: { body: typeof hooks.validating }) =>
      void (hooks.validating = structuredClone(body)),
  };
  return { secrets, hooks, core: core as unknown as CoreV1Api, admission: admission as unknown as AdmissionregistrationV1Api };
}

/** The CA certificates in a caBundle. */
const bundleCas = (b64: string) =>
  (
    Buffer.from(b64, 'base64')
      .toString()
      .match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []
  ).map((p) => new X509Certificate(p));
const trusted = (b64: string, leafPem: string) => bundleCas(b64).some((ca) => new X509Certificate(leafPem).verify(ca.publicKey));

describe('webhook certificate', () => {
  it('made once, trusted by every webhook; renewed 30 days before expiry with the old CA still trusted until it expires (no outage while replicas switch)', async () => {
    const f = fakes();
    let now = new Date('2026-11-22T00:00:00Z');
    const o: CertManagerOptions = {
      core: f.core,
      admission: f.admission,
      namespace: 'ballast-system',
      secretName: 'tls',
      service: 'ballast-operator-webhook',
      webhookConfig: 'inj',
      validatingConfig: 'val',
      now: () => now,
    };
    const first = await ensureServingCert(o);
    assert.ok(new X509Certificate(first.certPem).checkHost('ballast-operator-webhook.ballast-system.svc'));
    for (const w of [...f.hooks.mutating.webhooks, ...f.hooks.validating.webhooks])
      assert.ok(trusted(w.clientConfig.caBundle, first.certPem), 'every webhook trusts the serving certificate');
    assert.equal((await ensureServingCert(o)).certPem, first.certPem, 'a valid certificate is kept');
    // 340 days on: inside the 30-day window, so the next check renews.
    now = new Date(now.getTime() + 340 * day);
    const second = await ensureServingCert(o);
    assert.notEqual(second.certPem, first.certPem, 'renewed');
    for (const w of [...f.hooks.mutating.webhooks, ...f.hooks.validating.webhooks]) {
      assert.ok(trusted(w.clientConfig.caBundle, second.certPem), 'the new certificate is trusted');
      assert.ok(
        trusted(w.clientConfig.caBundle, first.certPem),
        'and so is the old one, still served by replicas that have not switched yet',
      );
    }
    // A replica that checks later reads the renewed Secret: the same certificate, both CAs still trusted.
    assert.equal((await ensureServingCert(o)).certPem, second.certPem);
    // Once the old CA has expired it leaves the bundle.
    now = new Date(now.getTime() + 30 * day);
    await ensureServingCert(o);
    const cas = bundleCas(f.hooks.mutating.webhooks[0]!.clientConfig.caBundle);
    assert.equal(cas.length, 1);
    assert.ok(trusted(f.hooks.mutating.webhooks[0]!.clientConfig.caBundle, second.certPem));
  });

  it('a blanked caBundle (a helm upgrade) is put back at the next check', async () => {
    const f = fakes();
    const o: CertManagerOptions = {
      core: f.core,
      admission: f.admission,
      namespace: 'ns',
      secretName: 'tls',
      service: 'svc',
      webhookConfig: 'inj',
      now: () => new Date('2026-11-22T00:00:00Z'),
    };
    const cert = await ensureServingCert(o);
    f.hooks.mutating.webhooks[1]!.clientConfig.caBundle = '';
    await ensureServingCert(o);
    assert.ok(trusted(f.hooks.mutating.webhooks[1]!.clientConfig.caBundle, cert.certPem));
  });
});
