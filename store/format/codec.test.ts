// The on-disk and wire formats (store/format/codec.ts, store/format/state-codec.ts): every
// request kind and the state round-trip in both formats,
// and format 2's bytes are pinned by golden files (test/fixtures/store-format2): a change to the
// encoding that would make a data directory unreadable fails here first. To change the format on
// purpose, add a format 3 (never edit format 2) and write its goldens with
// `BALLAST_WRITE_GOLDEN=1 node --test store/format/codec.test.ts`.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { Envelope, StateMachineState } from '../state-machine.ts';
import { decodeEnvelope, encodeEnvelope } from './codec.ts';
import {
  decodeSnapshotFile,
  decodeSnapshotMeta,
  decodeState,
  decodeStateWithProtobufjs,
  encodeSnapshotFile,
  encodeSnapshotMeta,
  encodeState,
  encodeStateAsync,
  snapshotFileParts,
  stateFormat,
} from './state-codec.ts';

const range = {
  key: 'a',
  rangeEnd: 'b\u00ff',
  limit: 10,
  revision: 4,
  sortOrder: 1,
  sortTarget: 3,
  keysOnly: true,
  countOnly: false,
  minModRevision: 1,
  maxModRevision: 9,
  minCreateRevision: 2,
  maxCreateRevision: 8,
};
const put = {
  key: 'k\u0000\u00ff',
  value: 'v\u0001'.repeat(3),
  lease: '7587871046296345857',
  prevKv: true,
  ignoreValue: false,
  ignoreLease: true,
};

/** One of every request a log entry can hold, with binary keys and the edge values. */
export const samples: Record<string, Envelope> = {
  put: { rid: 'n1.1', r: { op: 'put', req: put } },
  deleteRange: { rid: 'n1.2', r: { op: 'deleteRange', req: { key: '/registry/pods/', rangeEnd: '/registry/pods0', prevKv: true } } },
  txn: {
    rid: 'n1.3',
    r: {
      op: 'txn',
      req: {
        compare: [
          { result: 0, target: 2, key: '/registry/x', rangeEnd: '', operand: 42 },
          { result: 3, target: 3, key: 'v', rangeEnd: '', operand: 'bytes\u00ff' },
          { result: 1, target: 4, key: 'l', rangeEnd: '', operand: '123' },
        ],
        success: [
          { put },
          { range },
          { deleteRange: { key: 'd', rangeEnd: '', prevKv: false } },
          { txn: { compare: [], success: [{ put: { ...put, key: 'nested' } }], failure: [] } },
        ],
        failure: [{ range: { ...range, key: 'other' } }],
      },
    },
  },
  compact: { rid: '', r: { op: 'compact', revision: 12345678 } },
  publishLegacy: { rid: 'n2.1', r: { op: 'publish', id: 'a1b2c3d4e5f60718', name: 'm1', clientURLs: ['http://10.0.0.1:2379'] } },
  publish: {
    rid: 'n2.2',
    r: {
      op: 'publish',
      id: 'a1b2c3d4e5f60718',
      name: 'm1',
      clientURLs: ['https://a:2379', 'https://b:2379'],
      formats: [1, 2],
      version: '0.2.0',
    },
  },
  memberUpdate: { rid: 'n2.3', r: { op: 'memberUpdate', id: 'a1b2c3d4e5f60718', peerURLs: ['http://10.0.0.2:2380'] } },
  alarm: { rid: '', r: { op: 'alarm', action: 'activate', memberId: 'a1b2c3d4e5f60718', alarm: 'NOSPACE' } },
  alarmOff: { rid: '', r: { op: 'alarm', action: 'deactivate', memberId: 'a1b2c3d4e5f60718', alarm: 'CORRUPT' } },
  leaseGrant: { rid: 'n3.1', r: { op: 'leaseGrant', id: '7587871046296345857', ttl: 60 } },
  leaseRevoke: { rid: 'n3.2', r: { op: 'leaseRevoke', id: '7587871046296345857' } },
  leaseExpire: { rid: '', r: { op: 'leaseRevoke', id: '7587871046296345857', expiredInTerm: 9 } },
  // While auth is on, client requests carry who made them and at which auth revision.
  putAuth: { rid: 'n4.1', r: { op: 'put', req: put }, a: { user: 'ünïcode-user', rev: 2 ** 40 + 3 } },
  txnAuth: { rid: 'n4.2', r: { op: 'deleteRange', req: { key: 'a', rangeEnd: '\0', prevKv: false } }, a: { user: 'alice', rev: 7 } },
  authEnable: { rid: 'n5.1', r: { op: 'authEnable' }, a: { user: 'root', rev: 3 } },
  authDisable: { rid: 'n5.2', r: { op: 'authDisable' }, a: { user: 'root', rev: 3 } },
  authenticate: { rid: 'n5.3', r: { op: 'authenticate', name: 'alice', token: 'abcdefghABCDEFGH' } },
  userAdd: {
    rid: 'n5.4',
    r: { op: 'userAdd', name: 'alice', password: '$2b$10$UZX6b3Pkiuq1akYGh1bW.eTpkfqH0tDNKxMMm6JHnfh4SNKkeSLDO', noPassword: false },
  },
  userAddNoPassword: { rid: 'n5.5', r: { op: 'userAdd', name: 'cn-only', password: '', noPassword: true } },
  userDelete: { rid: 'n5.6', r: { op: 'userDelete', name: 'alice' } },
  userChangePassword: {
    rid: 'n5.7',
    r: { op: 'userChangePassword', name: 'alice', password: '$2b$10$abcdefghijklmnopqrstuu5sIhZfXJ4a1v7H2b3c4d5e6f7g8h9i0j1' },
  },
  userGrantRole: { rid: 'n5.8', r: { op: 'userGrantRole', user: 'alice', role: 'readers' } },
  userRevokeRole: { rid: 'n5.9', r: { op: 'userRevokeRole', name: 'alice', role: 'readers' } },
  roleAdd: { rid: 'n5.10', r: { op: 'roleAdd', name: 'readers' } },
  roleDelete: { rid: 'n5.11', r: { op: 'roleDelete', role: 'readers' } },
  roleGrantPermission: {
    rid: 'n5.12',
    r: { op: 'roleGrantPermission', name: 'readers', perm: { permType: 2, key: '/app/\u00ff', rangeEnd: '\0' } },
  },
  roleRevokePermission: { rid: 'n5.13', r: { op: 'roleRevokePermission', role: 'readers', key: '/app/', rangeEnd: '/app0' } },
};

