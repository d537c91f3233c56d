/**
 * The admission webhooks as a component (sidecar injection, StoreCluster validation): certificate
 * (self-managed, re-checked hourly), HTTPS server.
 */
import { AdmissionregistrationV1Api, AppsV1Api, CoreV1Api, type KubeConfig, StorageV1Api } from '@kubernetes/client-node';
import { unlessNotFound } from '../../lib/kube/read.ts';
import type { StoreCluster } from '../api/storecluster.ts';
import { type ValidationLookups, validateStoreCluster } from './validate.ts';
import type { Clock, TimerHandle } from '../../lib/clock.ts';
import type { Logger } from '../../lib/log.ts';
import type { Metrics } from '../../lib/metrics.ts';
import { type CertManagerOptions, ensureServingCert } from './certs.ts';
import type { InjectOptions } from './inject.ts';
import { WebhookServer } from './server.ts';

export interface InjectionWebhookOptions {
  kubeconfig: KubeConfig;
  namespace: string;
  address: string;
  service: string;
  webhookConfig: string;
  /** The StoreCluster ValidatingWebhookConfiguration ('' : validation off). */
  validatingConfig?: string;
  secretName: string;
  inject: InjectOptions;
  /** The mesh's trust bundle now (injected sidecars verify the discovery service with it); absent or '': none. */
  trustBundle?: () => string;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
}

export class InjectionWebhook {
  readonly #options: InjectionWebhookOptions;
  readonly #certs: CertManagerOptions;
  #server: WebhookServer | undefined;
  #timer: TimerHandle | undefined;
  #serving = '';
  port = 0;

  constructor(o: InjectionWebhookOptions) {
    this.#options = o;
    this.#certs = {
      core: o.kubeconfig.makeApiClient(CoreV1Api),
      admission: o.kubeconfig.makeApiClient(AdmissionregistrationV1Api),
      namespace: o.namespace,
      secretName: o.secretName,
      service: o.service,
      webhookConfig: o.webhookConfig,
      validatingConfig: o.validatingConfig ?? '',
      now: () => new Date(o.clock.wallNow()),
    };
  }

  async start(): Promise<void> {
    const cert = await ensureServingCert(this.#certs);
    this.#serving = cert.certPem;
    const kc = this.#options.kubeconfig;
    const [storage, apps] = [kc.makeApiClient(StorageV1Api), kc.makeApiClient(AppsV1Api)];
    const core = this.#certs.core;
    const lookups: ValidationLookups = {
      secretKeys: async (namespace, name) => {
        const secret = await unlessNotFound(core.readNamespacedSecret({ namespace, name }));
        return secret ? Object.keys(secret.data ?? {}) : undefined;
      },
      storageClasses: async () => (await storage.listStorageClass()).items.map((c) => c.metadata?.name ?? ''),
      statefulSet: async (namespace, name) => {
        const set = await unlessNotFound(apps.readNamespacedStatefulSet({ namespace, name }));
        return set ? { owners: (set.metadata?.ownerReferences ?? []).map((r) => ({ kind: r.kind, name: r.name })) } : undefined;
      },
    };
    const validator = this.#options.validatingConfig
      ? (op: string, sc: StoreCluster, old: StoreCluster | undefined) => validateStoreCluster(op, sc, old, lookups)
      : undefined;
    this.#server = new WebhookServer(
      cert,
      () => {
        const bundle = this.#options.trustBundle?.() ?? '';
        return bundle ? { ...this.#options.inject, trustBundlePem: bundle } : this.#options.inject;
      },
      this.#options.log,
      this.#options.metrics,
      ['kube-system', this.#options.namespace],
      validator,
    );
    this.port = await this.#server.listen(this.#options.address);
    // Hourly: renew before expiry, and put the CA back if an upgrade blanked the caBundle.
    this.#timer = this.#options.clock.setInterval(
      () => {
        ensureServingCert(this.#certs).then(
          (c) => {
            if (c.certPem !== this.#serving) {
              this.#serving = c.certPem;
              this.#server?.setCert(c);
              this.#options.log.info({ notAfter: c.notAfter.toISOString() }, 'webhook serving certificate renewed');
            }
          },
          (err: unknown) => this.#options.log.warn({ err }, 'webhook certificate check failed; retrying in an hour'),
        );
      },
      3_600_000,
      { unref: true },
    );
  }

  async stop(): Promise<void> {
    this.#timer?.cancel();
    await this.#server?.stop();
  }
}
