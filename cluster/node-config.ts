/**
 * The real node's configuration files, built as data from the node's paths (pure: no I/O):
 * containerd's config (CRI with runc under cgroupfs, CNI, the pause image, no registry), the CNI
 * network (a bridge with the pod range), the kubelet's and kube-proxy's configuration, and the
 * cluster add-ons the node needs (CoreDNS, the default StorageClass). `cluster/node.ts` writes
 * them and starts the processes.
 */
import { stringify } from 'yaml';
import { dnsServiceIp, nodeAddress, nodeName, podCidr } from './pki.ts';

/** Where the node keeps its files. */
export interface NodePaths {
  /** The cluster's state directory (certificates, configuration, logs, volumes). */
  stateDir: string;
  /**
   * A short directory for the node's sockets and runtime state (containerd's shim sockets are
   * unix sockets named under it, and a socket path may be at most 107 bytes).
   */
  runDir: string;
  /** containerd's root: the image store, kept across clusters (images are imported once). */
  containerdRoot: string;
  /** The kubelet's root directory (pods' volumes and the node's checkpoints). */
  kubeletRoot: string;
  /** runc and the CNI plugins (Debian's packages). */
  runc: string;
  cniBinDir: string;
}

/** The bridge the pods hang on; the node's address is its gateway address. */
export const bridgeName = 'ballast0';
/** The pod sandbox image (built by cluster/images/build; containerd never pulls it). */
export const pauseImage = 'registry.k8s.io/pause:3.10';
/** Where containerd may pull from: nowhere but a closed port on loopback (no registry here). */
export const noRegistry = 'http://127.0.0.1:9';

export const containerdSocket = (p: NodePaths) => `${p.runDir}/containerd.sock`;

const toml = (s: string) => `'${s.replace(/'/g, '')}'`;

/** containerd's config (format version 3, containerd 2.x). */
export function buildContainerdConfig(p: NodePaths): string {
  return `# Written by ballast cluster up (cluster/node-config.ts); containerd 2.3, config format 4.
version = 4
root = ${toml(p.containerdRoot)}
state = ${toml(`${p.runDir}/containerd`)}
# Nothing from the host's /etc/containerd.
imports = []
# Plugins the node does not use: snapshotters for file systems it has not, tracing, NRI, image
# verifiers (their default directories are under /opt and /etc).
disabled_plugins = ['io.containerd.snapshotter.v1.btrfs', 'io.containerd.snapshotter.v1.zfs', 'io.containerd.snapshotter.v1.devmapper', 'io.containerd.snapshotter.v1.blockfile', 'io.containerd.snapshotter.v1.erofs', 'io.containerd.differ.v1.erofs', 'io.containerd.tracing.processor.v1.otlp', 'io.containerd.internal.v1.tracing', 'io.containerd.nri.v1.nri', 'io.containerd.image-verifier.v1.bindir']

[plugins]
  [plugins.'io.containerd.server.v1.grpc']
    address = ${toml(containerdSocket(p))}
  [plugins.'io.containerd.server.v1.ttrpc']
    address = ${toml(`${containerdSocket(p)}.ttrpc`)}
  [plugins.'io.containerd.internal.v1.opt']
    path = ${toml(`${p.containerdRoot}/opt`)}
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = ${toml(pauseImage)}
    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = ${toml(`${p.stateDir}/node/certs.d`)}
  [plugins.'io.containerd.cri.v1.runtime']
    # Without CAP_SYS_RESOURCE runc cannot lower a sandbox's oom_score_adj below containerd's own.
    restrict_oom_score_adj = true
    # Pods' network namespaces under containerd's state directory, not in /var/run/netns.
    netns_mounts_under_state_dir = true
    enable_cdi = false
    cdi_spec_dirs = []
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = ${toml(p.runc)}
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = [${toml(p.cniBinDir)}]
      conf_dir = ${toml(`${p.stateDir}/node/cni`)}
      max_conf_num = 1
  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = '127.0.0.1'
    stream_server_port = '0'
`;
}

/**
 * containerd's registry configuration for every registry (`_default`): a closed port on
 * loopback. An image that is not in containerd fails to pull at once, with its name in the pod's
 * status, and nothing leaves the machine.
 */
export function buildRegistryHosts(): string {
  return `# Written by ballast cluster up: no registry is reachable here; images are built and imported locally.
server = '${noRegistry}'

[host.'${noRegistry}']
  capabilities = ['pull', 'resolve']
`;
}

