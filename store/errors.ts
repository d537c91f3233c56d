/** The store's error catalogue. Messages match etcd's where clients match on them. */
import { defineCatalogue } from '../lib/errors.ts';
import { RaftError } from './raft/raft-error.ts';

export const catalogue = defineCatalogue('store', 'STORE', {
  STORE_ERR_NOT_LEADER: 'This member is not the leader and the request must be served by the leader (etcdserver: not leader).',
  STORE_ERR_NO_LEADER: 'The cluster has no leader right now (election in progress or quorum lost): etcdserver: no leader.',
  STORE_ERR_PROPOSAL_DROPPED: 'The proposal was dropped (leadership changed or a transfer is in progress); the client may retry.',
  STORE_ERR_TIMEOUT: 'The request did not commit in time: etcdserver: request timed out.',
  STORE_ERR_LEARNER_NOT_READY:
    'A learner can be promoted only once it has caught up with the leader: etcdserver: can only promote a learner member which is in sync with leader.',
  STORE_ERR_CONF_CHANGE_PENDING: 'Another membership change is still being applied; retry after it commits.',
  STORE_ERR_MEMBER_NOT_FOUND: 'No member with that ID: etcdserver: member not found.',
  STORE_ERR_MEMBER_BAD_URLS:
    'MemberAdd or MemberUpdate without peer URLs, or with one that is not an http(s) URL: etcdserver: given member URLs are invalid.',
  STORE_ERR_MEMBER_EXISTS: 'A member with those peer URLs exists: etcdserver: Peer URLs already exists.',
  STORE_ERR_MEMBER_NOT_LEARNER: 'Only learners can be promoted: etcdserver: can only promote a learner member.',
  STORE_ERR_TOO_MANY_LEARNERS: 'etcd allows one learner at a time: etcdserver: too many learner members in cluster.',
  STORE_ERR_UNHEALTHY_QUORUM: 'The change would leave the cluster without an active quorum: etcdserver: unhealthy cluster.',
  STORE_ERR_LEADER_TRANSFER: 'Leadership transfer failed or timed out: etcdserver: leadership transfer failed/timed out.',
  STORE_ERR_TRANSFEREE_NOT_FOUND: 'The transfer target is not a voting member: etcdserver: bad leader transferee.',
  STORE_ERR_REQUEST_TOO_LARGE: 'The request is larger than --max-request-bytes: etcdserver: request is too large.',
  STORE_ERR_COMPACTED: 'The requested revision has been compacted: etcdserver: mvcc: required revision has been compacted.',
  STORE_ERR_FUTURE_REV: 'The requested revision is in the future: etcdserver: mvcc: required revision is a future revision.',
  STORE_ERR_NOSPACE:
    'The storage quota (--quota-backend-bytes) is exhausted and the NOSPACE alarm is raised: etcdserver: mvcc: database space exceeded.',
  STORE_ERR_LEASE_NOT_FOUND: 'The lease given with a put does not exist: etcdserver: requested lease not found.',
  STORE_ERR_LEASE_EXISTS: 'LeaseGrant with an id that is already granted: etcdserver: lease already exists.',
  STORE_ERR_LEASE_TTL_TOO_LARGE: 'LeaseGrant with a TTL over 9000000000 seconds: etcdserver: too large lease TTL.',
  STORE_ERR_KEY_NOT_FOUND: 'ignore_value or ignore_lease on a key that does not exist: etcdserver: key not found.',
  STORE_ERR_DUPLICATE_KEY: 'A transaction modifies the same key twice: etcdserver: duplicate key given in txn request.',
  STORE_ERR_EMPTY_KEY: 'The key is empty: etcdserver: key is not provided.',
  STORE_ERR_NO_DISK_SPACE:
    'The volume holding the data directory is full: a WAL write failed with ENOSPC. The partial record is cut and the member stops; free space and restart it. Before it comes to that, the member raises the NOSPACE alarm when free space falls below --disk-space-reserve-bytes.',
  STORE_ERR_WAL_CORRUPT: 'A WAL record before the tail fails its CRC; the member refuses to start. The message names the file and offset.',
  STORE_ERR_DATA_DIR: 'The data directory is unusable (unreadable, wrong cluster, or a member of another cluster).',
  STORE_ERR_FORMAT_TOO_NEW:
    'The data directory is in a format this build does not read (written by a newer ballast); the message names both versions.',
  STORE_ERR_DATA_LOST:
    'The data directory is empty but the cluster counts this member as one that ran before: it lost its data and must not vote.',
  STORE_ERR_PEER_AUTH: 'A peer connection presented the wrong cluster token and was refused.',
  STORE_ERR_PEER_UNREACHABLE:
    'A request forwarded to another member over the peer channel (lease keep-alive or time-to-live, a membership change, an alarm) got no answer in time: etcdserver: request timed out.',
  STORE_ERR_BACKUP_INVALID: 'The file given to `ballast store restore` is not a ballast store snapshot, or fails its sha256 check.',
  STORE_ERR_BACKUP_DAMAGED:
    "A backup object in object storage is truncated or damaged: its size or sha256 differs from its manifest's, or the stream of a backup ended early. The message names the object; restore another backup.",
  STORE_ERR_BACKUP_UNVERIFIED:
    "A backup restored into a throw-away member does not hash (HashKV at the backup's revision) as the member it was taken from did: the backup does not hold what the cluster held. Do not rely on it; take a new backup and report the mismatch.",
  STORE_ERR_BACKUP_NOT_VERIFIABLE:
    'A backup cannot be verified: its manifest has no HashKV (taken by a build before 0.3), or the cluster compacted between the snapshot and its hash. The backup may be fine; the next one is verified as usual.',
  STORE_ERR_ARCHIVE_NOT_COVERED:
    'A point-in-time restore names a revision or time the archive does not reach (after its newest archived change, or before the oldest good backup); the message says what the archive holds.',
  STORE_ERR_ARCHIVE_GAP:
    'A point-in-time restore would cross revisions missing from the archive (the archiver was stopped while the cluster compacted them); restore to a revision before the gap, or after a backup taken since.',
  STORE_ERR_ARCHIVE_DAMAGED:
    'An archive segment is truncated or damaged, or replaying it does not reproduce what the cluster recorded; nothing was restored. Restore to a revision before it.',
  STORE_ERR_BACKUP_NOT_FOUND: 'No backup (or object) of that name in the bucket and prefix; `ballast backup list` shows those that exist.',
  STORE_ERR_BACKUP_STORAGE_CREDENTIALS:
    'The object store refused the credentials (wrong access key or secret, or no permission on the bucket); fix the credentials Secret.',
  STORE_ERR_BACKUP_STORAGE_BUCKET: "The bucket does not exist at the object store's endpoint; create it or fix its name.",
  STORE_ERR_BACKUP_STORAGE_UNREACHABLE:
    "The object store's endpoint did not answer (refused, unknown host, timed out); fix the endpoint URL or start the server.",
  STORE_ERR_BACKUP_STORAGE_TLS: "The object store's certificate is not trusted, or the CA file cannot be read; give the CA that signed it.",
  STORE_ERR_BACKUP_STORAGE: 'The object store failed a request for another reason; the message carries its error.',
  STORE_ERR_ELECTION_NO_LEADER: 'Election.Leader on an election nobody has won: election: no leader.',
  STORE_ERR_ELECTION_NOT_LEADER: 'Proclaim with a leader key that no longer holds the election: election: not leader.',
  STORE_ERR_AUTH_ROOT_USER_NOT_EXIST:
    'AuthEnable before a root user exists: etcdserver: root user does not exist. Add it (`etcdctl user add root`) first.',
  STORE_ERR_AUTH_ROOT_ROLE_NOT_EXIST:
    'AuthEnable while the root user lacks the root role: etcdserver: root user does not have root role (etcdctl auth enable grants it itself).',
  STORE_ERR_AUTH_USER_EXISTS: 'UserAdd of a name that exists: etcdserver: user name already exists.',
  STORE_ERR_AUTH_USER_EMPTY:
    'A user name is needed and none was given (no token, no client certificate, or an empty name): etcdserver: user name is empty.',
  STORE_ERR_AUTH_USER_NOT_FOUND: 'No user of that name: etcdserver: user name not found.',
  STORE_ERR_AUTH_ROLE_EXISTS: 'RoleAdd of a name that exists: etcdserver: role name already exists.',
  STORE_ERR_AUTH_ROLE_NOT_FOUND: 'No role of that name: etcdserver: role name not found.',
  STORE_ERR_AUTH_ROLE_EMPTY: 'RoleAdd with an empty name: etcdserver: role name is empty.',
  STORE_ERR_AUTH_FAILED:
    'Authenticate with an unknown user, a wrong password, or a user without a password: etcdserver: authentication failed, invalid user ID or password.',
  STORE_ERR_AUTH_PERMISSION_NOT_GIVEN: 'RoleGrantPermission without a permission: etcdserver: permission not given.',
  STORE_ERR_PERMISSION_DENIED:
    "The user's roles do not grant this operation on these keys (or it needs the root role): etcdserver: permission denied.",
  STORE_ERR_AUTH_ROLE_NOT_GRANTED: 'UserRevokeRole of a role the user does not have: etcdserver: role is not granted to the user.',
  STORE_ERR_AUTH_PERMISSION_NOT_GRANTED:
    'RoleRevokePermission of a key range the role was not granted: etcdserver: permission is not granted to the role.',
  STORE_ERR_AUTH_NOT_ENABLED: 'Authenticate while auth is off: etcdserver: authentication is not enabled.',
  STORE_ERR_AUTH_INVALID_TOKEN:
    'The token is unknown, expired, from before a restart, or its signature does not verify: etcdserver: invalid auth token. Clients authenticate again.',
  STORE_ERR_AUTH_INVALID_MGMT:
    'An auth change that would lock everyone out (delete the root user or role, revoke root from root while auth is on) or a bad permission range: etcdserver: invalid auth management.',
  STORE_ERR_AUTH_OLD_REVISION:
    "The auth state changed after the request's credentials were checked: etcdserver: revision of auth store is old. Clients authenticate again and retry.",
  STORE_ERR_AUTH_BAD_HASH: 'UserAdd or UserChangePassword with a hashedPassword that is not base64 of a bcrypt hash.',
  STORE_ERR_AUTH_TOKEN_CONFIG: '--auth-token names a key file that cannot be read or does not parse as a key for its sign-method.',
  STORE_ERR_AUTH_NEEDS_UPGRADE:
    'An auth change while a member that does not know auth (ballast 0.1.0) is in the cluster; upgrade every member first.',
  STORE_ERR_STOPPED: 'The member is stopping: etcdserver: server stopped.',
});

