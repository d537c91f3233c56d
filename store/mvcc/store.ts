/**
 * The revisioned key space (pure). One global revision; each key keeps its history of
 * records (puts and deletion tombstones) so reads at a past revision work until compaction.
 * Writes are applied in log order by every member, so everything here is deterministic.
 */
import { catalogue } from '../errors.ts';
import { OrderedMap } from './ordered-map.ts';
import { hashRecords } from './hash.ts';
import {
  type Compare,
  CompareResult,
  CompareTarget,
  type DeleteRangeRequest,
  type DeleteRangeResult,
  type Event,
  type KeyValue,
  type PutRequest,
  type PutResult,
  type RangeRequest,
  type RangeResult,
  type RequestOp,
  type ResponseOp,
  SortOrder,
  SortTarget,
  type TxnRequest,
  type TxnResult,
} from './types.ts';

/** One version of a key: a put, or a deletion tombstone. */
export interface Rec {
  readonly mod: number;
  readonly sub: number;
  readonly create: number;
  readonly version: number;
  readonly value: string;
  readonly lease: string;
  readonly tomb: boolean;
}

/** Per-record overhead counted toward the storage quota (bookkeeping, indexes). */
const recOverhead = 64;

/** The serializable state of the key space (for Raft snapshots). */
export interface MvccState {
  rev: number;
  compactRev: number;
  keys: Array<[string, Rec[]]>;
}

/**
 * The key space as of one revision, read lazily: what MvccStore.view() returns. `keys` may be
 * iterated more than once and at any later time, with the same result each time.
 */
export interface MvccView {
  rev: number;
  compactRev: number;
  keys: Iterable<[string, readonly Rec[]]>;
}

function toKv(key: string, r: Rec): KeyValue {
  return { key, createRevision: r.create, modRevision: r.mod, version: r.version, value: r.value, lease: r.lease };
}

/** The state of the write in progress (one main revision, many sub-revisions). */
interface WriteCtx {
  rev: number;
  sub: number;
  events: Event[];
}

export class MvccStore {
  #keys = new OrderedMap<Rec[]>();
  #rev = 1; // etcd starts at revision 1
  #compactRev = 0;
  #bytes = 0;

  /** The current revision (of the last write). */
  get revision(): number {
    return this.#rev;
  }
  get compactRevision(): number {
    return this.#compactRev;
  }
  /** Approximate bytes held (keys, values and bookkeeping of every record kept). */
  get bytes(): number {
    return this.#bytes;
  }
  get keyCount(): number {
    return this.#keys.size;
  }

  // ---- reads --------------------------------------------------------------------------------

