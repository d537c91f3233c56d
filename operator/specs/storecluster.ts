/**
 * Pure builders: a StoreCluster in, the Kubernetes objects that run it out. No I/O; the
 * reconciler applies what these return with server-side apply and one field manager.
 *
 * - a headless peer Service (`<name>-peer`) publishing not-ready addresses, so members find
 *   each other by `<pod>.<name>-peer.<ns>.svc.cluster.local` before any of them is ready;
 * - a client Service (`<name>-client`) on 2379;
 * - a StatefulSet with `updateStrategy: OnDelete` (the operator replaces pods itself, one at a
 *   time, leader last) and `podManagementPolicy: Parallel` (a new cluster's members must start
 *   together: none is ready before a quorum runs);
 * - a PodDisruptionBudget allowing exactly the fault tolerance ((n-1)/2) to be disrupted;
 * - a ServiceAccount without API access (members never call the Kubernetes API).
 */
import type { V1Container, V1PodDisruptionBudget, V1Secret, V1Service, V1ServiceAccount, V1StatefulSet } from '@kubernetes/client-node';
import type { StoreBackup } from '../api/storebackup.ts';
import type { StoreCluster } from '../api/storecluster.ts';

export const labels = {
  name: 'app.kubernetes.io/name',
  instance: 'app.kubernetes.io/instance',
  managedBy: 'app.kubernetes.io/managed-by',
  component: 'app.kubernetes.io/component',
} as const;

export const fieldManager = 'ballast-operator';
export const clientPort = 2379;
export const peerPort = 2380;
export const metricsPort = 2381;
export const dataDir = '/var/lib/ballast';

/** Labels every object of one StoreCluster carries; the member pods are selected by these. */
export function selectorLabels(sc: StoreCluster): Record<string, string> {
  return { [labels.name]: 'ballast-store', [labels.instance]: sc.metadata.name };
}

export function commonLabels(sc: StoreCluster): Record<string, string> {
  return { ...selectorLabels(sc), [labels.managedBy]: 'ballast-operator' };
}

export const peerServiceName = (sc: StoreCluster) => `${sc.metadata.name}-peer`;
export const clientServiceName = (sc: StoreCluster) => `${sc.metadata.name}-client`;
export const tokenSecretName = (sc: StoreCluster) => `${sc.metadata.name}-token`;
export const rootSecretName = (sc: StoreCluster) => sc.spec.auth?.rootSecretName ?? `${sc.metadata.name}-root`;
export const memberName = (sc: StoreCluster, ordinal: number) => `${sc.metadata.name}-${ordinal}`;
/**
 * A member's resources when the spec names none: a request the scheduler can count on, and a
 * memory limit so that one member's runaway memory (a burst of large reads) ends in that
 * member's restart, not in the node's OOM killer choosing among every pod. The store keeps its
 * key space in memory: size the limit above the data's size (spec.resources).
 */
export const defaultMemberResources = { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '1Gi' } };

export const imageOf = (sc: StoreCluster) => sc.spec.image ?? `ballast:${sc.spec.version}`;

/** Where a member's TLS Secrets are mounted (spec.tls). */
export const tlsDir = '/etc/ballast/tls';
const peerScheme = (sc: StoreCluster) => (sc.spec.tls?.peerSecretName ? 'https' : 'http');
const clientScheme = (sc: StoreCluster) => (sc.spec.tls?.clientSecretName ? 'https' : 'http');

/**
 * The name the operator expects in members' client certificates (it dials pods by IP, and checks
 * the certificate against this name): the client Service's.
 */
export const clientTlsName = (sc: StoreCluster) => `${clientServiceName(sc)}.${sc.metadata.namespace}.svc`;

/** A member's stable peer URL (what it advertises and what others dial). */
export function peerUrl(sc: StoreCluster, ordinal: number): string {
  return `${peerScheme(sc)}://${memberName(sc, ordinal)}.${peerServiceName(sc)}.${sc.metadata.namespace}.svc.cluster.local:${peerPort}`;
}

export function clientUrl(sc: StoreCluster, ordinal: number): string {
  return `${clientScheme(sc)}://${memberName(sc, ordinal)}.${peerServiceName(sc)}.${sc.metadata.namespace}.svc.cluster.local:${clientPort}`;
}

