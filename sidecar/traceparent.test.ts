import assert from 'node:assert/strict';
import { it } from 'node:test';
import { formatTraceParent, parseTraceParent } from './traceparent.ts';

it('W3C traceparent: parse and format; invalid ones are ignored', () => {
  const v = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  const p = parseTraceParent(v);
  assert.deepEqual(p, { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', flags: 1 });
  assert.equal(formatTraceParent(p!), v);
  assert.equal(parseTraceParent('00-00000000000000000000000000000000-00f067aa0ba902b7-01'), undefined, 'all-zero trace id');
  assert.equal(parseTraceParent('ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'), undefined, 'version ff');
  assert.equal(parseTraceParent('garbage'), undefined);
  assert.equal(parseTraceParent(undefined), undefined);
});
