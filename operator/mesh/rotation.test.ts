import assert from 'node:assert/strict';
import { it } from 'node:test';
import { type AnchorState, planRotation, rotateAnnotation, rotatedAnnotation, rotationAnnotation } from './rotation.ts';

const day = 86_400_000;
const now = Date.parse('2026-12-03T00:00:00Z');
const base: AnchorState = {
  activePem: 'A',
  activeKeyPem: true,
  trusted: ['A'],
  nextPem: '',
  annotations: {},
  activeFrom: now - 100 * day,
  activeTo: now + 3000 * day,
  managed: true,
};
const step = 600_000;

it('idle until asked (a new rotate value) or a third of the anchor life is left', () => {
  assert.deepEqual(planRotation(base, now, step), { kind: 'none' });
  assert.deepEqual(planRotation({ ...base, annotations: { [rotateAnnotation]: 'r1' } }, now, step), { kind: 'begin', request: 'r1' });
  assert.deepEqual(planRotation({ ...base, annotations: { [rotateAnnotation]: 'r1', [rotatedAnnotation]: 'r1' } }, now, step), {
    kind: 'none',
  });
  assert.deepEqual(planRotation({ ...base, activeFrom: now - 3000 * day, activeTo: now + 100 * day }, now, step), {
    kind: 'begin',
    request: 'expiry',
  });
  assert.deepEqual(
    planRotation({ ...base, managed: false, activeFrom: now - 3000 * day, activeTo: now + 100 * day }, now, step),
    { kind: 'none' },
    "a user's anchor is rotated only when asked (cert-manager may own it)",
  );
  const keyless = planRotation({ ...base, activeKeyPem: false, annotations: { [rotateAnnotation]: 'r1' } }, now, step);
  assert.equal(keyless.kind, 'none');
  assert.match((keyless as { why: string }).why, /no tls\.key/);
});

it('trusting → issuing → idle, each a step apart; a look before the step is due says when to look again', () => {
  const trusting = { phase: 'trusting', since: now, request: 'r1' };
  const s = { ...base, nextPem: 'B', trusted: ['A', 'B'], annotations: { [rotationAnnotation]: JSON.stringify(trusting) } };
  assert.deepEqual(planRotation(s, now + 1000, step), { kind: 'none', recheckAt: now + step });
  assert.deepEqual(planRotation(s, now + step, step), { kind: 'activate', rotation: trusting });
  const issuing = { phase: 'issuing', since: now + step, request: 'r1' };
  const t = { ...s, activePem: 'B', nextPem: '', annotations: { [rotationAnnotation]: JSON.stringify(issuing) } };
  assert.deepEqual(planRotation(t, now + step + 5, step), { kind: 'none', recheckAt: now + 2 * step });
  assert.deepEqual(planRotation(t, now + 2 * step, step), { kind: 'finish', rotation: issuing });
  // A garbled state is no rotation (and a request still stands).
  assert.deepEqual(planRotation({ ...base, annotations: { [rotationAnnotation]: '{nope' } }, now, step), { kind: 'none' });
});
