/**
 * The replicated state machine: the key space, the member table and the alarms. Every member
 * applies the same committed entries in the same order and so reaches the same state; nothing
 * here reads a clock or does I/O. Entries carry an envelope with the proposer's request id so the
 * proposing member can hand the result back to the waiting client.
 */
import { isBallastError } from '../lib/errors.ts';
import { AuthStore, isAuthRequest, type AuthInfo, type AuthRequest, type AuthState } from './auth/auth-store.ts';
import { catalogue } from './errors.ts';
import { MvccStore, type MvccState, type MvccView } from './mvcc/store.ts';
import type { DeleteRangeRequest, Event, PutRequest, RequestOp, TxnRequest } from './mvcc/types.ts';
import type { ConfChange, NodeId } from './raft/types.ts';

export interface Member {
  id: NodeId;
  name: string;
  peerURLs: string[];
  clientURLs: string[];
  isLearner: boolean;
  /**
   * The on-disk and wire formats the member reads, and its version, as it published them
   * (unset: a member that has not published them reads format 1 only: 0.1.0).
   */
  formats?: number[];
  version?: string;
}

export type AlarmType = 'NOSPACE' | 'CORRUPT';

export type StoreRequest =
  | { op: 'put'; req: PutRequest }
  | { op: 'deleteRange'; req: DeleteRangeRequest }
  | { op: 'txn'; req: TxnRequest }
  | { op: 'compact'; revision: number }
  | { op: 'publish'; id: NodeId; name: string; clientURLs: string[]; formats?: number[]; version?: string }
  | { op: 'memberUpdate'; id: NodeId; peerURLs: string[] }
  | { op: 'alarm'; action: 'activate' | 'deactivate'; memberId: NodeId; alarm: AlarmType }
  | { op: 'leaseGrant'; id: string; ttl: number }
  /**
   * `expiredInTerm`: set when the leader's expiry tracker decided it, in that term. Applied only
   * in an entry of the same term: a leader deposed while paused can wake, find its leases
   * "expired" by its clock and, before it has taken in that it no longer leads, propose the
   * revocation, which Raft forwards to the new leader (who is honouring keep-alives).
   */
  | { op: 'leaseRevoke'; id: string; expiredInTerm?: number }
  | AuthRequest;

/** What an entry carries: the request and who waits for its result. */
export interface Envelope {
  /** The proposer's request id ('' when nobody waits). */
  rid: string;
  r: StoreRequest;
  /** Who made it, while auth is on (absent: internal requests, and any made while auth was off). */
  a?: AuthInfo;
}

/** The context of a membership change entry. */
export interface ConfContext {
  rid: string;
  member: Member;
}

export interface ApplyError {
  code: string;
  message: string;
}

export interface ApplyResult {
  revision: number;
  result?: unknown;
  error?: ApplyError;
  events: Event[];
}

export interface StateMachineState {
  mvcc: MvccState;
  members: Member[];
  alarms: Array<{ memberId: NodeId; alarm: AlarmType }>;
  leases?: Array<{ id: string; ttl: number }>;
  auth?: AuthState;
}

/** The state as of one applied entry, its key space read lazily (StateMachine.view()). */
export type StateView = Omit<StateMachineState, 'mvcc'> & { mvcc: MvccView };

/** A lease in the replicated state: its granted TTL and the keys attached to it. */
export interface LeaseRecord {
  id: string;
  ttl: number;
  keys: Set<string>;
}

export class StateMachine {
  mvcc = new MvccStore();
  readonly members = new Map<NodeId, Member>();
  /** Members removed from the cluster; they may never come back under the same id. */
  readonly removed = new Set<NodeId>();
  alarms: Array<{ memberId: NodeId; alarm: AlarmType }> = [];
  readonly leases = new Map<string, LeaseRecord>();
  readonly auth = new AuthStore();
  /** Told of every lease granted or revoked (the leader's expiry tracker listens). */
  onLeaseChange: ((id: string, ttl: number | undefined) => void) | undefined;

