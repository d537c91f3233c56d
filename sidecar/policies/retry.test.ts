import assert from 'node:assert/strict';
import { it } from 'node:test';
import { type RetryRules, isIdempotent, retryReason } from './retry.ts';

const rules: RetryRules = {
  retryOn: ['connect-failure', 'refused-stream', 'reset', '502', '503', '504', 'unavailable'],
  methods: 'idempotent',
  idempotentPaths: ['/etcdserverpb.KV/Range'],
};

it('connection failures are retried for any request; answers and resets only for idempotent ones', () => {
  assert.equal(retryReason(rules, false, { kind: 'connect' }), 'connect-failure');
  assert.equal(retryReason(rules, false, { kind: 'refused' }), 'refused-stream');
  assert.equal(retryReason(rules, false, { kind: 'reset' }), undefined);
  assert.equal(retryReason(rules, false, { kind: 'status', status: 503 }), undefined);
  assert.equal(retryReason(rules, true, { kind: 'reset' }), 'reset');
  assert.equal(retryReason(rules, true, { kind: 'status', status: 503 }), '503');
  assert.equal(retryReason(rules, true, { kind: 'status', status: 500 }), undefined, '500 is not in retryOn');
  assert.equal(retryReason({ ...rules, retryOn: ['5xx'] }, true, { kind: 'status', status: 500 }), '5xx');
  assert.equal(retryReason(rules, true, { kind: 'status', status: 200, grpcStatus: 14 }), 'unavailable');
  assert.equal(retryReason(rules, true, { kind: 'status', status: 200, grpcStatus: 13 }), undefined);
  assert.equal(retryReason(rules, true, { kind: 'timeout' }), 'attempt-timeout');
  // A Gateway API rule's codes (HTTPRouteRetry), beside what retryOn names; still idempotent only.
  const gw: RetryRules = { ...rules, retryOn: ['connect-failure', 'refused-stream'], statusCodes: [500, 429] };
  assert.equal(retryReason(gw, true, { kind: 'status', status: 500 }), '500');
  assert.equal(retryReason(gw, true, { kind: 'status', status: 429 }), '429');
  assert.equal(retryReason(gw, true, { kind: 'status', status: 503 }), undefined);
  assert.equal(retryReason(gw, false, { kind: 'status', status: 500 }), undefined);
});

it('idempotent: safe methods, named gRPC paths, or everything when the policy says so', () => {
  assert.equal(isIdempotent(rules, 'GET', '/x', false), true);
  assert.equal(isIdempotent(rules, 'POST', '/x', false), false);
  assert.equal(isIdempotent(rules, 'POST', '/etcdserverpb.KV/Range', true), true);
  assert.equal(isIdempotent(rules, 'POST', '/etcdserverpb.KV/Put', true), false);
  assert.equal(isIdempotent(rules, 'GET', '/x', true), false, 'gRPC: only named paths');
  assert.equal(isIdempotent({ ...rules, methods: 'all' }, 'POST', '/x', false), true);
});
