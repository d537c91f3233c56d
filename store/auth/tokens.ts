/**
 * Auth tokens, as etcd's `--auth-token`: `simple` (the default) or
 * `jwt,pub-key=PATH,priv-key=PATH,sign-method=RS256,ttl=5m`.
 *
 * Simple tokens are 16 random letters and the Raft index of the entry that made them
 * ("abcdEFGHijklMNOP.42"): the Authenticate request goes through the log, so every member learns
 * the token when it applies that entry; one asked about a token it has not applied yet waits for
 * the index. Each member forgets a token `--auth-token-ttl` seconds after its last use, and all
 * of a user's tokens when the user is deleted or changes password.
 *
 * JWTs are signed by the member that answers Authenticate and checked by any member holding the
 * public key; they carry the user, the auth revision and an expiry (claims `username`,
 * `revision`, `exp`, as etcd's), so a token from before any auth change is refused as "old".
 */
import { createPrivateKey, createPublicKey, createSecretKey, randomInt, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { SignJWT, jwtVerify } from 'jose';
import type { Clock, TimerHandle } from '../../lib/clock.ts';
import { catalogue } from '../errors.ts';
import type { AuthInfo } from './auth-store.ts';

export interface TokenProvider {
  readonly kind: 'simple' | 'jwt';
  /** Who a token speaks for (the revision is the current one for simple tokens); undefined when it is not valid. */
  info(token: string, revision: number): Promise<AuthInfo | undefined>;
  /** JWT: sign a token for `user` at `revision`. Simple tokens are made by the log (`register`). */
  sign?(user: string, revision: number): Promise<string>;
  /** Simple: the random part of a new token; its index is added when the entry applies. */
  prefix?(): string;
  /** Simple: a committed token. */
  register(token: string, user: string): void;
  invalidate(user: string | undefined): void;
  stop(): void;
}

const letters = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';

export interface SimpleTokenOptions {
  clock: Clock;
  ttlMs: number;
  /** Resolves true once this member has applied `index` (false: it gave up waiting). */
  waitApplied(index: number): Promise<boolean>;
}

export class SimpleTokens implements TokenProvider {
  readonly kind = 'simple';
  readonly #options: SimpleTokenOptions;
  readonly #tokens = new Map<string, { user: string; expires: number }>();
  #sweep: TimerHandle | undefined;

  constructor(o: SimpleTokenOptions) {
    this.#options = o;
  }

  prefix(): string {
    let s = '';
    for (let i = 0; i < 16; i++) s += letters[randomInt(letters.length)];
    return s;
  }

  register(token: string, user: string): void {
    this.#tokens.set(token, { user, expires: this.#options.clock.now() + this.#options.ttlMs });
    this.#sweep ??= this.#options.clock.setInterval(() => this.#expire(), Math.max(1000, this.#options.ttlMs / 4), { unref: true });
  }

  async info(token: string, revision: number): Promise<AuthInfo | undefined> {
    const dot = token.lastIndexOf('.');
    const index = Number(token.slice(dot + 1));
    if (dot !== 16 || !Number.isSafeInteger(index) || index <= 0) return undefined;
    let t = this.#tokens.get(token);
    if (!t && !(await this.#options.waitApplied(index))) return undefined;
    t ??= this.#tokens.get(token);
    const now = this.#options.clock.now();
    if (!t || t.expires <= now) return undefined;
    t.expires = now + this.#options.ttlMs;
    return { user: t.user, rev: revision };
  }

  invalidate(user: string | undefined): void {
    if (user === undefined) this.#tokens.clear();
    else for (const [k, t] of this.#tokens) if (t.user === user) this.#tokens.delete(k);
  }

  #expire(): void {
    const now = this.#options.clock.now();
    for (const [k, t] of this.#tokens) if (t.expires <= now) this.#tokens.delete(k);
  }

  stop(): void {
    this.#sweep?.cancel();
    this.#sweep = undefined;
  }
}

export interface JwtOptions {
  signMethod: string;
  /** Absent: this member verifies only (Authenticate fails, as etcd's verify-only key). */
  privateKey?: KeyObject;
  publicKey: KeyObject;
  ttlMs: number;
  clock: Clock;
}

/** The sign methods etcd (golang-jwt) accepts, as JOSE names. */
export const jwtSignMethods = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'HS256',
  'HS384',
  'HS512',
  'EdDSA',
] as const;

export class JwtTokens implements TokenProvider {
  readonly kind = 'jwt';
  readonly #options: JwtOptions;
  /** Verified tokens (a signature check costs more than the request it guards). */
  readonly #verified = new Map<string, { info: AuthInfo; expMs: number }>();

  constructor(o: JwtOptions) {
    this.#options = o;
  }

  async sign(user: string, revision: number): Promise<string> {
    if (!this.#options.privateKey) throw catalogue.error('STORE_ERR_AUTH_FAILED', 'auth: token signing attempted with verify-only key');
    const exp = Math.floor((this.#options.clock.wallNow() + this.#options.ttlMs) / 1000);
    return new SignJWT({ username: user, revision })
      .setProtectedHeader({ alg: this.#options.signMethod })
      .setExpirationTime(exp)
      .sign(this.#options.privateKey);
  }

  async info(token: string): Promise<AuthInfo | undefined> {
    const now = this.#options.clock.wallNow();
    const hit = this.#verified.get(token);
    if (hit) {
      if (hit.expMs > now) return hit.info;
      this.#verified.delete(token);
      return undefined;
    }
    try {
      const { payload } = await jwtVerify(token, this.#options.publicKey, {
        algorithms: [this.#options.signMethod],
        currentDate: new Date(now),
      });
      if (typeof payload['username'] !== 'string' || typeof payload['revision'] !== 'number' || typeof payload.exp !== 'number')
        return undefined;
      const info = { user: payload['username'], rev: payload['revision'] };
      if (this.#verified.size >= 10_000) this.#verified.clear();
      this.#verified.set(token, { info, expMs: payload.exp * 1000 });
      return info;
    } catch {
      return undefined;
    }
  }

  register(): void {}
  invalidate(): void {}
  stop(): void {
    this.#verified.clear();
  }
}

/** The parts of `--auth-token`; problems name the option and what is allowed. */
export interface TokenConfig {
  kind: 'simple' | 'jwt';
  signMethod?: string;
  pubKey?: string;
  privKey?: string;
  ttlMs?: number;
}

/** Parse `--auth-token` (etcd's syntax); throws with a message that says what to fix. */
export function parseAuthToken(raw: string): TokenConfig {
  const [kind, ...opts] = raw.split(',');
  if (kind === 'simple' && opts.length === 0) return { kind: 'simple' };
  if (kind !== 'jwt') throw new Error(`got "${raw}"; expected simple, or jwt,pub-key=PATH,priv-key=PATH,sign-method=RS256[,ttl=5m]`);
  const out: TokenConfig = { kind: 'jwt' };
  const seen = new Set<string>();
  for (const o of opts) {
    const eq = o.indexOf('=');
    const k = o.slice(0, eq);
    const v = o.slice(eq + 1);
    if (eq <= 0 || v === '') throw new Error(`option "${o}" is not key=value`);
    if (seen.has(k)) throw new Error(`option ${k} is given twice`);
    seen.add(k);
    if (k === 'sign-method') out.signMethod = v;
    else if (k === 'pub-key') out.pubKey = v;
    else if (k === 'priv-key') out.privKey = v;
    else if (k === 'ttl') out.ttlMs = parseGoDuration(v);
    else throw new Error(`unknown option ${k} (jwt takes pub-key, priv-key, sign-method and ttl)`);
  }
  if (!out.signMethod || !(jwtSignMethods as readonly string[]).includes(out.signMethod))
    throw new Error(`sign-method ${out.signMethod ?? '(missing)'}; expected one of ${jwtSignMethods.join(', ')}`);
  if (out.signMethod.startsWith('HS') ? !out.privKey : !out.pubKey && !out.privKey)
    throw new Error(
      out.signMethod.startsWith('HS')
        ? `${out.signMethod} needs priv-key (the file holding the shared secret)`
        : `${out.signMethod} needs pub-key (to verify) and priv-key (to sign)`,
    );
  return out;
}

/** Go's time.ParseDuration for the units etcd users write (5m, 300s, 1h30m, 1.5h). */
export function parseGoDuration(s: string): number {
  const units: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/gy;
  let ms = 0;
  let pos = 0;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    ms += Number(m[1]) * (units[m[2] as string] as number);
    pos = re.lastIndex;
  }
  if (pos !== s.length || s.length === 0) throw new Error(`ttl "${s}" is not a duration such as 5m, 300s or 1h30m`);
  return ms;
}

/** Build the provider for a parsed `--auth-token` (reading the key files). */
export function tokenProvider(
  cfg: TokenConfig,
  o: { clock: Clock; simpleTtlMs: number; waitApplied(index: number): Promise<boolean> },
): TokenProvider {
  if (cfg.kind === 'simple') return new SimpleTokens({ clock: o.clock, ttlMs: o.simpleTtlMs, waitApplied: o.waitApplied });
  const method = cfg.signMethod as string;
  const read = (p: string): Buffer => {
    try {
      return readFileSync(p);
    } catch (e) {
      throw catalogue.error('STORE_ERR_AUTH_TOKEN_CONFIG', `--auth-token: cannot read ${p}: ${(e as Error).message}`);
    }
  };
  let privateKey: KeyObject | undefined;
  let publicKey: KeyObject;
  try {
    if (method.startsWith('HS')) {
      privateKey = createSecretKey(read(cfg.privKey as string));
      publicKey = privateKey;
    } else {
      privateKey = cfg.privKey ? createPrivateKey(read(cfg.privKey)) : undefined;
      publicKey = cfg.pubKey ? createPublicKey(read(cfg.pubKey)) : createPublicKey(privateKey as KeyObject);
    }
  } catch (e) {
    if (e instanceof Error && 'code' in e && String((e as { code: unknown }).code).startsWith('STORE_')) throw e;
    throw catalogue.error('STORE_ERR_AUTH_TOKEN_CONFIG', `--auth-token: the ${method} key does not parse: ${(e as Error).message}`);
  }
  return new JwtTokens({
    signMethod: method,
    ...(privateKey ? { privateKey } : {}),
    publicKey,
    ttlMs: cfg.ttlMs ?? 5 * 60_000,
    clock: o.clock,
  });
}
