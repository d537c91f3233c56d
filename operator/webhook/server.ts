/**
 * The admission webhooks, one HTTPS server: `/mutate-pods` (sidecar injection) answers pods
 * created in namespaces labelled `ballast.dev/injection: enabled` (or labelled themselves) with
 * the JSONPatch of operator/webhook/inject.ts, and never refuses a pod: a malformed review or an
 * internal error admits it unchanged (failurePolicy Ignore, so an operator that is down does not
 * stop pods either). `/validate-storeclusters` judges StoreCluster changes (validate.ts).
 */
import { type Server, createServer } from 'node:https';
import type { Logger } from '../../lib/log.ts';
import type { Metrics } from '../../lib/metrics.ts';
import { type InjectOptions, injectionPatch } from './inject.ts';
import type { ServingCert } from './certs.ts';
import type { StoreCluster } from '../api/storecluster.ts';

interface AdmissionReview {
  apiVersion?: string;
  kind?: string;
  request?: { uid: string; kind?: { kind?: string }; object?: unknown; oldObject?: unknown; namespace?: string; operation?: string };
}

/** Judges a StoreCluster create or update: the problems, each saying what to change (none: allowed). */
export type StoreClusterValidator = (operation: string, object: StoreCluster, old: StoreCluster | undefined) => Promise<string[]>;

export class WebhookServer {
  readonly #server: Server;
  readonly #log: Logger;
  readonly #metrics;

  constructor(cert: ServingCert, inject: InjectOptions, log: Logger, metrics: Metrics, excluded: readonly string[] = ['kube-system'], validator?: StoreClusterValidator) {
    this.#log = log;
    const validations = metrics.counter('ballast_operator_validations_total', 'StoreCluster admission reviews answered by the validating webhook, by result (allowed, denied, error).', ['result']);
    for (const result of ['allowed', 'denied', 'error']) validations.inc({ result }, 0);
    this.#metrics = metrics.counter('ballast_operator_webhook_requests_total', 'Admission reviews answered, by result (injected, skipped, error).', ['result']);
    for (const result of ['injected', 'skipped', 'error']) this.#metrics.inc({ result }, 0);
    // Pods: never refused (a malformed review or an internal error admits the pod unchanged).
    const mutatePod = async (review: AdmissionReview, response: Record<string, unknown>): Promise<Record<string, unknown>> => {
      try {
        const pod = review.request?.object as Parameters<typeof injectionPatch>[0] | undefined;
        // Never kube-system or Ballast's own namespace, whatever the selectors say.
        const ns = review.request?.namespace ?? pod?.metadata?.namespace ?? '';
        const ops = pod && review.request?.kind?.kind === 'Pod' && !excluded.includes(ns) ? injectionPatch(pod, inject) : [];
        if (ops.length === 0) {
          this.#metrics.inc({ result: 'skipped' });
          return response;
        }
        this.#metrics.inc({ result: 'injected' });
        log.info({ namespace: review.request?.namespace, pod: (pod?.metadata?.name ?? pod?.metadata?.generateName) }, 'sidecar injected');
        return { ...response, patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(ops)).toString('base64') };
      } catch (err) {
        this.#metrics.inc({ result: 'error' });
        log.error({ err }, 'injection failed; the pod is admitted unchanged');
        return response;
      }
    };
    // StoreClusters: refused with what to change; when the lookups fail (the apiserver is away),
    // refused with the reason, so the change is retried rather than judged blind.
    const validateCluster = async (review: AdmissionReview, response: Record<string, unknown>): Promise<Record<string, unknown>> => {
      const r = review.request;
      try {
        const problems = validator && r?.object && r.kind?.kind === 'StoreCluster' ? await validator(r.operation ?? '', r.object as StoreCluster, r.oldObject as StoreCluster | undefined) : [];
        validations.inc({ result: problems.length > 0 ? 'denied' : 'allowed' });
        return problems.length === 0 ? response : { ...response, allowed: false, status: { code: 422, reason: 'Invalid', message: `StoreCluster ${r?.namespace ?? ''}/${(r?.object as StoreCluster).metadata.name}: ${problems.join('; ')}` } };
      } catch (err) {
        validations.inc({ result: 'error' });
        log.warn({ err }, 'StoreCluster validation could not look up what it needs');
        return { ...response, allowed: false, status: { code: 503, reason: 'ServiceUnavailable', message: `Ballast could not check this StoreCluster (${(err as Error).message}); try again` } };
      }
    };
    this.#server = createServer({ cert: cert.certPem, key: cert.keyPem }, (req, res) => {
      if (req.method === 'GET' && req.url === '/healthz') return void res.writeHead(200).end('ok\n');
      const judge = req.method !== 'POST' ? undefined : req.url?.startsWith('/mutate-pods') ? mutatePod : validator && req.url?.startsWith('/validate-storeclusters') ? validateCluster : undefined;
      if (!judge) return void res.writeHead(404).end();
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        let review: AdmissionReview;
        try {
          review = JSON.parse(Buffer.concat(chunks).toString()) as AdmissionReview;
        } catch {
          return void res.writeHead(400, { 'content-type': 'text/plain' }).end('body is not an AdmissionReview (JSON)\n');
        }
        void judge(review, { uid: review.request?.uid ?? '', allowed: true }).then((response) => {
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ apiVersion: review.apiVersion ?? 'admission.k8s.io/v1', kind: 'AdmissionReview', response }));
        });
      });
    });
  }

  /** A renewed certificate: new connections use it. */
  setCert(cert: ServingCert): void {
    this.#server.setSecureContext({ cert: cert.certPem, key: cert.keyPem });
  }

  async listen(address: string): Promise<number> {
    const i = address.lastIndexOf(':');
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(Number(address.slice(i + 1)), address.slice(0, i), () => resolve());
    });
    const port = (this.#server.address() as { port: number }).port;
    this.#log.info({ port }, 'injection webhook serving');
    return port;
  }

  async stop(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
