/** The operator's error codes: what a sidecar asking for its mesh certificate is told when refused (gRPC status message). */
import { defineCatalogue } from '../lib/errors.ts';

export const catalogue = defineCatalogue('operator', 'OPERATOR', {
  OPERATOR_ERR_MESH_TOKEN_MISSING:
    'A certificate request came without a ServiceAccount token (gRPC metadata `authorization: Bearer <token>`).',
  OPERATOR_ERR_MESH_TOKEN_INVALID:
    'The TokenReview did not authenticate the token: expired, signed by someone else, or its pod or ServiceAccount was deleted.',
  OPERATOR_ERR_MESH_TOKEN_AUDIENCE: 'The token is not for the mesh: its audience is not `ballast.dev/mesh`.',
  OPERATOR_ERR_MESH_NOT_A_POD: "The token is not a pod's ServiceAccount token (a user's, or one not bound to a pod).",
  OPERATOR_ERR_MESH_WRONG_POD: 'The sidecar claimed to be a pod its token is not bound to.',
  OPERATOR_ERR_MESH_CSR_INVALID: 'The certificate request is not a PEM PKCS#10 CSR, its signature does not verify, or its key is too weak.',
  OPERATOR_ERR_MESH_ISSUER_UNAVAILABLE:
    'The operator has no usable issuer yet (its Secrets cannot be read or made, or the trust anchor has expired).',
});
