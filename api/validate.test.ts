import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { openapi } from './schema.ts';
import { validate } from './validate.ts';

describe('validate: defaults of absent objects', () => {
  const schema = openapi.object('a rule', {
    // Has defaults: an absent one is filled with them.
    limits: openapi.object('limits', { max: openapi.int('max', { default: 3 }), min: openapi.int('min') }),
    // No field has a default: an absent one stays absent (a {} would read as "set").
    retry: openapi.object('retry', { codes: openapi.array('codes', openapi.int('a code')), attempts: openapi.int('attempts') }),
    // Required fields: optional as a whole.
    target: openapi.object('target', { host: openapi.string('host') }, { required: ['host'] }),
  });

  it('fills an absent object whose fields have defaults, and leaves out one with nothing to fill', () => {
    const { value, problems } = validate(schema, {}, 'rule');
    assert.deepEqual(problems, []);
    assert.deepEqual(value, { limits: { max: 3 } });
  });

  it('keeps an object given empty on purpose', () => {
    assert.deepEqual(validate(schema, { retry: {} }, 'rule').value, { limits: { max: 3 }, retry: {} });
  });
});
