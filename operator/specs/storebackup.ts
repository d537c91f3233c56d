/**
 * The Jobs of a StoreBackup (pure), in the cluster's own image: the backup (`ballast backup
 * save`) and, with spec.verify, its verification (`ballast backup verify`). Their pods carry no
 * instance label: they are not members.
 */
import type { V1Deployment, V1EnvVar, V1Job, V1ResourceRequirements, V1Volume, V1VolumeMount } from '@kubernetes/client-node';
import type { BackupStorage, StoreBackup } from '../api/storebackup.ts';
import type { StoreBackupSchedule } from '../api/storebackupschedule.ts';
import type { StoreCluster } from '../api/storecluster.ts';
import {
  clientPort,
  clientServiceName,
  defaultMemberResources,
  imageOf,
  labels,
  memberName,
  peerServiceName,
  rootSecretName,
  tlsDir,
} from './storecluster.ts';

export const backupLabel = 'ballast.dev/storebackup';
export const jobName = (sb: StoreBackup) => `${sb.metadata.name}-backup`.slice(0, 63).replace(/-+$/, '');
export const verifyJobName = (sb: StoreBackup) => `${sb.metadata.name}-verify`.slice(0, 63).replace(/-+$/, '');
/** The component label of backup pods and of verification pods (both carry the backup's name). */
export const backupComponent = 'backup';
export const verifyComponent = 'backup-verify';
/** Attempts at a verification before it is Failed (a mismatch repeats; a node failure may not). */
export const verifyAttempts = 2;
/**
 * Backup and verification pods opt out of sidecar injection (the webhook's objectSelector reads
 * this label): they talk to the members directly, and in a namespace with injection enabled an
 * injected sidecar left them unable to reach any member (found by the observability e2e).
 */
const noSidecar = { 'ballast.dev/inject': 'false' };
export const defaultPrefix = (sb: { metadata: { namespace: string }; spec: { cluster: string } }) =>
  `${sb.metadata.namespace}/${sb.spec.cluster}/`;
/** Attempts before the backup is Failed (the Job controller waits 10 s, 20 s, 40 s... between). */
export const backupAttempts = 3;

const secretEnv = (name: string, secret: string, key: string) => ({ name, valueFrom: { secretKeyRef: { name: secret, key } } });
const storageArgs = (sb: { metadata: { namespace: string }; spec: { cluster: string; storage: BackupStorage } }) => {
  const st = sb.spec.storage;
  return [
    `--s3-endpoint=${st.endpoint}`,
    `--s3-bucket=${st.bucket}`,
    `--s3-prefix=${st.prefix ?? defaultPrefix(sb)}`,
    `--s3-region=${st.region}`,
    ...(st.caSecret ? ['--s3-ca-file=/etc/ballast/s3-ca/ca.crt'] : []),
  ];
};
const restricted = { readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } };
const podSecurity = { runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532, seccompProfile: { type: 'RuntimeDefault' } };

/**
 * A Job of a StoreBackup (pure): owned by it (deleted with it), its pods labelled with the
 * backup's name and `component`, run once as non-root with a read-only root, the object store's
 * credentials from the StoreBackup's Secret and its CA when it names one; the log's last lines
 * are the termination message on failure (the error code and what to fix).
 */
