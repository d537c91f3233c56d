/**
 * Pod volumes for the process kubelet. Each volume is a directory on the host (emptyDir under
 * the pod's directory, configMap and secret files written from the API, a PVC's provisioned
 * directory); each container sees them at its mountPaths through bind mounts made inside a
 * private mount namespace of its own, so nothing leaks to the host or to other pods.
 * A small provisioner gives PVCs of the default StorageClass (`ballast-local`, created by
 * `ballast cluster up`) a directory-backed PV.
 */
import { mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CoreV1Api, V1Container, V1PersistentVolumeClaim, V1Pod, V1Volume } from '@kubernetes/client-node';

export const storageClass = 'ballast-local';
export const provisioner = 'ballast.dev/local';

export interface Mount {
  source: string;
  target: string;
  readOnly: boolean;
}

/** Make the pod's volumes exist on the host; returns volume name → host directory. */
export async function prepareVolumes(core: CoreV1Api, pod: V1Pod, podDir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const ns = pod.metadata?.namespace ?? 'default';
  for (const v of pod.spec?.volumes ?? []) {
    const dir = join(podDir, 'volumes', v.name);
    if (v.hostPath) {
      if (v.hostPath.type === 'DirectoryOrCreate' || v.hostPath.type === undefined || v.hostPath.type === '') mkdirSync(v.hostPath.path, { recursive: true });
      out.set(v.name, v.hostPath.path);
    } else if (v.emptyDir) {
      mkdirSync(dir, { recursive: true });
      out.set(v.name, dir);
    } else if (v.configMap) {
      const cm = await core.readNamespacedConfigMap({ name: v.configMap.name ?? '', namespace: ns });
      writeFiles(dir, Object.entries(cm.data ?? {}).map(([k, val]) => [k, Buffer.from(val)]));
      out.set(v.name, dir);
    } else if (v.secret) {
      const s = await core.readNamespacedSecret({ name: v.secret.secretName ?? '', namespace: ns });
      writeFiles(dir, Object.entries(s.data ?? {}).map(([k, val]) => [k, Buffer.from(val, 'base64')]), 0o600);
      out.set(v.name, dir);
    } else if (v.projected) {
      await writeProjected(core, pod, v, dir);
      out.set(v.name, dir);
    } else if (v.downwardAPI) {
      writeFiles(dir, (v.downwardAPI.items ?? []).map((i) => [i.path, Buffer.from(fieldValue(pod, i.fieldRef?.fieldPath ?? ''))]));
      out.set(v.name, dir);
    } else if (v.persistentVolumeClaim) {
      const pvc = await core.readNamespacedPersistentVolumeClaim({ name: v.persistentVolumeClaim.claimName, namespace: ns });
      const pvName = pvc.spec?.volumeName;
      if (!pvName || pvc.status?.phase !== 'Bound') throw new Error(`PersistentVolumeClaim ${ns}/${v.persistentVolumeClaim.claimName} is not bound yet`);
      const pv = await core.readPersistentVolume({ name: pvName });
      const path = pv.spec?.hostPath?.path ?? pv.spec?.local?.path;
      if (!path) throw new Error(`PersistentVolume ${pvName} has no local path`);
      mkdirSync(path, { recursive: true });
      out.set(v.name, path);
    }
  }
  return out;
}

/**
 * Make `dir` hold exactly `files`. The directory itself is kept (containers see it through a
 * bind mount, so replacing it would hide new contents from them); each file is replaced
 * atomically (write, then rename), so a reader never sees half a token.
 */
function writeFiles(dir: string, files: Array<[string, Buffer]>, mode = 0o644): void {
  mkdirSync(dir, { recursive: true });
  const keep = new Set(files.map(([name]) => name.split('/')[0]));
  for (const e of readdirSync(dir)) if (!keep.has(e)) rmSync(join(dir, e), { recursive: true, force: true });
  for (const [name, data] of files) {
    const path = join(dir, name);
    mkdirSync(join(path, '..'), { recursive: true });
    writeFileSync(`${path}.tmp`, data, { mode });
    renameSync(`${path}.tmp`, path);
  }
}

/** The downward API's pod fields (those a volume or env may name). */
export function fieldValue(pod: V1Pod, path: string, podIp = ''): string {
  const labels = (m: Record<string, string> | undefined) => Object.entries(m ?? {}).map(([k, v]) => `${k}="${v}"`).join('\n');
  switch (path) {
    case 'metadata.name': return pod.metadata?.name ?? '';
    case 'metadata.namespace': return pod.metadata?.namespace ?? '';
    case 'metadata.uid': return pod.metadata?.uid ?? '';
    case 'metadata.labels': return labels(pod.metadata?.labels);
    case 'metadata.annotations': return labels(pod.metadata?.annotations);
    case 'spec.nodeName': return pod.spec?.nodeName ?? '';
    case 'spec.serviceAccountName': return pod.spec?.serviceAccountName ?? '';
    case 'status.podIP': return podIp;
    default: {
      const m = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(path);
      return m ? (pod.metadata?.[m[1] as 'labels' | 'annotations']?.[m[2] ?? ''] ?? '') : '';
    }
  }
}