/** `name=peerURL,...` for members 0..n-1 (the bootstrap configuration). */
export function initialCluster(sc: StoreCluster, n: number): string {
  return Array.from({ length: n }, (_, i) => `${memberName(sc, i)}=${peerUrl(sc, i)}`).join(',');
}

function owner(sc: StoreCluster) {
  return [
    {
      apiVersion: sc.apiVersion,
      kind: 'StoreCluster',
      name: sc.metadata.name,
      uid: sc.metadata.uid ?? '',
      controller: true,
      blockOwnerDeletion: true,
    },
  ];
}

function meta(sc: StoreCluster, name: string, component: string) {
  return {
    name,
    namespace: sc.metadata.namespace,
    labels: { ...commonLabels(sc), [labels.component]: component },
    ownerReferences: owner(sc),
  };
}

export function peerService(sc: StoreCluster): V1Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: meta(sc, peerServiceName(sc), 'peer'),
    spec: {
      clusterIP: 'None',
      publishNotReadyAddresses: true,
      selector: selectorLabels(sc),
      ports: [
        { name: 'client', port: clientPort, targetPort: clientPort },
        { name: 'peer', port: peerPort, targetPort: peerPort },
      ],
    },
  };
}

export function clientService(sc: StoreCluster): V1Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: meta(sc, clientServiceName(sc), 'client'),
    spec: {
      selector: selectorLabels(sc),
      ports: [
        { name: 'client', port: clientPort, targetPort: clientPort },
        { name: 'metrics', port: metricsPort, targetPort: metricsPort },
      ],
    },
  };
}

export function serviceAccount(sc: StoreCluster): V1ServiceAccount {
  return { apiVersion: 'v1', kind: 'ServiceAccount', metadata: meta(sc, sc.metadata.name, 'member'), automountServiceAccountToken: false };
}

/** The cluster token: made once (from the caller's random bytes) and never changed. */
export function tokenSecret(sc: StoreCluster, token: string): V1Secret {
  return { apiVersion: 'v1', kind: 'Secret', metadata: meta(sc, tokenSecretName(sc), 'token'), type: 'Opaque', stringData: { token } };
}

/** The root user's credentials (spec.auth): made once, from the caller's random password. */
export function rootSecret(sc: StoreCluster, password: string): V1Secret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: meta(sc, rootSecretName(sc), 'auth'),
    type: 'kubernetes.io/basic-auth',
    stringData: { username: 'root', password },
  };
}

/** Members that may be down at once without losing quorum. */
export function faultTolerance(replicas: number): number {
  return Math.floor((replicas - 1) / 2);
}

export function disruptionBudget(sc: StoreCluster): V1PodDisruptionBudget {
  return {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: meta(sc, sc.metadata.name, 'member'),
    spec: { maxUnavailable: faultTolerance(sc.spec.replicas), selector: { matchLabels: selectorLabels(sc) } },
  };
}

/**
 * A digest of everything in the spec that a running member must be replaced to pick up (image,
 * version, resources, Raft timing, compaction, quota, pod overrides), and nothing that changes
 * with membership: scaling must not make every member look out of date.
 */
export function specHash(sc: StoreCluster): string {
  const { replicas: _r, storage: _s, ...rest } = sc.spec;
  const stable = (v: unknown): string =>
    Array.isArray(v)
      ? `[${v.map(stable).join(',')}]`
      : v && typeof v === 'object'
        ? `{${Object.keys(v)
            .sort()
            .map((k) => `${JSON.stringify(k)}:${stable((v as Record<string, unknown>)[k])}`)
            .join(',')}}`
        : (JSON.stringify(v) ?? 'null');
  const text = stable({ ...rest, image: imageOf(sc) });
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, '0');
}

export const specHashAnnotation = 'ballast.dev/spec-hash';

