/**
 * What the StoreCluster reconciler observes, and what it decides, as plain data: `plan()`
 * (operator/plan/storecluster.ts) takes the StoreCluster and an `Observed` and returns a `Step`;
 * the controller (operator/controllers/storecluster.ts) gathered the one and performs the other.
 */
import type { StoreBackup } from '../api/storebackup.ts';
import type { RecoveryStatus } from '../api/storecluster.ts';

/** A member pod, as the reconciler saw it. */
export interface PodView {
  name: string;
  /** Its IP; a pod without one is not running yet. */
  ip?: string;
  ready: boolean;
  /** The spec hash it was made from (operator/specs `specHashAnnotation`). */
  specHash?: string;
  /** The Ballast version it runs (the `ballast.dev/version` annotation). */
  version?: string;
  /** Its store container stopped with STORE_ERR_DATA_LOST (exit code 4): its data is gone. */
  dataLost: boolean;
  /** Creation time (ms since the epoch). */
  createdAt: number;
  /** What the member answered when asked (undefined: it did not answer). */
  appliedIndex?: number;
  /** The store container's restarts and how it last stopped. */
  restarts?: number;
  lastTermination?: { reason: string; exitCode: number; finishedAt?: string };
  /** The store container's memory limit, if any. */
  memoryLimit?: string;
  /** Its Raft member id, term and commit index, as it answered (undefined: it did not answer). */
  memberId?: string;
  term?: number;
  commitIndex?: number;
  /** The recovery plan its store container was started to force a new cluster under, if any. */
  forcePlan?: string;
}

/** A member of the Raft configuration. */
export interface MemberView {
  id: string;
  /** The member's name (a learner not started yet has none: it is taken from its peer URL). */
  name: string;
  peerUrl: string;
  isLearner: boolean;
}

export interface Observed {
  /** The StatefulSet's replicas; undefined when there is none yet. */
  setReplicas: number | undefined;
  pods: PodView[];
  /** The Raft configuration, from the leader (or any member that answered); undefined if none did. */
  members: MemberView[] | undefined;
  /** The leader's id ('' when no member knows one). */
  leaderId: string;
  /**
   * The Raft configuration as the member with the newest data applied it (not linearizable: read
   * without a leader, for a recovery plan); undefined when no member answered.
   */
  localMembers?: MemberView[] | undefined;
  /** The members refused the operator's calls for want of credentials (auth on, no usable root user). */
  authProblem?: string;
  /** The store's auth, as the leader said: on, off, unsupported (0.1.x has none), or not known (no answer). */
  auth: 'on' | 'off' | 'unsupported' | 'unknown';
  /** The operator has the root user's credentials (spec.auth's Secret with a password). */
  hasRootCredentials: boolean;
  /** spec.restore's StoreBackup, when it names one that exists. */
  restoreSource?: StoreBackup | undefined;
  /** The cluster's newest good backup (Succeeded, not failed verification): where a lost cluster with no survivor starts again. */
  newestBackup?: StoreBackup | undefined;
  /** The claim of the next ordinal exists (kept from an earlier scale-down). */
  nextClaimExists: boolean;
  /** Wall-clock time of the observation (ms since the epoch). */
  now: number;
}

export interface PeerRef {
  name: string;
  peerUrl: string;
}

/** What a step does, in order. */
export type Action =
  /** Server-side apply the StatefulSet with this many replicas and bootstrap configuration. */
  | {
      do: 'applyStatefulSet';
      replicas: number;
      members: PeerRef[];
      state: 'new' | 'existing';
      forceNewCluster?: { member: string; id: string };
      restoreFrom?: StoreBackup;
    }
  | { do: 'addLearner'; name: string; peerUrl: string }
  | { do: 'promote'; id: string }
  | { do: 'remove'; id: string }
  | { do: 'moveLeader'; to: string }
  /** Delete a member's volume claim (already gone is fine). */
  | { do: 'deleteClaim'; name: string }
  /** Delete a member's pod; `force`: at once, and already gone is fine. */
  | { do: 'deletePod'; name: string; force?: boolean }
  | { do: 'enableAuth' }
  | { do: 'disableAuth' };

export interface Progressing {
  status: 'True' | 'False';
  reason: string;
  message: string;
}

export interface StepEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

/** What status says of the step; also what a step becomes when its action fails as foreseen. */
export interface StepStatus {
  phase: string;
  progressing: Progressing;
  quorumLost?: boolean;
  degraded?: boolean;
  /** When to look again (ms); undefined: when something changes. */
  requeueMs?: number;
  /** The store's auth after this step, when known. */
  authEnabled?: boolean;
  /** status.recovery after this step (undefined: as it was). */
  recovery?: RecoveryStatus;
}

export interface Step extends StepStatus {
  /** Apply the ServiceAccount, Services, PodDisruptionBudget and token Secret first (not while paused or refused). */
  ensureObjects: boolean;
  actions: Action[];
  /** Recorded once every action succeeded (`{id}` in a message: the id `addLearner` gave the new member). */
  events: StepEvent[];
  /**
   * A failure of one action that is an answer, not an error: when `action` fails and the error's
   * message or details match, status says `instead` (with the error's message after it when
   * `appendError`) and the reconcile ends normally. Any other failure fails the reconcile
   * (retried with back-off).
   */
  ifFailed?: { action: Action['do']; match: RegExp; instead: StepStatus; appendError: boolean };
}