/** Default lifetime of a projected service-account token, as the API defaults it. */
export const defaultTokenSeconds = 3600;

/**
 * A projected volume: service-account tokens (from the TokenRequest API, bound to the pod),
 * ConfigMap and Secret keys, and downward-API fields, in one directory. This is what the
 * ServiceAccount admission plugin adds to every pod as `kube-api-access-*`, mounted at
 * /var/run/secrets/kubernetes.io/serviceaccount. Called again to refresh tokens.
 */
export async function writeProjected(core: CoreV1Api, pod: V1Pod, v: V1Volume, dir: string): Promise<void> {
  const ns = pod.metadata?.namespace ?? 'default';
  const files: Array<[string, Buffer]> = [];
  for (const src of v.projected?.sources ?? []) {
    if (src.serviceAccountToken) {
      const t = src.serviceAccountToken;
      const tr = await core.createNamespacedServiceAccountToken({
        name: pod.spec?.serviceAccountName ?? 'default', namespace: ns,
        body: { spec: { audiences: t.audience ? [t.audience] : [], expirationSeconds: t.expirationSeconds ?? defaultTokenSeconds, boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: pod.metadata?.name ?? '', uid: pod.metadata?.uid ?? '' } } },
      });
      files.push([t.path, Buffer.from(tr.status?.token ?? '')]);
    } else if (src.configMap) {
      const cm = await core.readNamespacedConfigMap({ name: src.configMap.name ?? '', namespace: ns }).catch((err: { code?: number }) => {
        if (err.code === 404 && src.configMap?.optional) return undefined;
        throw err;
      });
      const data = cm?.data ?? {};
      for (const item of src.configMap.items ?? Object.keys(data).map((key) => ({ key, path: key }))) {
        if (data[item.key] !== undefined) files.push([item.path, Buffer.from(data[item.key] ?? '')]);
      }
    } else if (src.secret) {
      const sec = await core.readNamespacedSecret({ name: src.secret.name ?? '', namespace: ns });
      const data = sec.data ?? {};
      for (const item of src.secret.items ?? Object.keys(data).map((key) => ({ key, path: key }))) {
        if (data[item.key] !== undefined) files.push([item.path, Buffer.from(data[item.key] ?? '', 'base64')]);
      }
    } else if (src.downwardAPI) {
      for (const item of src.downwardAPI.items ?? []) files.push([item.path, Buffer.from(fieldValue(pod, item.fieldRef?.fieldPath ?? ''))]);
    }
  }
  writeFiles(dir, files, v.projected?.defaultMode ?? 0o644);
}

/** The bind mounts a container gets. */
export function mountsFor(c: V1Container, volumes: Map<string, string>): Mount[] {
  return (c.volumeMounts ?? []).flatMap((m) => {
    const source = volumes.get(m.name);
    return source ? [{ source: m.subPath ? join(source, m.subPath) : source, target: m.mountPath, readOnly: m.readOnly === true }] : [];
  });
}

/**
 * Wrap `argv` so it runs in a private mount namespace with `mounts` bound in place. The mount
 * points are created first (as empty directories on the host); the bind mounts exist only in
 * the container's namespace.
 */
export function withMounts(argv: string[], mounts: Mount[]): string[] {
  if (mounts.length === 0) return argv;
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const script = mounts.map((m) => `mkdir -p ${q(m.target)} && mount --bind ${q(m.source)} ${q(m.target)}${m.readOnly ? ` && mount -o remount,bind,ro ${q(m.target)}` : ''}`).join(' && ');
  return ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', `${script} && exec "$@"`, 'ballast-volumes', ...argv];
}

/** Give a pending claim of our class a directory-backed PV; the PV controller binds them. */
export async function provision(core: CoreV1Api, pvc: V1PersistentVolumeClaim, root: string): Promise<void> {
  if (pvc.spec?.storageClassName !== storageClass || pvc.spec.volumeName || pvc.status?.phase === 'Bound') return;
  const uid = pvc.metadata?.uid ?? '';
  const name = `pvc-${uid}`;
  await core.createPersistentVolume({
    body: {
      metadata: { name, annotations: { 'pv.kubernetes.io/provisioned-by': provisioner } },
      spec: {
        capacity: { storage: pvc.spec.resources?.requests?.['storage'] ?? '1Gi' },
        accessModes: pvc.spec.accessModes ?? ['ReadWriteOnce'],
        persistentVolumeReclaimPolicy: 'Retain',
        storageClassName: storageClass,
        hostPath: { path: join(root, name), type: 'DirectoryOrCreate' },
        claimRef: { namespace: pvc.metadata?.namespace ?? 'default', name: pvc.metadata?.name ?? '', uid },
      },
    },
  }).catch((err: { code?: number }) => {
    if (err.code !== 409) throw err;
  });
}
