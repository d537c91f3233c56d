/**
 * The local cluster's volume provisioner: a claim of the default StorageClass (`ballast-local`)
 * gets a directory under the state directory, offered as a `local` PersistentVolume pinned to
 * the node. `local` rather than `hostPath` because the kubelet applies a pod's `fsGroup` to
 * `local` volumes (and not to `hostPath` ones): a non-root store member can write its data.
 * Started by `ballast cluster up` as a process beside the control plane.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { CoreV1Api, type KubeConfig, type V1PersistentVolume, type V1PersistentVolumeClaim } from '@kubernetes/client-node';
import type { Clock } from '../lib/clock.ts';
import { SharedInformer } from '../lib/kube/informer.ts';
import type { Logger } from '../lib/log.ts';
import { provisioner, storageClass } from './node-config.ts';
import { nodeName } from './pki.ts';

/** The PersistentVolume for a claim, or nothing when the claim is not ours to provision. */
export function buildVolumeFor(pvc: V1PersistentVolumeClaim, root: string): V1PersistentVolume | undefined {
  const cls = pvc.spec?.storageClassName;
  if (cls !== storageClass || pvc.spec?.volumeName || pvc.status?.phase === 'Bound' || pvc.metadata?.deletionTimestamp) return undefined;
  const uid = pvc.metadata?.uid ?? '';
  const name = `pvc-${uid}`;
  return {
    apiVersion: 'v1',
    kind: 'PersistentVolume',
    metadata: { name, annotations: { 'pv.kubernetes.io/provisioned-by': provisioner } },
    spec: {
      capacity: { storage: pvc.spec?.resources?.requests?.['storage'] ?? '1Gi' },
      accessModes: pvc.spec?.accessModes ?? ['ReadWriteOnce'],
      persistentVolumeReclaimPolicy: 'Retain',
      storageClassName: storageClass,
      volumeMode: 'Filesystem',
      local: { path: join(root, name) },
      nodeAffinity: {
        required: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: [nodeName] }] }] },
      },
      claimRef: { namespace: pvc.metadata?.namespace ?? 'default', name: pvc.metadata?.name ?? '', uid },
    },
  };
}

export interface ProvisionerOptions {
  kubeconfig: KubeConfig;
  /** Where volumes' directories are made. */
  root: string;
  clock: Clock;
  log: Logger;
}

/** Watches claims and makes a volume for each pending claim of the default class. */
export class LocalProvisioner {
  readonly #options: ProvisionerOptions;
  readonly #core: CoreV1Api;
  #claims: SharedInformer<V1PersistentVolumeClaim> | undefined;

  constructor(o: ProvisionerOptions) {
    this.#options = o;
    this.#core = o.kubeconfig.makeApiClient(CoreV1Api);
  }

  async start(): Promise<void> {
    const o = this.#options;
    this.#claims = new SharedInformer<V1PersistentVolumeClaim>({
      kubeconfig: o.kubeconfig,
      path: '/api/v1/persistentvolumeclaims',
      clock: o.clock,
      log: o.log,
      list: () => this.#core.listPersistentVolumeClaimForAllNamespaces(),
    });
    this.#claims.onChange((key) => {
      const pvc = this.#claims?.get(key);
      if (pvc) void this.#provision(pvc).catch((err: unknown) => o.log.warn({ err, claim: key }, 'provisioning failed'));
    });
    await this.#claims.start();
  }

  async #provision(pvc: V1PersistentVolumeClaim): Promise<void> {
    const pv = buildVolumeFor(pvc, this.#options.root);
    if (!pv) return;
    // The directory first: a `local` volume's path must exist before a pod mounts it.
    mkdirSync(pv.spec?.local?.path ?? '', { recursive: true, mode: 0o755 });
    await this.#core.createPersistentVolume({ body: pv }).then(
      () =>
        this.#options.log.info(
          { claim: `${pvc.metadata?.namespace}/${pvc.metadata?.name}`, volume: pv.metadata?.name },
          'volume provisioned',
        ),
      (err: { code?: number }) => {
        if (err.code !== 409) throw err;
      },
    );
  }

  async stop(): Promise<void> {
    await this.#claims?.stop();
  }
}
