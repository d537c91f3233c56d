import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { it } from 'node:test';
import { parse, parseAllDocuments } from 'yaml';
import {
  buildCniConfig,
  buildContainerdConfig,
  buildCoreDnsManifests,
  buildKubeProxyConfig,
  buildKubeletConfig,
  buildRegistryHosts,
  corednsImage,
  pauseImage,
} from './node-config.ts';
import { buildVolumeFor } from './provisioner.ts';
import { gatewayApiVersion, versions } from './toolchain.ts';

const paths = {
  stateDir: '/tmp/st',
  runDir: '/run/ballast',
  containerdRoot: '/cache/containerd',
  kubeletRoot: '/tmp/st/kubelet',
  runc: '/usr/sbin/runc',
  cniBinDir: '/usr/lib/cni',
};

it("containerd: its sockets, state and root where the node keeps them; runc under cgroupfs; CNI from the state dir; nothing of the host's", () => {
  const toml = buildContainerdConfig(paths);
  assert.match(toml, /^version = 4$/m);
  assert.match(toml, /^root = '\/cache\/containerd'$/m);
  assert.match(toml, /^state = '\/run\/ballast\/containerd'$/m);
  assert.match(toml, /^imports = \[\]$/m);
  assert.match(toml, /\[plugins\.'io\.containerd\.server\.v1\.grpc'\]\n {4}address = '\/run\/ballast\/containerd\.sock'/);
  assert.match(toml, /restrict_oom_score_adj = true/);
  assert.match(toml, /netns_mounts_under_state_dir = true/);
  assert.match(toml, /BinaryName = '\/usr\/sbin\/runc'\n\s+SystemdCgroup = false/);
  assert.match(toml, /bin_dirs = \['\/usr\/lib\/cni'\]\n\s+conf_dir = '\/tmp\/st\/node\/cni'/);
  assert.match(toml, new RegExp(`sandbox = '${pauseImage}'`));
  // No path outside the node's own directories.
  for (const [, p] of toml.matchAll(/= '(\/[^']*)'/g))
    assert.ok(
      ['/tmp/st', '/run/ballast', '/cache/containerd', '/usr/sbin/runc', '/usr/lib/cni'].some((r) => p!.startsWith(r)),
      p,
    );
});

it('registries: every pull goes to a closed port on loopback', () => {
  assert.match(buildRegistryHosts(), /^server = 'http:\/\/127\.0\.0\.1:9'$/m);
});

it('CNI: one bridge, the node address as gateway, IPAM state under the state dir', () => {
  const cni = JSON.parse(buildCniConfig(paths)) as {
    plugins: Array<{
      type: string;
      bridge?: string;
      isGateway?: boolean;
      ipam?: { ranges: Array<Array<{ subnet: string; gateway: string }>>; dataDir: string };
    }>;
  };
  const bridge = cni.plugins[0]!;
  assert.equal(bridge.type, 'bridge');
  assert.equal(bridge.bridge, 'ballast0');
  assert.deepEqual(bridge.ipam?.ranges, [[{ subnet: '10.244.0.0/24', gateway: '10.244.0.1' }]]);
  assert.equal(bridge.ipam?.dataDir, '/tmp/st/node/ipam');
  assert.equal(cni.plugins[1]?.type, 'portmap');
});

it('kubelet: cgroup v1 allowed, cgroupfs under its own root, x509 and webhook auth, cluster DNS, logs and plugins under the state dir, images never collected', () => {
  const cfg = parse(
    buildKubeletConfig(paths, { pki: '/tmp/st/pki', resolvConf: '/tmp/st/node/resolv.conf', podLogsDir: '/tmp/st/node/pod-logs' }),
  ) as Record<string, unknown>;
  assert.equal(cfg['failCgroupV1'], false);
  assert.equal(cfg['cgroupDriver'], 'cgroupfs');
  assert.equal(cfg['cgroupRoot'], '/ballast-node');
  assert.equal(cfg['containerRuntimeEndpoint'], 'unix:///run/ballast/containerd.sock');
  assert.deepEqual(cfg['authentication'], {
    anonymous: { enabled: false },
    webhook: { enabled: true, cacheTTL: '30s' },
    x509: { clientCAFile: '/tmp/st/pki/ca.crt' },
  });
  assert.equal((cfg['authorization'] as { mode: string }).mode, 'Webhook');
  assert.deepEqual(cfg['clusterDNS'], ['10.96.0.10']);
  assert.equal(cfg['podLogsDir'], '/tmp/st/node/pod-logs');
  assert.equal(cfg['volumePluginDir'], '/tmp/st/node/volume-plugins');
  assert.equal(cfg['imageGCHighThresholdPercent'], 100);
  assert.equal(cfg['readOnlyPort'], 0);
});

