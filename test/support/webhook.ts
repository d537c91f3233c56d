/**
 * `kubectl apply` right after the operator is installed: its pods are Ready, but kube-proxy
 * programs the webhook Service's endpoints a moment later, and until then the apiserver's calls to
 * the webhooks fail. The validating webhook (failurePolicy Fail) refuses the object, which can be
 * retried; the injection webhook (failurePolicy Ignore) lets the pod through without its sidecar,
 * which a retry of `kubectl apply` does not mend (the pod exists). So first wait until the
 * validating webhook answers a server-side dry run (no side effects), then apply, retrying what is
 * still refused; for up to 60 s each, and any other error returns at once.
 */
import type { SpawnSyncReturns } from 'node:child_process';

const unreachable = /connection refused|no endpoints available|context deadline exceeded|i\/o timeout/;

/** Waits until the apiserver reaches the operator's webhooks (a dry-run StoreCluster is judged). */
export async function webhookRouted(kubectl: (args: string[], input?: string) => SpawnSyncReturns<string>): Promise<void> {
  const probe = JSON.stringify({
    apiVersion: 'ballast.dev/v1alpha1',
    kind: 'StoreCluster',
    metadata: { name: 'webhook-probe', namespace: 'default' },
    spec: { replicas: 1 },
  });
  for (let i = 0; i < 240; i++) {
    const r = kubectl(['create', '--dry-run=server', '-f', '-'], probe);
    if (!unreachable.test(r.stderr)) return;
    await new Promise((res) => setTimeout(res, 250));
  }
}

export async function applyWhenRouted(
  kubectl: (args: string[], input?: string) => SpawnSyncReturns<string>,
  args: string[],
  input?: string,
): Promise<SpawnSyncReturns<string>> {
  await webhookRouted(kubectl);
  let r = kubectl(['apply', ...args], input);
  for (let i = 0; i < 240 && r.status !== 0 && unreachable.test(r.stderr); i++) {
    await new Promise((res) => setTimeout(res, 250));
    r = kubectl(['apply', ...args], input);
  }
  return r;
}
