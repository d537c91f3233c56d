/**
 * Sidecar injection (pure): the JSONPatch that adds `ballast sidecar` to a pod as a native
 * sidecar (an init container with `restartPolicy: Always`: it starts before the application
 * containers and stops after them), and points the application containers' HTTP_PROXY at it.
 * The sidecar gets its policies and endpoints from the operator's discovery service, as
 * `<namespace>/<pod>`. A pod opts out with the label or annotation `ballast.dev/inject: "false"`; a pod
 * already injected is left alone (the webhook may be called twice).
 */
import { posix } from 'node:path';
import type { V1Container, V1EnvVar, V1Pod, V1Volume } from '@kubernetes/client-node';
import { meshTokenAudience, meshTokenPath } from '../../api/mesh.ts';
import { inboundCapturePort, interceptionAnnotations, outboundCapturePort, sidecarUid } from '../../api/interception.ts';

const dirname = posix.dirname;

export const injectAnnotation = 'ballast.dev/inject';
export const injectedAnnotation = 'ballast.dev/injected';
/** A label on injected pods, so the operator can watch just them (for the policies' status). */
export const sidecarLabel = 'ballast.dev/sidecar';
export const sidecarName = 'ballast-sidecar';

export interface InjectOptions {
  image: string;
  imagePullPolicy: string;
  /** host:port of the discovery service. */
  discoveryAddress: string;
  proxyPort: number;
  adminPort: number;
  resources?: V1Container['resources'];
  /** Extra environment for the sidecar (e.g. OTEL_EXPORTER_OTLP_ENDPOINT). */
  env?: Array<{ name: string; value: string }>;
  /** Mesh identities on: the sidecar gets its pod's projected ServiceAccount token for the mesh audience. */
  mesh?: boolean;
  /**
   * The mesh's trust bundle (PEM): the sidecar's discovery stream is TLS, the operator checked
   * against it (later bundles come over the stream). Linkerd's injector does the same with its anchors.
   */
  trustBundlePem?: string;
  /**
   * Transparent interception: pods get the `ballast mesh-init` init container (iptables, NET_ADMIN)
   * instead of HTTP_PROXY. `enabled` is the default; a pod's `ballast.dev/interception` annotation
   * decides for it. The exclusions apply to every pod; a pod's annotations add to them.
   */
  interception?: { enabled: boolean; excludeOutboundPorts: string; excludeOutboundCidrs: string; excludeInboundPorts: string };
}

export const meshInitName = 'ballast-mesh-init';

/** The projected token volume a meshed sidecar proves its identity with. */
export const meshTokenVolume = 'ballast-mesh-token';

export interface PatchOp {
  op: 'add' | 'replace';
  path: string;
  value: unknown;
}

/** JSON Pointer escaping (RFC 6901). */
const esc = (s: string): string => s.replace(/~/g, '~0').replace(/\//g, '~1');

export function sidecarContainer(o: InjectOptions, intercept = false): V1Container {
  return {
    name: sidecarName,
    image: o.image,
    imagePullPolicy: o.imagePullPolicy,
    restartPolicy: 'Always',
    args: [
      'sidecar',
      '--config=',
      `--discovery-address=${o.discoveryAddress}`,
      `--proxy=127.0.0.1:${o.proxyPort}`,
      `--admin=0.0.0.0:${o.adminPort}`,
      ...(o.mesh ? [`--identity-token-file=${meshTokenPath}`] : []),
      ...(intercept ? [`--capture-outbound=127.0.0.1:${outboundCapturePort}`, `--capture-inbound=0.0.0.0:${inboundCapturePort}`] : []),
    ],
    ...(o.mesh ? { volumeMounts: [{ name: meshTokenVolume, mountPath: dirname(meshTokenPath), readOnly: true }] } : {}),
    env: [
      { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
      { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
      ...(o.mesh && o.trustBundlePem ? [{ name: 'BALLAST_SIDECAR_DISCOVERY_TRUST_BUNDLE', value: o.trustBundlePem }] : []),
      ...(o.env ?? []).filter((e) => !['POD_NAME', 'POD_NAMESPACE', 'BALLAST_SIDECAR_DISCOVERY_TRUST_BUNDLE'].includes(e.name)),
    ],
    ports: [{ name: 'ballast-admin', containerPort: o.adminPort }],
    startupProbe: { httpGet: { path: '/ready', port: o.adminPort }, periodSeconds: 1, failureThreshold: 60 },
    readinessProbe: { httpGet: { path: '/ready', port: o.adminPort }, periodSeconds: 5 },
    livenessProbe: { httpGet: { path: '/live', port: o.adminPort }, periodSeconds: 10, failureThreshold: 3 },
    resources: o.resources ?? { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '256Mi' } },
    securityContext: {
      runAsNonRoot: true,
      // Intercepting: a uid of its own, which the rules exempt (an app running as 65532 is still intercepted).
      runAsUser: intercept ? sidecarUid : 65532,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    },
  };
}

/** Does this pod's traffic go to its sidecar by iptables (else by HTTP_PROXY)? */
export function intercepts(pod: V1Pod, o: InjectOptions): boolean {
  const a = pod.metadata?.annotations?.[interceptionAnnotations.enabled];
  return a === 'true' ? true : a === 'false' ? false : (o.interception?.enabled ?? false);
}

const joined = (...lists: Array<string | undefined>): string =>
  lists
    .flatMap((l) => (l ?? '').split(','))
    .map((x) => x.trim())
    .filter(Boolean)
    .join(',');

/**
 * The init container that installs the pod's interception rules, first of all (before the sidecar
 * starts, so no connection of the pod's escapes them). Exclusions are passed as written:
 * `ballast mesh-init` refuses a bad one and says which (the pod stays in Init, the reason in its
 * status), rather than the pod running with rules it did not ask for.
 */
export function meshInitContainer(pod: V1Pod, o: InjectOptions): V1Container {
  const a = pod.metadata?.annotations ?? {};
  const i = o.interception;
  return {
    name: meshInitName,
    image: o.image,
    imagePullPolicy: o.imagePullPolicy,
    args: [
      'mesh-init',
      `--proxy-uid=${sidecarUid}`,
      `--admin-port=${o.adminPort}`,
      `--exclude-outbound-ports=${joined(i?.excludeOutboundPorts, a[interceptionAnnotations.excludeOutboundPorts])}`,
      `--exclude-outbound-cidrs=${joined(i?.excludeOutboundCidrs, a[interceptionAnnotations.excludeOutboundCidrs])}`,
      `--exclude-inbound-ports=${joined(i?.excludeInboundPorts, a[interceptionAnnotations.excludeInboundPorts])}`,
    ],
    terminationMessagePolicy: 'FallbackToLogsOnError',
    resources: { requests: { cpu: '10m', memory: '32Mi' }, limits: { memory: '128Mi' } },
    securityContext: {
      // iptables needs root and these two capabilities in the pod's network namespace; nothing else.
      runAsUser: 0,
      runAsNonRoot: false,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] },
    },
  };
}