function storeBackupJob(
  sb: StoreBackup,
  o: {
    name: string;
    component: string;
    attempts: number;
    image: string;
    args: string[];
    env?: V1EnvVar[];
    resources: V1ResourceRequirements;
    mounts?: V1VolumeMount[];
    volumes?: V1Volume[];
  },
): V1Job {
  const st = sb.spec.storage;
  const podLabels = {
    [labels.name]: 'ballast-backup',
    [labels.managedBy]: 'ballast-operator',
    [labels.component]: o.component,
    [backupLabel]: sb.metadata.name,
    ...noSidecar,
  };
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: {
      name: o.name,
      namespace: sb.metadata.namespace,
      labels: podLabels,
      ownerReferences: [
        {
          apiVersion: sb.apiVersion,
          kind: 'StoreBackup',
          name: sb.metadata.name,
          uid: sb.metadata.uid ?? '',
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
    },
    spec: {
      backoffLimit: o.attempts - 1,
      activeDeadlineSeconds: 3600,
      template: {
        metadata: { labels: podLabels },
        spec: {
          restartPolicy: 'Never',
          automountServiceAccountToken: false,
          securityContext: podSecurity,
          containers: [
            {
              name: o.component === verifyComponent ? 'verify' : 'backup',
              image: o.image,
              args: o.args,
              env: [
                secretEnv('AWS_ACCESS_KEY_ID', st.credentialsSecret, 'accessKeyId'),
                secretEnv('AWS_SECRET_ACCESS_KEY', st.credentialsSecret, 'secretAccessKey'),
                ...(o.env ?? []),
              ],
              terminationMessagePolicy: 'FallbackToLogsOnError',
              resources: o.resources,
              securityContext: restricted,
              volumeMounts: [
                ...(o.mounts ?? []),
                ...(st.caSecret ? [{ name: 's3-ca', mountPath: '/etc/ballast/s3-ca', readOnly: true }] : []),
              ],
            },
          ],
          volumes: [
            ...(o.volumes ?? []),
            ...(st.caSecret ? [{ name: 's3-ca', secret: { secretName: st.caSecret, defaultMode: 0o440 } }] : []),
          ],
        },
      },
    },
  };
}

/**
 * The Job that verifies a Succeeded backup: `ballast backup verify` restores it into a
 * throw-away one-member cluster on a scratch volume and compares its HashKV at the backup's
 * revision with the source member's. It holds the whole key space as a member does, so it gets a
 * member's resources.
 */
export function verifyJob(sb: StoreBackup, sc: StoreCluster): V1Job {
  return storeBackupJob(sb, {
    name: verifyJobName(sb),
    component: verifyComponent,
    attempts: verifyAttempts,
    image: imageOf(sc),
    args: ['backup', 'verify', sb.metadata.name, ...storageArgs(sb), '--work-dir=/work', '--result-file=/dev/termination-log'],
    resources: sc.spec.resources ?? defaultMemberResources,
    mounts: [{ name: 'work', mountPath: '/work' }],
    volumes: [{ name: 'work', emptyDir: {} }],
  });
}

/**
 * The Job that takes the backup: `ballast backup save` against every member's address (it
 * streams from a follower), with the cluster's client certificate when it has TLS and its root
 * user when auth is on; with a schedule's retention, it prunes the schedule's older backups after.
 */
export function backupJob(sb: StoreBackup, sc: StoreCluster): V1Job {
  const ns = sb.metadata.namespace;
  const tls = Boolean(sc.spec.tls?.clientSecretName);
  const endpoints = Array.from(
    { length: sc.spec.replicas },
    (_, i) => `${memberName(sc, i)}.${peerServiceName(sc)}.${ns}.svc.cluster.local:${clientPort}`,
  );
  const r = sb.spec.retention;
  return storeBackupJob(sb, {
    name: jobName(sb),
    component: backupComponent,
    attempts: backupAttempts,
    image: imageOf(sc),
    args: [
      'backup',
      'save',
      `--endpoints=${endpoints.join(',')}`,
      `--name=${sb.metadata.name}`,
      '--result-file=/dev/termination-log',
      ...storageArgs(sb),
      ...(tls ? [`--cacert=${tlsDir}/client/ca.crt`, `--cert=${tlsDir}/client/tls.crt`, `--key=${tlsDir}/client/tls.key`] : []),
      ...(r
        ? [`--prune-schedule=${r.schedule}`, ...(r.keep ? [`--keep=${r.keep}`] : []), ...(r.maxAge ? [`--max-age=${r.maxAge}`] : [])]
        : []),
    ],
    env: sc.spec.auth?.enabled
      ? [
          secretEnv('BALLAST_BACKUP_USER', rootSecretName(sc), 'username'),
          secretEnv('BALLAST_BACKUP_PASSWORD', rootSecretName(sc), 'password'),
        ]
      : [],
    resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '256Mi' } },
    mounts: tls ? [{ name: 'tls-client', mountPath: `${tlsDir}/client`, readOnly: true }] : [],
    volumes: tls ? [{ name: 'tls-client', secret: { secretName: sc.spec.tls?.clientSecretName as string, defaultMode: 0o440 } }] : [],
  });
}

