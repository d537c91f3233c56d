/**
 * Backups: the Snapshot RPC streams a consistent point-in-time copy of the state machine, and
 * `ballast store restore` turns one into a new member's data directory (as `etcdutl snapshot
 * restore` does): the keys, revisions and leases are kept; the membership comes from the
 * restore flags, so every member restored with the same flags starts from the same state.
 *
 * Format: "BALLASTSNAP2\n" | u32 length | the state in format 2 (store/format/codec.ts: protobuf,
 * the revision is the state's) | zero padding to a multiple of 512 bytes | sha256 of everything
 * before it. (etcdctl checks that a snapshot is whole 512-byte blocks plus a 32-byte sha256, as a
 * bbolt file with etcd's trailer is.) Backups from 0.1.0 ("BALLASTSNAP1\n", a v8 clone of
 * {revision, state}) are read too.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { deserialize } from 'node:v8';
import { BallastError } from '../lib/errors.ts';
import { catalogue } from './errors.ts';
import { clusterId, memberId } from './members.ts';
import { bootstrapEntries } from './raft/bootstrap.ts';
import { decodeState, encodeState, streamState } from './format/state-codec.ts';
import { recordFormat } from './format/data-dir.ts';
import { Snapshotter } from './snapshot/snapshotter.ts';
import type { ConfContext, StateMachineState, StateView } from './state-machine.ts';
import { Wal } from './wal/wal.ts';

const magic = Buffer.from('BALLASTSNAP2\n');
const magicV1 = Buffer.from('BALLASTSNAP1\n');

export function encodeBackup(state: StateMachineState): Buffer {
  const payload = encodeState(state, 2);
  // One buffer, the payload copied into it once (a store of 1 GiB held three copies at once when
  // the parts were concatenated twice).
  const unpadded = magic.length + 4 + payload.length;
  const bodyLength = unpadded + ((512 - (unpadded % 512)) % 512);
  const out = Buffer.alloc(bodyLength + 32);
  magic.copy(out, 0);
  out.writeUInt32LE(payload.length, magic.length);
  out.set(payload, magic.length + 4);
  createHash('sha256').update(out.subarray(0, bodyLength)).digest().copy(out, bodyLength);
  return out;
}

/**
 * encodeBackup's bytes, made as they are taken: the length first (for the Snapshot RPC's
 * remaining_bytes), then chunks of about `chunkBytes`, the sha256 computed along the way. What a
 * member holds for a backup is one chunk and a copy-on-write view of its key index
 * (StateMachine.view()), not a copy of its records.
 */
export function backupStream(state: StateView): { length: number; chunks(chunkBytes: number): Generator<Buffer> } {
  const st = streamState(state);
  const unpadded = magic.length + 4 + st.length;
  const pad = (512 - (unpadded % 512)) % 512;
  return {
    length: unpadded + pad + 32,
    *chunks(chunkBytes: number) {
      const hash = createHash('sha256');
      const head = Buffer.alloc(magic.length + 4);
      magic.copy(head, 0);
      head.writeUInt32LE(st.length, magic.length);
      hash.update(head);
      yield head;
      for (const c of st.chunks(chunkBytes)) {
        hash.update(c);
        yield c;
      }
      const padding = Buffer.alloc(pad);
      hash.update(padding);
      yield Buffer.concat([padding, hash.digest()]);
    },
  };
}

export function decodeBackup(buf: Buffer, path: string): { revision: number; state: StateMachineState } {
  const v1 = buf.subarray(0, magicV1.length).equals(magicV1);
  if (buf.length < magic.length + 32 || !(v1 || buf.subarray(0, magic.length).equals(magic))) {
    throw catalogue.error(
      'STORE_ERR_BACKUP_INVALID',
      `${path} is not a ballast store snapshot (save one with \`etcdctl snapshot save\` against ballast store)`,
    );
  }
  const body = buf.subarray(0, buf.length - 32);
  if (
    !createHash('sha256')
      .update(body)
      .digest()
      .equals(buf.subarray(buf.length - 32))
  ) {
    throw catalogue.error('STORE_ERR_BACKUP_INVALID', `${path} fails its sha256 check: the file is truncated or damaged`);
  }
  const len = body.readUInt32LE(magic.length);
  const payload = body.subarray(magic.length + 4, magic.length + 4 + len);
  if (v1) return deserialize(payload) as { revision: number; state: StateMachineState };
  const state = decodeState(payload);
  return { revision: state.mvcc.rev, state };
}

