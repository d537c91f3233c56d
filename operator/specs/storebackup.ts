/**
 * The Job that takes a StoreBackup (pure): `ballast backup save` in the cluster's own image,
 * against every member's client address (it streams from a follower), with the object store's
 * credentials from the StoreBackup's Secret, the cluster's client certificate when it has TLS and
 * its root user when auth is on. Its pods carry no instance label: they are not members.
 */
import type { V1Job } from '@kubernetes/client-node';
import type { StoreBackup } from '../api/storebackup.ts';
import type { StoreCluster } from '../api/storecluster.ts';
import { clientPort, defaultMemberResources, imageOf, labels, memberName, peerServiceName, rootSecretName, tlsDir } from './storecluster.ts';

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
export const defaultPrefix = (sb: StoreBackup) => `${sb.metadata.namespace}/${sb.spec.cluster}/`;
/** Attempts before the backup is Failed (the Job controller waits 10 s, 20 s, 40 s... between). */
export const backupAttempts = 3;

const secretEnv = (name: string, secret: string, key: string) => ({ name, valueFrom: { secretKeyRef: { name: secret, key } } });
const storageArgs = (sb: StoreBackup) => {
  const st = sb.spec.storage;
  return [`--s3-endpoint=${st.endpoint}`, `--s3-bucket=${st.bucket}`, `--s3-prefix=${st.prefix ?? defaultPrefix(sb)}`, `--s3-region=${st.region}`, ...(st.caSecret ? ['--s3-ca-file=/etc/ballast/s3-ca/ca.crt'] : [])];
};
const restricted = { readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } };
const podSecurity = { runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532, seccompProfile: { type: 'RuntimeDefault' } };

/**
 * The Job that verifies a Succeeded backup: `ballast backup verify` restores it into a
 * throw-away one-member cluster on a scratch volume and compares its HashKV at the backup's
 * revision with the source member's. It holds the whole key space as a member does, so it gets a
 * member's resources.
 */
export function verifyJob(sb: StoreBackup, sc: StoreCluster): V1Job {
  const ns = sb.metadata.namespace;
  const st = sb.spec.storage;
  const podLabels = { [labels.name]: 'ballast-backup', [labels.managedBy]: 'ballast-operator', [labels.component]: verifyComponent, [backupLabel]: sb.metadata.name, ...noSidecar };
  return {
    apiVersion: 'batch/v1', kind: 'Job',
    metadata: {
      name: verifyJobName(sb), namespace: ns, labels: podLabels,
      ownerReferences: [{ apiVersion: sb.apiVersion, kind: 'StoreBackup', name: sb.metadata.name, uid: sb.metadata.uid ?? '', controller: true, blockOwnerDeletion: true }],
    },
    spec: {
      backoffLimit: verifyAttempts - 1, activeDeadlineSeconds: 3600,
      template: {
        metadata: { labels: podLabels },
        spec: {
          restartPolicy: 'Never', automountServiceAccountToken: false, securityContext: podSecurity,
          containers: [{
            name: 'verify', image: imageOf(sc),
            args: ['backup', 'verify', sb.metadata.name, ...storageArgs(sb), '--work-dir=/work', '--result-file=/dev/termination-log'],
            env: [secretEnv('AWS_ACCESS_KEY_ID', st.credentialsSecret, 'accessKeyId'), secretEnv('AWS_SECRET_ACCESS_KEY', st.credentialsSecret, 'secretAccessKey')],
            terminationMessagePolicy: 'FallbackToLogsOnError',
            resources: sc.spec.resources ?? defaultMemberResources,
            securityContext: restricted,
            volumeMounts: [{ name: 'work', mountPath: '/work' }, ...(st.caSecret ? [{ name: 's3-ca', mountPath: '/etc/ballast/s3-ca', readOnly: true }] : [])],
          }],
          volumes: [{ name: 'work', emptyDir: {} }, ...(st.caSecret ? [{ name: 's3-ca', secret: { secretName: st.caSecret, defaultMode: 0o440 } }] : [])],
        },
      },
    },
  };
}

export function backupJob(sb: StoreBackup, sc: StoreCluster): V1Job {
  const ns = sb.metadata.namespace;
  const st = sb.spec.storage;
  const tls = Boolean(sc.spec.tls?.clientSecretName);
  const endpoints = Array.from({ length: sc.spec.replicas }, (_, i) => `${memberName(sc, i)}.${peerServiceName(sc)}.${ns}.svc.cluster.local:${clientPort}`);
  const podLabels = { [labels.name]: 'ballast-backup', [labels.managedBy]: 'ballast-operator', [labels.component]: backupComponent, [backupLabel]: sb.metadata.name, ...noSidecar };
  const args = [
    'backup', 'save', `--endpoints=${endpoints.join(',')}`, `--name=${sb.metadata.name}`, '--result-file=/dev/termination-log', ...storageArgs(sb),
    ...(tls ? [`--cacert=${tlsDir}/client/ca.crt`, `--cert=${tlsDir}/client/tls.crt`, `--key=${tlsDir}/client/tls.key`] : []),
    ...(sb.spec.retention ? [`--prune-schedule=${sb.spec.retention.schedule}`, ...(sb.spec.retention.keep ? [`--keep=${sb.spec.retention.keep}`] : []), ...(sb.spec.retention.maxAge ? [`--max-age=${sb.spec.retention.maxAge}`] : [])] : []),
  ];
  return {
    apiVersion: 'batch/v1', kind: 'Job',
    metadata: {
      name: jobName(sb), namespace: ns, labels: podLabels,
      ownerReferences: [{ apiVersion: sb.apiVersion, kind: 'StoreBackup', name: sb.metadata.name, uid: sb.metadata.uid ?? '', controller: true, blockOwnerDeletion: true }],
    },
    spec: {
      backoffLimit: backupAttempts - 1, activeDeadlineSeconds: 3600,
      template: {
        metadata: { labels: podLabels },
        spec: {
          restartPolicy: 'Never', automountServiceAccountToken: false,
          securityContext: { runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, seccompProfile: { type: 'RuntimeDefault' } },
          containers: [{
            name: 'backup', image: imageOf(sc), args,
            env: [
              secretEnv('AWS_ACCESS_KEY_ID', st.credentialsSecret, 'accessKeyId'),
              secretEnv('AWS_SECRET_ACCESS_KEY', st.credentialsSecret, 'secretAccessKey'),
              ...(sc.spec.auth?.enabled ? [secretEnv('BALLAST_BACKUP_USER', rootSecretName(sc), 'username'), secretEnv('BALLAST_BACKUP_PASSWORD', rootSecretName(sc), 'password')] : []),
            ],
            // On failure the log's last lines are the reason (the error code and what to fix).
            terminationMessagePolicy: 'FallbackToLogsOnError',
            resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '256Mi' } },
            securityContext: { readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
            volumeMounts: [
              ...(st.caSecret ? [{ name: 's3-ca', mountPath: '/etc/ballast/s3-ca', readOnly: true }] : []),
              ...(tls ? [{ name: 'tls-client', mountPath: `${tlsDir}/client`, readOnly: true }] : []),
            ],
          }],
          volumes: [
            ...(st.caSecret ? [{ name: 's3-ca', secret: { secretName: st.caSecret, defaultMode: 0o440 } }] : []),
            ...(tls ? [{ name: 'tls-client', secret: { secretName: sc.spec.tls?.clientSecretName as string, defaultMode: 0o440 } }] : []),
          ],
        },
      },
    },
  };
}
