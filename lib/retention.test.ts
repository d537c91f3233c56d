import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { expired, parseAge } from './retention.ts';

const day = 86_400_000;
const now = 100 * day;
const good = (name: string, daysAgo: number) => ({ name, at: now - daysAgo * day, ok: true });
const bad = (name: string, daysAgo: number) => ({ name, at: now - daysAgo * day, ok: false });

describe('backup retention', () => {
  it('keeps the newest `keep` successful backups', () => {
    assert.deepEqual(expired([good('a', 4), good('b', 3), good('c', 2), good('d', 1)], { keep: 2 }, now), ['b', 'a']);
  });

  it('lets backups older than maxAge go', () => {
    assert.deepEqual(expired([good('a', 10), good('b', 8), good('c', 1)], { maxAgeMs: 7 * day }, now), ['b', 'a']);
  });

  it('never lets the newest successful backup go, however old (a schedule that stopped succeeding keeps its last good one)', () => {
    assert.deepEqual(expired([good('a', 40), good('b', 30), bad('c', 1)], { keep: 1, maxAgeMs: 7 * day }, now), ['a']);
    assert.deepEqual(expired([good('only', 400)], { keep: 0, maxAgeMs: day }, now), []);
  });

  it('keeps the newest failed backups for their reasons, and does not count them as good', () => {
    const all = [good('g1', 9), bad('f1', 8), bad('f2', 7), bad('f3', 6), bad('f4', 5), good('g2', 1)];
    assert.deepEqual(expired(all, { keep: 2 }, now), ['f1']);
    assert.deepEqual(expired(all, { keep: 2, keepFailed: 1 }, now), ['f3', 'f2', 'f1']);
  });

  it('keeps everything without a rule', () => {
    assert.deepEqual(expired([good('a', 900), good('b', 800)], {}, now), []);
  });

  it('reads ages in s, m, h and d', () => {
    assert.equal(parseAge('30d'), 30 * day);
    assert.equal(parseAge('168h'), 7 * day);
    assert.equal(parseAge('90m'), 90 * 60_000);
    assert.equal(parseAge('1w'), undefined);
    assert.equal(parseAge(''), undefined);
  });
});