/** The pod network: a bridge with the node's pod range, the host as gateway, hairpin for Services. */
export function buildCniConfig(p: NodePaths): string {
  return `${JSON.stringify(
    {
      cniVersion: '1.0.0',
      name: 'ballast',
      plugins: [
        {
          type: 'bridge',
          bridge: bridgeName,
          isGateway: true,
          ipMasq: false,
          hairpinMode: true,
          ipam: {
            type: 'host-local',
            ranges: [[{ subnet: podCidr, gateway: nodeAddress }]],
            routes: [{ dst: '0.0.0.0/0' }],
            dataDir: `${p.stateDir}/node/ipam`,
          },
        },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    },
    null,
    2,
  )}\n`;
}

export interface KubeletOptions {
  pki: string;
  /** The resolv.conf pods with dnsPolicy Default get (and the upstream of nothing: DNS has no forwarder). */
  resolvConf: string;
  /** Where containers' logs go (the kubelet's default is /var/log/pods on the host). */
  podLogsDir: string;
}

/** The kubelet's configuration file (KubeletConfiguration v1beta1). */
export function buildKubeletConfig(p: NodePaths, o: KubeletOptions): string {
  return stringify({
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    kind: 'KubeletConfiguration',
    // The machine mounts cgroup v1 only; kubelet 1.35+ refuses it unless told (and warns).
    failCgroupV1: false,
    cgroupDriver: 'cgroupfs',
    // The node's cgroups under their own root, so `down` removes exactly what the node made.
    cgroupRoot: '/ballast-node',
    containerRuntimeEndpoint: `unix://${containerdSocket(p)}`,
    address: nodeAddress,
    port: 10250,
    readOnlyPort: 0,
    healthzBindAddress: '127.0.0.1',
    healthzPort: 10248,
    tlsCertFile: `${o.pki}/kubelet-serving.crt`,
    tlsPrivateKeyFile: `${o.pki}/kubelet-serving.key`,
    rotateCertificates: false,
    serverTLSBootstrap: false,
    authentication: {
      anonymous: { enabled: false },
      webhook: { enabled: true, cacheTTL: '30s' },
      x509: { clientCAFile: `${o.pki}/ca.crt` },
    },
    authorization: { mode: 'Webhook', webhook: { cacheAuthorizedTTL: '30s', cacheUnauthorizedTTL: '5s' } },
    clusterDNS: [dnsServiceIp],
    clusterDomain: 'cluster.local',
    resolvConf: o.resolvConf,
    podLogsDir: o.podLogsDir,
    volumePluginDir: `${p.stateDir}/node/volume-plugins`,
    failSwapOn: false,
    // Images are imported, never pulled: garbage-collecting one would leave pods unable to start.
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    // The machine's disk is shared with everything else; evict only when it is really full.
    evictionHard: { 'memory.available': '100Mi', 'nodefs.available': '1%', 'nodefs.inodesFree': '1%', 'imagefs.available': '1%' },
    serializeImagePulls: false,
    kubeAPIQPS: 50,
    kubeAPIBurst: 100,
    // Pods' status reaches the API quickly (tests and `make up` wait on it).
    nodeStatusUpdateFrequency: '10s',
    syncFrequency: '10s',
    shutdownGracePeriod: '0s',
    staticPodPath: '',
    logging: { format: 'text', verbosity: 1 },
  });
}

/** kube-proxy's configuration (iptables mode). */
export function buildKubeProxyConfig(kubeconfig: string): string {
  return stringify({
    apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
    kind: 'KubeProxyConfiguration',
    clientConnection: { kubeconfig },
    mode: 'iptables',
    clusterCIDR: podCidr,
    hostnameOverride: nodeName,
    bindAddress: nodeAddress,
    healthzBindAddress: '127.0.0.1:10256',
    metricsBindAddress: '127.0.0.1:10249',
    // NodePorts on the node's bridge address only, never on the machine's own interfaces.
    nodePortAddresses: [`${nodeAddress}/32`],
    // 0: leave the host's conntrack table size and timeouts as they are.
    conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s' },
    iptables: { syncPeriod: '30s', minSyncPeriod: '0s', masqueradeAll: false },
    logging: { format: 'text', verbosity: 1 },
  });
}

