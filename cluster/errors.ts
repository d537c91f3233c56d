/** The local cluster's error catalogue (`ballast cluster`). */
import { defineCatalogue } from '../lib/errors.ts';

export const catalogue = defineCatalogue('cluster', 'CLUSTER', {
  CLUSTER_ERR_HOST:
    'The host lacks something the node needs (root, cgroups, overlayfs, iptables, runc, the CNI plugins, a built binary); the message names each missing piece and how to get it.',
  CLUSTER_ERR_IMAGES: "The node's images (pause, CoreDNS, ballast) are not built; run `make images`.",
  CLUSTER_ERR_BUSY:
    "Another local cluster runs on this machine (the node's ports, bridge and sockets are fixed); stop it first with `ballast cluster down --state-dir <its dir>`.",
  CLUSTER_ERR_NOT_READY: 'A component did not become ready in time; the message names it and its log file.',
});

export const clusterError = catalogue.error;
