/**
 * Who a sidecar is (pure): the workload identity a TokenReview's answer proves. The token must
 * be a pod-bound ServiceAccount token for the mesh's audience; the identity is its namespace and
 * ServiceAccount, and the pod it is bound to must be the pod the sidecar says it runs in.
 */
import type { V1TokenReviewStatus } from '@kubernetes/client-node';
import { meshTokenAudience } from '../../api/mesh.ts';

export type Refusal = {
  code:
    'OPERATOR_ERR_MESH_TOKEN_INVALID' | 'OPERATOR_ERR_MESH_TOKEN_AUDIENCE' | 'OPERATOR_ERR_MESH_NOT_A_POD' | 'OPERATOR_ERR_MESH_WRONG_POD';
  message: string;
};

export interface ProvenIdentity {
  namespace: string;
  serviceAccount: string;
  pod: string;
  podUid: string;
}

/**
 * The identity a TokenReview status proves for a sidecar claiming to be `node` (namespace/pod;
 * '' when it did not say), or why not.
 */
export function identityFromReview(status: V1TokenReviewStatus | undefined, node: string): ProvenIdentity | Refusal {
  if (!status?.authenticated)
    return {
      code: 'OPERATOR_ERR_MESH_TOKEN_INVALID',
      message: `the ServiceAccount token was not accepted by the apiserver${status?.error ? `: ${status.error}` : ''}; it may have expired, or its pod or ServiceAccount was deleted`,
    };
  if (!(status.audiences ?? []).includes(meshTokenAudience))
    return {
      code: 'OPERATOR_ERR_MESH_TOKEN_AUDIENCE',
      message: `the token's audiences are ${JSON.stringify(status.audiences ?? [])}; a mesh token must be projected with audience ${meshTokenAudience}`,
    };
  const username = status.user?.username ?? '';
  const m = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(username);
  const extra = status.user?.extra ?? {};
  const pod = extra['authentication.kubernetes.io/pod-name']?.[0];
  const podUid = extra['authentication.kubernetes.io/pod-uid']?.[0];
  if (!m || !pod || !podUid)
    return {
      code: 'OPERATOR_ERR_MESH_NOT_A_POD',
      message: `the token belongs to ${username || 'nobody'} and is not bound to a pod; sidecars use their pod's projected ServiceAccount token`,
    };
  const [namespace, serviceAccount] = [m[1] as string, m[2] as string];
  if (node && node !== `${namespace}/${pod}`)
    return {
      code: 'OPERATOR_ERR_MESH_WRONG_POD',
      message: `the sidecar says it is ${node}, but its token is bound to pod ${namespace}/${pod}`,
    };
  return { namespace, serviceAccount, pod, podUid };
}