/** Does this pod want a sidecar (and not have one yet)? */
export function wantsInjection(pod: V1Pod): boolean {
  const a = pod.metadata?.annotations ?? {};
  // Opt out by label (the webhook's objectSelector sees it) or by annotation.
  if (a[injectAnnotation] === 'false' || pod.metadata?.labels?.[injectAnnotation] === 'false' || a[injectedAnnotation] === 'true')
    return false;
  if ([...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].some((c) => c.name === sidecarName)) return false;
  return true;
}

export function injectionPatch(pod: V1Pod, o: InjectOptions): PatchOp[] {
  if (!wantsInjection(pod)) return [];
  const ops: PatchOp[] = [];
  const proxy = `http://127.0.0.1:${o.proxyPort}`;
  // Calls to the pod itself, loopback and the Kubernetes API do not go through the proxy.
  const noProxy = 'localhost,127.0.0.1,::1,kubernetes.default.svc,kubernetes.default.svc.cluster.local';
  const proxyEnv: V1EnvVar[] = [
    { name: 'HTTP_PROXY', value: proxy },
    { name: 'http_proxy', value: proxy },
    { name: 'NO_PROXY', value: noProxy },
    { name: 'no_proxy', value: noProxy },
    // Node.js (24+) honours HTTP_PROXY only when asked to; most other runtimes do by default.
    { name: 'NODE_USE_ENV_PROXY', value: '1' },
  ];
  const intercept = intercepts(pod, o);
  const init = pod.spec?.initContainers;
  // The sidecar goes first, so it is up before any other init container makes calls; when
  // intercepting, after the rules (the init containers after it are intercepted too).
  const first = intercept ? [meshInitContainer(pod, o), sidecarContainer(o, true)] : [sidecarContainer(o)];
  if (!init || init.length === 0) ops.push({ op: 'add', path: '/spec/initContainers', value: first });
  else first.forEach((c, i) => ops.push({ op: 'add', path: `/spec/initContainers/${i}`, value: c }));
  if (o.mesh && !(pod.spec?.volumes ?? []).some((v) => v.name === meshTokenVolume)) {
    // A token only the operator accepts (its own audience), bound to this pod, rotated by the kubelet.
    const volume: V1Volume = {
      name: meshTokenVolume,
      projected: {
        sources: [{ serviceAccountToken: { audience: meshTokenAudience, expirationSeconds: 3600, path: 'token' } }],
      },
    };
    if (!pod.spec?.volumes || pod.spec.volumes.length === 0) ops.push({ op: 'add', path: '/spec/volumes', value: [volume] });
    else ops.push({ op: 'add', path: '/spec/volumes/-', value: volume });
  }
  // Intercepted: the application needs no proxy settings.
  if (!intercept) addProxyEnv(pod, proxyEnv, ops);
  if (!pod.metadata?.annotations) ops.push({ op: 'add', path: '/metadata/annotations', value: { [injectedAnnotation]: 'true' } });
  else ops.push({ op: 'add', path: `/metadata/annotations/${esc(injectedAnnotation)}`, value: 'true' });
  if (!pod.metadata?.labels) ops.push({ op: 'add', path: '/metadata/labels', value: { [sidecarLabel]: 'injected' } });
  else ops.push({ op: 'add', path: `/metadata/labels/${esc(sidecarLabel)}`, value: 'injected' });
  return ops;
}

/** HTTP_PROXY and friends for the application containers (what they set themselves stays). */
function addProxyEnv(pod: V1Pod, proxyEnv: V1EnvVar[], ops: PatchOp[]): void {
  (pod.spec?.containers ?? []).forEach((c, i) => {
    const have = new Set((c.env ?? []).map((e) => e.name));
    const add = proxyEnv.filter((e) => !have.has(e.name));
    if (add.length === 0) return;
    if (!c.env || c.env.length === 0) ops.push({ op: 'add', path: `/spec/containers/${i}/env`, value: add });
    else for (const e of add) ops.push({ op: 'add', path: `/spec/containers/${i}/env/-`, value: e });
  });
}