  range(req: RangeRequest): RangeResult {
    const rev = req.revision <= 0 ? this.#rev : req.revision;
    if (rev > this.#rev) throw catalogue.error('STORE_ERR_FUTURE_REV', 'etcdserver: mvcc: required revision is a future revision');
    if (rev < this.#compactRev) throw catalogue.error('STORE_ERR_COMPACTED', 'etcdserver: mvcc: required revision has been compacted');
    return this.#rangeAt(req, rev);
  }

  #rangeAt(req: RangeRequest, rev: number): RangeResult {
    const filtered = req.minModRevision > 0 || req.maxModRevision > 0 || req.minCreateRevision > 0 || req.maxCreateRevision > 0;
    const sorted = req.sortOrder !== SortOrder.none && !(req.sortTarget === SortTarget.key && req.sortOrder === SortOrder.ascend);
    // etcd's `count` is the whole range, so every match is counted; without sorting only the
    // first `limit` kvs are kept, with sorting all are kept, sorted, then cut.
    const limit = req.limit > 0 && !sorted ? req.limit : Infinity;
    const kvs: KeyValue[] = [];
    let count = 0;
    this.#scan(req.key, req.rangeEnd, (key, recs) => {
      const r = visibleAt(recs, rev);
      if (!r) return;
      if (filtered && !passesFilters(r, req)) return;
      count++;
      if (!req.countOnly && kvs.length < limit) kvs.push(req.keysOnly ? { ...toKv(key, r), value: '' } : toKv(key, r));
    });
    if (sorted) sortKvs(kvs, req.sortOrder, req.sortTarget);
    let out = kvs;
    if (req.limit > 0 && out.length > req.limit) out = out.slice(0, req.limit);
    return { kvs: req.countOnly ? [] : out, more: req.limit > 0 && count > req.limit, count };
  }

  #scan(start: string, end: string, fn: (key: string, recs: Rec[]) => void): void {
    if (end === '') {
      const recs = this.#keys.get(start);
      if (recs) fn(start, recs);
      return;
    }
    this.#keys.forRange(start, end === '\0' ? undefined : end, fn);
  }

  #latest(key: string): Rec | undefined {
    const recs = this.#keys.get(key);
    const r = recs?.[recs.length - 1];
    return r && !r.tomb ? r : undefined;
  }

  // ---- writes -------------------------------------------------------------------------------

  /** Apply one write request (put, delete or txn) at the next revision; returns its result and events. */
  put(req: PutRequest): { result: PutResult; events: Event[]; revision: number } {
    const ctx = this.#begin();
    const result = this.#put(req, ctx);
    return { result, events: ctx.events, revision: this.#commit(ctx) };
  }

  deleteRange(req: DeleteRangeRequest): { result: DeleteRangeResult; events: Event[]; revision: number } {
    const ctx = this.#begin();
    const result = this.#deleteRange(req, ctx);
    return { result, events: ctx.events, revision: this.#commit(ctx) };
  }

  txn(req: TxnRequest): { result: TxnResult; events: Event[]; revision: number } {
    const ctx = this.#begin();
    const result = this.#txn(req, ctx);
    return { result, events: ctx.events, revision: this.#commit(ctx) };
  }

  #begin(): WriteCtx {
    return { rev: this.#rev + 1, sub: 0, events: [] };
  }

  /** A write that changed nothing does not consume a revision (as in etcd). */
  #commit(ctx: WriteCtx): number {
    if (ctx.sub > 0) this.#rev = ctx.rev;
    return this.#rev;
  }

  #put(req: PutRequest, ctx: WriteCtx): PutResult {
    const prev = this.#latest(req.key);
    if ((req.ignoreValue || req.ignoreLease) && !prev) throw catalogue.error('STORE_ERR_KEY_NOT_FOUND', 'etcdserver: key not found');
    const value = req.ignoreValue ? (prev as Rec).value : req.value;
    const lease = req.ignoreLease ? (prev as Rec).lease : req.lease;
    const rec: Rec = {
      mod: ctx.rev,
      sub: ctx.sub++,
      create: prev ? prev.create : ctx.rev,
      version: prev ? prev.version + 1 : 1,
      value,
      lease,
      tomb: false,
    };
    this.#append(req.key, rec);
    const event: Event = { type: 0, kv: toKv(req.key, rec) };
    if (prev) event.prevKv = toKv(req.key, prev);
    ctx.events.push(event);
    return req.prevKv && prev ? { prevKv: toKv(req.key, prev) } : {};
  }

  #deleteRange(req: DeleteRangeRequest, ctx: WriteCtx): DeleteRangeResult {
    const victims: Array<[string, Rec]> = [];
    this.#scan(req.key, req.rangeEnd, (key, recs) => {
      const r = recs[recs.length - 1] as Rec;
      if (!r.tomb) victims.push([key, r]);
    });
    const prevKvs: KeyValue[] = [];
    for (const [key, prev] of victims) {
      const tomb: Rec = { mod: ctx.rev, sub: ctx.sub++, create: 0, version: 0, value: '', lease: '0', tomb: true };
      this.#append(key, tomb);
      ctx.events.push({
        type: 1,
        kv: { key, createRevision: 0, modRevision: ctx.rev, version: 0, value: '', lease: '0' },
        prevKv: toKv(key, prev),
      });
      if (req.prevKv) prevKvs.push(toKv(key, prev));
    }
    return { deleted: victims.length, prevKvs };
  }

  #txn(req: TxnRequest, ctx: WriteCtx): TxnResult {
    const succeeded = req.compare.every((c) => this.#compare(c));
    const ops = succeeded ? req.success : req.failure;
    const responses: ResponseOp[] = ops.map((op) => this.#op(op, ctx));
    return { succeeded, responses };
  }

  #op(op: RequestOp, ctx: WriteCtx): ResponseOp {
    if ('range' in op) {
      // Reads inside a txn see the txn's own earlier writes (already in the index at ctx.rev).
      if (op.range.revision > 0) return { range: this.range(op.range) };
      return { range: this.#rangeAt(op.range, ctx.sub > 0 ? ctx.rev : this.#rev) };
    }
    if ('put' in op) return { put: this.#put(op.put, ctx) };
    if ('deleteRange' in op) return { deleteRange: this.#deleteRange(op.deleteRange, ctx) };
    return { txn: this.#txn(op.txn, ctx) };
  }

  #compare(c: Compare): boolean {
    const matches: Rec[] = [];
    this.#scan(c.key, c.rangeEnd, (_key, recs) => {
      const r = recs[recs.length - 1] as Rec;
      if (!r.tomb) matches.push(r);
    });
    if (matches.length === 0) {
      // A missing key has version, create and mod revision 0 and no lease; it has no value.
      if (c.target === CompareTarget.value) return false;
      return compareOne(c, undefined);
    }
    return matches.every((r) => compareOne(c, r));
  }

  #append(key: string, rec: Rec): void {
    const recs = this.#keys.get(key);
    if (recs) recs.push(rec);
    else this.#keys.set(key, [rec]);
    this.#bytes += key.length + rec.value.length + recOverhead;
  }

  /**
   * The events of keys in [key, rangeEnd) with revisions in [fromRev, toRev], in revision order
   * (and sub-revision order within one), each with the key's previous version when it is still
   * held. For watchers catching up from a past revision; `fromRev` must not be compacted.
   */
  eventsBetween(key: string, rangeEnd: string, fromRev: number, toRev: number, limit = Infinity): Event[] {
    if (fromRev < this.#compactRev) throw catalogue.error('STORE_ERR_COMPACTED', 'etcdserver: mvcc: required revision has been compacted');
    const found: Array<{ mod: number; sub: number; ev: Event }> = [];
    this.#scan(key, rangeEnd, (k, recs) => {
      // A key's records are in revision order: skip to the first at or after fromRev.
      let lo = 0;
      let hi = recs.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if ((recs[mid] as Rec).mod < fromRev) lo = mid + 1;
        else hi = mid;
      }
      for (let i = lo; i < recs.length; i++) {
        const r = recs[i] as Rec;
        if (r.mod > toRev) break;
        const prev = i > 0 ? (recs[i - 1] as Rec) : undefined;
        const ev: Event = r.tomb
          ? { type: 1, kv: { key: k, createRevision: 0, modRevision: r.mod, version: 0, value: '', lease: '0' } }
          : { type: 0, kv: toKv(k, r) };
        if (prev && !prev.tomb) ev.prevKv = toKv(k, prev);
        found.push({ mod: r.mod, sub: r.sub, ev });
      }
    });
    found.sort((a, b) => a.mod - b.mod || a.sub - b.sub);
    return (found.length > limit ? found.slice(0, limit) : found).map((f) => f.ev);
  }

  // ---- compaction ---------------------------------------------------------------------------

  /** Drop history before `rev`; reads at revisions < `rev` fail afterwards. */
  compact(rev: number): void {
    if (rev <= this.#compactRev) throw catalogue.error('STORE_ERR_COMPACTED', 'etcdserver: mvcc: required revision has been compacted');
    if (rev > this.#rev) throw catalogue.error('STORE_ERR_FUTURE_REV', 'etcdserver: mvcc: required revision is a future revision');
    this.#compactRev = rev;
    const dead: string[] = [];
    const shortened: Array<[string, Rec[]]> = [];
    this.#keys.forRange('', undefined, (key, recs) => {
      // Keep the last record at or before `rev` (it is the value as of `rev`) and everything after.
      let keepFrom = 0;
      for (let i = recs.length - 1; i >= 0; i--) {
        if ((recs[i] as Rec).mod <= rev) {
          keepFrom = i;
          break;
        }
      }
      const kept = recs[keepFrom] as Rec;
      const dropTomb = kept.mod <= rev && kept.tomb ? 1 : 0;
      const drop = keepFrom + dropTomb;
      if (drop === 0) return;
      for (let i = 0; i < drop; i++) this.#bytes -= key.length + (recs[i] as Rec).value.length + recOverhead;
      // A new array, never a splice: a view() taken earlier still holds the old one.
      if (drop === recs.length) dead.push(key);
      else shortened.push([key, recs.slice(drop)]);
    });
    for (const [key, recs] of shortened) this.#keys.set(key, recs);
    for (const key of dead) this.#keys.delete(key);
  }

  // ---- snapshots ----------------------------------------------------------------------------

  state(): MvccState {
    const keys: Array<[string, Rec[]]> = [];
    // Arrays copied (a store made from this state appends to its own), records shared: they never change.
    this.#keys.forRange('', undefined, (k, recs) => keys.push([k, recs.slice()]));
    return { rev: this.#rev, compactRev: this.#compactRev, keys };
  }

  /**
   * The key space as of now, in O(1), for a snapshot made while writes go on: a copy-on-write
   * clone of the key index. Records are immutable and a key's array only ever grows at its end
   * (compaction replaces the array), so records past `rev` are the only difference a later
   * write can make to what the clone holds, and they are left out as the keys are read.
   */
  view(): MvccView {
    const rev = this.#rev;
    const tree = this.#keys.clone();
    return {
      rev,
      compactRev: this.#compactRev,
      keys: {
        *[Symbol.iterator]() {
          for (const [key, recs] of tree.entries()) {
            if ((recs[recs.length - 1] as Rec).mod <= rev) {
              yield [key, recs];
              continue;
            }
            let n = recs.length;
            while (n > 0 && (recs[n - 1] as Rec).mod > rev) n--;
            if (n > 0) yield [key, recs.slice(0, n)];
          }
        },
      },
    };
  }

  static fromState(s: MvccState): MvccStore {
    const m = new MvccStore();
    m.#rev = s.rev;
    m.#compactRev = s.compactRev;
    for (const [k, recs] of s.keys) {
      m.#keys.set(k, recs);
      for (const r of recs) m.#bytes += k.length + r.value.length + recOverhead;
    }
    return m;
  }

  /**
   * A hash of every key's history in (compactRev, rev], the same on every member that applied
   * the same log (HashKV). FNV-1a, 32-bit.
   */
  hashKV(rev: number): { hash: number; compactRevision: number; hashRevision: number } {
    const upTo = rev <= 0 ? this.#rev : rev;
    let h = 0x811c9dc5 | 0;
    this.#keys.forRange('', undefined, (key, recs) => {
      h = hashRecords(h, key, recs, upTo);
    });
    return { hash: h >>> 0, compactRevision: this.#compactRev, hashRevision: upTo };
  }

  /**
   * hashKV without holding the event loop: it yields every `yieldBytes` hashed, so a member
   * serving a HashKV of a large store (right after every backup) keeps applying and answering
   * meanwhile (2.4 s of a blocked loop per GiB otherwise). It hashes a {@link view} taken when
   * called, as etcd hashes a read transaction opened with the compact revision it reports: writes
   * and compactions made while it runs change nothing it reads.
   */
  async hashKVAsync(rev: number, yieldBytes = 4 * 1024 * 1024): Promise<{ hash: number; compactRevision: number; hashRevision: number }> {
    const upTo = rev <= 0 ? this.#rev : rev;
    const v = this.view();
    let h = 0x811c9dc5 | 0;
    let since = 0;
    for (const [key, recs] of v.keys) {
      h = hashRecords(h, key, recs, upTo);
      since += key.length + 64 + (recs[recs.length - 1]?.value.length ?? 0) * recs.length;
      if (since >= yieldBytes) {
        since = 0;
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    }
    return { hash: h >>> 0, compactRevision: v.compactRev, hashRevision: upTo };
  }
}

