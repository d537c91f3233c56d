import assert from 'node:assert/strict';
import { it } from 'node:test';
import { condition, statusSignature } from './conditions.ts';

const t0 = '2026-12-01T10:00:00.000Z';
const t1 = '2026-12-02T10:00:00.000Z';

it('a condition keeps its transition time while its status holds, and takes now when it changes', () => {
  const prev = [{ type: 'Ready', status: 'True', lastTransitionTime: t0 }];
  assert.equal(
    condition(prev, { type: 'Ready', status: 'True', reason: 'AllMembersReady', message: 'a new message' }, 3, t1).lastTransitionTime,
    t0,
  );
  assert.equal(condition(prev, { type: 'Ready', status: 'False', reason: 'Degraded', message: 'm' }, 3, t1).lastTransitionTime, t1);
  assert.equal(
    condition(undefined, { type: 'Ready', status: 'True', reason: 'r', message: 'm' }, 3, t1).lastTransitionTime,
    t1,
    'a new condition',
  );
  assert.equal(
    condition(
      [{ type: 'Ready', status: 'True', lastTransitionTime: new Date(t0) }],
      { type: 'Ready', status: 'True', reason: 'r', message: 'm' },
      1,
      t1,
    ).lastTransitionTime,
    t0,
    'a Date from the API client',
  );
  assert.deepEqual(condition(prev, { type: 'Available', status: 'True', reason: 'r', message: 'm' }, 7, t1), {
    type: 'Available',
    status: 'True',
    reason: 'r',
    message: 'm',
    observedGeneration: 7,
    lastTransitionTime: t1,
  });
});

it('statusSignature ignores transition times only', () => {
  const a: { phase: string; conditions: Array<{ type: string; status: string; lastTransitionTime: string }> } = {
    phase: 'Ready',
    conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: t0 }],
  };
  assert.equal(statusSignature(a), statusSignature({ ...a, conditions: [{ ...a.conditions[0]!, lastTransitionTime: t1 }] }));
  assert.notEqual(statusSignature(a), statusSignature({ ...a, phase: 'Degraded' }));
  assert.equal(statusSignature(undefined), statusSignature({}));
});