  /**
   * Apply a normal entry's request (`term`, `index`: the entry's; `a`: who made it, while auth
   * is on). Errors are results (every member reaches the same one).
   */
  apply(r: StoreRequest, term: number, index = 0, a?: AuthInfo): ApplyResult {
    try {
      if (isAuthRequest(r)) {
        if (this.format !== 2) throw needsUpgrade();
        const req = r;
        // A simple token is its random part and this entry's index: unique, and a member asked
        // about it knows how far it must have applied to know it.
        const result = this.auth.apply(req.op === 'authenticate' ? { ...req, token: `${req.token}.${index}` } : req, a);
        return { revision: this.mvcc.revision, result, events: [] };
      }
      switch (r.op) {
        case 'put':
          if (this.auth.enabled) this.#checkPutAuth(a, r.req);
          this.#checkSpace(true);
          this.#checkLease(r.req.lease);
          return this.#kv(this.mvcc.put(r.req));
        case 'deleteRange':
          if (this.auth.enabled) this.#checkDeleteAuth(a, r.req);
          return this.#kv(this.mvcc.deleteRange(r.req));
        case 'txn':
          if (this.auth.enabled) this.checkTxnAuth(a, r.req);
          this.#checkSpace(txnHasPut(r.req.success) || txnHasPut(r.req.failure));
          this.#precheckTxn(r.req);
          return this.#kv(this.mvcc.txn(r.req));
        case 'leaseGrant': {
          if (this.leases.has(r.id)) throw catalogue.error('STORE_ERR_LEASE_EXISTS', 'etcdserver: lease already exists');
          this.leases.set(r.id, { id: r.id, ttl: r.ttl, keys: new Set() });
          this.onLeaseChange?.(r.id, r.ttl);
          return { revision: this.mvcc.revision, result: { id: r.id, ttl: r.ttl }, events: [] };
        }
        case 'leaseRevoke': {
          // Expiry is the cluster's own doing; a client's revoke needs write access to the keys.
          if (this.auth.enabled && r.expiredInTerm === undefined) this.checkLeaseWrite(a, r.id);
          if (r.expiredInTerm !== undefined && r.expiredInTerm !== term)
            throw catalogue.error(
              'STORE_ERR_PROPOSAL_DROPPED',
              `etcdserver: lease ${r.id} was found expired by the leader of term ${r.expiredInTerm}, not of term ${term}; not revoked`,
            );
          const lease = this.leases.get(r.id);
          if (!lease) throw catalogue.error('STORE_ERR_LEASE_NOT_FOUND', 'etcdserver: requested lease not found');
          // Every attached key goes in one write, at one revision.
          const res = this.mvcc.txn({
            compare: [],
            success: [...lease.keys].sort().map((key) => ({ deleteRange: { key, rangeEnd: '', prevKv: false } })),
            failure: [],
          });
          this.leases.delete(r.id);
          this.onLeaseChange?.(r.id, undefined);
          return this.#kv(res);
        }
        case 'compact':
          this.mvcc.compact(r.revision);
          return { revision: this.mvcc.revision, events: [] };
        case 'publish': {
          const m = this.members.get(r.id);
          if (m) {
            Object.assign(m, { name: r.name, clientURLs: r.clientURLs });
            // What it reads is what it says now: a member rolled back to a build that does not
            // say reads format 1 only.
            if (r.formats) m.formats = r.formats;
            else delete m.formats;
            if (r.version) m.version = r.version;
            else delete m.version;
          }
          return { revision: this.mvcc.revision, events: [] };
        }
        case 'memberUpdate': {
          const m = this.members.get(r.id);
          if (!m) throw catalogue.error('STORE_ERR_MEMBER_NOT_FOUND', 'etcdserver: member not found');
          m.peerURLs = r.peerURLs;
          return { revision: this.mvcc.revision, events: [] };
        }
        case 'alarm':
          this.alarms = this.alarms.filter((a) => !(a.memberId === r.memberId && a.alarm === r.alarm));
          if (r.action === 'activate') this.alarms.push({ memberId: r.memberId, alarm: r.alarm });
          return { revision: this.mvcc.revision, events: [] };
      }
    } catch (err) {
      if (isBallastError(err)) return { revision: this.mvcc.revision, error: { code: err.code, message: err.message }, events: [] };
      throw err;
    }
  }

  /** Apply a committed membership change to the member table. */
  applyConfChange(cc: ConfChange): void {
    const ctx = cc.context as ConfContext | undefined;
    switch (cc.type) {
      case 'addLearner':
      case 'addVoter':
        if (ctx) this.members.set(cc.id, { ...ctx.member, isLearner: cc.type === 'addLearner' });
        break;
      case 'promote': {
        const m = this.members.get(cc.id);
        if (m) m.isLearner = false;
        break;
      }
      case 'remove':
        this.members.delete(cc.id);
        this.removed.add(cc.id);
        break;
    }
  }