/** The record of a key as of `rev` (undefined if absent or deleted then). */
function visibleAt(recs: Rec[], rev: number): Rec | undefined {
  for (let i = recs.length - 1; i >= 0; i--) {
    const r = recs[i] as Rec;
    if (r.mod <= rev) return r.tomb ? undefined : r;
  }
  return undefined;
}

function passesFilters(r: Rec, q: RangeRequest): boolean {
  if (q.minModRevision > 0 && r.mod < q.minModRevision) return false;
  if (q.maxModRevision > 0 && r.mod > q.maxModRevision) return false;
  if (q.minCreateRevision > 0 && r.create < q.minCreateRevision) return false;
  if (q.maxCreateRevision > 0 && r.create > q.maxCreateRevision) return false;
  return true;
}

function sortKvs(kvs: KeyValue[], order: number, target: number): void {
  const field = (kv: KeyValue): number | string => {
    switch (target) {
      case SortTarget.version:
        return kv.version;
      case SortTarget.create:
        return kv.createRevision;
      case SortTarget.mod:
        return kv.modRevision;
      case SortTarget.value:
        return kv.value;
      default:
        return kv.key;
    }
  };
  const dir = order === SortOrder.descend ? -1 : 1;
  // Stable sort: ties keep key order, as etcd's.
  kvs.sort((a, b) => {
    const x = field(a);
    const y = field(b);
    return x < y ? -dir : x > y ? dir : 0;
  });
}

function compareOne(c: Compare, r: Rec | undefined): boolean {
  let cmp: number;
  switch (c.target) {
    case CompareTarget.version:
      cmp = Math.sign((r?.version ?? 0) - Number(c.operand));
      break;
    case CompareTarget.create:
      cmp = Math.sign((r?.create ?? 0) - Number(c.operand));
      break;
    case CompareTarget.mod:
      cmp = Math.sign((r?.mod ?? 0) - Number(c.operand));
      break;
    case CompareTarget.lease: {
      const a = BigInt(r?.lease ?? '0');
      const b = BigInt(String(c.operand || '0'));
      cmp = a < b ? -1 : a > b ? 1 : 0;
      break;
    }
    default: {
      const v = r?.value ?? '';
      const o = String(c.operand);
      cmp = v < o ? -1 : v > o ? 1 : 0;
    }
  }
  switch (c.result) {
    case CompareResult.equal:
      return cmp === 0;
    case CompareResult.greater:
      return cmp > 0;
    case CompareResult.less:
      return cmp < 0;
    case CompareResult.notEqual:
      return cmp !== 0;
    default:
      return false;
  }
}