export interface RestoreOptions {
  backup: string;
  dataDir: string;
  name: string;
  initialCluster: Map<string, string[]>;
  advertisePeerUrls: string[];
  token: string;
  /** This build's version (recorded with the data directory's format). */
  version: string;
}

/** Build a member data directory from a backup. Refuses to touch a non-empty directory. */
export function restoreMember(o: RestoreOptions): { memberId: string; revision: number } {
  if (existsSync(o.dataDir) && readdirSync(o.dataDir).length > 0) {
    throw catalogue.error('STORE_ERR_DATA_DIR', `--data-dir ${o.dataDir} is not empty; restore into a new directory`);
  }
  let buf: Buffer;
  try {
    buf = readFileSync(o.backup);
  } catch (cause) {
    throw new BallastError('STORE_ERR_BACKUP_INVALID', `cannot read snapshot ${o.backup}: ${(cause as Error).message}`, { cause });
  }
  const { state } = decodeBackup(buf, o.backup);
  return restoreState(o, state);
}

/**
 * Build a member data directory from a store's state (a decoded backup, or one a point-in-time
 * restore replayed the archive onto): the keys, revisions, leases and users are kept; the
 * membership comes from the options. Refuses a non-empty directory.
 */
export function restoreState(o: Omit<RestoreOptions, 'backup'>, state: StateMachineState): { memberId: string; revision: number } {
  if (existsSync(o.dataDir) && readdirSync(o.dataDir).length > 0) {
    throw catalogue.error('STORE_ERR_DATA_DIR', `--data-dir ${o.dataDir} is not empty; restore into a new directory`);
  }
  const revision = state.mvcc.rev;
  const voters = [...o.initialCluster].map(([name, urls]) => ({ name, urls, id: memberId(urls, o.token) }));
  const self = memberId(o.advertisePeerUrls, o.token);
  if (!voters.some((v) => v.id === self))
    throw catalogue.error(
      'STORE_ERR_DATA_DIR',
      `--initial-advertise-peer-urls ${o.advertisePeerUrls.join(',')} is not in --initial-cluster`,
    );
  const byId = new Map(voters.map((v) => [v.id, v]));
  const { entries, hardState } = bootstrapEntries(
    { voters: voters.map((v) => v.id), learners: [] },
    (id) =>
      ({
        rid: '',
        member: { id, name: byId.get(id)?.name ?? '', peerURLs: byId.get(id)?.urls ?? [], clientURLs: [], isLearner: false },
      }) satisfies ConfContext,
  );
  // The restored state, with the new membership and no alarms, as a Raft snapshot just after the
  // bootstrap entries: every member restored with the same flags writes the same snapshot.
  const restored: StateMachineState = {
    ...state,
    members: voters.map((v) => ({ id: v.id, name: v.name, peerURLs: v.urls, clientURLs: [], isLearner: false })),
    alarms: [],
  };
  const index = entries.length;
  const memberDir = join(o.dataDir, 'member');
  mkdirSync(memberDir, { recursive: true });
  // In format 2: a restored directory is read by this build and newer ones (recorded as such).
  new Snapshotter(join(memberDir, 'snap')).save({
    meta: { index, term: 1, conf: { voters: voters.map((v) => v.id).sort(), learners: [] } },
    data: encodeState(restored, 2),
  });
  recordFormat(o.dataDir, 2, o.version);
  const wal = Wal.create(join(memberDir, 'wal'), { memberId: self, clusterId: clusterId(o.token) });
  wal.save(hardState, entries);
  wal.saveSnapshot(index, 1);
  wal.close();
  return { memberId: self, revision };
}