  /**
   * Apply one write from a point-in-time archive (store/archive.ts) as the cluster applied it:
   * its puts and deletions, in order, at the next revision. No auth or quota checks (the cluster
   * made them when it first applied the write). A put's lease unknown here is granted first, with
   * the TTL the archive recorded for it. Returns the events the write produced.
   */
  applyArchived(
    ops: Array<{ put: { key: string; value: string; lease: string } } | { del: string }>,
    ttlOf: (lease: string) => number | undefined,
  ): Event[] {
    for (const op of ops) {
      if (!('put' in op) || op.put.lease === '0' || this.leases.has(op.put.lease)) continue;
      this.leases.set(op.put.lease, { id: op.put.lease, ttl: ttlOf(op.put.lease) ?? minArchivedTtl, keys: new Set() });
    }
    const success: RequestOp[] = ops.map((op) =>
      'put' in op
        ? { put: { ...op.put, prevKv: false, ignoreValue: false, ignoreLease: false } }
        : { deleteRange: { key: op.del, rangeEnd: '', prevKv: false } },
    );
    return this.#kv(this.mvcc.txn({ compare: [], success, failure: [] })).events;
  }

  #kv(r: { result: unknown; events: Event[]; revision: number }): ApplyResult {
    // Keep lease attachments in step with every write: whatever wrote the key, its events say
    // which lease it left and which it joined.
    for (const e of r.events) {
      const before = e.prevKv?.lease;
      if (before && before !== '0') this.leases.get(before)?.keys.delete(e.kv.key);
      if (e.type === 0 && e.kv.lease !== '0') this.leases.get(e.kv.lease)?.keys.add(e.kv.key);
    }
    return { revision: r.revision, result: r.result, events: r.events };
  }

  /** etcd's checkPutAuth: write the key; read it too for prev_kv; write every key already on the lease. */
  #checkPutAuth(a: AuthInfo | undefined, p: PutRequest): void {
    this.auth.checkWrite(a, p.key, '');
    if (p.lease !== '0') this.checkLeaseWrite(a, p.lease);
    if (p.prevKv) this.auth.checkRead(a, p.key, '');
  }

  #checkDeleteAuth(a: AuthInfo | undefined, d: DeleteRangeRequest): void {
    this.auth.checkWrite(a, d.key, d.rangeEnd);
    if (d.prevKv) this.auth.checkRead(a, d.key, d.rangeEnd);
  }

  /** etcd's checkTxnAuth: read every compared range; check every operation of both branches. */
  checkTxnAuth(a: AuthInfo | undefined, t: TxnRequest): void {
    for (const c of t.compare) this.auth.checkRead(a, c.key, c.rangeEnd);
    for (const op of [...t.success, ...t.failure]) {
      if ('range' in op) this.auth.checkRead(a, op.range.key, op.range.rangeEnd);
      else if ('put' in op) this.#checkPutAuth(a, op.put);
      else if ('deleteRange' in op) this.#checkDeleteAuth(a, op.deleteRange);
      else this.checkTxnAuth(a, op.txn);
    }
  }

  /**
   * Whoever revokes a lease (or renews it, or attaches another key to it) deletes or keeps its
   * keys: they need write access to every one, unless root (etcd's checkLeasePuts).
   */
  checkLeaseWrite(a: AuthInfo | undefined, id: string): void {
    if (!this.auth.enabled) return;
    this.auth.requireUser(a);
    if (this.auth.isAdmin(a)) return;
    for (const key of this.leases.get(id)?.keys ?? []) this.auth.checkWrite(a, key, '');
  }

  /** Time-to-live with keys, and the lease list, show key names: read access to them, unless root. */
  checkLeaseRead(a: AuthInfo | undefined, id: string): void {
    if (!this.auth.enabled) return;
    this.auth.requireUser(a);
    if (this.auth.isAdmin(a)) return;
    for (const key of this.leases.get(id)?.keys ?? []) this.auth.checkRead(a, key, '');
  }

  #checkLease(lease: string): void {
    if (lease !== '0' && !this.leases.has(lease))
      throw catalogue.error('STORE_ERR_LEASE_NOT_FOUND', 'etcdserver: requested lease not found');
  }

  #checkSpace(writes: boolean): void {
    if (writes && this.alarms.some((a) => a.alarm === 'NOSPACE'))
      throw catalogue.error('STORE_ERR_NOSPACE', 'etcdserver: mvcc: database space exceeded');
  }

  /**
   * Fail a txn before any of it applies when the chosen branch cannot succeed (ignore_value on
   * a missing key, a read at a compacted revision), so a txn is all or nothing.
   */
  #precheckTxn(t: TxnRequest): void {
    const probe = this.mvcc.txn({ compare: t.compare, success: [], failure: [] });
    const ops = probe.result.succeeded ? t.success : t.failure;
    for (const op of ops) {
      if ('put' in op) this.#checkLease(op.put.lease);
      if ('put' in op && (op.put.ignoreValue || op.put.ignoreLease)) {
        if (this.mvcc.range({ ...rangeOf(op.put.key), countOnly: true }).count === 0)
          throw catalogue.error('STORE_ERR_KEY_NOT_FOUND', 'etcdserver: key not found');
      } else if ('range' in op && op.range.revision > 0) {
        this.mvcc.range({ ...op.range, countOnly: true });
      } else if ('txn' in op) {
        this.#precheckTxn(op.txn);
      }
    }
  }

  /**
   * The format every member reads (format 2 once each has published that it reads it; until
   * then format 1, which 0.1.0 members read). What a member writes to its log and disk.
   */
  get format(): 1 | 2 {
    if (this.members.size === 0) return 1;
    for (const m of this.members.values()) if (!m.formats?.includes(2)) return 1;
    return 2;
  }

  state(): StateMachineState {
    return { ...this.view(), mvcc: this.mvcc.state() };
  }

  /**
   * The state as it is now, for a snapshot encoded while applies go on: the key space as an
   * O(1) copy-on-write view, the rest (members, alarms, leases, auth: small) copied.
   */
  view(): StateView {
    return {
      mvcc: this.mvcc.view(),
      members: [...this.members.values()].map((m) => ({ ...m })),
      alarms: [...this.alarms],
      leases: [...this.leases.values()].map((l) => ({ id: l.id, ttl: l.ttl })),
      ...(this.auth.revision > 0 || this.auth.enabled ? { auth: this.auth.state() } : {}),
    };
  }

  restore(s: StateMachineState): void {
    this.mvcc = MvccStore.fromState(s.mvcc);
    this.members.clear();
    for (const m of s.members) this.members.set(m.id, { ...m });
    this.alarms = [...s.alarms];
    this.auth.restore(s.auth);
    for (const id of this.leases.keys()) this.onLeaseChange?.(id, undefined);
    this.leases.clear();
    for (const l of s.leases ?? []) {
      this.leases.set(l.id, { id: l.id, ttl: l.ttl, keys: new Set() });
      this.onLeaseChange?.(l.id, l.ttl);
    }
    // Attachments are derived from the keys' current lease fields.
    const all = this.mvcc.range({ ...rangeOf('\0'), rangeEnd: '\0' });
    for (const kv of all.kvs) if (kv.lease !== '0') this.leases.get(kv.lease)?.keys.add(kv.key);
  }
}

/** The TTL of an archived lease whose TTL was not recorded (it was gone when the archiver asked): etcd's minimum. */
const minArchivedTtl = 5;

function needsUpgrade() {
  return catalogue.error(
    'STORE_ERR_AUTH_NEEDS_UPGRADE',
    'etcdserver: auth needs every member to run ballast 0.2.0 or later (a member reads format 1 only); finish the upgrade first',
  );
}

function rangeOf(key: string) {
  return {
    key,
    rangeEnd: '',
    limit: 0,
    revision: 0,
    sortOrder: 0,
    sortTarget: 0,
    keysOnly: false,
    countOnly: false,
    minModRevision: 0,
    maxModRevision: 0,
    minCreateRevision: 0,
    maxCreateRevision: 0,
  };
}

function txnHasPut(ops: RequestOp[]): boolean {
  return ops.some((op) => 'put' in op || ('txn' in op && (txnHasPut(op.txn.success) || txnHasPut(op.txn.failure))));
}
