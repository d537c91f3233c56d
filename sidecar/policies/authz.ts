/**
 * Inbound authorization (pure): may this caller make this request? Rules are tried in order and
 * the first that matches decides; none: the policy's default. A rule naming callers (`from`)
 * matches only a mesh identity (mTLS) among them; a rule without `from` matches every caller.
 */
import { parseSpiffeId } from '../../api/mesh.ts';
import type { AuthorizationPolicy } from '../../api/resiliencepolicy.ts';

export interface AuthzRequest {
  /** The caller's SPIFFE ID ('' : plaintext, no identity). */
  identity: string;
  method: string;
  path: string;
}

export interface AuthzDecision {
  allowed: boolean;
  /** Which rule decided (its index), or 'default'. */
  rule: number | 'default';
}

/**
 * Decide. `namespace` is the listener's own (bare ServiceAccount names are in it); a policy of
 * undefined allows everything.
 */
export function authorize(policy: AuthorizationPolicy | undefined, namespace: string, r: AuthzRequest): AuthzDecision {
  if (!policy) return { allowed: true, rule: 'default' };
  const caller = r.identity ? parseSpiffeId(r.identity) : undefined;
  for (const [i, rule] of policy.rules.entries()) {
    if (rule.methods.length > 0 && !rule.methods.some((m) => m.toUpperCase() === r.method.toUpperCase())) continue;
    if (rule.pathPrefixes.length > 0 && !rule.pathPrefixes.some((p) => r.path.startsWith(p))) continue;
    if (rule.from) {
      if (!caller) continue;
      const sas = rule.from.serviceAccounts ?? [];
      const nss = rule.from.namespaces ?? [];
      const named = sas.some((sa) => (sa.includes('/') ? sa : `${namespace}/${sa}`) === `${caller.namespace}/${caller.serviceAccount}`);
      if ((sas.length > 0 || nss.length > 0) && !named && !nss.includes(caller.namespace)) continue;
    }
    return { allowed: rule.action === 'allow', rule: i };
  }
  return { allowed: policy.default === 'allow', rule: 'default' };
}
