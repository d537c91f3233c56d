/**
 * The replicated auth state (etcd's auth store): whether auth is on, its revision, users with
 * their password hashes and roles, roles with their key-range permissions. Pure: every member
 * applies the same committed requests in the same order and reaches the same state; hashing,
 * tokens and clocks live at the edges (store/auth/password.ts, tokens.ts). Errors carry etcd's
 * messages, because clients (clientv3's retry on "revision of auth store is old", etcdctl's
 * `auth enable` creating the root role on "root user does not have root role") match on them.
 *
 * Permissions follow etcd exactly: a permission with an empty range_end is one key; a
 * range_end of "\0" is every key from `key` on; otherwise [key, range_end). A request on one key
 * is allowed when a permission of its kind holds the key; a request on a range when the union of
 * the user's permissions of its kind covers the whole range. The root role may do anything.
 */
import { catalogue } from '../errors.ts';

export const rootUser = 'root';
export const rootRole = 'root';

/** etcd's authpb.Permission.Type. */
export const PermType = { READ: 0, WRITE: 1, READWRITE: 2 } as const;
export type PermType = (typeof PermType)[keyof typeof PermType];

export interface Permission {
  permType: PermType;
  /** latin1 (bytes as in the key space). */
  key: string;
  rangeEnd: string;
}

export interface User {
  name: string;
  /** A bcrypt hash ('' for a user without a password). */
  password: string;
  /** Sorted. */
  roles: string[];
  noPassword: boolean;
}

export interface Role {
  name: string;
  /** Sorted by key, then range end (as etcd keeps them). */
  perms: Permission[];
}

export interface AuthState {
  enabled: boolean;
  revision: number;
  users: User[];
  roles: Role[];
}

/** Who asks, and at which auth revision their credentials were checked (etcd's AuthInfo). */
export interface AuthInfo {
  user: string;
  rev: number;
}

/** The auth requests that go through the log. */
export type AuthRequest =
  | { op: 'authEnable' }
  | { op: 'authDisable' }
  /** A simple token, assigned on every member once committed (JWTs need no log entry). */
  | { op: 'authenticate'; name: string; token: string }
  | { op: 'userAdd'; name: string; password: string; noPassword: boolean }
  | { op: 'userDelete'; name: string }
  | { op: 'userChangePassword'; name: string; password: string }
  | { op: 'userGrantRole'; user: string; role: string }
  | { op: 'userRevokeRole'; name: string; role: string }
  | { op: 'roleAdd'; name: string }
  | { op: 'roleDelete'; role: string }
  | { op: 'roleGrantPermission'; name: string; perm: Permission }
  | { op: 'roleRevokePermission'; role: string; key: string; rangeEnd: string };

const authOps = new Set<string>([
  'authEnable',
  'authDisable',
  'authenticate',
  'userAdd',
  'userDelete',
  'userChangePassword',
  'userGrantRole',
  'userRevokeRole',
  'roleAdd',
  'roleDelete',
  'roleGrantPermission',
  'roleRevokePermission',
]);

export function isAuthRequest<T extends { op: string }>(r: T | AuthRequest): r is AuthRequest {
  return authOps.has(r.op);
}

/** Requests only a root user may make once auth is on (etcd's needAdminPermission). */
const adminOps = new Set<string>([
  'authEnable',
  'authDisable',
  'userAdd',
  'userDelete',
  'userChangePassword',
  'userGrantRole',
  'userRevokeRole',
  'roleAdd',
  'roleDelete',
  'roleGrantPermission',
  'roleRevokePermission',
]);

/** [start, end) over latin1 keys; end undefined: to the end of the key space. */
type Interval = [string, string | undefined];

interface Merged {
  read: Interval[];
  write: Interval[];
}

const err = {
  userEmpty: () => catalogue.error('STORE_ERR_AUTH_USER_EMPTY', 'etcdserver: user name is empty'),
  userNotFound: () => catalogue.error('STORE_ERR_AUTH_USER_NOT_FOUND', 'etcdserver: user name not found'),
  denied: () => catalogue.error('STORE_ERR_PERMISSION_DENIED', 'etcdserver: permission denied'),
  oldRevision: () => catalogue.error('STORE_ERR_AUTH_OLD_REVISION', 'etcdserver: revision of auth store is old'),
  roleNotFound: () => catalogue.error('STORE_ERR_AUTH_ROLE_NOT_FOUND', 'etcdserver: role name not found'),
  invalidMgmt: () => catalogue.error('STORE_ERR_AUTH_INVALID_MGMT', 'etcdserver: invalid auth management'),
};

export class AuthStore {
  enabled = false;
  revision = 0;
  readonly users = new Map<string, User>();
  readonly roles = new Map<string, Role>();
  /** Merged permissions per user, rebuilt lazily after any change (etcd's range permission cache). */
  #cache = new Map<string, Merged>();
  /** Told when a user's tokens must stop working (deleted, password changed) or all of them (auth disabled). */
  onInvalidate: ((user: string | undefined) => void) | undefined;
  /** Told when a simple token is committed (every member then accepts it). */
  onToken: ((token: string, user: string) => void) | undefined;

