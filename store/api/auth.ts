/**
 * etcd's Auth service, and who a call speaks for. A call names its user with a token in its
 * metadata (`token`, as clientv3 and etcdctl send it, or `authorization: Bearer ...`) or, with
 * client certificate auth, with its verified certificate's common name (etcd's CN identity).
 *
 * Changes go through the log and are checked where they apply (the state machine): the request
 * carries its user and the auth revision their credentials were checked at, so a permission
 * revoked in between is never used (`revision of auth store is old`, and clients retry).
 * Reads of the auth state are linearizable reads. Passwords are hashed on the member that takes
 * the request (bcrypt); only hashes reach the log.
 */
import type * as grpc from '@grpc/grpc-js';
import { BallastError } from '../../lib/errors.ts';
import { PermType, type AuthInfo } from '../auth/auth-store.ts';
import { checkPassword, fromHashedPassword, hashPassword } from '../auth/password.ts';
import type { TokenProvider } from '../auth/tokens.ts';
import { catalogue } from '../errors.ts';
import type { StoreNode } from '../node.ts';
import type { ApplyResult, StoreRequest } from '../state-machine.ts';

/* eslint-disable @typescript-eslint/no-explicit-any -- wire objects are untyped by proto-loader */
type Wire = Record<string, any>;

/** What a handler is given to learn who calls: the call's metadata and its TLS peer. */
export type Caller = Pick<grpc.ServerUnaryCall<unknown, unknown>, 'metadata' | 'getAuthContext'>;

export interface AuthApiOptions {
  node: StoreNode;
  tokens: TokenProvider;
  bcryptCost: number;
  header(revision?: number): Wire;
}

export class AuthApi {
  readonly #options: AuthApiOptions;
  readonly #node: StoreNode;

  constructor(o: AuthApiOptions) {
    this.#options = o;
    this.#node = o.node;
    const auth = o.node.sm.auth;
    auth.onToken = (token, user) => o.tokens.register(token, user);
    auth.onInvalidate = (user) => o.tokens.invalidate(user);
  }

