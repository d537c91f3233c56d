/** The store's error catalogue. Messages match etcd's where clients match on them. */
import { defineCatalogue } from '../lib/errors.ts';

export const catalogue = defineCatalogue('store', 'STORE', {
  STORE_ERR_NOT_LEADER: 'This member is not the leader and the request must be served by the leader (etcdserver: not leader).',
  STORE_ERR_NO_LEADER: 'The cluster has no leader right now (election in progress or quorum lost): etcdserver: no leader.',
  STORE_ERR_PROPOSAL_DROPPED: 'The proposal was dropped (leadership changed or a transfer is in progress); the client may retry.',
  STORE_ERR_TIMEOUT: 'The request did not commit in time: etcdserver: request timed out.',
  STORE_ERR_LEARNER_NOT_READY: 'A learner can be promoted only once it has caught up with the leader: etcdserver: can only promote a learner member which is in sync with leader.',
  STORE_ERR_CONF_CHANGE_PENDING: 'Another membership change is still being applied; retry after it commits.',
  STORE_ERR_MEMBER_NOT_FOUND: 'No member with that ID: etcdserver: member not found.',
  STORE_ERR_MEMBER_EXISTS: 'A member with those peer URLs exists: etcdserver: Peer URLs already exists.',
  STORE_ERR_MEMBER_NOT_LEARNER: 'Only learners can be promoted: etcdserver: can only promote a learner member.',
  STORE_ERR_TOO_MANY_LEARNERS: 'etcd allows one learner at a time: etcdserver: too many learner members in cluster.',
  STORE_ERR_UNHEALTHY_QUORUM: 'The change would leave the cluster without an active quorum: etcdserver: unhealthy cluster.',
  STORE_ERR_LEADER_TRANSFER: 'Leadership transfer failed or timed out: etcdserver: leadership transfer failed/timed out.',
  STORE_ERR_TRANSFEREE_NOT_FOUND: 'The transfer target is not a voting member: etcdserver: bad leader transferee.',
  STORE_ERR_REQUEST_TOO_LARGE: 'The request is larger than --max-request-bytes: etcdserver: request is too large.',
  STORE_ERR_COMPACTED: 'The requested revision has been compacted: etcdserver: mvcc: required revision has been compacted.',
  STORE_ERR_FUTURE_REV: 'The requested revision is in the future: etcdserver: mvcc: required revision is a future revision.',
  STORE_ERR_NOSPACE: 'The storage quota (--quota-backend-bytes) is exhausted and the NOSPACE alarm is raised: etcdserver: mvcc: database space exceeded.',
  STORE_ERR_LEASE_NOT_FOUND: 'The lease given with a put does not exist: etcdserver: requested lease not found.',
  STORE_ERR_LEASE_EXISTS: 'LeaseGrant with an id that is already granted: etcdserver: lease already exists.',
  STORE_ERR_LEASE_TTL_TOO_LARGE: 'LeaseGrant with a TTL over 9000000000 seconds: etcdserver: too large lease TTL.',
  STORE_ERR_KEY_NOT_FOUND: 'ignore_value or ignore_lease on a key that does not exist: etcdserver: key not found.',
  STORE_ERR_DUPLICATE_KEY: 'A transaction modifies the same key twice: etcdserver: duplicate key given in txn request.',
  STORE_ERR_EMPTY_KEY: 'The key is empty: etcdserver: key is not provided.',
  STORE_ERR_NO_DISK_SPACE: 'The volume holding the data directory is full: a WAL write failed with ENOSPC. The partial record is cut and the member stops; free space and restart it. Before it comes to that, the member raises the NOSPACE alarm when free space falls below --disk-space-reserve-bytes.',
  STORE_ERR_WAL_CORRUPT: 'A WAL record before the tail fails its CRC; the member refuses to start. The message names the file and offset.',
  STORE_ERR_DATA_DIR: 'The data directory is unusable (unreadable, wrong cluster, or a member of another cluster).',
  STORE_ERR_DATA_LOST: 'The data directory is empty but the cluster counts this member as one that ran before: it lost its data and must not vote.',
  STORE_ERR_PEER_AUTH: 'A peer connection presented the wrong cluster token and was refused.',
  STORE_ERR_BACKUP_INVALID: 'The file given to `ballast store restore` is not a ballast store snapshot, or fails its sha256 check.',
  STORE_ERR_ELECTION_NO_LEADER: 'Election.Leader on an election nobody has won: election: no leader.',
  STORE_ERR_ELECTION_NOT_LEADER: 'Proclaim with a leader key that no longer holds the election: election: not leader.',
  STORE_ERR_STOPPED: 'The member is stopping: etcdserver: server stopped.',
});

export type StoreErrorCode = keyof typeof catalogue.entries;
