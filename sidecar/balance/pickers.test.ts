import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SeededRandom } from '../../lib/random.ts';
import { type Endpoint, buildPicker, hash32, pickerKinds } from './pickers.ts';

const eps = (...ids: string[]): Endpoint[] => ids.map((id) => ({ id }));
const deps = (seed = 1, now = () => 0) => ({ random: new SeededRandom(seed), now });
const count = (picks: Array<Endpoint | undefined>) =>
  picks.reduce<Record<string, number>>((m, e) => ({ ...m, [e?.id ?? '-']: (m[e?.id ?? '-'] ?? 0) + 1 }), {});

describe('pickers', () => {
  it('every picker returns undefined with no endpoints', () => {
    for (const kind of ['roundRobin', 'weighted', 'random', 'leastRequest', 'ewma', 'ringHash'] as const) {
      assert.equal(buildPicker(kind, [], deps()).pick('k'), undefined, kind);
    }
  });

  it('roundRobin takes each endpoint in turn', () => {
    const p = buildPicker('roundRobin', eps('a', 'b', 'c'), deps());
    assert.deepEqual(
      Array.from({ length: 6 }, () => p.pick()?.id),
      ['a', 'b', 'c', 'a', 'b', 'c'],
    );
  });

  it('weighted is proportional and smooth (5:1:1 never sends five in a row to the heavy one)', () => {
    const p = buildPicker(
      'weighted',
      [
        { id: 'a', weight: 5 },
        { id: 'b', weight: 1 },
        { id: 'c', weight: 1 },
      ],
      deps(),
    );
    const seq = Array.from({ length: 7 }, () => p.pick()?.id).join('');
    assert.equal(seq, 'aabacaa');
    assert.deepEqual(count(Array.from({ length: 700 }, () => p.pick())), { a: 500, b: 100, c: 100 });
  });

  it('random is uniform within a few percent and replays from its seed', () => {
    const picks = (seed: number) => {
      const p = buildPicker('random', eps('a', 'b', 'c', 'd'), deps(seed));
      return Array.from({ length: 8000 }, () => p.pick());
    };
    const c = count(picks(7));
    for (const n of Object.values(c)) assert.ok(Math.abs(n - 2000) < 200, JSON.stringify(c));
    assert.deepEqual(
      picks(7).map((e) => e?.id),
      picks(7).map((e) => e?.id),
    );
  });

  it('leastRequest steers away from an endpoint with requests piled up', () => {
    const p = buildPicker('leastRequest', eps('a', 'b', 'c'), deps());
    for (let i = 0; i < 50; i++) p.started('a'); // a is stuck with 50 in flight
    const c = count(
      Array.from({ length: 300 }, () => {
        const e = p.pick() as Endpoint;
        p.started(e.id);
        p.finished(e.id, 1);
        return e;
      }),
    );
    assert.ok((c['a'] ?? 0) === 0, `a got ${c['a']} picks`);
  });

  it('ewma moves traffic off a slow endpoint, and back after it recovers', () => {
    let t = 0;
    const p = buildPicker('ewma', eps('fast', 'slow'), { ...deps(3, () => t), ewmaDecayMs: 1000 });
    const run = (latency: (id: string) => number, n: number) =>
      count(
        Array.from({ length: n }, () => {
          const e = p.pick() as Endpoint;
          p.started(e.id);
          t += 10;
          p.finished(e.id, latency(e.id));
          return e;
        }),
      );
    const slowPhase = run((id) => (id === 'slow' ? 500 : 5), 400);
    assert.ok((slowPhase['slow'] ?? 0) < 40, `slow got ${slowPhase['slow']} of 400`);
    t += 60_000; // long enough for the peak to decay once it is measured fast again
    const recovered = run(() => 5, 2000);
    assert.ok((recovered['slow'] ?? 0) > 400, `slow got ${recovered['slow']} of 2000 after recovering`);
  });

  it('ringHash: a key sticks to one endpoint; adding a fifth endpoint moves about a fifth of the keys', () => {
    const before = buildPicker('ringHash', eps('a', 'b', 'c', 'd'), deps());
    const after = buildPicker('ringHash', eps('a', 'b', 'c', 'd', 'e'), deps());
    const keys = Array.from({ length: 5000 }, (_, i) => `user-${i}`);
    for (const k of keys.slice(0, 50)) assert.equal(before.pick(k)?.id, before.pick(k)?.id);
    const moved = keys.filter((k) => before.pick(k)?.id !== after.pick(k)?.id);
    assert.ok(
      moved.every((k) => after.pick(k)?.id === 'e'),
      'keys only move to the new endpoint',
    );
    assert.ok(moved.length > 5000 * 0.12 && moved.length < 5000 * 0.28, `${moved.length} of 5000 keys moved`);
    const spread = count(keys.map((k) => before.pick(k)));
    for (const n of Object.values(spread)) assert.ok(n > 900 && n < 1600, JSON.stringify(spread));
  });

  it('maglev: even spread, a key sticks, and removing one of five endpoints moves only its keys (about a fifth)', () => {
    const five = ['a', 'b', 'c', 'd', 'e'].map((id) => ({ id }));
    const p = buildPicker('maglev', five, deps());
    const counts = new Map<string, number>();
    for (let i = 0; i < 10_000; i++) {
      const id = p.pick(`user-${i}`)!.id;
      counts.set(id, (counts.get(id) ?? 0) + 1);
      assert.equal(p.pick(`user-${i}`)!.id, id, 'sticky');
    }
    for (const n of counts.values()) assert.ok(n > 1700 && n < 2300, `spread: ${[...counts.values()]}`);
    const four = buildPicker('maglev', five.slice(0, 4), deps());
    let moved = 0;
    for (let i = 0; i < 10_000; i++) if (p.pick(`user-${i}`)!.id !== four.pick(`user-${i}`)!.id) moved++;
    assert.ok(moved > 1500 && moved < 2800, `moved ${moved} of 10000`);
  });

  it('every picker honours skip (ejected or already tried), and falls back to all when all are skipped', () => {
    for (const kind of pickerKinds) {
      const p = buildPicker(kind, eps('a', 'b', 'c'), deps());
      const skip = new Set(['a', 'b']);
      for (let i = 0; i < 50; i++) assert.equal(p.pick(`k${i}`, skip)!.id, 'c', kind);
      assert.ok(p.pick('k', new Set(['a', 'b', 'c'])), `${kind}: falls back`);
    }
  });

  it('hash32 is stable (the ring must not move between versions or processes)', () => {
    assert.equal(hash32(''), hash32(''));
    // Pinned: if this changes, every ring moves and every sticky key lands elsewhere.
    assert.equal(hash32('user-1'), 2005895916);
  });
});
