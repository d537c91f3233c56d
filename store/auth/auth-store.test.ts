// The auth state machine on its own: etcd's rules for enabling, users, roles and key-range
// permissions, with etcd's error messages (clients match on them).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AuthStore, PermType, type AuthInfo } from './auth-store.ts';

/** A store with root set up and auth on; `as(user)` is that user's credentials now. */
function enabled(): { a: AuthStore; as: (user: string) => AuthInfo } {
  const a = new AuthStore();
  a.apply({ op: 'userAdd', name: 'root', password: 'h', noPassword: false }, undefined);
  a.apply({ op: 'userGrantRole', user: 'root', role: 'root' }, undefined);
  a.apply({ op: 'authEnable' }, undefined);
  return { a, as: (user) => ({ user, rev: a.revision }) };
}

describe('auth enable and disable', () => {
  it('needs a root user with the root role (etcdctl auth enable adds the role on the second error)', () => {
    const a = new AuthStore();
    assert.throws(() => a.apply({ op: 'authEnable' }, undefined), /etcdserver: root user does not exist/);
    a.apply({ op: 'userAdd', name: 'root', password: 'h', noPassword: false }, undefined);
    assert.throws(() => a.apply({ op: 'authEnable' }, undefined), /etcdserver: root user does not have root role/);
    a.apply({ op: 'userGrantRole', user: 'root', role: 'root' }, undefined); // the root role needs no RoleAdd
    a.apply({ op: 'authEnable' }, undefined);
    assert.equal(a.enabled, true);
  });
  it('once on, only root may change anything, and root cannot be deleted or demoted', () => {
    const { a, as } = enabled();
    a.apply({ op: 'userAdd', name: 'alice', password: 'h', noPassword: false }, as('root'));
    assert.throws(() => a.apply({ op: 'roleAdd', name: 'x' }, as('alice')), /etcdserver: permission denied/);
    assert.throws(() => a.apply({ op: 'roleAdd', name: 'x' }, undefined), /etcdserver: user name is empty/);
    assert.throws(() => a.apply({ op: 'roleAdd', name: 'x' }, as('nobody')), /etcdserver: user name not found/);
    assert.throws(() => a.apply({ op: 'userDelete', name: 'root' }, as('root')), /etcdserver: invalid auth management/);
    assert.throws(() => a.apply({ op: 'userRevokeRole', name: 'root', role: 'root' }, as('root')), /invalid auth management/);
    assert.throws(() => a.apply({ op: 'roleDelete', role: 'root' }, as('root')), /invalid auth management/);
    a.apply({ op: 'authDisable' }, as('root'));
    assert.equal(a.enabled, false);
    a.apply({ op: 'userDelete', name: 'root' }, undefined); // allowed with auth off
  });
  it('every change moves the revision (tokens from before are then "old"); enable does not', () => {
    const a = new AuthStore();
    a.apply({ op: 'userAdd', name: 'root', password: 'h', noPassword: false }, undefined);
    a.apply({ op: 'userGrantRole', user: 'root', role: 'root' }, undefined);
    assert.equal(a.revision, 2);
    a.apply({ op: 'authEnable' }, undefined);
    assert.equal(a.revision, 2);
    a.apply({ op: 'roleAdd', name: 'r' }, { user: 'root', rev: 2 });
    assert.equal(a.revision, 3);
    assert.throws(() => a.checkRead({ user: 'root', rev: 2 }, 'k', ''), /etcdserver: revision of auth store is old/);
    a.checkRead({ user: 'root', rev: 3 }, 'k', '');
  });
});