export interface MemberSetOptions {
  /** StatefulSet replicas (may differ from spec.replicas while scaling one member at a time). */
  replicas: number;
  /** The configuration new members bootstrap with (`initial-cluster`), `new` or `existing`. */
  initialCluster: string;
  clusterState: 'new' | 'existing';
  /** A recovery run: the member that starts as a one-member cluster from its data, once per plan id. */
  forceNewCluster?: { member: string; id: string };
  /** spec.restore's StoreBackup: while the cluster is new, each member's data is restored from it first. */
  restoreFrom?: StoreBackup;
}

export function statefulSet(sc: StoreCluster, o: MemberSetOptions): V1StatefulSet {
  const spec = sc.spec;
  // Members opt out of sidecar injection (a namespace with injection on would give each one a
  // proxy it never uses: the store's clients and peers reach it directly); a podTemplate label
  // ballast.dev/inject: "true" opts back in.
  const podLabels = {
    'ballast.dev/inject': 'false',
    ...(spec.podTemplate?.labels ?? {}),
    ...commonLabels(sc),
    [labels.component]: 'member',
  };
  const peerDomain = `$(POD_NAME).${peerServiceName(sc)}.${sc.metadata.namespace}.svc.cluster.local`;
  const [cs, ps] = [clientScheme(sc), peerScheme(sc)];
  const tls = spec.tls ?? {};
  const args = [
    'store',
    '--name=$(POD_NAME)',
    `--data-dir=${dataDir}/data`,
    `--listen-client-urls=${cs}://0.0.0.0:${clientPort}`,
    `--advertise-client-urls=${cs}://${peerDomain}:${clientPort}`,
    `--listen-peer-urls=${ps}://0.0.0.0:${peerPort}`,
    `--initial-advertise-peer-urls=${ps}://${peerDomain}:${peerPort}`,
    // TLS from Secrets of type kubernetes.io/tls with ca.crt; certificates are required both ways.
    ...(tls.clientSecretName
      ? [
          `--cert-file=${tlsDir}/client/tls.crt`,
          `--key-file=${tlsDir}/client/tls.key`,
          `--trusted-ca-file=${tlsDir}/client/ca.crt`,
          '--client-cert-auth=true',
        ]
      : []),
    ...(tls.peerSecretName
      ? [
          `--peer-cert-file=${tlsDir}/peer/tls.crt`,
          `--peer-key-file=${tlsDir}/peer/tls.key`,
          `--peer-trusted-ca-file=${tlsDir}/peer/ca.crt`,
          '--peer-client-cert-auth=true',
        ]
      : []),
    `--listen-metrics-urls=http://0.0.0.0:${metricsPort}`,
    `--initial-cluster=${o.initialCluster}`,
    `--initial-cluster-state=${o.clusterState}`,
    '--initial-cluster-token=$(CLUSTER_TOKEN)',
    `--heartbeat-interval=${spec.timing.heartbeatMs}`,
    `--election-timeout=${spec.timing.electionMs}`,
    `--auto-compaction-mode=${spec.compaction.mode}`,
    `--auto-compaction-retention=${spec.compaction.retention}`,
    ...(spec.quotaBytes ? [`--quota-backend-bytes=${spec.quotaBytes}`] : []),
    ...(spec.snapshotCount ? [`--snapshot-count=${spec.snapshotCount}`] : []),
    ...(o.forceNewCluster
      ? [`--force-new-cluster-member=${o.forceNewCluster.member}`, `--force-new-cluster-id=${o.forceNewCluster.id}`]
      : []),
  ];
  const restoreCa = o.restoreFrom && o.clusterState === 'new' ? o.restoreFrom.spec.storage.caSecret : undefined;
  const probe = (path: string, failureThreshold: number) => ({
    httpGet: { path, port: metricsPort },
    periodSeconds: 2,
    timeoutSeconds: 2,
    failureThreshold,
  });
  return {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: meta(sc, sc.metadata.name, 'member'),
    spec: {
      serviceName: peerServiceName(sc),
      replicas: o.replicas,
      podManagementPolicy: 'Parallel',
      updateStrategy: { type: 'OnDelete' },
      selector: { matchLabels: selectorLabels(sc) },
      persistentVolumeClaimRetentionPolicy: { whenDeleted: 'Retain', whenScaled: spec.storage.retainOnScaleDown ? 'Retain' : 'Delete' },
      template: {
        metadata: {
          labels: podLabels,
          annotations: {
            ...(spec.podTemplate?.annotations ?? {}),
            'ballast.dev/version': spec.version,
            [specHashAnnotation]: specHash(sc),
          },
        },
        spec: {
          serviceAccountName: sc.metadata.name,
          automountServiceAccountToken: false,
          terminationGracePeriodSeconds: 30,
          securityContext: {
            runAsNonRoot: true,
            runAsUser: 65532,
            runAsGroup: 65532,
            fsGroup: 65532,
            seccompProfile: { type: 'RuntimeDefault' },
          },
          ...(spec.podTemplate?.nodeSelector ? { nodeSelector: spec.podTemplate.nodeSelector } : {}),
          ...(spec.podTemplate?.tolerations ? { tolerations: spec.podTemplate.tolerations } : {}),
          affinity: spec.podTemplate?.affinity ?? {
            podAntiAffinity: {
              preferredDuringSchedulingIgnoredDuringExecution: [
                {
                  weight: 100,
                  podAffinityTerm: { topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: selectorLabels(sc) } },
                },
              ],
            },
          },
          topologySpreadConstraints: spec.podTemplate?.topologySpreadConstraints ?? [
            {
              maxSkew: 1,
              topologyKey: 'topology.kubernetes.io/zone',
              whenUnsatisfiable: 'ScheduleAnyway',
              labelSelector: { matchLabels: selectorLabels(sc) },
            },
          ],
          ...(o.restoreFrom && o.clusterState === 'new'
            ? { initContainers: [restoreContainer(sc, o.restoreFrom, o.initialCluster, `${ps}://${peerDomain}:${peerPort}`)] }
            : {}),
          containers: [
            {
              name: 'store',
              image: imageOf(sc),
              args,
              // The user's variables first: for a name given twice the last one counts, so the operator's win.
              env: [
                ...(spec.podTemplate?.env ?? []).filter((e) => e.name !== 'POD_NAME' && e.name !== 'CLUSTER_TOKEN'),
                { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
                { name: 'CLUSTER_TOKEN', valueFrom: { secretKeyRef: { name: tokenSecretName(sc), key: 'token' } } },
              ],
              ports: [
                { name: 'client', containerPort: clientPort },
                { name: 'peer', containerPort: peerPort },
                { name: 'metrics', containerPort: metricsPort },
              ],
              readinessProbe: probe('/readyz', 3),
              // Liveness asks only whether the process answers: a member without a leader is
              // waiting for its peers, and restarting it would not bring them back.
              livenessProbe: { tcpSocket: { port: metricsPort }, periodSeconds: 5, failureThreshold: 6, initialDelaySeconds: 5 },
              resources: spec.resources ?? defaultMemberResources,
              securityContext: { readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
              volumeMounts: [
                { name: 'data', mountPath: dataDir },
                ...(tls.clientSecretName ? [{ name: 'tls-client', mountPath: `${tlsDir}/client`, readOnly: true }] : []),
                ...(tls.peerSecretName ? [{ name: 'tls-peer', mountPath: `${tlsDir}/peer`, readOnly: true }] : []),
              ],
            },
          ],
          ...(tls.clientSecretName || tls.peerSecretName || restoreCa
            ? {
                volumes: [
                  ...(tls.clientSecretName
                    ? [{ name: 'tls-client', secret: { secretName: tls.clientSecretName, defaultMode: 0o440 } }]
                    : []),
                  ...(tls.peerSecretName ? [{ name: 'tls-peer', secret: { secretName: tls.peerSecretName, defaultMode: 0o440 } }] : []),
                  ...(restoreCa ? [{ name: 's3-ca', secret: { secretName: restoreCa, defaultMode: 0o440 } }] : []),
                ],
              }
            : {}),
        },
      },
      volumeClaimTemplates: [
        {
          metadata: { name: 'data', labels: commonLabels(sc) },
          spec: {
            accessModes: ['ReadWriteOnce'],
            resources: { requests: { storage: spec.storage.size } },
            ...(spec.storage.storageClassName ? { storageClassName: spec.storage.storageClassName } : {}),
          },
        },
      ],
    },
  };
}

/** major.minor.patch as numbers, for ordering versions. */
const parts = (v: string): number[] => v.split('.').map((x) => Number.parseInt(x, 10) || 0);
const older = (a: string, b: string): boolean => {
  const [x, y] = [parts(a), parts(b)];
  for (let i = 0; i < 3; i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) < (y[i] ?? 0);
  return false;
};
/** The newest on-disk format a ballast version reads: 0.1.x reads format 1 only, 0.2.0 on format 2. */
export const formatReadBy = (v: string): number => (older(v, '0.2.0') ? 1 : 2);

/**
 * Why moving the members from the versions they run to `target` would leave them unable to read
 * their own data, or undefined when it may go ahead. A cluster writes format 2 once every member
 * reads it, so going back is safe only while some member still runs a version that reads less:
 * a rollback in the middle of an upgrade, not after it (as with etcd's downgrades).
 */
export function downgradeRefusal(target: string, running: string[]): string | undefined {
  if (running.length === 0) return undefined;
  const written = Math.min(...running.map(formatReadBy));
  if (formatReadBy(target) >= written) return undefined;
  const versions = [...new Set(running)].sort().join(', ');
  return `every member runs ${versions}, which writes its data in format ${written}; ${target} reads only format ${formatReadBy(target)} and would not read it. Set spec.version back to ${running[0]}; to go back to ${target}, restore a snapshot taken before the upgrade into a new StoreCluster`;
}

/**
 * The init container of a cluster created from a backup: `ballast backup restore` of the
 * StoreBackup into the member's empty data directory, with the same --initial-cluster and token
 * on every member (so they restore the same state and membership), checked against the backup's
 * manifest; with toRevision or toTime, the archive replayed onto it up to that point (every member
 * replays the same segments: a target the archive has not reached yet fails the container, which
 * the kubelet retries, until it has). A member that has data already (a restart) is left as it is.
 */
function restoreContainer(sc: StoreCluster, sb: StoreBackup, initialCluster: string, advertisePeerUrl: string): V1Container {
  const st = sb.spec.storage;
  const secretEnv = (name: string, key: string) => ({ name, valueFrom: { secretKeyRef: { name: st.credentialsSecret, key } } });
  return {
    name: 'restore',
    image: imageOf(sc),
    args: [
      'backup',
      'restore',
      sb.metadata.name,
      '--if-empty',
      `--data-dir=${dataDir}/data`,
      '--name=$(POD_NAME)',
      ...(sc.spec.restore?.toRevision ? [`--to-revision=${sc.spec.restore.toRevision}`] : []),
      ...(sc.spec.restore?.toTime ? [`--to-time=${sc.spec.restore.toTime}`] : []),
      `--initial-cluster=${initialCluster}`,
      '--initial-cluster-token=$(CLUSTER_TOKEN)',
      `--initial-advertise-peer-urls=${advertisePeerUrl}`,
      `--s3-endpoint=${st.endpoint}`,
      `--s3-bucket=${st.bucket}`,
      `--s3-prefix=${st.prefix ?? `${sb.metadata.namespace}/${sb.spec.cluster}/`}`,
      `--s3-region=${st.region}`,
      ...(st.caSecret ? ['--s3-ca-file=/etc/ballast/s3-ca/ca.crt'] : []),
    ],
    env: [
      { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
      { name: 'CLUSTER_TOKEN', valueFrom: { secretKeyRef: { name: tokenSecretName(sc), key: 'token' } } },
      secretEnv('AWS_ACCESS_KEY_ID', 'accessKeyId'),
      secretEnv('AWS_SECRET_ACCESS_KEY', 'secretAccessKey'),
    ],
    terminationMessagePolicy: 'FallbackToLogsOnError',
    // It holds the restored key space as the member will: the member's resources.
    resources: sc.spec.resources ?? defaultMemberResources,
    securityContext: { readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
    volumeMounts: [
      { name: 'data', mountPath: dataDir },
      ...(st.caSecret ? [{ name: 's3-ca', mountPath: '/etc/ballast/s3-ca', readOnly: true }] : []),
    ],
  };
}
