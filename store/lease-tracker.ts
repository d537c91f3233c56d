/**
 * Lease expiry, decided by the leader alone (as in etcd): it holds a deadline per lease,
 * renews it on keep-alive, and proposes a revoke once it passes; the revoke goes through the
 * log, so every member deletes the lease's keys at the same revision. A new leader gives every
 * lease a fresh TTL, so a failover never expires every lease at once.
 */
import type { Clock } from '../lib/clock.ts';

export class LeaseTracker {
  readonly #clock: Clock;
  /** Lease id → deadline (monotonic ms); only kept while leading. */
  readonly #deadlines = new Map<string, number>();
  readonly #ttls = new Map<string, number>();
  /** Revokes proposed and not yet applied. */
  readonly #revoking = new Set<string>();
  #leading = false;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** A lease was granted (ttl in seconds) or removed (undefined), in the replicated state. */
  onLeaseChange(id: string, ttl: number | undefined): void {
    if (ttl === undefined) {
      this.#ttls.delete(id);
      this.#deadlines.delete(id);
      this.#revoking.delete(id);
      return;
    }
    this.#ttls.set(id, ttl);
    if (this.#leading) this.#deadlines.set(id, this.#clock.now() + ttl * 1000);
  }

  /** This member became leader: every lease starts a full TTL now. */
  promote(): void {
    this.#leading = true;
    const now = this.#clock.now();
    for (const [id, ttl] of this.#ttls) this.#deadlines.set(id, now + ttl * 1000);
    this.#revoking.clear();
  }

  demote(): void {
    this.#leading = false;
    this.#deadlines.clear();
    this.#revoking.clear();
  }

  /** Renew a lease; its TTL in seconds, or undefined if it does not exist (or already expired). */
  keepAlive(id: string): number | undefined {
    const ttl = this.#ttls.get(id);
    const deadline = this.#deadlines.get(id);
    if (ttl === undefined || deadline === undefined || this.#revoking.has(id) || deadline <= this.#clock.now()) return undefined;
    this.#deadlines.set(id, this.#clock.now() + ttl * 1000);
    return ttl;
  }

  /** Seconds left (rounded up), -1 if the lease does not exist. */
  remaining(id: string): number {
    const deadline = this.#deadlines.get(id);
    if (deadline === undefined) return -1;
    return Math.max(0, Math.ceil((deadline - this.#clock.now()) / 1000));
  }

  /** Leases past their deadline with no revoke in flight; marks them as being revoked. */
  takeExpired(): string[] {
    if (!this.#leading) return [];
    const now = this.#clock.now();
    const out: string[] = [];
    for (const [id, deadline] of this.#deadlines) {
      if (deadline <= now && !this.#revoking.has(id)) {
        this.#revoking.add(id);
        out.push(id);
      }
    }
    return out;
  }

  /** A proposed revoke failed (leadership lost, timeout): try again later. */
  revokeFailed(id: string): void {
    this.#revoking.delete(id);
  }

  /**
   * Propose, through `revoke`, the revocation of every lease past its deadline, naming the term
   * it was decided in; one that fails (leadership lost, a timeout) is tried again on a later
   * call, and one already gone counts as revoked.
   */
  revokeExpired(
    term: number,
    revoke: (id: string, term: number) => Promise<{ error?: { code: string } | undefined }>,
    revoked: (id: string) => void,
  ): void {
    for (const id of this.takeExpired()) {
      revoke(id, term).then(
        (r) => {
          if (r.error && r.error.code !== 'STORE_ERR_LEASE_NOT_FOUND') this.revokeFailed(id);
          else revoked(id);
        },
        () => this.revokeFailed(id),
      );
    }
  }
}
