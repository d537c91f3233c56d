/**
 * What every codec of the member's formats shares: the format versions, and the protobuf types
 * of store/format/internal.proto (field numbers are the contract, so a renamed field still
 * reads). store/format/codec.ts encodes log entries (requests); store/format/state-codec.ts the
 * state machine's state and snapshot files.
 */
import protobuf from 'protobufjs';
import type { Permission, PermType } from '../auth/auth-store.ts';

/** The formats this build reads; it writes the highest every member reads. */
export const supportedFormats = [1, 2] as const;
export type Format = (typeof supportedFormats)[number];
export const latestFormat: Format = 2;

const root = protobuf.loadSync(new URL('./internal.proto', import.meta.url).pathname);
export const T = {
  request: root.lookupType('ballast.store.v2.InternalRequest'),
  state: root.lookupType('ballast.store.v2.State'),
  meta: root.lookupType('ballast.store.v2.SnapshotMeta'),
  snapshot: root.lookupType('ballast.store.v2.Snapshot'),
  auth: root.lookupType('ballast.store.v2.AuthState'),
};
export const toObject = { longs: Number, bytes: Buffer, defaults: true, arrays: true, oneofs: true } as const;

/* eslint-disable @typescript-eslint/no-explicit-any -- protobuf objects are plain records */
export type Pb = Record<string, any>;

/** Keys and values are byte strings held as latin1 strings: to and from protobuf bytes. */
export const b = (s: string): Buffer => Buffer.from(s, 'latin1');
export const s = (v: Buffer | Uint8Array | undefined): string =>
  v ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('latin1') : '';

export const permOut = (p: Permission): Pb => ({ permType: p.permType, key: b(p.key), rangeEnd: b(p.rangeEnd) });
export const permIn = (p: Pb): Permission => ({ permType: p['permType'] as PermType, key: s(p['key']), rangeEnd: s(p['rangeEnd']) });