  /** Apply a committed auth request made by `ai`; throws etcd's error, leaving the state as it was. */
  apply(r: AuthRequest, ai: AuthInfo | undefined): unknown {
    if (adminOps.has(r.op)) this.checkAdmin(ai);
    switch (r.op) {
      case 'authEnable': {
        if (this.enabled) return {};
        const root = this.users.get(rootUser);
        if (!root) throw catalogue.error('STORE_ERR_AUTH_ROOT_USER_NOT_EXIST', 'etcdserver: root user does not exist');
        if (!root.roles.includes(rootRole))
          throw catalogue.error('STORE_ERR_AUTH_ROOT_ROLE_NOT_EXIST', 'etcdserver: root user does not have root role');
        this.enabled = true;
        return {};
      }
      case 'authDisable':
        if (!this.enabled) return {};
        this.enabled = false;
        this.#changed();
        this.onInvalidate?.(undefined);
        return {};
      case 'authenticate': {
        if (!this.enabled) throw catalogue.error('STORE_ERR_AUTH_NOT_ENABLED', 'etcdserver: authentication is not enabled');
        const u = this.users.get(r.name);
        if (!u || u.noPassword)
          throw catalogue.error('STORE_ERR_AUTH_FAILED', 'etcdserver: authentication failed, invalid user ID or password');
        this.onToken?.(r.token, r.name);
        return { token: r.token };
      }
      case 'userAdd': {
        if (r.name === '') throw err.userEmpty();
        if (this.users.has(r.name)) throw catalogue.error('STORE_ERR_AUTH_USER_EXISTS', 'etcdserver: user name already exists');
        this.users.set(r.name, { name: r.name, password: r.noPassword ? '' : r.password, roles: [], noPassword: r.noPassword });
        this.#changed();
        return {};
      }
      case 'userDelete': {
        if (this.enabled && r.name === rootUser) throw err.invalidMgmt();
        if (!this.users.delete(r.name)) throw err.userNotFound();
        this.#changed();
        this.onInvalidate?.(r.name);
        return {};
      }
      case 'userChangePassword': {
        const u = this.users.get(r.name);
        if (!u) throw err.userNotFound();
        if (!u.noPassword) u.password = r.password;
        this.#changed();
        this.onInvalidate?.(r.name);
        return {};
      }
      case 'userGrantRole': {
        const u = this.users.get(r.user);
        if (!u) throw err.userNotFound();
        if (r.role !== rootRole && !this.roles.has(r.role)) throw err.roleNotFound();
        if (u.roles.includes(r.role)) return {};
        u.roles = [...u.roles, r.role].sort(byBytes);
        this.#changed();
        return {};
      }
      case 'userRevokeRole': {
        if (this.enabled && r.name === rootUser && r.role === rootRole) throw err.invalidMgmt();
        const u = this.users.get(r.name);
        if (!u) throw err.userNotFound();
        if (!u.roles.includes(r.role))
          throw catalogue.error('STORE_ERR_AUTH_ROLE_NOT_GRANTED', 'etcdserver: role is not granted to the user');
        u.roles = u.roles.filter((x) => x !== r.role);
        this.#changed();
        return {};
      }
      case 'roleAdd': {
        if (r.name === '') throw catalogue.error('STORE_ERR_AUTH_ROLE_EMPTY', 'etcdserver: role name is empty');
        if (this.roles.has(r.name)) throw catalogue.error('STORE_ERR_AUTH_ROLE_EXISTS', 'etcdserver: role name already exists');
        this.roles.set(r.name, { name: r.name, perms: [] });
        this.#changed();
        return {};
      }
      case 'roleDelete': {
        if (this.enabled && r.role === rootRole) throw err.invalidMgmt();
        if (!this.roles.delete(r.role)) throw err.roleNotFound();
        for (const u of this.users.values()) u.roles = u.roles.filter((x) => x !== r.role);
        this.#changed();
        return {};
      }
      case 'roleGrantPermission': {
        if (!validPermissionRange(r.perm.key, r.perm.rangeEnd)) throw err.invalidMgmt();
        const role = this.roles.get(r.name);
        if (!role) throw err.roleNotFound();
        const same = role.perms.find((p) => p.key === r.perm.key && p.rangeEnd === r.perm.rangeEnd);
        if (same) same.permType = r.perm.permType;
        else role.perms = [...role.perms, { ...r.perm }].sort((a, b) => byBytes(a.key, b.key) || byBytes(a.rangeEnd, b.rangeEnd));
        this.#changed();
        return {};
      }
      case 'roleRevokePermission': {
        const role = this.roles.get(r.role);
        if (!role) throw err.roleNotFound();
        const kept = role.perms.filter((p) => p.key !== r.key || p.rangeEnd !== r.rangeEnd);
        if (kept.length === role.perms.length)
          throw catalogue.error('STORE_ERR_AUTH_PERMISSION_NOT_GRANTED', 'etcdserver: permission is not granted to the role');
        role.perms = kept;
        this.#changed();
        return {};
      }
    }
  }

