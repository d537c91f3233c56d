/** etcd's gRPC status codes for the store's errors (clients match on code and message). */
import * as grpc from '@grpc/grpc-js';
import { isBallastError } from '../../lib/errors.ts';

/** gRPC status of each store error code (as etcd's rpctypes). */
export const statusOf: Record<string, grpc.status> = {
  STORE_ERR_COMPACTED: grpc.status.OUT_OF_RANGE,
  STORE_ERR_FUTURE_REV: grpc.status.OUT_OF_RANGE,
  STORE_ERR_NOSPACE: grpc.status.RESOURCE_EXHAUSTED,
  STORE_ERR_REQUEST_TOO_LARGE: grpc.status.INVALID_ARGUMENT,
  STORE_ERR_EMPTY_KEY: grpc.status.INVALID_ARGUMENT,
  STORE_ERR_KEY_NOT_FOUND: grpc.status.INVALID_ARGUMENT,
  STORE_ERR_DUPLICATE_KEY: grpc.status.INVALID_ARGUMENT,
  STORE_ERR_NO_LEADER: grpc.status.UNAVAILABLE,
  STORE_ERR_NOT_LEADER: grpc.status.FAILED_PRECONDITION,
  STORE_ERR_TIMEOUT: grpc.status.UNAVAILABLE,
  STORE_ERR_STOPPED: grpc.status.UNAVAILABLE,
  STORE_ERR_PROPOSAL_DROPPED: grpc.status.UNAVAILABLE,
  STORE_ERR_MEMBER_NOT_FOUND: grpc.status.NOT_FOUND,
  STORE_ERR_MEMBER_EXISTS: grpc.status.FAILED_PRECONDITION,
  STORE_ERR_MEMBER_BAD_URLS: grpc.status.INVALID_ARGUMENT,
  STORE_ERR_MEMBER_NOT_LEARNER: grpc.status.FAILED_PRECONDITION,
  STORE_ERR_LEARNER_NOT_READY: grpc.status.FAILED_PRECONDITION,
  STORE_ERR_TOO_MANY_LEARNERS: grpc.status.FAILED_PRECONDITION,
  STORE_ERR_UNHEALTHY_QUORUM: grpc.status.UNAVAILABLE,
  STORE_ERR_CONF_CHANGE_PENDING: grpc.status.UNAVAILABLE,
  STORE_ERR_LEADER_TRANSFER: grpc.status.UNAVAILABLE,
  STORE_ERR_TRANSFEREE_NOT_FOUND: grpc.status.FAILED_PRECONDITION,
  STORE_ERR_LEASE_NOT_FOUND: grpc.status.NOT_FOUND,
  STORE_ERR_PEER_UNREACHABLE: grpc.status.UNAVAILABLE,
  STORE_ERR_AUTH_ROOT_USER_NOT_EXIST: grpc.status.FAILED_PRECONDITION,
  STORE_ERR_AUTH_ROOT_ROLE_NOT_EXIST: grpc.status.FAILED_PRECONDITION,
  STORE_ERR_AUTH_USER_EXISTS: grpc.status.FAILED_PRECONDITION,
  STORE_ERR_AUTH_USER_EMPTY: grpc.status.INVALID_ARGUMENT,
  STORE_ERR_AUTH_USER_NOT_FOUND: grpc.status.FAILED_PRECONDITION,
  STORE_ERR_AUTH_ROLE_EXISTS: grpc.status.FAILED_PRECONDITION,
  STORE_ERR_AUTH_ROLE_NOT_FOUND: grpc.status.FAILED_PRECONDITION,
  STORE_ERR_AUTH_ROLE_EMPTY: grpc.status.INVALID_ARGUMENT,
  STORE_ERR_AUTH_FAILED: grpc.status.INVALID_ARGUMENT,
  STORE_ERR_AUTH_PERMISSION_NOT_GIVEN: grpc.status.INVALID_ARGUMENT,
  STORE_ERR_PERMISSION_DENIED: grpc.status.PERMISSION_DENIED,
  STORE_ERR_AUTH_ROLE_NOT_GRANTED: grpc.status.FAILED_PRECONDITION,
  STORE_ERR_AUTH_PERMISSION_NOT_GRANTED: grpc.status.FAILED_PRECONDITION,
  STORE_ERR_AUTH_NOT_ENABLED: grpc.status.FAILED_PRECONDITION,
  STORE_ERR_AUTH_INVALID_TOKEN: grpc.status.UNAUTHENTICATED,
  STORE_ERR_AUTH_INVALID_MGMT: grpc.status.INVALID_ARGUMENT,
  STORE_ERR_AUTH_OLD_REVISION: grpc.status.INVALID_ARGUMENT,
  STORE_ERR_AUTH_BAD_HASH: grpc.status.INVALID_ARGUMENT,
  STORE_ERR_AUTH_NEEDS_UPGRADE: grpc.status.FAILED_PRECONDITION,
};

/** A gRPC error for anything a handler threw: etcd's status for store errors, a forwarded status as it came. */
export function toGrpcError(err: unknown): Partial<grpc.StatusObject> & Error {
  if (isBallastError(err)) {
    const e = new Error(err.message) as Partial<grpc.StatusObject> & Error;
    e.code = statusOf[err.code] ?? grpc.status.UNKNOWN;
    e.details = err.message;
    return e;
  }
  if (err && typeof err === 'object' && 'code' in err && typeof (err as grpc.ServiceError).code === 'number') {
    // Forwarded from the leader: pass its status through unchanged.
    const se = err as grpc.ServiceError;
    const e = new Error(se.details) as Partial<grpc.StatusObject> & Error;
    e.code = se.code;
    e.details = se.details;
    return e;
  }
  const e = new Error(`etcdserver: ${(err as Error)?.message ?? String(err)}`) as Partial<grpc.StatusObject> & Error;
  e.code = grpc.status.UNKNOWN;
  e.details = e.message;
  return e;
}
