/** The injection webhook as a component: certificate (self-managed, re-checked hourly), HTTPS server. */
import { AdmissionregistrationV1Api, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
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
  secretName: string;
  inject: InjectOptions;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
}

export class InjectionWebhook {
  readonly #o: InjectionWebhookOptions;
  readonly #certs: CertManagerOptions;
  #server: WebhookServer | undefined;
  #timer: TimerHandle | undefined;
  #serving = '';
  port = 0;

  constructor(o: InjectionWebhookOptions) {
    this.#o = o;
    this.#certs = {
      core: o.kubeconfig.makeApiClient(CoreV1Api), admission: o.kubeconfig.makeApiClient(AdmissionregistrationV1Api),
      namespace: o.namespace, secretName: o.secretName, service: o.service, webhookConfig: o.webhookConfig,
      now: () => new Date(o.clock.wallNow()),
    };
  }

  async start(): Promise<void> {
    const cert = await ensureServingCert(this.#certs);
    this.#serving = cert.certPem;
    this.#server = new WebhookServer(cert, this.#o.inject, this.#o.log, this.#o.metrics, ['kube-system', this.#o.namespace]);
    this.port = await this.#server.listen(this.#o.address);
    // Hourly: renew before expiry, and put the CA back if an upgrade blanked the caBundle.
    this.#timer = this.#o.clock.setInterval(() => {
      ensureServingCert(this.#certs).then((c) => {
        if (c.certPem !== this.#serving) {
          this.#serving = c.certPem;
          this.#server?.setCert(c);
          this.#o.log.info({ notAfter: c.notAfter.toISOString() }, 'webhook serving certificate renewed');
        }
      }, (err: unknown) => this.#o.log.warn({ err }, 'webhook certificate check failed; retrying in an hour'));
    }, 3_600_000, { unref: true });
  }

  async stop(): Promise<void> {
    this.#timer?.cancel();
    await this.#server?.stop();
  }
}
