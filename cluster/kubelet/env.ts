/**
 * A container's environment: the pod's env with downward-API `fieldRef` values and
 * ConfigMap/Secret key references (read once when the pod starts, so a missing key fails the
 * pod's sync with a message that names it), plus what Kubernetes always sets.
 */
import type { CoreV1Api, V1Container, V1Pod } from '@kubernetes/client-node';
import type { PodRuntime } from './runtime.ts';
import { fieldValue } from './volumes.ts';

export async function readEnvRefs(core: CoreV1Api, pod: V1Pod): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const ns = pod.metadata?.namespace ?? 'default';
  for (const c of [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])]) {
    for (const e of c.env ?? []) {
      const cm = e.valueFrom?.configMapKeyRef;
      const sec = e.valueFrom?.secretKeyRef;
      if (cm) {
        const v = (await core.readNamespacedConfigMap({ name: cm.name ?? '', namespace: ns })).data?.[cm.key];
        if (v === undefined && !cm.optional) throw new Error(`ConfigMap ${ns}/${cm.name} has no key ${cm.key} (env ${e.name} of ${c.name})`);
        if (v !== undefined) out.set(`cm:${cm.name}/${cm.key}`, v);
      } else if (sec) {
        const v = (await core.readNamespacedSecret({ name: sec.name ?? '', namespace: ns })).data?.[sec.key];
        if (v === undefined && !sec.optional) throw new Error(`Secret ${ns}/${sec.name} has no key ${sec.key} (env ${e.name} of ${c.name})`);
        if (v !== undefined) out.set(`secret:${sec.name}/${sec.key}`, Buffer.from(v, 'base64').toString());
      }
    }
  }
  return out;
}

export function containerEnv(pod: V1Pod, c: V1Container, rt: PodRuntime, node: { nodeName: string; hostIP: string; apiserver: { host: string; port: number } }): Record<string, string> {
  const env: Record<string, string> = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOSTNAME: pod.metadata?.name ?? '', KUBERNETES_SERVICE_HOST: node.apiserver.host, KUBERNETES_SERVICE_PORT: String(node.apiserver.port) };
  for (const e of c.env ?? []) {
    if (e.value !== undefined) env[e.name] = expand(e.value, env);
    const f = e.valueFrom?.fieldRef?.fieldPath;
    const cm = e.valueFrom?.configMapKeyRef;
    const sec = e.valueFrom?.secretKeyRef;
    if (cm) env[e.name] = rt.envRefs.get(`cm:${cm.name}/${cm.key}`) ?? '';
    if (sec) env[e.name] = rt.envRefs.get(`secret:${sec.name}/${sec.key}`) ?? '';
    if (f) env[e.name] = f === 'spec.nodeName' ? node.nodeName : f === 'status.hostIP' ? node.hostIP : fieldValue(pod, f, rt.sandbox.ip);
  }
  return env;
}

/** Kubernetes' `$(VAR)` expansion in env values, command and args: `$$` escapes, unknown names stay as written. */
export function expand(s: string, env: Record<string, string>): string {
  return s.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (m, name: string | undefined) => (m === '$$' ? '$' : name !== undefined && env[name] !== undefined ? env[name] : m));
}
