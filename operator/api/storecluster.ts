/**
 * `StoreCluster` (ballast.dev/v1alpha1): a replicated ballast store the operator runs as a
 * StatefulSet. The TypeScript types below are what the reconciler reads; the schema is the
 * single source of `crds/storeclusters.ballast.dev.yaml` (defaults, validation, descriptions).
 */
import type { V1Affinity, V1Condition, V1EnvVar, V1Toleration, V1TopologySpreadConstraint } from '@kubernetes/client-node';
import { conditionsSchema, type CrdDefinition, openapi } from '../../api/schema.ts';

export const group = 'ballast.dev';
export const version = 'v1alpha1';
export const apiVersion = `${group}/${version}`;

export interface StoreClusterSpec {
  replicas: number;
  version: string;
  image?: string;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  storage: { size: string; storageClassName?: string; retainOnScaleDown: boolean };
  tls?: { clientSecretName?: string; peerSecretName?: string };
  auth?: { enabled: boolean; rootSecretName?: string };
  /** Start from a backup: every member's data directory is restored from it before the store starts. */
  restore?: { backup: string; toRevision?: number; toTime?: string };
  quotaBytes?: string;
  snapshotCount?: number;
  compaction: { mode: 'periodic' | 'revision'; retention: string };
  timing: { heartbeatMs: number; electionMs: number };
  podTemplate?: {
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    nodeSelector?: Record<string, string>;
    affinity?: V1Affinity;
    tolerations?: V1Toleration[];
    topologySpreadConstraints?: V1TopologySpreadConstraint[];
    env?: V1EnvVar[];
  };
}

export interface MemberStatus {
  name: string;
  id: string;
  role: 'leader' | 'follower' | 'learner' | 'unknown';
  ready: boolean;
  appliedIndex?: number;
  version?: string;
  /** How often the member's store container restarted, and why it last stopped (the kubelet's record). */
  restarts?: number;
  lastTermination?: { reason: string; exitCode: number; finishedAt?: string };
}

export interface StoreClusterStatus {
  observedGeneration?: number;
  conditions?: V1Condition[];
  replicas?: number;
  readyReplicas?: number;
  members?: MemberStatus[];
  leader?: string;
  currentVersion?: string;
  selector?: string;
  phase?: string;
  /** Whether the store checks users and permissions now (etcd's auth). */
  authEnabled?: boolean;
  /** Guided recovery from a lost quorum: the plan, and how far its approved run got (null: removed). */
  recovery?: RecoveryStatus | null;
}

/**
 * A plan to recover a lost quorum from the member with the newest data (operator/plan/recovery.ts):
 * nothing is done until a person approves this exact plan by its id.
 */
export interface RecoveryStatus {
  /** Names this plan: a hash of the survivor, its Raft term and index, and the members re-created. */
  planId: string;
  /** AwaitingApproval, then (once approved) Restarting, Rejoining and Completed. */
  state: 'AwaitingApproval' | 'Restarting' | 'Rejoining' | 'Completed';
  survivor: string;
  survivorId: string;
  term: number;
  index: number;
  /** The members that come back empty and catch up from the survivor. */
  recreate: string[];
  /** What approving would discard, for a person to weigh. */
  loses: string;
  /** An approval that named another plan, and why it was refused. */
  refused?: string;
  approvedAt?: string;
  /** The members whose pods and volumes were replaced under the approved plan (each once). */
  recreated?: string[];
  completedAt?: string;
}

export interface StoreCluster {
  apiVersion: string;
  kind: 'StoreCluster';
  metadata: {
    name: string;
    namespace: string;
    uid?: string;
    generation?: number;
    annotations?: Record<string, string>;
    labels?: Record<string, string>;
    resourceVersion?: string;
  };
  spec: StoreClusterSpec;
  status?: StoreClusterStatus;
}

const semver = '^[0-9]+\\.[0-9]+\\.[0-9]+$';

