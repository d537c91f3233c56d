/**
 * The discovery service's runtime on every operator replica: informers of ResiliencePolicies,
 * Services, EndpointSlices, injected pods and (where their CRDs are installed) Gateway API
 * routes; the server that streams each sidecar its configuration; the status writers the leader
 * runs; and the mesh's certificate issuer when the mesh is on.
 */
import {
  AuthenticationV1Api,
  type CoreV1Api,
  type CustomObjectsApi,
  DiscoveryV1Api,
  type KubeConfig,
  type KubernetesListObject,
  PatchStrategy,
  type V1EndpointSlice,
  type V1Pod,
  type V1Service,
  setHeaderOptions,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { Clock } from '../../lib/clock.ts';
import { SharedInformer } from '../../lib/kube/informer.ts';
import type { Metrics } from '../../lib/metrics.ts';
import type { ResiliencePolicy } from '../../api/resiliencepolicy.ts';
import { type GatewayRoute, type ReferenceGrant, gatewayGroup, gatewayVersion } from '../../api/gateway.ts';
import { group, version } from '../api/storecluster.ts';
import { RouteStatus } from '../controllers/routes.ts';
import { ResiliencePolicyStatus, appliedVersionAnnotation, rejectedVersionAnnotation } from '../controllers/resiliencepolicy.ts';
import { MeshIssuer } from '../mesh/issuer.ts';
import { sidecarLabel } from '../webhook/inject.ts';
import { DiscoveryServer, attachedRoutes } from './server.ts';

export interface DiscoveryRuntime {
  server: DiscoveryServer;
  informers: Array<SharedInformer<never>>;
  status: ResiliencePolicyStatus;
  mesh: MeshIssuer | undefined;
  /** Started once the Gateway API's CRDs are found (looked for at start and every minute until then). */
  gateway: { informers: Array<SharedInformer<never>>; started: boolean; status: RouteStatus };
}

export interface DiscoveryRuntimeOptions {
  kubeconfig: KubeConfig;
  core: CoreV1Api;
  custom: CustomObjectsApi;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
  /** Namespace of the operator (the mesh's Secrets). */
  namespace: string;
  mesh?: { trustDomain: string; anchorSecret: string; issuerSecret: string; certificateTtlMs: number; rotationStepMs: number };
  /** With the mesh: the discovery service serves TLS with a certificate for these names. */
  discoveryTlsNames?: string[];
}

export function discoveryRuntime(o: DiscoveryRuntimeOptions): DiscoveryRuntime {
  const { kubeconfig: kc, core, custom } = o;
  const informer = { kubeconfig: kc, clock: o.clock, log: o.log };
  const discovery = kc.makeApiClient(DiscoveryV1Api);
  const policies = new SharedInformer<ResiliencePolicy>({
    ...informer,
    path: `/apis/${group}/${version}/resiliencepolicies`,
    list: () =>
      custom.listCustomObjectForAllNamespaces({ group, version, plural: 'resiliencepolicies' }) as Promise<
        KubernetesListObject<ResiliencePolicy>
      >,
  });
  const services = new SharedInformer<V1Service>({
    ...informer,
    path: '/api/v1/services',
    list: () => core.listServiceForAllNamespaces(),
  });
  const slices = new SharedInformer<V1EndpointSlice>({
    ...informer,
    path: '/apis/discovery.k8s.io/v1/endpointslices',
    list: () => discovery.listEndpointSliceForAllNamespaces(),
  });
  // Gateway API routes: their informers start only where the CRDs are installed (the operator's #startGateway).
  const gw = (plural: string) =>
    new SharedInformer<GatewayRoute>({
      ...informer,
      path: `/apis/${gatewayGroup}/${gatewayVersion}/${plural}`,
      list: () =>
        custom.listCustomObjectForAllNamespaces({ group: gatewayGroup, version: gatewayVersion, plural }) as Promise<
          KubernetesListObject<GatewayRoute>
        >,
    });
  const httpRoutes = gw('httproutes');
  const grpcRoutes = gw('grpcroutes');
  const grants = gw('referencegrants') as unknown as SharedInformer<ReferenceGrant>;
  const injected = `${sidecarLabel}=injected`;
  const sidecars = new SharedInformer<V1Pod>({
    ...informer,
    path: '/api/v1/pods',
    labelSelector: injected,
    list: () => core.listPodForAllNamespaces({ labelSelector: injected }),
  });
  // Acks arrive at whichever replica holds the sidecar's stream: recorded on its pod, read by the leader's status writer.
  const onAck = (namespace: string, pod: string, v: string, error: string): void => {
    const annotations = error
      ? { [rejectedVersionAnnotation]: `${v}: ${error}`.slice(0, 1024) }
      : { [appliedVersionAnnotation]: v, [rejectedVersionAnnotation]: null };
    core
      .patchNamespacedPod(
        { namespace, name: pod, body: { metadata: { annotations } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      )
      .catch((err: unknown) => {
        if ((err as { code?: number }).code !== 404)
          o.log.warn({ err, namespace, pod }, "could not record a sidecar's acknowledgement on its pod");
      });
  };
  const mesh = o.mesh?.trustDomain
    ? new MeshIssuer({
        core,
        authn: kc.makeApiClient(AuthenticationV1Api),
        namespace: o.namespace,
        ...o.mesh,
        kubeconfig: kc,
        clock: o.clock,
        log: o.log,
        metrics: o.metrics,
      })
    : undefined;
  return {
    server: new DiscoveryServer({
      policies,
      services,
      slices,
      sidecars,
      gateway: { httpRoutes, grpcRoutes, grants },
      clock: o.clock,
      log: o.log,
      metrics: o.metrics,
      onAck,
      ...(mesh ? { mesh, ...(o.discoveryTlsNames ? { tlsNames: o.discoveryTlsNames } : {}) } : {}),
    }),
    informers: [policies, services, slices, sidecars] as unknown as Array<SharedInformer<never>>,
    status: new ResiliencePolicyStatus({
      policies,
      services,
      slices,
      sidecars,
      ...(mesh ? { trustDomain: mesh.trustDomain } : {}),
      routes: {
        attached: () => attachedRoutes({ httpRoutes, grpcRoutes, grants }, services.list(), o.clock),
        onChange: (fn) => {
          for (const c of [httpRoutes, grpcRoutes, grants]) c.onChange(fn);
        },
      },
      custom,
      clock: o.clock,
      log: o.log,
      group,
      version,
    }),
    mesh,
    gateway: {
      informers: [httpRoutes, grpcRoutes, grants] as unknown as Array<SharedInformer<never>>,
      started: false,
      status: new RouteStatus({ httpRoutes, grpcRoutes, grants, services, custom, clock: o.clock, log: o.log }),
    },
  };
}
