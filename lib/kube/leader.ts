/**
 * Leader election over a `coordination.k8s.io/v1` Lease, with client-go's rules and
 * controller-runtime's defaults: lease 15 s, renew deadline 10 s, retry every 2 s (jittered).
 * A candidate takes the Lease when it is free or its holder has not renewed it for a lease
 * duration; the leader renews every retry period and steps down when it cannot renew within
 * the renew deadline (the Lease may then be someone else's). On graceful stop the leader
 * releases the Lease (holder cleared), so a successor takes over at its next retry rather than
 * after a lease duration. Every write is guarded by the Lease's resourceVersion, so two
 * candidates can never both believe they hold it.
 */
import { CoordinationV1Api, type KubeConfig, type V1Lease, V1MicroTime } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { Clock, TimerHandle } from '../clock.ts';
import { silentLogger } from '../log.ts';
import type { Random } from '../random.ts';

export interface LeaderElectionOptions {
  kubeconfig: KubeConfig;
  namespace: string;
  name: string;
  identity: string;
  clock: Clock;
  random: Random;
  log?: Logger;
  leaseMs?: number;
  renewDeadlineMs?: number;
  retryMs?: number;
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
  onNewLeader?: (identity: string) => void;
}

export const leaderDefaults = { leaseMs: 15_000, renewDeadlineMs: 10_000, retryMs: 2_000 };

export class LeaderElector {
  readonly #options: LeaderElectionOptions & typeof leaderDefaults;
  readonly #api: CoordinationV1Api;
  readonly #log: Logger;
  #timer: TimerHandle | undefined;
  #leading = false;
  #lastRenew = 0;
  #observedHolder = '';
  #stopped = false;

  constructor(o: LeaderElectionOptions) {
    this.#options = { ...leaderDefaults, ...o };
    this.#api = o.kubeconfig.makeApiClient(CoordinationV1Api);
    this.#log = o.log ?? silentLogger;
  }

  get leading(): boolean {
    return this.#leading;
  }

  start(): void {
    void this.#tick();
  }

  /** Stop; a leader releases the Lease first so a successor need not wait it out. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#timer?.cancel();
    if (this.#leading) {
      try {
        const lease = await this.#api.readNamespacedLease({ name: this.#options.name, namespace: this.#options.namespace });
        if (lease.spec?.holderIdentity === this.#options.identity) {
          lease.spec = { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: new V1MicroTime() };
          await this.#api.replaceNamespacedLease({ name: this.#options.name, namespace: this.#options.namespace, body: lease });
          this.#log.info({ lease: this.#options.name }, 'released leadership');
        }
      } catch (err) {
        this.#log.warn({ err }, 'could not release the lease; a successor takes over when it expires');
      }
      this.#setLeading(false);
    }
  }

  async #tick(): Promise<void> {
    if (this.#stopped) return;
    let ok = false;
    try {
      ok = await this.#tryAcquireOrRenew();
    } catch (err) {
      this.#log.debug({ err }, 'leader election attempt failed');
    }
    const now = this.#options.clock.now();
    if (ok) {
      this.#lastRenew = now;
      if (!this.#leading) this.#setLeading(true);
    } else if (this.#leading && now - this.#lastRenew > this.#options.renewDeadlineMs) {
      this.#log.warn({ sinceRenewMs: now - this.#lastRenew }, 'could not renew the lease within the renew deadline: stepping down');
      this.#setLeading(false);
    }
    if (this.#stopped) return;
    // Jitter (up to 20%) keeps candidates from retrying in lockstep.
    const delay = this.#options.retryMs * (1 + (this.#leading ? 0 : this.#options.random.next() * 0.2));
    this.#timer = this.#options.clock.setTimeout(() => void this.#tick(), delay, { unref: true });
  }

  #setLeading(v: boolean): void {
    this.#leading = v;
    this.#log.info(
      { identity: this.#options.identity, lease: `${this.#options.namespace}/${this.#options.name}`, leading: v },
      v ? 'became the leader' : 'stopped leading',
    );
    if (v) this.#options.onStartedLeading();
    else this.#options.onStoppedLeading();
  }

  async #tryAcquireOrRenew(): Promise<boolean> {
    const { namespace, name, identity } = this.#options;
    const spec = () => ({
      holderIdentity: identity,
      leaseDurationSeconds: Math.ceil(this.#options.leaseMs / 1000),
      renewTime: new V1MicroTime(),
    });
    let lease: V1Lease;
    try {
      lease = await this.#api.readNamespacedLease({ name, namespace });
    } catch (err) {
      if ((err as { code?: number }).code !== 404) throw err;
      await this.#api.createNamespacedLease({
        namespace,
        body: { metadata: { name, namespace }, spec: { ...spec(), acquireTime: new V1MicroTime(), leaseTransitions: 0 } },
      });
      return true;
    }
    const holder = lease.spec?.holderIdentity ?? '';
    if (holder !== this.#observedHolder) {
      this.#observedHolder = holder;
      if (holder) this.#options.onNewLeader?.(holder);
    }
    const renewed = lease.spec?.renewTime ? new Date(lease.spec.renewTime).getTime() : 0;
    const duration = (lease.spec?.leaseDurationSeconds ?? 0) * 1000;
    // The Lease holds wall-clock times, so expiry is judged on the wall clock.
    const expired = this.#options.clock.wallNow() > renewed + duration;
    if (holder && holder !== identity && !expired) return false;
    const transitions = (lease.spec?.leaseTransitions ?? 0) + (holder === identity ? 0 : 1);
    lease.spec = {
      ...lease.spec,
      ...spec(),
      leaseTransitions: transitions,
      ...(holder === identity ? {} : { acquireTime: new V1MicroTime() }),
    };
    // replace carries the resourceVersion: a concurrent writer makes this fail with 409.
    await this.#api.replaceNamespacedLease({ name, namespace, body: lease });
    return true;
  }
}
