/** `ballast operator`: reconcile StoreClusters (leader-elected), serve metrics and health. */
import { KubeConfig } from '@kubernetes/client-node';
import { realClock } from '../lib/clock.ts';
import { ConfigError, f, loadConfig, renderFlags } from '../lib/config.ts';
import { Lifecycle } from '../lib/lifecycle.ts';
import { startTelemetry, telemetryComponent } from '../lib/otel.ts';
import { createLogger } from '../lib/log.ts';
import { serveMetrics } from '../lib/endpoints.ts';
import { processMetrics } from '../lib/metrics.ts';
import { systemRandom } from '../lib/random.ts';
import { Operator } from '../operator/operator.ts';
import { InjectionWebhook } from '../operator/webhook/webhook.ts';
import type { Command } from './command.ts';
import { trustDomainProblem } from '../api/mesh.ts';

const flags = {
  kubeconfig: f.string('kubeconfig to use; empty: the in-cluster service account, else $KUBECONFIG or ~/.kube/config', {
    default: '',
    env: 'KUBECONFIG',
  }),
  namespace: f.string("namespace of the leader-election Lease (the operator's own)", { default: 'ballast-system', env: 'POD_NAMESPACE' }),
  leaderElect: f.bool('elect one leader among replicas over a Lease; only the leader reconciles', { default: true }),
  leaseDuration: f.duration('how long a leader holds the Lease without renewing it', { default: 15_000, min: 1000 }),
  renewDeadline: f.duration('how long the leader keeps trying to renew before it steps down', { default: 10_000, min: 500 }),
  retryPeriod: f.duration('how often candidates try, and the leader renews', { default: 2_000, min: 100 }),
  identity: f.string("this replica's name in the leader-election Lease; default: the pod name, else host_pid", {
    default: '',
    env: 'POD_NAME',
  }),
  workers: f.int('StoreClusters reconciled at once', { default: 2, min: 1, max: 64 }),
  metricsAddr: f.string('host:port for /metrics', { default: '0.0.0.0:8080' }),
  webhookAddr: f.string('host:port of the sidecar-injection webhook (HTTPS, self-managed certificate); empty: off', {
    default: '0.0.0.0:9443',
  }),
  webhookService: f.string('the Service in front of the webhook (its DNS name is in the serving certificate)', {
    default: 'ballast-operator-webhook',
  }),
  webhookConfig: f.string('the MutatingWebhookConfiguration whose caBundle the operator keeps', { default: 'ballast-sidecar-injector' }),
  sidecarEnv: f.string(
    'environment for every injected sidecar, as a JSON list of {"name","value"} (e.g. [{"name":"OTEL_EXPORTER_OTLP_ENDPOINT","value":"http://collector:4318"}])',
    { default: '[]' },
  ),
  validatingWebhookConfig: f.string(
    'the ValidatingWebhookConfiguration for StoreClusters whose caBundle the operator keeps; empty: StoreCluster validation off',
    { default: '' },
  ),
  webhookSecret: f.string("the Secret (in --namespace) holding the webhook's CA and serving certificate", {
    default: 'ballast-webhook-tls',
  }),
  sidecarImage: f.string('image of the injected sidecar', { default: 'ballast:0.2.0', env: 'BALLAST_SIDECAR_IMAGE' }),
  discoveryService: f.string('the Service in front of the discovery service (injected sidecars connect to it)', {
    default: 'ballast-operator-discovery',
  }),
  discoveryAddr: f.string('host:port of the discovery service that streams policies and endpoints to sidecars (empty: off)', {
    default: '0.0.0.0:8081',
  }),
  meshTrustDomain: f.string(
    "the mesh's trust domain: sidecars get certificates for spiffe://<trust-domain>/ns/<namespace>/sa/<serviceaccount> over discovery; empty: no mesh identities",
    { default: 'cluster.local' },
  ),
  meshTrustAnchorSecret: f.string(
    "the Secret (in --namespace; tls.crt, tls.key, ca.crt) with the mesh's trust anchor: made when missing; provide your own (e.g. from cert-manager) to keep the anchor outside the cluster's control",
    { default: 'ballast-mesh-trust-anchor' },
  ),
  meshIssuerSecret: f.string(
    'the Secret (in --namespace) with the issuer that signs workload certificates: made from the trust anchor and renewed before expiry when the anchor has tls.key; else provide it',
    { default: 'ballast-mesh-issuer' },
  ),
  meshRotationStep: f.duration(
    "a trust-anchor rotation's step: how long a widened trust bundle, then the new anchor's certificates, have to reach every sidecar before the next step",
    { default: 600_000, min: 1000 },
  ),
  interception: f.bool(
    "inject transparent interception (the ballast mesh-init init container, iptables, NET_ADMIN) instead of HTTP_PROXY; a pod's ballast.dev/interception annotation decides for it",
    { default: false },
  ),
  interceptionExcludeOutboundPorts: f.string(
    'comma-separated ports no intercepting pod sends through its sidecar (pods add theirs by annotation)',
    {
      default: '',
    },
  ),
  interceptionExcludeOutboundCidrs: f.string('comma-separated CIDRs no intercepting pod sends through its sidecar', { default: '' }),
  interceptionExcludeInboundPorts: f.string("comma-separated ports whose inbound connections reach the pods' applications directly", {
    default: '',
  }),
  discoveryTls: f.bool(
    'with the mesh on: the discovery service is TLS (a certificate for its Service from the mesh issuer) and authenticates every sidecar by its mesh certificate or its pod token',
    { default: true },
  ),
  meshCertificateTtl: f.duration('how long workload certificates live (sidecars renew at about half-way)', {
    default: 86_400_000,
    min: 60_000,
  }),
  logLevel: f.oneOf(['trace', 'debug', 'info', 'warn', 'error'], 'log level', { default: 'info', env: 'BALLAST_LOG_LEVEL' }),
};