export type StoreErrorCode = keyof typeof catalogue.entries;

/**
 * The consensus core's refusals as etcd's errors: the codes and messages clients (etcd's own,
 * kube-apiserver) match on. Anything else is returned as it is.
 */
export function fromRaft(err: unknown): unknown {
  if (!(err instanceof RaftError)) return err;
  switch (err.code) {
    case 'NOT_LEADER':
      return catalogue.error('STORE_ERR_NOT_LEADER', 'etcdserver: not leader');
    case 'NO_LEADER':
      return catalogue.error('STORE_ERR_NO_LEADER', 'etcdserver: no leader');
    case 'PROPOSAL_DROPPED':
      return catalogue.error('STORE_ERR_PROPOSAL_DROPPED', err.message);
    case 'CONF_CHANGE_PENDING':
      return catalogue.error('STORE_ERR_CONF_CHANGE_PENDING', err.message);
    case 'MEMBER_NOT_FOUND':
      return catalogue.error('STORE_ERR_MEMBER_NOT_FOUND', 'etcdserver: member not found');
    case 'MEMBER_NOT_LEARNER':
      return catalogue.error('STORE_ERR_MEMBER_NOT_LEARNER', 'etcdserver: can only promote a learner member');
    case 'LEARNER_NOT_READY':
      return catalogue.error(
        'STORE_ERR_LEARNER_NOT_READY',
        `etcdserver: can only promote a learner member which is in sync with leader (${err.message})`,
      );
    case 'TRANSFEREE_NOT_FOUND':
      return catalogue.error('STORE_ERR_TRANSFEREE_NOT_FOUND', `etcdserver: bad leader transferee (${err.message})`);
  }
}

/** A call into the consensus core, its refusals as etcd's errors (fromRaft). */
export function asEtcd<T>(call: () => T): T {
  try {
    return call();
  } catch (err) {
    throw fromRaft(err);
  }
}
