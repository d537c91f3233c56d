/** spec.auth: the store's auth turned on or off to match, as the root user; then Ready. */
import type { StoreCluster } from '../api/storecluster.ts';
import * as specs from '../specs/storecluster.ts';
import { step } from './membership.ts';
import type { Observed, Step } from './types.ts';

export function planAuth(sc: StoreCluster, o: Observed): Step {
  const want = sc.spec.auth?.enabled === true;
  if (o.auth === 'unknown') {
    return step({
      phase: 'Updating',
      progressing: { status: 'True', reason: 'WaitingForLeader', message: 'the leader did not say whether auth is on; asking again' },
      requeueMs: 3_000,
    });
  }
  const on = o.auth === 'on';
  const ready = {
    phase: 'Ready',
    progressing: { status: 'False', reason: 'Reconciled', message: `${sc.spec.replicas} members, all ready` },
    authEnabled: on,
  } as const;
  if (want === on) return step(ready);
  // The leader has no auth (0.1.x), or a member without it is still in the cluster.
  const needsUpgrade = {
    ...ready,
    phase: 'Degraded',
    degraded: true,
    requeueMs: 30_000,
    progressing: {
      status: 'False',
      reason: 'AuthNeedsUpgrade',
      message: 'spec.auth needs every member at 0.2.0 or later (0.1.x has no auth); it is applied once the upgrade is done',
    },
  } as const;
  if (o.auth === 'unsupported') return step(needsUpgrade);
  if (!want) {
    return step(
      {
        phase: 'Updating',
        progressing: { status: 'True', reason: 'AuthDisabled', message: 'turned auth off' },
        requeueMs: 1_000,
        authEnabled: false,
      },
      [{ do: 'disableAuth' }],
      [
        {
          type: 'Normal',
          reason: 'AuthDisabled',
          message: 'auth is off: the store no longer checks users and permissions (users and roles are kept)',
        },
      ],
    );
  }
  if (!o.hasRootCredentials) {
    return step({
      ...ready,
      phase: 'Degraded',
      degraded: true,
      progressing: {
        status: 'False',
        reason: 'AuthCredentials',
        message: `Secret ${specs.rootSecretName(sc)} has no password: give it one (key password) or delete it and the operator makes one`,
      },
    });
  }
  return {
    ...step(
      {
        phase: 'Updating',
        progressing: { status: 'True', reason: 'AuthEnabled', message: 'turned auth on' },
        requeueMs: 1_000,
        authEnabled: true,
      },
      [{ do: 'enableAuth' }],
      [
        {
          type: 'Normal',
          reason: 'AuthEnabled',
          message: `auth is on: the root user's password is in Secret ${specs.rootSecretName(sc)}; clients now need a user (etcdctl --user, or a client certificate whose CN is a user)`,
        },
      ],
    ),
    ifFailed: { action: 'enableAuth', match: /auth needs every member to run/, instead: needsUpgrade, appendError: false },
  };
}
