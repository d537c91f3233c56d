import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BallastError, defineCatalogue, isBallastError, libErrors } from './errors.ts';

describe('errors', () => {
  it('carries a stable code, the cause, and serializes for logs and API bodies', () => {
    const cause = new Error('disk full');
    const e = libErrors.error('BALLAST_ERR_START_FAILED', 'wal failed to start: disk full', { cause });
    assert.ok(e instanceof BallastError);
    assert.equal(e.code, 'BALLAST_ERR_START_FAILED');
    assert.equal(e.cause, cause);
    assert.deepEqual(e.toJSON(), { code: 'BALLAST_ERR_START_FAILED', message: 'wal failed to start: disk full', cause: 'disk full' });
  });

  it('brand guard recognizes Ballast errors and their codes, nothing else', () => {
    const e = new BallastError('BALLAST_ERR_USAGE', 'x');
    assert.ok(isBallastError(e));
    assert.ok(isBallastError(e, 'BALLAST_ERR_USAGE'));
    assert.ok(!isBallastError(e, 'BALLAST_ERR_CONFIG_INVALID'));
    assert.ok(!isBallastError(new Error('x')));
    assert.ok(!isBallastError(null));
  });

  it('refuses codes that do not carry the program prefix', () => {
    assert.throws(() => defineCatalogue('store', 'STORE', { SIDECAR_ERR_X: 'x' }), /must look like STORE_ERR_SOMETHING/);
  });
});