  /** Only a user with the root role, once auth is on (etcd's IsAdminPermitted). */
  checkAdmin(ai: AuthInfo | undefined): void {
    if (!this.enabled) return;
    if (!ai || ai.user === '') throw err.userEmpty();
    const u = this.users.get(ai.user);
    if (!u) throw err.userNotFound();
    if (!u.roles.includes(rootRole)) throw err.denied();
  }

  isAdmin(ai: AuthInfo | undefined): boolean {
    try {
      this.checkAdmin(ai);
      return true;
    } catch {
      return false;
    }
  }

  /** A user was named and auth is on (etcd's requireAuthInfo). */
  requireUser(ai: AuthInfo | undefined): void {
    if (this.enabled && (!ai || ai.user === '')) throw err.userEmpty();
  }

  checkRead(ai: AuthInfo | undefined, key: string, rangeEnd: string): void {
    this.#check(ai, key, rangeEnd, 'read');
  }

  checkWrite(ai: AuthInfo | undefined, key: string, rangeEnd: string): void {
    this.#check(ai, key, rangeEnd, 'write');
  }

  hasRole(user: string, role: string): boolean {
    return this.users.get(user)?.roles.includes(role) ?? false;
  }

  /** etcd's isOpPermitted. */
  #check(ai: AuthInfo | undefined, key: string, rangeEnd: string, kind: 'read' | 'write'): void {
    if (!this.enabled) return;
    if (!ai || ai.rev === 0) throw err.userEmpty();
    if (ai.rev < this.revision) throw err.oldRevision();
    const u = this.users.get(ai.user);
    if (!u) throw err.denied();
    if (u.roles.includes(rootRole)) return;
    const merged = this.#merged(u)[kind];
    if (rangeEnd === '') {
      if (!merged.some(([s, e]) => s <= key && (e === undefined || key < e))) throw err.denied();
      return;
    }
    const end = rangeEnd === '\0' ? undefined : rangeEnd;
    // Merged intervals are disjoint and not adjacent: one of them must hold the whole range.
    const covered = merged.some(([s, e]) => s <= key && (e === undefined || (end !== undefined && end <= e)));
    if (!covered) throw err.denied();
  }

  #merged(u: User): Merged {
    let m = this.#cache.get(u.name);
    if (m) return m;
    const read: Interval[] = [];
    const write: Interval[] = [];
    for (const name of u.roles) {
      for (const p of this.roles.get(name)?.perms ?? []) {
        const ivl: Interval = p.rangeEnd === '' ? [p.key, `${p.key}\0`] : [p.key, p.rangeEnd === '\0' ? undefined : p.rangeEnd];
        if (p.permType !== PermType.WRITE) read.push(ivl);
        if (p.permType !== PermType.READ) write.push(ivl);
      }
    }
    m = { read: merge(read), write: merge(write) };
    this.#cache.set(u.name, m);
    return m;
  }

  #changed(): void {
    this.revision += 1;
    this.#cache.clear();
  }

  state(): AuthState {
    return {
      enabled: this.enabled,
      revision: this.revision,
      users: [...this.users.values()].map((u) => ({ ...u, roles: [...u.roles] })),
      roles: [...this.roles.values()].map((r) => ({ name: r.name, perms: r.perms.map((p) => ({ ...p })) })),
    };
  }

  restore(s: AuthState | undefined): void {
    const wasEnabled = this.enabled;
    this.enabled = s?.enabled ?? false;
    this.revision = s?.revision ?? 0;
    this.users.clear();
    this.roles.clear();
    for (const u of s?.users ?? []) this.users.set(u.name, { ...u, roles: [...u.roles] });
    for (const r of s?.roles ?? []) this.roles.set(r.name, { name: r.name, perms: r.perms.map((p) => ({ ...p })) });
    this.#cache.clear();
    // Tokens were handed out under the old state: a snapshot may have deleted their users.
    if (wasEnabled) this.onInvalidate?.(undefined);
  }
}

/** etcd's isValidPermissionRange: a key, and a range end that is empty, "\0" or after the key. */
export function validPermissionRange(key: string, rangeEnd: string): boolean {
  if (key === '') return false;
  return rangeEnd === '' || rangeEnd === '\0' || key < rangeEnd;
}

/** Sort and join overlapping or touching intervals. */
function merge(ivls: Interval[]): Interval[] {
  ivls.sort((a, b) => byBytes(a[0], b[0]));
  const out: Interval[] = [];
  for (const [s, e] of ivls) {
    const last = out[out.length - 1];
    if (last && (last[1] === undefined || s <= last[1])) {
      if (last[1] !== undefined && (e === undefined || e > last[1])) last[1] = e;
    } else out.push([s, e]);
  }
  return out;
}

/** Byte order on latin1 strings (each char one byte) and on names. */
function byBytes(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
