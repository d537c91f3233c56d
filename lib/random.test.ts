import assert from 'node:assert/strict';
import { it } from 'node:test';
import { SeededRandom } from './random.ts';

it('a seed replays the same sequence, and values stay in range', () => {
  const a = new SeededRandom(42);
  const b = new SeededRandom(42);
  const xs = Array.from({ length: 100 }, () => a.int(10));
  assert.deepEqual(
    xs,
    Array.from({ length: 100 }, () => b.int(10)),
  );
  assert.ok(xs.every((x) => x >= 0 && x < 10));
  assert.ok(new Set(xs).size > 5, 'not constant');
  assert.notDeepEqual(
    xs,
    Array.from({ length: 100 }, () => new SeededRandom(43).int(10)),
  );
});