describe('users and roles', () => {
  it("etcd's errors for duplicates, unknown names and revoking what was not granted", () => {
    const a = new AuthStore();
    a.apply({ op: 'userAdd', name: 'u', password: 'h', noPassword: false }, undefined);
    assert.throws(
      () => a.apply({ op: 'userAdd', name: 'u', password: 'h', noPassword: false }, undefined),
      /etcdserver: user name already exists/,
    );
    assert.throws(
      () => a.apply({ op: 'userAdd', name: '', password: 'h', noPassword: false }, undefined),
      /etcdserver: user name is empty/,
    );
    assert.throws(() => a.apply({ op: 'roleAdd', name: '' }, undefined), /etcdserver: role name is empty/);
    a.apply({ op: 'roleAdd', name: 'r' }, undefined);
    assert.throws(() => a.apply({ op: 'roleAdd', name: 'r' }, undefined), /etcdserver: role name already exists/);
    assert.throws(() => a.apply({ op: 'userGrantRole', user: 'u', role: 'nope' }, undefined), /etcdserver: role name not found/);
    assert.throws(() => a.apply({ op: 'userGrantRole', user: 'nope', role: 'r' }, undefined), /etcdserver: user name not found/);
    assert.throws(() => a.apply({ op: 'userRevokeRole', name: 'u', role: 'r' }, undefined), /etcdserver: role is not granted to the user/);
    assert.throws(
      () => a.apply({ op: 'roleRevokePermission', role: 'r', key: 'k', rangeEnd: '' }, undefined),
      /etcdserver: permission is not granted to the role/,
    );
    assert.throws(
      () => a.apply({ op: 'roleGrantPermission', name: 'r', perm: { permType: PermType.READ, key: 'b', rangeEnd: 'a' } }, undefined),
      /invalid auth management/,
    );
    assert.throws(
      () => a.apply({ op: 'roleGrantPermission', name: 'r', perm: { permType: PermType.READ, key: '', rangeEnd: '' } }, undefined),
      /invalid auth management/,
    );
  });
  it('granting the same range again changes its type; deleting a role takes it from its users', () => {
    const a = new AuthStore();
    a.apply({ op: 'userAdd', name: 'u', password: 'h', noPassword: false }, undefined);
    a.apply({ op: 'roleAdd', name: 'r' }, undefined);
    a.apply({ op: 'roleGrantPermission', name: 'r', perm: { permType: PermType.READ, key: 'k', rangeEnd: '' } }, undefined);
    a.apply({ op: 'roleGrantPermission', name: 'r', perm: { permType: PermType.READWRITE, key: 'k', rangeEnd: '' } }, undefined);
    assert.deepEqual(a.roles.get('r')?.perms, [{ permType: PermType.READWRITE, key: 'k', rangeEnd: '' }]);
    a.apply({ op: 'userGrantRole', user: 'u', role: 'r' }, undefined);
    a.apply({ op: 'userGrantRole', user: 'u', role: 'r' }, undefined); // again: a no-op, as etcd
    a.apply({ op: 'roleDelete', role: 'r' }, undefined);
    assert.deepEqual(a.users.get('u')?.roles, []);
  });
  it('a no-password user keeps no hash, and changing its password changes nothing', () => {
    const a = new AuthStore();
    a.apply({ op: 'userAdd', name: 'cn', password: 'ignored', noPassword: true }, undefined);
    a.apply({ op: 'userChangePassword', name: 'cn', password: 'h2' }, undefined);
    assert.equal(a.users.get('cn')?.password, '');
  });
  it('deleting a user or changing its password invalidates its tokens; disabling auth invalidates all', () => {
    const { a, as } = enabled();
    const told: Array<string | undefined> = [];
    a.onInvalidate = (u) => told.push(u);
    a.apply({ op: 'userAdd', name: 'u', password: 'h', noPassword: false }, as('root'));
    a.apply({ op: 'userChangePassword', name: 'u', password: 'h2' }, as('root'));
    a.apply({ op: 'userDelete', name: 'u' }, as('root'));
    a.apply({ op: 'authDisable' }, as('root'));
    assert.deepEqual(told, ['u', 'u', undefined]);
  });
});

