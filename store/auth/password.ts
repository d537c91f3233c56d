/**
 * Password hashes: bcrypt, as etcd (`--bcrypt-cost`, default 10), so a `hashedPassword` made
 * for etcd (base64 of a bcrypt hash) is taken as it is. bcryptjs is pure JavaScript: its async
 * calls work in slices and yield to the event loop, so a login never stalls other requests.
 * Hashing happens on the member that takes the request; only the hash goes through the log.
 */
import bcrypt from 'bcryptjs';
import { catalogue } from '../errors.ts';

export const defaultBcryptCost = 10;

export function hashPassword(password: string, cost: number): Promise<string> {
  return bcrypt.hash(password, cost);
}

export function checkPassword(password: string, hash: string): Promise<boolean> {
  if (hash === '') return Promise.resolve(false);
  return bcrypt.compare(password, hash);
}

/** etcd's `hashedPassword` field: base64 of a bcrypt hash. */
export function fromHashedPassword(b64: string): string {
  const hash = Buffer.from(b64, 'base64').toString('latin1');
  if (!/^\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}$/.test(hash)) {
    throw catalogue.error('STORE_ERR_AUTH_BAD_HASH', 'etcdserver: hashedPassword must be the base64 encoding of a bcrypt hash');
  }
  return hash;
}
