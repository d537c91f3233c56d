/**
 * `kubectl apply` right after the operator is installed: its pods are Ready, but kube-proxy
 * programs the webhook Service's endpoints a moment later, and until then the apiserver's call to
 * the validating webhook is refused. Users and Argo CD retry; so do the suites (as
 * scripts/apply-when-routed does for `make up`), for up to 60 s, and any other error returns at once.
 */
import type { SpawnSyncReturns } from 'node:child_process';

export async function applyWhenRouted(kubectl: (args: string[], input?: string) => SpawnSyncReturns<string>, args: string[], input?: string): Promise<SpawnSyncReturns<string>> {
  let r = kubectl(['apply', ...args], input);
  for (let i = 0; i < 240 && r.status !== 0 && /connection refused|no endpoints available/.test(r.stderr); i++) {
    await new Promise((res) => setTimeout(res, 250));
    r = kubectl(['apply', ...args], input);
  }
  return r;
}