describe("key-range permissions (etcd's semantics)", () => {
  const setup = (perms: Array<[number, string, string]>) => {
    const { a, as } = enabled();
    a.apply({ op: 'userAdd', name: 'u', password: 'h', noPassword: false }, as('root'));
    a.apply({ op: 'roleAdd', name: 'r' }, as('root'));
    for (const [permType, key, rangeEnd] of perms)
      a.apply({ op: 'roleGrantPermission', name: 'r', perm: { permType: permType as PermType, key, rangeEnd } }, as('root'));
    a.apply({ op: 'userGrantRole', user: 'u', role: 'r' }, as('root'));
    return { a, u: as('u') };
  };
  const ok = (f: () => void) => assert.doesNotThrow(f);
  const denied = (f: () => void) => assert.throws(f, /etcdserver: permission denied/);

  it('a single key', () => {
    const { a, u } = setup([[PermType.READ, 'k', '']]);
    ok(() => a.checkRead(u, 'k', ''));
    denied(() => a.checkRead(u, 'k2', ''));
    denied(() => a.checkWrite(u, 'k', ''));
    denied(() => a.checkRead(u, 'k', 'l')); // a range beyond the one key
    ok(() => a.checkRead(u, 'k', 'k\0')); // exactly the one key, as a range
  });
  it('a prefix [key, range_end), and reads vs writes vs both', () => {
    const { a, u } = setup([
      [PermType.WRITE, '/app/', '/app0'],
      [PermType.READWRITE, '/shared/', '/shared0'],
    ]);
    ok(() => a.checkWrite(u, '/app/x', ''));
    denied(() => a.checkRead(u, '/app/x', ''));
    ok(() => a.checkWrite(u, '/app/a', '/app/z'));
    denied(() => a.checkWrite(u, '/app/a', '/b'));
    ok(() => a.checkRead(u, '/shared/x', ''));
    ok(() => a.checkWrite(u, '/shared/', '/shared0'));
    denied(() => a.checkWrite(u, '/', '\0'));
  });
  it('range_end "\\0" is "every key from here on", in permissions and in requests', () => {
    const { a, u } = setup([[PermType.READ, 'm', '\0']]);
    ok(() => a.checkRead(u, 'm', '\0'));
    ok(() => a.checkRead(u, 'zzz', ''));
    ok(() => a.checkRead(u, 'n', '\u00ff\u00ff'));
    denied(() => a.checkRead(u, 'a', '\0'));
    denied(() => a.checkRead(u, 'l', ''));
  });
  it('several permissions together cover a range none covers alone (touching and overlapping)', () => {
    const { a, u } = setup([
      [PermType.READ, 'a', 'c'],
      [PermType.READ, 'c', 'e'],
      [PermType.READ, 'd', 'g'],
    ]);
    ok(() => a.checkRead(u, 'a', 'g'));
    denied(() => a.checkRead(u, 'a', 'h'));
    const gap = setup([
      [PermType.READ, 'a', 'c'],
      [PermType.READ, 'd', 'g'],
    ]);
    denied(() => gap.a.checkRead(gap.u, 'a', 'e'));
  });
  it('the root role may do anything; a user with no roles nothing; unknown users are denied', () => {
    const { a, as } = enabled();
    ok(() => a.checkWrite(as('root'), '', '\0'));
    a.apply({ op: 'userAdd', name: 'bare', password: 'h', noPassword: false }, as('root'));
    denied(() => a.checkRead(as('bare'), 'k', ''));
    denied(() => a.checkRead(as('ghost'), 'k', ''));
    assert.throws(() => a.checkRead(undefined, 'k', ''), /etcdserver: user name is empty/);
  });
  it('a revoked permission stops working at once (the cache follows every change)', () => {
    const { a, u } = setup([[PermType.READ, 'k', '']]);
    a.checkRead(u, 'k', '');
    a.apply({ op: 'roleRevokePermission', role: 'r', key: 'k', rangeEnd: '' }, { user: 'root', rev: a.revision });
    assert.throws(() => a.checkRead(u, 'k', ''), /etcdserver: revision of auth store is old/);
    assert.throws(() => a.checkRead({ user: 'u', rev: a.revision }, 'k', ''), /etcdserver: permission denied/);
  });
  it('with auth off nothing is checked', () => {
    const a = new AuthStore();
    a.checkWrite(undefined, 'k', '');
    a.checkAdmin(undefined);
  });
});

it('state and restore round-trip, and a restore invalidates tokens handed out before', () => {
  const { a, as } = enabled();
  a.apply({ op: 'roleAdd', name: 'r' }, as('root'));
  a.apply({ op: 'roleGrantPermission', name: 'r', perm: { permType: PermType.READ, key: 'k', rangeEnd: '' } }, as('root'));
  const b = new AuthStore();
  b.restore(a.state());
  assert.deepEqual(b.state(), a.state());
  const told: Array<string | undefined> = [];
  b.onInvalidate = (u) => told.push(u);
  b.restore(undefined);
  assert.equal(b.enabled, false);
  assert.deepEqual(told, [undefined]);
});