/** The CoreDNS image (cluster/images/build packs the binary cluster/go/build makes). */
export const corednsImage = 'ballast.local/coredns:v1.14.7';

/**
 * Cluster DNS: CoreDNS answering for cluster.local from Services and EndpointSlices, as the
 * `kube-dns` Service at the address the kubelet gives pods. It forwards nothing: names outside
 * the cluster get no answer (this machine has no network beyond loopback). It listens on 1053
 * (a non-root process may not bind 53); the Service maps 53 to it.
 */
export function buildCoreDnsManifests(): string {
  const labels = { 'k8s-app': 'kube-dns' };
  const corefile = `.:1053 {
    errors
    health :8080
    ready :8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    prometheus :9153
    cache 5
    loop
    loadbalance
}
`;
  const docs: object[] = [
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'coredns', namespace: 'kube-system' } },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: 'system:coredns' },
      rules: [
        { apiGroups: [''], resources: ['endpoints', 'services', 'pods', 'namespaces'], verbs: ['list', 'watch'] },
        { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['list', 'watch'] },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'system:coredns' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:coredns' },
      subjects: [{ kind: 'ServiceAccount', name: 'coredns', namespace: 'kube-system' }],
    },
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'coredns', namespace: 'kube-system' }, data: { Corefile: corefile } },
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'coredns', namespace: 'kube-system', labels },
      spec: {
        replicas: 1,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            serviceAccountName: 'coredns',
            priorityClassName: 'system-cluster-critical',
            dnsPolicy: 'Default',
            securityContext: { runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, seccompProfile: { type: 'RuntimeDefault' } },
            containers: [
              {
                name: 'coredns',
                image: corednsImage,
                imagePullPolicy: 'Never',
                args: ['-conf', '/etc/coredns/Corefile'],
                ports: [
                  { name: 'dns', containerPort: 1053, protocol: 'UDP' },
                  { name: 'dns-tcp', containerPort: 1053, protocol: 'TCP' },
                  { name: 'metrics', containerPort: 9153 },
                ],
                resources: { requests: { cpu: '50m', memory: '32Mi' }, limits: { memory: '128Mi' } },
                securityContext: { readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
                livenessProbe: { httpGet: { path: '/health', port: 8080 }, periodSeconds: 10, failureThreshold: 5 },
                readinessProbe: { httpGet: { path: '/ready', port: 8181 }, periodSeconds: 1 },
                volumeMounts: [{ name: 'config', mountPath: '/etc/coredns', readOnly: true }],
              },
            ],
            volumes: [{ name: 'config', configMap: { name: 'coredns' } }],
          },
        },
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'kube-dns', namespace: 'kube-system', labels },
      spec: {
        selector: labels,
        clusterIP: dnsServiceIp,
        ports: [
          { name: 'dns', port: 53, targetPort: 1053, protocol: 'UDP' },
          { name: 'dns-tcp', port: 53, targetPort: 1053, protocol: 'TCP' },
          { name: 'metrics', port: 9153 },
        ],
      },
    },
  ];
  return docs.map((d) => stringify(d)).join('---\n');
}

/** The default StorageClass and the local provisioner's permissions. */
export function buildStorageManifests(): string {
  const docs: object[] = [
    {
      apiVersion: 'storage.k8s.io/v1',
      kind: 'StorageClass',
      metadata: { name: storageClass, annotations: { 'storageclass.kubernetes.io/is-default-class': 'true' } },
      provisioner,
      reclaimPolicy: 'Retain',
      volumeBindingMode: 'Immediate',
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: 'system:ballast-local-provisioner' },
      rules: [
        { apiGroups: [''], resources: ['persistentvolumes'], verbs: ['get', 'list', 'watch', 'create', 'delete'] },
        { apiGroups: [''], resources: ['persistentvolumeclaims'], verbs: ['get', 'list', 'watch'] },
        { apiGroups: [''], resources: ['events'], verbs: ['create', 'patch'] },
        { apiGroups: ['storage.k8s.io'], resources: ['storageclasses'], verbs: ['get', 'list', 'watch'] },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'system:ballast-local-provisioner' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:ballast-local-provisioner' },
      subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'system:ballast-local-provisioner' }],
    },
  ];
  return docs.map((d) => stringify(d)).join('---\n');
}

/** The default StorageClass's name and its provisioner. */
export const storageClass = 'ballast-local';
export const provisioner = 'ballast.dev/local';