export const operatorCommand: Command = {
  name: 'operator',
  summary: 'run the Ballast operator: StoreCluster reconcile with quorum-safe scaling, leader-elected over a Lease',
  async run(args, io) {
    const { values: v, help } = loadConfig(flags, { argv: args, env: io.env, envPrefix: 'BALLAST_OPERATOR' });
    if (help) {
      io.out(`Usage: ballast operator [flags]\n\nFlags:\n${renderFlags(flags, 'BALLAST_OPERATOR')}\n`);
      return 0;
    }
    const tdProblem = v.meshTrustDomain ? trustDomainProblem(v.meshTrustDomain) : undefined;
    if (tdProblem)
      throw new ConfigError([
        {
          field: '--mesh-trust-domain',
          value: v.meshTrustDomain,
          allowed: `a SPIFFE trust domain (lowercase letters, digits, '.', '-', '_'; empty: no mesh): it ${tdProblem}`,
          source: 'flag',
        },
      ]);
    const log = createLogger({ level: v.logLevel, env: io.env, base: { program: 'operator' } });
    const kc = new KubeConfig();
    // In a pod, the service account; otherwise a kubeconfig (the flag, $KUBECONFIG, ~/.kube/config).
    if (v.kubeconfig) kc.loadFromFile(v.kubeconfig);
    else if (io.env['KUBERNETES_SERVICE_HOST']) kc.loadFromCluster();
    else kc.loadFromDefault();
    const metrics = processMetrics();
    const telemetry = await startTelemetry('operator', io.env);
    const [host, port] = [
      v.metricsAddr.slice(0, v.metricsAddr.lastIndexOf(':')),
      Number(v.metricsAddr.slice(v.metricsAddr.lastIndexOf(':') + 1)),
    ];
    let served: Awaited<ReturnType<typeof serveMetrics>> | undefined;
    const op = new Operator({
      kubeconfig: kc,
      clock: realClock,
      random: systemRandom,
      log,
      metrics,
      namespace: v.namespace,
      leaderElection: v.leaderElect,
      ...(v.identity ? { identity: v.identity } : {}),
      workers: v.workers,
      discoveryAddress: v.discoveryAddr,
      ...(v.meshTrustDomain
        ? {
            mesh: {
              trustDomain: v.meshTrustDomain,
              anchorSecret: v.meshTrustAnchorSecret,
              issuerSecret: v.meshIssuerSecret,
              certificateTtlMs: v.meshCertificateTtl,
              rotationStepMs: v.meshRotationStep,
            },
            ...(v.discoveryTls
              ? {
                  discoveryTlsNames: [
                    `${v.discoveryService}.${v.namespace}.svc`,
                    `${v.discoveryService}.${v.namespace}.svc.cluster.local`,
                    `${v.discoveryService}.${v.namespace}`,
                    v.discoveryService,
                  ],
                }
              : {}),
          }
        : {}),
      leaseMs: v.leaseDuration,
      renewDeadlineMs: v.renewDeadline,
      retryMs: v.retryPeriod,
      ...(telemetry ? { tracer: telemetry.tracer } : {}),
    });
    // Ready once the caches are synced and, when it runs here, the admission webhook serves (with
    // its CA in the configurations): a StoreCluster applied right after install is judged, not refused.
    let webhookServing = !v.webhookAddr;
    const lc = new Lifecycle({ log })
      .add(telemetryComponent(telemetry))
      .add({
        name: 'metrics',
        start: async () => {
          served = await serveMetrics(metrics, host || '0.0.0.0', port, {
            '/healthz': () => ({ ok: true, reason: '' }),
            '/readyz': () =>
              !op.synced
                ? { ok: false, reason: 'informer caches are not synced yet' }
                : !webhookServing
                  ? { ok: false, reason: 'the admission webhook is not serving yet' }
                  : v.meshTrustDomain && v.discoveryAddr && !op.meshTrustBundle
                    ? // Pods injected now would get no trust bundle for the discovery stream.
                      { ok: false, reason: 'the mesh issuer is not loaded yet (see the log: "the mesh issuer check failed")' }
                    : { ok: true, reason: '' },
          });
        },
        stop: async () => served?.close(),
      })
      .add({ name: 'operator', start: () => op.start(), stop: () => op.stop() });
    if (v.webhookAddr) {
      let sidecarEnv: Array<{ name: string; value: string }>;
      try {
        sidecarEnv = JSON.parse(v.sidecarEnv) as typeof sidecarEnv;
        if (
          !Array.isArray(sidecarEnv) ||
          !sidecarEnv.every((e) => typeof e?.name === 'string' && e.name !== '' && typeof e.value === 'string')
        )
          throw new Error('not a list');
      } catch {
        throw new ConfigError([
          {
            field: '--sidecar-env',
            value: v.sidecarEnv,
            allowed: 'a JSON list of {"name": ..., "value": ...} with string values',
            source: 'flag',
          },
        ]);
      }
      const discoveryPort = Number(v.discoveryAddr.slice(v.discoveryAddr.lastIndexOf(':') + 1));
      const webhook = new InjectionWebhook({
        kubeconfig: kc,
        namespace: v.namespace,
        address: v.webhookAddr,
        service: v.webhookService,
        webhookConfig: v.webhookConfig,
        validatingConfig: v.validatingWebhookConfig,
        secretName: v.webhookSecret,
        inject: {
          image: v.sidecarImage,
          imagePullPolicy: 'IfNotPresent',
          discoveryAddress: `${v.discoveryService}.${v.namespace}.svc:${discoveryPort}`,
          proxyPort: 15080,
          adminPort: 15000,
          env: sidecarEnv,
          mesh: Boolean(v.meshTrustDomain),
          interception: {
            enabled: v.interception,
            excludeOutboundPorts: v.interceptionExcludeOutboundPorts,
            excludeOutboundCidrs: v.interceptionExcludeOutboundCidrs,
            excludeInboundPorts: v.interceptionExcludeInboundPorts,
          },
        },
        ...(v.meshTrustDomain && v.discoveryTls ? { trustBundle: () => op.meshTrustBundle } : {}),
        clock: realClock,
        log,
        metrics,
      });
      lc.add({
        name: 'webhook',
        start: async () => {
          await webhook.start();
          webhookServing = true;
        },
        stop: () => webhook.stop(),
      });
    }
    const done = new Promise<number>((resolve) => lc.handleSignals(resolve));
    await lc.start();
    log.info({ metrics: v.metricsAddr, leaderElection: v.leaderElect }, 'operator started');
    return done;
  },
};