export const sampleState: StateMachineState = {
  mvcc: {
    rev: 57,
    compactRev: 33,
    keys: [
      [
        'a',
        [
          { mod: 2, sub: 0, create: 2, version: 1, value: 'x', lease: '0', tomb: false },
          { mod: 40, sub: 1, create: 2, version: 2, value: 'y\u00ff', lease: '7587871046296345857', tomb: false },
        ],
      ],
      [
        'gone\u0000',
        [
          { mod: 5, sub: 0, create: 5, version: 1, value: 'v', lease: '0', tomb: false },
          { mod: 6, sub: 0, create: 0, version: 0, value: '', lease: '0', tomb: true },
        ],
      ],
    ],
  },
  members: [
    {
      id: 'a1b2c3d4e5f60718',
      name: 'm1',
      peerURLs: ['http://10.0.0.1:2380'],
      clientURLs: ['http://10.0.0.1:2379'],
      isLearner: false,
      formats: [1, 2],
      version: '0.2.0',
    },
    { id: '0f1e2d3c4b5a6978', name: '', peerURLs: ['http://10.0.0.2:2380'], clientURLs: [], isLearner: true },
  ],
  alarms: [{ memberId: 'a1b2c3d4e5f60718', alarm: 'NOSPACE' }],
  leases: [{ id: '7587871046296345857', ttl: 60 }],
};

/** A state with auth on: users (one without a password), roles and their permissions. */
export const sampleStateAuth: StateMachineState = {
  ...sampleState,
  auth: {
    enabled: true,
    revision: 12,
    users: [
      { name: 'root', password: '$2b$10$UZX6b3Pkiuq1akYGh1bW.eTpkfqH0tDNKxMMm6JHnfh4SNKkeSLDO', roles: ['root'], noPassword: false },
      { name: 'svc', password: '', roles: ['app', 'readers'], noPassword: true },
    ],
    roles: [
      {
        name: 'app',
        perms: [
          { permType: 2, key: '/app/', rangeEnd: '/app0' },
          { permType: 0, key: 'one', rangeEnd: '' },
        ],
      },
      { name: 'readers', perms: [{ permType: 0, key: '\0', rangeEnd: '\0' }] },
    ],
  },
};