  /**
   * Who the call speaks for (undefined while auth is off, or when it names nobody). A token that
   * does not check out is an error, as in etcd: the client authenticates again.
   */
  info(call: Caller): Promise<AuthInfo | undefined> | undefined {
    const auth = this.#node.sm.auth;
    if (!auth.enabled) return undefined;
    const raw = call.metadata.get('token')[0] ?? call.metadata.get('authorization')[0];
    if (raw !== undefined) {
      const token = String(raw).replace(/^Bearer /, '');
      return this.#options.tokens.info(token, auth.revision).then((ai) => {
        if (!ai) throw catalogue.error('STORE_ERR_AUTH_INVALID_TOKEN', 'etcdserver: invalid auth token');
        return ai;
      });
    }
    // Only a certificate the TLS layer verified against --trusted-ca-file (grpc-js reports no
    // certificate otherwise).
    const cn: string | string[] | undefined = call.getAuthContext().sslPeerCertificate?.subject?.CN;
    const name = Array.isArray(cn) ? cn[0] : cn;
    return Promise.resolve(name ? { user: name, rev: auth.revision } : undefined);
  }

  /** The Auth service's handlers (for StoreApi's wrapper). */
  handlers(): Record<string, (req: Wire, call: Caller) => Promise<Wire>> {
    const node = this.#node;
    const auth = node.sm.auth;
    const h = (rev?: number) => this.#options.header(rev);
    const write = async (r: StoreRequest, ai: AuthInfo | undefined): Promise<ApplyResult> => {
      // A member of a cluster that just started may not have published what it reads yet: wait a little.
      if (!(await node.formatReady(5000)))
        throw catalogue.error(
          'STORE_ERR_AUTH_NEEDS_UPGRADE',
          'etcdserver: auth needs every member to run ballast 0.2.0 or later (a member reads format 1 only); finish the upgrade first',
        );
      const res = await node.write(r, ai);
      if (res.error) throw new BallastError(res.error.code, res.error.message);
      return res;
    };
    const done = (res: ApplyResult): Wire => ({ header: h(res.revision) });
    const password = async (r: Wire): Promise<string> =>
      r['hashedPassword']
        ? fromHashedPassword(String(r['hashedPassword']))
        : hashPassword(String(r['password'] ?? ''), this.#options.bcryptCost);
    return {
      AuthEnable: async (_r, call) => done(await write({ op: 'authEnable' }, await this.info(call))),
      AuthDisable: async (_r, call) => done(await write({ op: 'authDisable' }, await this.info(call))),
      AuthStatus: async (_r, call) => {
        const ai = await this.info(call);
        await node.linearizableRead();
        auth.checkAdmin(ai);
        return { header: h(), enabled: auth.enabled, authRevision: String(auth.revision) };
      },
      Authenticate: async (r) => {
        const name = String(r['name'] ?? '');
        await node.linearizableRead();
        // As etcd: check the password against the auth state of one revision; if the state moved
        // on while the token was being made, check again (a password may have changed).
        for (let attempt = 0; ; attempt++) {
          if (!auth.enabled) throw catalogue.error('STORE_ERR_AUTH_NOT_ENABLED', 'etcdserver: authentication is not enabled');
          const user = auth.users.get(name);
          const failed = () => catalogue.error('STORE_ERR_AUTH_FAILED', 'etcdserver: authentication failed, invalid user ID or password');
          if (!user) throw failed();
          if (user.noPassword)
            throw catalogue.error('STORE_ERR_AUTH_FAILED', 'etcdserver: authentication failed, password was given for no password user');
          const checked = auth.revision;
          if (!(await checkPassword(String(r['password'] ?? ''), user.password))) throw failed();
          let token: string;
          if (this.#options.tokens.sign) token = await this.#options.tokens.sign(name, checked);
          else
            token = (
              (await write({ op: 'authenticate', name, token: this.#options.tokens.prefix?.() ?? '' }, undefined)).result as {
                token: string;
              }
            ).token;
          if (checked === auth.revision || attempt >= 4) return { header: h(), token };
        }
      },
      UserAdd: async (r, call) => {
        const ai = await this.info(call);
        auth.checkAdmin(ai); // before spending a bcrypt hash on it
        const noPassword = !!r['options']?.['no_password'];
        return done(
          await write({ op: 'userAdd', name: String(r['name'] ?? ''), password: noPassword ? '' : await password(r), noPassword }, ai),
        );
      },
      UserDelete: async (r, call) => done(await write({ op: 'userDelete', name: String(r['name'] ?? '') }, await this.info(call))),
      UserChangePassword: async (r, call) => {
        const ai = await this.info(call);
        auth.checkAdmin(ai);
        return done(await write({ op: 'userChangePassword', name: String(r['name'] ?? ''), password: await password(r) }, ai));
      },
      UserGrantRole: async (r, call) =>
        done(await write({ op: 'userGrantRole', user: String(r['user'] ?? ''), role: String(r['role'] ?? '') }, await this.info(call))),
      UserRevokeRole: async (r, call) =>
        done(await write({ op: 'userRevokeRole', name: String(r['name'] ?? ''), role: String(r['role'] ?? '') }, await this.info(call))),
      RoleAdd: async (r, call) => done(await write({ op: 'roleAdd', name: String(r['name'] ?? '') }, await this.info(call))),
      RoleDelete: async (r, call) => done(await write({ op: 'roleDelete', role: String(r['role'] ?? '') }, await this.info(call))),
      RoleGrantPermission: async (r, call) => {
        const perm = r['perm'] as Wire | null | undefined;
        if (!perm) throw catalogue.error('STORE_ERR_AUTH_PERMISSION_NOT_GIVEN', 'etcdserver: permission not given');
        const permType = Number(perm['permType'] ?? 0);
        if (permType !== PermType.READ && permType !== PermType.WRITE && permType !== PermType.READWRITE)
          throw catalogue.error('STORE_ERR_AUTH_INVALID_MGMT', 'etcdserver: invalid auth management');
        const key = (perm['key'] as Buffer | undefined)?.toString('latin1') ?? '';
        const rangeEnd = (perm['range_end'] as Buffer | undefined)?.toString('latin1') ?? '';
        return done(
          await write(
            { op: 'roleGrantPermission', name: String(r['name'] ?? ''), perm: { permType, key, rangeEnd } },
            await this.info(call),
          ),
        );
      },
      RoleRevokePermission: async (r, call) => {
        const key = (r['key'] as Buffer | undefined)?.toString('latin1') ?? '';
        const rangeEnd = (r['range_end'] as Buffer | undefined)?.toString('latin1') ?? '';
        return done(await write({ op: 'roleRevokePermission', role: String(r['role'] ?? ''), key, rangeEnd }, await this.info(call)));
      },
      UserGet: async (r, call) => {
        const ai = await this.info(call);
        await node.linearizableRead();
        const name = String(r['name'] ?? '');
        // A user may read itself; anyone else needs the root role.
        if (!auth.isAdmin(ai) && name !== ai?.user) auth.checkAdmin(ai);
        const u = auth.users.get(name);
        if (!u) throw catalogue.error('STORE_ERR_AUTH_USER_NOT_FOUND', 'etcdserver: user name not found');
        return { header: h(), roles: [...u.roles] };
      },
      UserList: async (_r, call) => {
        const ai = await this.info(call);
        await node.linearizableRead();
        auth.checkAdmin(ai);
        return { header: h(), users: [...auth.users.keys()].sort() };
      },
      RoleGet: async (r, call) => {
        const ai = await this.info(call);
        await node.linearizableRead();
        const name = String(r['role'] ?? '');
        // A user may read the roles it has; anyone else needs the root role.
        if (!auth.isAdmin(ai) && !(ai && auth.hasRole(ai.user, name))) auth.checkAdmin(ai);
        const role = auth.roles.get(name);
        if (!role) throw catalogue.error('STORE_ERR_AUTH_ROLE_NOT_FOUND', 'etcdserver: role name not found');
        return {
          header: h(),
          perm: role.perms.map((p) => ({
            permType: p.permType,
            key: Buffer.from(p.key, 'latin1'),
            range_end: Buffer.from(p.rangeEnd, 'latin1'),
          })),
        };
      },
      RoleList: async (_r, call) => {
        const ai = await this.info(call);
        await node.linearizableRead();
        auth.checkAdmin(ai);
        return { header: h(), roles: [...auth.roles.keys()].sort() };
      },
    };
  }
}
