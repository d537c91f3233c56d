/**
 * Keys in byte order with range scans: a thin wrapper over sorted-btree's B+ tree, so the rest
 * of the store depends on this small interface and not on the library.
 */
import sortedBtree from 'sorted-btree';

// sorted-btree is CommonJS with `exports.default`; Node's ESM import yields module.exports.
const BTree = sortedBtree.default;
type Tree<V> = InstanceType<typeof BTree<string, V>>;

export class OrderedMap<V> {
  readonly #tree: Tree<V>;

  constructor(tree: Tree<V> = new BTree<string, V>()) {
    this.#tree = tree;
  }

  /**
   * A copy in O(1): the B+ tree's nodes are shared and copied when either side writes them, so
   * the copy keeps the keys and values as they are now. Values themselves are shared (a value
   * changed in place changes in both).
   */
  clone(): OrderedMap<V> {
    return new OrderedMap<V>(this.#tree.clone());
  }

  get size(): number {
    return this.#tree.size;
  }
  get(key: string): V | undefined {
    return this.#tree.get(key);
  }
  set(key: string, value: V): void {
    this.#tree.set(key, value);
  }
  delete(key: string): void {
    this.#tree.delete(key);
  }
  /** Every entry in key order, lazily (the map must not change while it is read: use a clone). */
  entries(): IterableIterator<[string, V]> {
    return this.#tree.entries();
  }
  /** Visit [start, end) in key order (`end` undefined: to the last key). */
  forRange(start: string, end: string | undefined, fn: (key: string, value: V) => void): void {
    if (end === undefined) {
      for (const [k, v] of this.#tree.entries(start)) fn(k, v);
      return;
    }
    if (end <= start) return;
    this.#tree.forRange(start, end, false, (k, v) => {
      fn(k, v);
    });
  }
}
