/** A cache of one kind held in memory, for the discovery service in tests (a unit of one step: the e2e suites use informers). */
import type { Cache } from '../../operator/discovery/server.ts';

export class MemCache<T> implements Cache<T> {
  items: T[] = [];
  readonly #fns: Array<(k: string) => void> = [];
  list(): readonly T[] {
    return this.items;
  }
  onChange(fn: (k: string) => void): void {
    this.#fns.push(fn);
  }
  set(items: T[]): void {
    this.items = items;
    for (const f of this.#fns) f('x');
  }
}
