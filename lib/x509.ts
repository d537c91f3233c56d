/**
 * @peculiar/x509, ready to use: its services resolve through tsyringe (which needs the Reflect
 * metadata API, loaded first) and its crypto is Node's WebCrypto. Import x509 from here.
 */
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export { x509 };
/** ECDSA P-256 with SHA-256: the keys and signatures of every certificate Ballast makes. */
export const ecdsa = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
