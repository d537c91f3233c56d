import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { grpcMessage } from './http.ts';

describe('grpcMessage', () => {
  it('percent-encodes only %, control characters and non-ASCII bytes, as the gRPC spec asks', () => {
    assert.equal(
      grpcMessage('SIDECAR_ERR_TIMEOUT: web did not answer within 50 ms (a/b)'),
      'SIDECAR_ERR_TIMEOUT: web did not answer within 50 ms (a/b)',
    );
    assert.equal(grpcMessage('100%\nü'), '100%25%0A%C3%BC');
  });
});
