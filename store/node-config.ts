/** What a store member is started with (store/node.ts, store/boot.ts): flags, time, logs, metrics. */
import type { Logger } from 'pino';
import type { Clock } from '../lib/clock.ts';
import type { Random } from '../lib/random.ts';
import type { Failpoints } from './failpoints.ts';
import type { StoreMetrics } from './metrics.ts';
import type { TlsFiles } from './tls.ts';

export interface StoreNodeConfig {
  name: string;
  dataDir: string;
  /** This build's version (published into the member table with the formats it reads). */
  version: string;
  listenPeerUrls: URL[];
  advertisePeerUrls: string[];
  advertiseClientUrls: string[];
  /** name → peer URLs, from --initial-cluster. */
  initialCluster: Map<string, string[]>;
  initialClusterState: 'new' | 'existing';
  /**
   * Start as a one-member cluster from this member's data (etcd's --force-new-cluster;
   * store/force-new-cluster.ts). With `once`, only if this data directory has not been forced
   * under that id already, so a restart with the same settings starts normally.
   */
  forceNewCluster?: { once?: string } | undefined;
  token: string;
  heartbeatMs: number;
  electionMs: number;
  snapshotCount: number;
  /** Entries kept behind a snapshot for followers that lag a little (etcd: 5000). */
  snapshotCatchUpEntries: number;
  requestTimeoutMs: number;
  /** Larger proposals are refused (--max-request-bytes). */
  maxRequestBytes: number;
  clock: Clock;
  random: Random;
  log: Logger;
  metrics: StoreMetrics;
  /** Peer TLS, for https peer URLs. */
  peerTls?: TlsFiles | undefined;
  /** Periodic watch progress notifications (etcd's --experimental-watch-progress-notify-interval). */
  watchProgressNotifyMs?: number;
  /** TEST ONLY: serve linearizable reads locally without ReadIndex (stale reads possible). */
  unsafeStaleReads?: boolean;
  /** TEST ONLY: failpoints in the storage path (store/failpoints.ts); absent in normal runs. */
  failpoints?: Failpoints | undefined;
}