/** The archiver of a schedule with pointInTime: `<schedule>-archiver`. */
export const archiverName = (s: StoreBackupSchedule) => `${s.metadata.name}-archiver`;
export const archiverComponent = 'archiver';
export const archiverMetricsPort = 8080;

/**
 * The Deployment that archives every change of a schedule's cluster for point-in-time recovery
 * (`ballast backup archive`, store/archiver.ts) into the schedule's storage, beside its backups.
 * One replica, replaced by Recreate (two at once would only write the same revisions twice); it
 * reaches the cluster through its client Service, so scaling the cluster changes nothing here.
 * Owned by the schedule: deleting the schedule stops archiving; the archive stays.
 */
export function archiverDeployment(s: StoreBackupSchedule, sc: StoreCluster): V1Deployment {
  const st = s.spec.storage;
  const tls = Boolean(sc.spec.tls?.clientSecretName);
  const podLabels = {
    [labels.name]: 'ballast-archiver',
    [labels.managedBy]: 'ballast-operator',
    [labels.component]: archiverComponent,
    'ballast.dev/storebackupschedule': s.metadata.name,
    ...noSidecar,
  };
  const selector = { [labels.component]: archiverComponent, 'ballast.dev/storebackupschedule': s.metadata.name };
  const endpoint = `${clientServiceName(sc)}.${sc.metadata.namespace}.svc.cluster.local:${clientPort}`;
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      name: archiverName(s),
      namespace: s.metadata.namespace,
      labels: podLabels,
      ownerReferences: [
        {
          apiVersion: s.apiVersion,
          kind: 'StoreBackupSchedule',
          name: s.metadata.name,
          uid: s.metadata.uid ?? '',
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
    },
    spec: {
      replicas: 1,
      strategy: { type: 'Recreate' },
      selector: { matchLabels: selector },
      template: {
        metadata: { labels: podLabels },
        spec: {
          automountServiceAccountToken: false,
          securityContext: podSecurity,
          terminationGracePeriodSeconds: 30,
          containers: [
            {
              name: 'archiver',
              image: imageOf(sc),
              args: [
                'backup',
                'archive',
                `--endpoints=${endpoint}`,
                ...storageArgs(s),
                `--segment-seconds=${s.spec.pointInTime?.segmentSeconds ?? 5}`,
                `--metrics-addr=0.0.0.0:${archiverMetricsPort}`,
                ...(tls ? [`--cacert=${tlsDir}/client/ca.crt`, `--cert=${tlsDir}/client/tls.crt`, `--key=${tlsDir}/client/tls.key`] : []),
              ],
              env: [
                secretEnv('AWS_ACCESS_KEY_ID', st.credentialsSecret, 'accessKeyId'),
                secretEnv('AWS_SECRET_ACCESS_KEY', st.credentialsSecret, 'secretAccessKey'),
                ...(sc.spec.auth?.enabled
                  ? [
                      secretEnv('BALLAST_BACKUP_USER', rootSecretName(sc), 'username'),
                      secretEnv('BALLAST_BACKUP_PASSWORD', rootSecretName(sc), 'password'),
                    ]
                  : []),
              ],
              ports: [{ name: 'metrics', containerPort: archiverMetricsPort }],
              livenessProbe: { httpGet: { path: '/healthz', port: 'metrics' }, periodSeconds: 10, failureThreshold: 6 },
              readinessProbe: { httpGet: { path: '/healthz', port: 'metrics' }, periodSeconds: 5 },
              resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '512Mi' } },
              securityContext: restricted,
              volumeMounts: [
                ...(tls ? [{ name: 'tls-client', mountPath: `${tlsDir}/client`, readOnly: true }] : []),
                ...(st.caSecret ? [{ name: 's3-ca', mountPath: '/etc/ballast/s3-ca', readOnly: true }] : []),
              ],
            },
          ],
          volumes: [
            ...(tls ? [{ name: 'tls-client', secret: { secretName: sc.spec.tls?.clientSecretName as string, defaultMode: 0o440 } }] : []),
            ...(st.caSecret ? [{ name: 's3-ca', secret: { secretName: st.caSecret, defaultMode: 0o440 } }] : []),
          ],
        },
      },
    },
  };
}
