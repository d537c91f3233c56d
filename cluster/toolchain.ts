/**
 * Where the local cluster's binaries and images are: built once from Go modules by
 * cluster/go/build and packed by cluster/images/build into a cache keyed by versions
 * ($BALLAST_CACHE, default ~/.cache/ballast). The versions here and in those scripts agree
 * (a unit test reads the scripts).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { homeDir, packageRoot } from '../lib/paths.ts';

export const versions = {
  k8s: 'v1.36.3',
  etcd: 'v3.5.35',
  containerd: 'v2.3.7',
  coredns: 'v1.14.7',
  crictl: 'v1.37.0',
  argocd: 'v3.2.12',
} as const;

export function cacheDir(override?: string): string {
  return override ?? process.env['BALLAST_CACHE'] ?? join(homeDir(), '.cache', 'ballast');
}

/** SeaweedFS's pseudo-version: the one cluster/go/seaweedfs/go.mod requires (cluster/go/build builds it). */
export function seaweedfsVersion(): string {
  const mod = readFileSync(join(packageRoot(), 'cluster', 'go', 'seaweedfs', 'go.mod'), 'utf8');
  const v = /^\s*github\.com\/seaweedfs\/seaweedfs\s+(\S+)/m.exec(mod)?.[1];
  if (!v) throw new Error('cluster/go/seaweedfs/go.mod requires no github.com/seaweedfs/seaweedfs');
  return v;
}

/** The Gateway API release the mesh implements: the conformance module cluster/go/gateway-conformance/go.mod requires. */
export function gatewayApiVersion(): string {
  const mod = readFileSync(join(packageRoot(), 'cluster', 'go', 'gateway-conformance', 'go.mod'), 'utf8');
  const v = /^require\s+sigs\.k8s\.io\/gateway-api\/conformance\s+(\S+)/m.exec(mod)?.[1];
  if (!v) throw new Error('cluster/go/gateway-conformance/go.mod requires no sigs.k8s.io/gateway-api/conformance');
  return v;
}

/** Every binary the cluster runs, by role. */
export function binaries(cache: string) {
  const k8s = join(cache, `k8s-${versions.k8s}`);
  const ctrd = join(cache, `containerd-${versions.containerd}`);
  return {
    kubeApiserver: join(k8s, 'kube-apiserver'),
    kubeControllerManager: join(k8s, 'kube-controller-manager'),
    kubeScheduler: join(k8s, 'kube-scheduler'),
    kubelet: join(k8s, 'kubelet'),
    kubeProxy: join(k8s, 'kube-proxy'),
    etcd: join(cache, `etcd-${versions.etcd}`, 'etcd'),
    containerd: join(ctrd, 'containerd'),
    /** containerd finds its shim on PATH: this directory goes first on containerd's PATH. */
    containerdShim: join(ctrd, 'containerd-shim-runc-v2'),
    ctr: join(ctrd, 'ctr'),
    crictl: join(cache, `crictl-${versions.crictl}`, 'crictl'),
    /** Kubernetes' storage tests (k8s.io/apiserver/pkg/storage/etcd3) with test/peer/k8s-storage/test_server.go. */
    k8sStorageTests: join(cache, `k8s-storage-tests-${versions.k8s}`, 'etcd3.test'),
    /** Argo CD's util/lua tests with argocd/resource_customizations/ballast.dev embedded (cluster/go/build). */
    argocdLuaTests: join(cache, `argocd-lua-${versions.argocd}`, 'lua.test'),
    /** The Gateway API conformance suite (sigs.k8s.io/gateway-api/conformance's TestConformance, `go test -c`). */
    gatewayConformance: join(cache, `gateway-conformance-${gatewayApiVersion()}`, 'conformance.test'),
    /** SeaweedFS (master, volume server, filer and S3 gateway in one `weed server`): object storage for backups. */
    weed: join(cache, `seaweedfs-${seaweedfsVersion()}`, 'weed'),
  };
}

/** The image index cluster/images/build writes: one line per image, `reference key archive`. */
export const imageIndex = (cache: string) => join(cache, 'images', 'images.tsv');
/** containerd's image store, kept across clusters so images are imported once per build. */
export const containerdRoot = (cache: string) => join(cache, 'containerd');
