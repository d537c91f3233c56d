import assert from 'node:assert/strict';
import { it } from 'node:test';
import { identityFromReview } from './identity.ts';

const ok = {
  authenticated: true,
  audiences: ['ballast.dev/mesh'],
  user: {
    username: 'system:serviceaccount:shop:web',
    extra: { 'authentication.kubernetes.io/pod-name': ['web-0'], 'authentication.kubernetes.io/pod-uid': ['u-1'] },
  },
};

it("a pod-bound mesh token proves its namespace, ServiceAccount and pod; anything else is refused with the rule's code", () => {
  assert.deepEqual(identityFromReview(ok, 'shop/web-0'), { namespace: 'shop', serviceAccount: 'web', pod: 'web-0', podUid: 'u-1' });
  assert.equal((identityFromReview(ok, '') as { pod: string }).pod, 'web-0', 'a sidecar that did not say which pod');
  const code = (s: unknown, node = 'shop/web-0') => (identityFromReview(s as typeof ok, node) as { code?: string }).code;
  assert.equal(code({ authenticated: false, error: 'token expired' }), 'OPERATOR_ERR_MESH_TOKEN_INVALID');
  assert.equal(code(undefined), 'OPERATOR_ERR_MESH_TOKEN_INVALID');
  assert.equal(code({ ...ok, audiences: ['https://kubernetes.default.svc'] }), 'OPERATOR_ERR_MESH_TOKEN_AUDIENCE');
  assert.equal(code({ ...ok, user: { username: 'alice' } }), 'OPERATOR_ERR_MESH_NOT_A_POD');
  assert.equal(
    code({ ...ok, user: { username: 'system:serviceaccount:shop:web' } }),
    'OPERATOR_ERR_MESH_NOT_A_POD',
    'a token not bound to a pod',
  );
  assert.equal(code(ok, 'shop/api-0'), 'OPERATOR_ERR_MESH_WRONG_POD');
  assert.equal(code(ok, 'other/web-0'), 'OPERATOR_ERR_MESH_WRONG_POD');
});
