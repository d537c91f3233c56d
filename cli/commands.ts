/**
 * Every subcommand `ballast` dispatches to. Only commands that work are listed here. Each
 * command's module is loaded when it runs, not before: `ballast sidecar` never loads the
 * Kubernetes client or the store, and `ballast version` loads nothing (a sidecar's memory and
 * start-up time are paid in every pod it is injected into).
 */
import type { Command } from './command.ts';

function lazy(name: string, summary: string, load: () => Promise<Command>): Command {
  return { name, summary, run: async (args, io) => (await load()).run(args, io) };
}

export const commands: readonly Command[] = [
  lazy(
    'backup',
    'store snapshots in S3-compatible object storage: save (from a follower, streamed), list, restore a member from one (or to a point in time), verify one by restoring it, archive every change',
    async () => (await import('./backup.ts')).backupCommand,
  ),
  lazy(
    'cluster',
    'a local Kubernetes cluster (up, down, status, kubeconfig): control plane and a real node, built from their Go modules',
    async () => (await import('./cluster.ts')).clusterCommand,
  ),
  lazy(
    'kubectl',
    "the kubectl plugin (kubectl ballast status|recover|backup|backups|restore): StoreClusters' members, conditions and recovery plans; approve a plan; back up and restore",
    async () => (await import('./kubectl.ts')).kubectlCommand,
  ),
  lazy(
    'local-provisioner',
    "the local cluster's volume provisioner: local PersistentVolumes for claims of the default class (started by `ballast cluster up`)",
    async () => (await import('./local-provisioner.ts')).localProvisionerCommand,
  ),
  lazy(
    'mesh-init',
    "install a pod's transparent-interception rules (iptables, in the pod's network namespace): the injected init container",
    async () => (await import('./mesh-init.ts')).meshInitCommand,
  ),
  lazy(
    'operator',
    'run the Ballast operator: StoreCluster reconcile with quorum-safe scaling, leader-elected over a Lease',
    async () => (await import('./operator.ts')).operatorCommand,
  ),
  lazy(
    'sidecar',
    'run the resilience proxy: timeouts, retries with budgets, breakers, bulkheads, shedding, rate limits, balancing, ejection, hedging',
    async () => (await import('./sidecar.ts')).sidecarCommand,
  ),
  lazy(
    'store',
    'run a member of a Raft-replicated key-value store speaking the etcd v3 API (restore: build a member from a snapshot)',
    async () => (await import('./store.ts')).storeCommand,
  ),
  lazy('version', 'print the version, commit and Node version', async () => (await import('./version.ts')).versionCommand),
];