const meta = { index: 1000, term: 7, conf: { voters: ['a1b2c3d4e5f60718'], learners: ['0f1e2d3c4b5a6978'] } };
const golden = join(import.meta.dirname, '..', '..', 'test', 'fixtures', 'store-format2');
const write = process.env['BALLAST_WRITE_GOLDEN'] === '1';

function pinned(name: string, bytes: Uint8Array): Buffer {
  const p = join(golden, `${name}.bin`);
  if (write) {
    mkdirSync(golden, { recursive: true });
    writeFileSync(p, bytes);
  }
  assert.ok(existsSync(p), `${p}: the golden file exists`);
  return readFileSync(p);
}

describe('format 2 (protobuf): golden files', () => {
  for (const [name, env] of Object.entries(samples)) {
    it(`${name}: encodes to the pinned bytes, and the pinned bytes decode to it`, () => {
      const g = pinned(`request-${name}`, encodeEnvelope(env, 2));
      assert.deepEqual(Buffer.from(encodeEnvelope(env, 2)), g);
      assert.deepEqual(decodeEnvelope(g), env);
    });
  }
  it("the state machine's state (a snapshot's data, a backup's body)", () => {
    const g = pinned('state', encodeState(sampleState, 2));
    assert.deepEqual(Buffer.from(encodeState(sampleState, 2)), g);
    assert.deepEqual(decodeState(g), sampleState);
    assert.equal(stateFormat(g), 2);
  });
  it('the state with auth on (users, roles, permissions)', () => {
    const g = pinned('state-auth', encodeState(sampleStateAuth, 2));
    assert.deepEqual(Buffer.from(encodeState(sampleStateAuth, 2)), g);
    assert.deepEqual(decodeState(g), sampleStateAuth);
  });
  it("the hand-written state encoding is plain protobuf: protobufjs reads the schema's fields from it", () => {
    const p = decodeStateWithProtobufjs(encodeState(sampleState, 2));
    assert.equal(p['mvcc']['rev'], 57);
    assert.equal(p['mvcc']['keys'].length, 2);
    assert.equal(Buffer.from(p['mvcc']['keys'][1]['key']).toString('latin1'), 'gone\u0000');
    assert.equal(p['mvcc']['keys'][0]['records'][1]['lease'], '7587871046296345857');
    assert.deepEqual(p['members'][0]['formats'], [1, 2]);
    assert.equal(p['members'][1]['isLearner'], true);
    assert.equal(p['leases'][0]['ttl'], 60);
  });
  it("snapshot metadata (sent to peers) and a snapshot file's payload", () => {
    const m = pinned('snapshot-meta', encodeSnapshotMeta(meta, 2));
    assert.deepEqual(decodeSnapshotMeta(m), meta);
    const f = pinned('snapshot-file', encodeSnapshotFile(meta, encodeState(sampleState, 2)));
    const back = decodeSnapshotFile(f);
    assert.deepEqual(back.meta, meta);
    assert.deepEqual(decodeState(back.data), sampleState);
    assert.deepEqual(
      Buffer.concat(snapshotFileParts(meta, encodeState(sampleState, 2))),
      f,
      'the parts a background save writes are the same bytes',
    );
  });
  it('encoded a chunk at a time (a snapshot made in the background): the same bytes', async () => {
    let pauses = 0;
    const pause = async () => {
      pauses++;
    };
    for (const st of [sampleState, sampleStateAuth]) {
      assert.deepEqual(await encodeStateAsync(st, pause, 1), Buffer.from(encodeState(st, 2)));
      assert.deepEqual(await encodeStateAsync(st, pause), Buffer.from(encodeState(st, 2)), 'in one chunk');
    }
    assert.ok(pauses >= sampleState.mvcc.keys.length, 'it paused between chunks');
  });
});

describe('format 1 (v8, what 0.1.0 reads): still written while a 0.1.0 member is in the cluster, and read', () => {
  for (const [name, env] of Object.entries(samples)) {
    it(`${name}`, () => assert.deepEqual(decodeEnvelope(encodeEnvelope(env, 1)), env));
  }
  it('state and snapshot metadata', () => {
    const st = encodeState(sampleState, 1);
    assert.equal(stateFormat(st), 1);
    assert.deepEqual(decodeState(st), sampleState);
    assert.deepEqual(decodeSnapshotMeta(encodeSnapshotMeta(meta, 1)), meta);
  });
});

it('a log entry of a kind from a newer build is refused by name, not misread', () => {
  assert.throws(() => decodeEnvelope(new Uint8Array([9, 1, 2, 3])), /unknown kind \(9\): written by a newer ballast/);
});
