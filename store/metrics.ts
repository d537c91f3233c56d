/**
 * The store's metrics. Where etcd has a metric with the same meaning, Ballast uses etcd's name
 * so existing etcd dashboards and alerts work; the rest are `ballast_store_*`.
 */
import type { Metrics } from '../lib/metrics.ts';

export class StoreMetrics {
  readonly hasLeader;
  readonly isLeader;
  readonly leaderChanges;
  readonly proposalsCommitted;
  readonly proposalsApplied;
  readonly proposalsPending;
  readonly proposalsFailed;
  readonly walFsync;
  readonly dbSize;
  readonly dbSizeInUse;
  readonly keys;
  readonly applyLag;
  readonly applyDuration;
  readonly watchers;
  readonly voters;
  readonly requests;
  readonly requestDuration;

  constructor(m: Metrics) {
    this.hasLeader = m.gauge('etcd_server_has_leader', 'Whether or not a leader exists. 1 is existence, 0 is not.');
    this.isLeader = m.gauge('etcd_server_is_leader', 'Whether or not this member is a leader. 1 if is, 0 otherwise.');
    this.leaderChanges = m.counter('etcd_server_leader_changes_seen_total', 'The number of leader changes seen.');
    this.proposalsCommitted = m.counter('etcd_server_proposals_committed_total', 'The total number of consensus proposals committed.');
    this.proposalsApplied = m.counter('etcd_server_proposals_applied_total', 'The total number of consensus proposals applied.');
    this.proposalsPending = m.gauge('etcd_server_proposals_pending', 'The current number of pending proposals to commit.');
    this.proposalsFailed = m.counter('etcd_server_proposals_failed_total', 'The total number of failed proposals seen.');
    this.walFsync = m.histogram(
      'etcd_disk_wal_fsync_duration_seconds',
      'The latency distributions of fsync called by WAL.',
      [],
      [0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192],
    );
    this.dbSize = m.gauge('etcd_mvcc_db_total_size_in_bytes', 'Total size of the underlying database physically allocated in bytes.');
    this.dbSizeInUse = m.gauge(
      'etcd_mvcc_db_total_size_in_use_in_bytes',
      'Total size of the underlying database logically in use in bytes.',
    );
    this.keys = m.gauge('etcd_debugging_mvcc_keys_total', 'Total number of keys.');
    this.applyLag = m.gauge('ballast_store_apply_lag_entries', 'Committed entries this member has not applied yet.');
    this.applyDuration = m.histogram(
      'ballast_store_apply_duration_seconds',
      'Time to apply one batch of committed entries to the key-value state (and notify watchers).',
      [],
      [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    );
    this.voters = m.gauge(
      'ballast_store_cluster_voters',
      "Voting members in this member's view of the cluster configuration (alerts compare it with the members up).",
      ['cluster_id'],
    );
    this.watchers = m.gauge('etcd_debugging_mvcc_watcher_total', 'Total number of watchers.');
    this.requests = m.counter('ballast_store_requests_total', 'gRPC requests served, by method and gRPC status code.', ['method', 'code']);
    this.requestDuration = m.histogram(
      'ballast_store_request_duration_seconds',
      'gRPC request latency by method.',
      ['method'],
      [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    );
  }
}