export const storeClusterCrd: CrdDefinition = {
  group,
  version,
  kind: 'StoreCluster',
  plural: 'storeclusters',
  singular: 'storecluster',
  shortNames: ['stc'],
  categories: ['ballast'],
  description:
    'A StoreCluster is a replicated, linearizable key-value store speaking the etcd v3 API, run by the Ballast operator: it scales one member at a time, replaces members one at a time with the leader last, repairs members that lost their data, and never acts in a way that can lose quorum.',
  spec: openapi.object(
    'The desired cluster.',
    {
      replicas: openapi.int(
        'Number of members: odd, 1 to 7. A cluster of N members survives (N-1)/2 failures; an even count adds no fault tolerance over the odd count below it.',
        {
          default: 3,
          minimum: 1,
          maximum: 7,
          'x-kubernetes-validations': [
            {
              rule: 'self % 2 == 1',
              message:
                'replicas must be odd (1, 3, 5 or 7): an even count tolerates no more failures than the odd count below it and needs a larger quorum',
            },
          ],
        },
      ),
      version: openapi.string('The ballast store version to run (major.minor.patch). Upgrades move one minor version at a time.', {
        pattern: semver,
        maxLength: 32,
        default: '0.2.0',
      }),
      image: openapi.string('Container image; default ballast:<version>.'),
      resources: openapi.object(
        "Compute resources of each member (as a container's resources). Default: requests cpu 100m, memory 128Mi; limits memory 1Gi. The store keeps its key space in memory: set the memory limit well above the data's size.",
        {
          requests: openapi.map('Minimum resources, e.g. cpu: 500m, memory: 1Gi.', openapi.quantity('A quantity.')),
          limits: openapi.map('Maximum resources.', openapi.quantity('A quantity.')),
        },
      ),
      storage: openapi.object(
        "Each member's data volume (a PersistentVolumeClaim per member).",
        {
          size: openapi.quantity("Size of each member's volume, e.g. 10Gi. Must be positive.", {
            default: '1Gi',
            'x-kubernetes-validations': [
              { rule: "quantity(string(self)).isGreaterThan(quantity('0'))", message: 'storage.size must be greater than zero, e.g. 10Gi' },
            ],
          }),
          storageClassName: openapi.string(
            'StorageClass of the volumes; empty for the cluster default. Cannot change once set: the data would have to move.',
            {
              'x-kubernetes-validations': [
                {
                  rule: 'self == oldSelf',
                  message:
                    'storage.storageClassName is immutable: create a new StoreCluster and restore a snapshot into it to move storage classes',
                },
              ],
            },
          ),
          retainOnScaleDown: openapi.bool("Keep a removed member's volume when scaling down (true), or delete it (false).", {
            default: true,
          }),
        },
        { default: { size: '1Gi', retainOnScaleDown: true } },
      ),
      tls: openapi.object(
        'TLS for clients and peers, from Secrets of type kubernetes.io/tls with ca.crt, set when the cluster is created (it cannot be changed afterwards). Certificates name *.<name>-peer.<namespace>.svc.cluster.local (each member) and <name>-client.<namespace>.svc (the operator checks that name), for both server and client use.',
        {
          clientSecretName: openapi.string(
            'Secret with the client-facing certificate; clients must present certificates signed by its ca.crt (the operator presents this one).',
          ),
          peerSecretName: openapi.string('Secret with the peer certificate; members authenticate each other with it.'),
        },
        {
          'x-kubernetes-validations': [
            {
              rule: 'self == oldSelf',
              message:
                'spec.tls cannot change after creation: members would stop understanding each other mid-way; create a new StoreCluster and restore a snapshot into it',
            },
          ],
        },
      ),
      restore: openapi.object(
        "Create the cluster from a backup: before any member starts, each one's data directory is restored from the named StoreBackup (same namespace, Succeeded), checked against its manifest's size and sha256, so the cluster starts with the backup's keys, values and revisions. Used only while the cluster is first created; set it when the StoreCluster is created.",
        {
          backup: openapi.string('The StoreBackup to restore from.', { minLength: 1 }),
          toRevision: openapi.int(
            "Point in time: restore the cluster as it was at this revision: the backup, then the changes its schedule's archiver archived after it (StoreBackupSchedule spec.pointInTime), replayed up to this revision. At or after the backup's revision. Members wait (their restore container retries) until the archive reaches it.",
            { minimum: 1 },
          ),
          toTime: openapi.string(
            'Point in time: restore the cluster as it was at this time (RFC 3339): the last change archived at or before it. Members wait until the archive reaches it.',
            { format: 'date-time' },
          ),
        },
        {
          required: ['backup'],
          'x-kubernetes-validations': [
            { rule: '!(has(self.toRevision) && has(self.toTime))', message: 'spec.restore: give toRevision or toTime, not both' },
          ],
        },
      ),
      auth: openapi.object(
        "etcd's auth: users, roles and key-range permissions. When enabled, the operator makes a root user whose password it keeps in a Secret of type kubernetes.io/basic-auth (created with a random password unless it exists), turns auth on, and authenticates its own calls as root. Clients then need a user: read the Secret, or have root add users and roles (etcdctl user add, role grant-permission). Setting enabled to false turns auth off again.",
        {
          enabled: openapi.bool('Turn auth on (true) or off (false).', { default: false }),
          rootSecretName: openapi.string(
            "The root user's Secret (keys username, password); default <name>-root. To bring your own password, create it before enabling auth.",
          ),
        },
      ),
      quotaBytes: openapi.quantity('Raise the NOSPACE alarm when the key space exceeds this size (default 2Gi).'),
      snapshotCount: openapi.int('Committed entries between snapshots (default 100000).', { minimum: 1 }),
      compaction: openapi.object(
        'Automatic compaction of old revisions.',
        {
          mode: openapi.string('periodic: keep a period of history; revision: keep a number of revisions.', {
            enum: ['periodic', 'revision'],
            default: 'periodic',
          }),
          retention: openapi.string('For periodic, a duration (1h, 30m); for revision, a count. 0 turns compaction off.', {
            default: '1h',
          }),
        },
        { default: { mode: 'periodic', retention: '1h' } },
      ),
      timing: openapi.object(
        'Raft timing. The election timeout must be at least 5 heartbeats.',
        {
          heartbeatMs: openapi.int('Heartbeat interval in milliseconds.', { default: 100, minimum: 10, maximum: 10000 }),
          electionMs: openapi.int('Election timeout in milliseconds.', { default: 1000, minimum: 50, maximum: 50000 }),
        },
        {
          default: { heartbeatMs: 100, electionMs: 1000 },
          'x-kubernetes-validations': [
            {
              rule: 'self.electionMs >= 5 * self.heartbeatMs',
              message: 'timing.electionMs must be at least 5 × timing.heartbeatMs, or followers start elections between heartbeats',
            },
          ],
        },
      ),
      podTemplate: openapi.object('Overrides for the member pods.', {
        labels: openapi.map('Extra labels on member pods.'),
        annotations: openapi.map('Extra annotations on member pods.'),
        nodeSelector: openapi.map('Node selector for member pods.'),
        affinity: openapi.opaque('Affinity (core/v1 Affinity); default: prefer one member per node.'),
        tolerations: openapi.opaque('Tolerations (core/v1 Toleration list).', 'array'),
        topologySpreadConstraints: openapi.opaque('Topology spread constraints; default: spread across zones when possible.', 'array'),
        env: openapi.opaque(
          "Extra environment variables for the store container (core/v1 EnvVar list), e.g. OTEL_EXPORTER_OTLP_ENDPOINT for traces or ETCD_* flags; the operator's own (POD_NAME, CLUSTER_TOKEN) take precedence.",
          'array',
        ),
      }),
    },
    {
      'x-kubernetes-validations': [
        {
          rule: "!has(oldSelf.version) || (int(self.version.split('.')[0]) == int(oldSelf.version.split('.')[0]) && int(self.version.split('.')[1]) <= int(oldSelf.version.split('.')[1]) + 1) || (int(self.version.split('.')[0]) == int(oldSelf.version.split('.')[0]) + 1 && int(self.version.split('.')[1]) == 0)",
          message:
            'version may move up at most one minor version at a time (for example 0.1.x to 0.2.x, not 0.1.x to 0.3.x): upgrade through each minor version in turn',
          fieldPath: '.version',
        },
        {
          rule: 'has(self.restore) == has(oldSelf.restore) && (!has(self.restore) || self.restore == oldSelf.restore)',
          message:
            'spec.restore can be set only when the cluster is created: a running cluster is not restored over; create a new StoreCluster with spec.restore',
          fieldPath: '.restore',
        },
        {
          rule: 'has(self.tls) == has(oldSelf.tls)',
          message:
            'spec.tls can be set only when the cluster is created: members would stop understanding each other mid-way; create a new StoreCluster with TLS and restore a snapshot into it',
          fieldPath: '.tls',
        },
      ],
    },
  ),
  status: openapi.object('What the operator observed.', {
    observedGeneration: openapi.int('The .metadata.generation the status describes.'),
    conditions: conditionsSchema,
    replicas: openapi.int('Member pods that exist.'),
    readyReplicas: openapi.int('Members that are ready (a leader known, applied within a small lag).'),
    members: openapi.array(
      'Each member as the store reports it.',
      openapi.object(
        'One member.',
        {
          name: openapi.string('Member (and pod) name.'),
          id: openapi.string('Raft member id (hex).'),
          role: openapi.string('leader, follower or learner; unknown when it cannot be reached.', {
            enum: ['leader', 'follower', 'learner', 'unknown'],
          }),
          ready: openapi.bool('Ready: reachable, a leader known, caught up.'),
          appliedIndex: openapi.int('Raft index applied to the key space.'),
          version: openapi.string('Store version the member runs.'),
          restarts: openapi.int("How many times the member's store container restarted (the kubelet's restartCount)."),
          lastTermination: openapi.object(
            "Why the member's store container last stopped, as the kubelet recorded it (OOMKilled: it reached its memory limit).",
            {
              reason: openapi.string("The kubelet's reason: OOMKilled, Error, Completed, ..."),
              exitCode: openapi.int("The exit code (137: killed by SIGKILL, as the kernel's OOM killer does)."),
              finishedAt: openapi.string('When it stopped (RFC 3339).'),
            },
          ),
        },
        { required: ['name'] },
      ),
    ),
    leader: openapi.string('Name of the current leader.'),
    currentVersion: openapi.string('Version every member runs (during an update, the older one).'),
    selector: openapi.string('Label selector of the member pods (for the scale subresource).'),
    phase: openapi.string(
      'A one-word summary: Bootstrapping, Ready, Scaling, Updating, Repairing, Degraded, QuorumLost, Recovering, Paused.',
    ),
    authEnabled: openapi.bool('Whether the store checks users and permissions (spec.auth), as it last answered.'),
    recovery: openapi.object(
      'Guided recovery from a lost quorum (docs/operations.md, "Recovering from quorum loss"): the plan the operator proposes, and how far its approved run got. Nothing happens until the annotation ballast.dev/approve-recovery names planId.',
      {
        planId: openapi.string(
          "The plan's id: approve exactly this plan with kubectl annotate storecluster NAME ballast.dev/approve-recovery=ID.",
        ),
        state: openapi.string(
          'AwaitingApproval; once approved Restarting (the survivor restarts as a one-member cluster), Rejoining (the others come back empty as learners) and Completed.',
          { enum: ['AwaitingApproval', 'Restarting', 'Rejoining', 'Completed'] },
        ),
        survivor: openapi.string('The member whose data the cluster restarts from: the one with the highest Raft term and index.'),
        survivorId: openapi.string('Its Raft member id (hex).'),
        term: openapi.int('Its Raft term when the plan was made.'),
        index: openapi.int('Its Raft commit index when the plan was made.'),
        recreate: openapi.array(
          'The members that are re-created with empty volumes and catch up from the survivor.',
          openapi.string('A member name.'),
        ),
        loses: openapi.string('What approving the plan would discard.'),
        refused: openapi.string('An approval that named another plan, and why it was refused.'),
        approvedAt: openapi.string('When the plan was approved (RFC 3339).'),
        recreated: openapi.array(
          'The members whose pods and volumes were replaced under the approved plan (each once; membership then adds them back as learners).',
          openapi.string('A member name.'),
        ),
        completedAt: openapi.string('When every member was a voter again (RFC 3339).'),
      },
    ),
  }),
  columns: [
    { name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status', description: 'All members ready' },
    { name: 'Members', type: 'string', jsonPath: '.status.readyReplicas', description: 'Ready members' },
    { name: 'Desired', type: 'integer', jsonPath: '.spec.replicas', description: 'Desired members' },
    { name: 'Leader', type: 'string', jsonPath: '.status.leader' },
    { name: 'Version', type: 'string', jsonPath: '.status.currentVersion' },
    { name: 'Phase', type: 'string', jsonPath: '.status.phase', priority: 1 },
    { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
  ],
  scale: { specReplicasPath: '.spec.replicas', statusReplicasPath: '.status.replicas', labelSelectorPath: '.status.selector' },
};
