/**
 * The admission webhooks, one HTTPS server: `/mutate-pods` (sidecar injection) answers pods
 * created in namespaces labelled `ballast.dev/injection: enabled` (or labelled themselves) with
 * the JSONPatch of operator/webhook/inject.ts, and never refuses a pod: a malformed review or an
 * internal error admits it unchanged (failurePolicy Ignore, so an operator that is down does not
 * stop pods either). `/validate-storeclusters` judges StoreCluster changes (validate.ts).
 */
import type { Server } from 'node:https';
import type { FastifyInstance } from 'fastify';
import { endpointApp, listen } from '../../lib/endpoints.ts';
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

/** An AdmissionReview holds the object and, on update, the old one: 2 × etcd's 1.5 MiB and room. */
const maxReviewBytes = 8 << 20;

export class WebhookServer {
  readonly #app: FastifyInstance;
  readonly #log: Logger;
  readonly #metrics;

  constructor(
    cert: ServingCert,
    inject: InjectOptions | (() => InjectOptions),
    log: Logger,
    metrics: Metrics,
    excluded: readonly string[] = ['kube-system'],
    validator?: StoreClusterValidator,
  ) {
    this.#log = log;
    const validations = metrics.counter(
      'ballast_operator_validations_total',
      'StoreCluster admission reviews answered by the validating webhook, by result (allowed, denied, error).',
      ['result'],
    );
    for (const result of ['allowed', 'denied', 'error']) validations.inc({ result }, 0);
    this.#metrics = metrics.counter(
      'ballast_operator_webhook_requests_total',
      'Admission reviews answered, by result (injected, skipped, error).',
      ['result'],
    );
    for (const result of ['injected', 'skipped', 'error']) this.#metrics.inc({ result }, 0);
    // Pods: never refused (a malformed review or an internal error admits the pod unchanged).
    const mutatePod = async (review: AdmissionReview, response: Record<string, unknown>): Promise<Record<string, unknown>> => {
      try {
        const pod = review.request?.object as Parameters<typeof injectionPatch>[0] | undefined;
        // Never kube-system or Ballast's own namespace, whatever the selectors say.
        const ns = review.request?.namespace ?? pod?.metadata?.namespace ?? '';
        const opts = typeof inject === 'function' ? inject() : inject;
        const ops = pod && review.request?.kind?.kind === 'Pod' && !excluded.includes(ns) ? injectionPatch(pod, opts) : [];
        if (ops.length === 0) {
          this.#metrics.inc({ result: 'skipped' });
          return response;
        }
        this.#metrics.inc({ result: 'injected' });
        log.info({ namespace: review.request?.namespace, pod: pod?.metadata?.name ?? pod?.metadata?.generateName }, 'sidecar injected');
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
        const problems =
          validator && r?.object && r.kind?.kind === 'StoreCluster'
            ? await validator(r.operation ?? '', r.object as StoreCluster, r.oldObject as StoreCluster | undefined)
            : [];
        validations.inc({ result: problems.length > 0 ? 'denied' : 'allowed' });
        return problems.length === 0
          ? response
          : {
              ...response,
              allowed: false,
              status: {
                code: 422,
                reason: 'Invalid',
                message: `StoreCluster ${r?.namespace ?? ''}/${(r?.object as StoreCluster).metadata.name}: ${problems.join('; ')}`,
              },
            };
      } catch (err) {
        validations.inc({ result: 'error' });
        log.warn({ err }, 'StoreCluster validation could not look up what it needs');
        return {
          ...response,
          allowed: false,
          status: {
            code: 503,
            reason: 'ServiceUnavailable',
            message: `Ballast could not check this StoreCluster (${(err as Error).message}); try again`,
          },
        };
      }
    };
    const app = endpointApp({ https: { cert: cert.certPem, key: cert.keyPem }, bodyLimit: maxReviewBytes });
    app.get('/healthz', async (_req, reply) => reply.type('text/plain').send('ok\n'));
    // An AdmissionReview with a request naming its uid; the object itself is judged by the handler.
    const body = {
      type: 'object',
      required: ['request'],
      properties: {
        apiVersion: { type: 'string' },
        kind: { type: 'string' },
        request: { type: 'object', required: ['uid'], properties: { uid: { type: 'string' } } },
      },
    };
    const review = {
      type: 'object',
      required: ['apiVersion', 'kind', 'response'],
      properties: { apiVersion: { type: 'string' }, kind: { type: 'string' }, response: { type: 'object', additionalProperties: true } },
    };
    const route = (
      url: string,
      judge: (review: AdmissionReview, response: Record<string, unknown>) => Promise<Record<string, unknown>>,
    ): void => {
      app.post(url, { schema: { body, response: { 200: review } } }, async (req) => {
        const r = req.body as AdmissionReview;
        const response = await judge(r, { uid: r.request?.uid ?? '', allowed: true });
        return { apiVersion: r.apiVersion ?? 'admission.k8s.io/v1', kind: 'AdmissionReview', response };
      });
    };
    route('/mutate-pods', mutatePod);
    if (validator) route('/validate-storeclusters', validateCluster);
    // A body that is not an AdmissionReview: 400 saying so (the apiserver then applies the
    // webhook's failurePolicy); anything else is fastify's own answer.
    app.setErrorHandler((err: { statusCode?: number; message: string; validation?: unknown; code?: string }, _req, reply) => {
      if (
        err.validation ||
        err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' ||
        err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' ||
        err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE'
      ) {
        return reply.code(400).type('text/plain').send(`body is not an AdmissionReview (JSON): ${err.message}\n`);
      }
      log.error({ err }, 'admission webhook failed');
      return reply
        .code(err.statusCode ?? 500)
        .type('text/plain')
        .send(`${err.message}\n`);
    });
    this.#app = app;
  }

  /** Answer one request without a socket (tests). */
  inject(o: { method: 'GET' | 'POST'; url: string; payload?: unknown }): Promise<{ statusCode: number; body: string; json(): unknown }> {
    return this.#app.inject({
      method: o.method,
      url: o.url,
      ...(o.payload === undefined ? {} : { payload: o.payload as string | object }),
    });
  }

  /** A renewed certificate: new connections use it. */
  setCert(cert: ServingCert): void {
    (this.#app.server as Server).setSecureContext({ cert: cert.certPem, key: cert.keyPem });
  }

  async listen(address: string): Promise<number> {
    const i = address.lastIndexOf(':');
    const port = await listen(this.#app, address.slice(0, i), Number(address.slice(i + 1)));
    this.#log.info({ port }, 'injection webhook serving');
    return port;
  }

  async stop(): Promise<void> {
    await this.#app.close();
  }
}