it("kube-proxy: iptables mode, NodePorts only on the node address, the host's conntrack left alone", () => {
  const cfg = parse(buildKubeProxyConfig('/tmp/st/kube-proxy.kubeconfig')) as Record<string, unknown>;
  assert.equal(cfg['mode'], 'iptables');
  assert.deepEqual(cfg['nodePortAddresses'], ['10.244.0.1/32']);
  assert.deepEqual(cfg['conntrack'], { maxPerCore: 0, min: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s' });
});

it('CoreDNS: the kube-dns Service at the cluster DNS address maps 53 to an unprivileged port, no forwarder, non-root', () => {
  const docs = parseAllDocuments(buildCoreDnsManifests()).map(
    (d) => d.toJSON() as { kind: string; spec?: Record<string, unknown>; data?: Record<string, string> },
  );
  const svc = docs.find((d) => d.kind === 'Service')!;
  assert.equal(svc.spec?.['clusterIP'], '10.96.0.10');
  assert.deepEqual(
    (svc.spec?.['ports'] as Array<{ port: number; targetPort: number }>).slice(0, 2).map((p) => [p.port, p.targetPort]),
    [
      [53, 1053],
      [53, 1053],
    ],
  );
  const corefile = docs.find((d) => d.kind === 'ConfigMap')!.data!['Corefile']!;
  assert.match(corefile, /^\.:1053 \{/);
  assert.doesNotMatch(corefile, /forward/);
  const deploy = JSON.stringify(docs.find((d) => d.kind === 'Deployment'));
  assert.match(deploy, new RegExp(corednsImage.replace(/[.]/g, '\\.')));
  assert.match(deploy, /"runAsNonRoot":true/);
});

it('the provisioner gives a pending claim of the default class a local volume pinned to the node (fsGroup applies to local volumes), and leaves other claims alone', () => {
  const claim = {
    metadata: { name: 'data-db-0', namespace: 'shop', uid: 'u1' },
    spec: { storageClassName: 'ballast-local', accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '2Gi' } } },
  };
  const pv = buildVolumeFor(claim, '/tmp/st/volumes');
  assert.equal(pv?.metadata?.name, 'pvc-u1');
  assert.deepEqual(pv?.spec?.local, { path: '/tmp/st/volumes/pvc-u1' });
  assert.equal(pv?.spec?.capacity?.['storage'], '2Gi');
  assert.deepEqual(pv?.spec?.claimRef, { namespace: 'shop', name: 'data-db-0', uid: 'u1' });
  assert.deepEqual(pv?.spec?.nodeAffinity?.required?.nodeSelectorTerms[0]?.matchExpressions?.[0], {
    key: 'kubernetes.io/hostname',
    operator: 'In',
    values: ['local'],
  });
  assert.equal(buildVolumeFor({ ...claim, spec: { ...claim.spec, storageClassName: 'fast' } }, '/v'), undefined);
  assert.equal(buildVolumeFor({ ...claim, spec: { ...claim.spec, volumeName: 'pv-x' } }, '/v'), undefined);
});

it('the versions the cluster runs are the ones the build scripts build', () => {
  const build = readFileSync(join(import.meta.dirname, 'go', 'build'), 'utf8');
  assert.match(build, new RegExp(`K8S_VERSION=${versions.k8s}\\n`));
  assert.match(build, new RegExp(`ETCD_VERSION=${versions.etcd}\\n`));
  assert.match(build, new RegExp(`CONTAINERD_VERSION=${versions.containerd}\\n`));
  assert.match(build, new RegExp(`COREDNS_VERSION=${versions.coredns}\\n`));
  assert.match(build, new RegExp(`CRICTL_VERSION=${versions.crictl}\\n`));
  assert.match(readFileSync(join(import.meta.dirname, 'images', 'build'), 'utf8'), new RegExp(`COREDNS_VERSION=${versions.coredns}\\n`));
  assert.equal(corednsImage, `ballast.local/coredns:${versions.coredns}`);
  // The Gateway API CRDs `make gateway-api` installs are the release the conformance suite tests.
  const make = readFileSync(join(import.meta.dirname, '..', 'Makefile'), 'utf8');
  assert.match(make, new RegExp(`^GATEWAY_API_VERSION := ${gatewayApiVersion()}$`, 'm'));
});
