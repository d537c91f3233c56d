// "Would a GitOps tool show a perpetual diff?": every field a manifest sets must read back from
// the API server with the same value (fields the server adds are fine; Argo CD ignores them too).
import { spawnSync } from 'node:child_process';
import { parseAllDocuments } from 'yaml';

interface Obj {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
}

/** Paths under `desired` whose value differs in `live` ("" when equal). */
export function fieldDrift(desired: unknown, live: unknown, path = ''): string[] {
  if (desired === null || typeof desired !== 'object') {
    // The API server returns numbers and booleans as such; a manifest may quote neither.
    return desired === live ? [] : [`${path}: manifest ${JSON.stringify(desired)}, live ${JSON.stringify(live)}`];
  }
  if (Array.isArray(desired)) {
    if (!Array.isArray(live)) return [`${path}: manifest has a list, live ${JSON.stringify(live)}`];
    if (desired.length !== live.length) return [`${path}: manifest has ${desired.length} items, live ${live.length}`];
    return desired.flatMap((d, i) => fieldDrift(d, live[i], `${path}[${i}]`));
  }
  if (live === null || typeof live !== 'object')
    return Object.keys(desired).length === 0 && live === undefined ? [] : [`${path}: manifest has an object, live ${JSON.stringify(live)}`];
  return Object.entries(desired).flatMap(([k, v]) =>
    v === null && !(k in live)
      ? []
      : Object.keys(v ?? {}).length === 0 && typeof v === 'object' && !(k in live)
        ? []
        : fieldDrift(v, (live as Record<string, unknown>)[k], `${path}.${k}`),
  );
}

/** Read each object of a multi-document manifest back and list the fields that drifted. */
export function manifestDrift(manifests: string, kubectlArgs: string[], defaultNamespace: string): string[] {
  const out: string[] = [];
  for (const doc of parseAllDocuments(manifests)) {
    const o = doc.toJS() as Obj | null;
    if (!o?.kind) continue;
    const ns = o.metadata.namespace ?? defaultNamespace;
    const r = spawnSync(
      'kubectl',
      [
        ...kubectlArgs,
        'get',
        `${o.kind}.${o.apiVersion.includes('/') ? o.apiVersion.split('/')[0] : ''}`.replace(/\.$/, ''),
        o.metadata.name,
        '-n',
        ns,
        '-o',
        'json',
      ],
      { encoding: 'utf8' },
    );
    if (r.status !== 0) {
      out.push(`${o.kind}/${o.metadata.name}: not found (${r.stderr.trim()})`);
      continue;
    }
    const live = JSON.parse(r.stdout) as unknown;
    for (const d of fieldDrift(o, live)) out.push(`${o.kind}/${o.metadata.name}${d}`);
  }
  return out;
}
