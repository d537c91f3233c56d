/**
 * The local cluster's certificates and kubeconfigs, made once per state directory with openssl:
 * one CA; the apiserver's serving certificate; a client certificate per component with the
 * identity Kubernetes' default RBAC and the Node authorizer expect (system:kube-controller-manager,
 * system:kube-scheduler, system:kube-proxy, system:node:<node> in system:nodes); and the kubelet's
 * serving certificate for the node's name and address, which the apiserver checks when it calls
 * the kubelet (`kubectl logs`, `exec`).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** The node's name: its Node object, and the CN of its client certificate. */
export const nodeName = 'local';
/** The node's address: the pod bridge's gateway, where pods reach the apiserver and the kubelet. */
export const nodeAddress = '10.244.0.1';
/** The pod network (one node, one range) and the Service network. */
export const podCidr = '10.244.0.0/24';
export const serviceCidr = '10.96.0.0/16';
/** The `kubernetes` Service's address (the first of the Service range) and cluster DNS's. */
export const apiServiceIp = '10.96.0.1';
export const dnsServiceIp = '10.96.0.10';

interface Identity {
  /** File name stem under pki/. */
  name: string;
  subject: string;
  /** The openssl extensions: key usage and names. */
  ext: string;
}

const client = (name: string, subject: string): Identity => ({ name, subject, ext: 'extendedKeyUsage=clientAuth\n' });

/** Every certificate the cluster uses; a state directory from an older version gains those it lacks. */
export function identities(): Identity[] {
  const apiNames = [
    'DNS:localhost',
    'DNS:kubernetes',
    'DNS:kubernetes.default',
    'DNS:kubernetes.default.svc',
    'DNS:kubernetes.default.svc.cluster.local',
    'IP:127.0.0.1',
    `IP:${apiServiceIp}`,
    `IP:${nodeAddress}`,
  ];
  return [
    { name: 'apiserver', subject: '/CN=kube-apiserver', ext: `subjectAltName=${apiNames.join(',')}\nextendedKeyUsage=serverAuth\n` },
    {
      name: 'kubelet-serving',
      subject: `/CN=system:node:${nodeName}/O=system:nodes`,
      ext: `subjectAltName=DNS:${nodeName},IP:${nodeAddress}\nextendedKeyUsage=serverAuth\n`,
    },
    client('apiserver-kubelet-client', '/CN=kube-apiserver-kubelet-client/O=system:masters'),
    client('admin', '/CN=admin/O=system:masters'),
    client('controller-manager', '/CN=system:kube-controller-manager'),
    client('scheduler', '/CN=system:kube-scheduler'),
    client('kubelet', `/CN=system:node:${nodeName}/O=system:nodes`),
    client('kube-proxy', '/CN=system:kube-proxy'),
    client('provisioner', '/CN=system:ballast-local-provisioner'),
  ];
}

/** Make the CA, every certificate and the service-account key pair that are missing. */
export function ensurePki(stateDir: string): string {
  const pki = join(stateDir, 'pki');
  mkdirSync(pki, { recursive: true });
  const ssl = (args: string[]) => execFileSync('openssl', args, { cwd: pki, stdio: 'ignore' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  if (!existsSync(join(pki, 'ca.crt')))
    ssl(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '365', '-subj', '/CN=ballast-local-ca']);
  for (const id of identities()) {
    const extFile = join(pki, `${id.name}.ext`);
    // A certificate made with other names (an older version's) is made again.
    if (existsSync(extFile) && readFileSync(extFile, 'utf8') !== id.ext) rmSync(join(pki, `${id.name}.crt`), { force: true });
    if (existsSync(join(pki, `${id.name}.crt`))) continue;
    writeFileSync(extFile, id.ext);
    ssl(['req', ...ec, '-keyout', `${id.name}.key`, '-out', `${id.name}.csr`, '-subj', id.subject]);
    ssl([
      'x509',
      '-req',
      '-in',
      `${id.name}.csr`,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${id.name}.crt`,
      '-days',
      '365',
      '-extfile',
      `${id.name}.ext`,
    ]);
  }
  if (!existsSync(join(pki, 'sa.key'))) {
    ssl(['genrsa', '-out', 'sa.key', '2048']);
    ssl(['rsa', '-in', 'sa.key', '-pubout', '-out', 'sa.pub']);
  }
  return pki;
}

/** A kubeconfig for one identity of {@link identities}, pointed at the apiserver. */
export function writeKubeconfig(stateDir: string, user: string, server: string): string {
  const pki = join(stateDir, 'pki');
  const path = join(stateDir, `${user}.kubeconfig`);
  writeFileSync(
    path,
    [
      'apiVersion: v1',
      'kind: Config',
      `clusters: [{name: ballast-local, cluster: {server: "${server}", certificate-authority: ${join(pki, 'ca.crt')}}}]`,
      `users: [{name: ${user}, user: {client-certificate: ${join(pki, `${user}.crt`)}, client-key: ${join(pki, `${user}.key`)}}}]`,
      `contexts: [{name: ballast-local, context: {cluster: ballast-local, user: ${user}}}]`,
      'current-context: ballast-local',
      '',
    ].join('\n'),
  );
  return path;
}
