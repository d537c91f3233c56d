/**
 * The StoreCluster validating webhook's judgement (pure, lookups injected): what the CRD's
 * schema and CEL rules cannot say because it depends on other objects or on the cluster's state.
 * Each problem names the field, what is wrong, and what to do.
 *
 * - `spec.storage.storageClassName` must name a StorageClass that exists (a claim for a missing
 *   class stays Pending forever, and the class cannot be changed afterwards).
 * - On create, no StatefulSet of the same name may exist that this StoreCluster does not own
 *   (the operator would fight over it).
 * - The Secrets `spec.tls` names exist and hold tls.crt, tls.key and ca.crt (members would
 *   otherwise crash-loop on a missing file).
 * - While the cluster has lost quorum, `spec.replicas` and `spec.version` cannot change:
 *   membership changes and rolling updates need a quorum, and queuing them would act the moment
 *   members return, before anyone looked.
 * - `spec.version` cannot go back to a version that cannot read the members' data (every member
 *   runs a version that writes a newer format: see `downgradeRefusal`).
 */
import type { StoreCluster } from '../api/storecluster.ts';
import { downgradeRefusal } from '../specs/storecluster.ts';

export interface ValidationLookups {
  /** Names of the cluster's StorageClasses. */
  storageClasses(): Promise<string[]>;
  /** The StatefulSet of that name: undefined when there is none, else its owner references' kinds/names. */
  statefulSet(namespace: string, name: string): Promise<{ owners: Array<{ kind: string; name: string }> } | undefined>;
  /** The keys of a Secret's data; undefined when there is no such Secret. */
  secretKeys(namespace: string, name: string): Promise<string[] | undefined>;
}

export async function validateStoreCluster(
  operation: string,
  sc: StoreCluster,
  old: StoreCluster | undefined,
  l: ValidationLookups,
): Promise<string[]> {
  const problems: string[] = [];
  const ns = sc.metadata.namespace ?? 'default';
  const name = sc.metadata.name;
  const cls = sc.spec.storage?.storageClassName;
  // Only when it is set or changed (an existing cluster keeps working if its class was removed later).
  if (cls && (operation === 'CREATE' || old?.spec.storage?.storageClassName !== cls)) {
    const classes = await l.storageClasses();
    if (!classes.includes(cls)) {
      problems.push(
        `spec.storage.storageClassName: StorageClass "${cls}" does not exist; ${classes.length > 0 ? `use one of ${classes.map((c) => `"${c}"`).join(', ')}` : 'the cluster has none'}, create it first, or leave the field out for the cluster's default class`,
      );
    }
  }
  for (const [field, secret] of [
    ['clientSecretName', sc.spec.tls?.clientSecretName],
    ['peerSecretName', sc.spec.tls?.peerSecretName],
  ] as const) {
    if (!secret) continue;
    const keys = await l.secretKeys(ns, secret);
    const missing = ['tls.crt', 'tls.key', 'ca.crt'].filter((k) => !keys?.includes(k));
    if (!keys)
      problems.push(
        `spec.tls.${field}: Secret "${secret}" does not exist in namespace "${ns}"; create it first (type kubernetes.io/tls with tls.crt, tls.key and ca.crt)`,
      );
    else if (missing.length > 0)
      problems.push(
        `spec.tls.${field}: Secret "${secret}" lacks ${missing.join(', ')}; a member needs its certificate and key, and the CA that signed its peers' and clients' certificates`,
      );
  }
  if (operation === 'CREATE') {
    const set = await l.statefulSet(ns, name);
    if (set && !set.owners.some((o) => o.kind === 'StoreCluster' && o.name === name)) {
      problems.push(
        `metadata.name: a StatefulSet named "${name}" already exists in namespace "${ns}" and is not this StoreCluster's; choose another name (the operator would take over that StatefulSet)`,
      );
    }
  }
  if (operation === 'UPDATE' && (old?.status?.phase === 'QuorumLost' || old?.status?.phase === 'Recovering')) {
    const selector = `app.kubernetes.io/instance=${name}`;
    const why =
      old.status.phase === 'QuorumLost'
        ? `the cluster has lost quorum (no leader); bring the members back first (kubectl get pods -n ${ns} -l ${selector}) or approve the recovery plan in status.recovery`
        : `recovery plan ${old.status.recovery?.planId ?? ''} is running (status.recovery); wait until it completes`;
    if (old.spec.replicas !== sc.spec.replicas)
      problems.push(
        `spec.replicas: adding or removing members needs a leader and a settled membership: ${why}, then change replicas (it stays ${old.spec.replicas})`,
      );
    if (old.spec.version !== sc.spec.version)
      problems.push(
        `spec.version: a rolling update needs a leader and a settled membership: ${why}, then change the version (it stays ${old.spec.version})`,
      );
  }
  if (operation === 'UPDATE' && old && old.spec.version !== sc.spec.version && sc.spec.version) {
    const refusal = downgradeRefusal(sc.spec.version, (old.status?.members ?? []).map((m) => m.version ?? '').filter(Boolean));
    if (refusal) problems.push(`spec.version: ${refusal}`);
  }
  return problems;
}
