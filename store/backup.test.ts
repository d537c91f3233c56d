import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backupStream, decodeBackup, encodeBackup } from './backup.ts';
import type { StateMachineState } from './state-machine.ts';

/** A key space with what moves field sizes: long keys and values (multi-byte lengths), empty values, tombstones, leases, big revisions. */
function bigState(): StateMachineState {
  const keys: StateMachineState['mvcc']['keys'] = [];
  let rev = 1;
  for (let i = 0; i < 400; i++) {
    const recs = Array.from({ length: 1 + (i % 3) }, (_, j) => ({
      mod: (rev += 1 + i * 977),
      sub: j % 2,
      create: 2,
      version: j + 1,
      value: i % 7 === 0 ? '' : String.fromCharCode(i % 256).repeat(i % 50 === 0 ? 70_000 : 1 + ((i * 37) % 300)),
      lease: i % 5 === 0 ? `${(i * 1_000_003).toString(16)}` : '',
      tomb: j === 2,
    }));
    keys.push([`key/${'x'.repeat(i % 150)}/${i}`, recs]);
  }
  return { ...small, mvcc: { rev, compactRev: 17, keys } };
}
const small: StateMachineState = {
  mvcc: {
    rev: 5,
    compactRev: 0,
    keys: [
      ['a', [{ mod: 2, sub: 0, create: 2, version: 1, value: 'one', lease: '', tomb: false }]],
      ['b', [{ mod: 5, sub: 0, create: 3, version: 2, value: '', lease: '7f', tomb: true }]],
    ],
  },
  members: [
    {
      id: '8e9e05c52164694d',
      name: 'm1',
      peerURLs: ['http://127.0.0.1:2380'],
      clientURLs: ['http://127.0.0.1:2379'],
      isLearner: false,
      formats: [1, 2],
      version: '0.2.0',
    },
  ],
  alarms: [{ memberId: '8e9e05c52164694d', alarm: 'NOSPACE' }],
  leases: [{ id: '7f', ttl: 60 }],
};

describe('a backup made as it is streamed', () => {
  it('is byte for byte the backup encodeBackup makes, in any chunk size, with its length known first', () => {
    for (const st of [small, bigState(), { ...small, mvcc: { rev: 1, compactRev: 0, keys: [] }, members: [], alarms: [], leases: [] }]) {
      const whole = encodeBackup(st);
      for (const size of [1, 100, 4096, 1 << 20]) {
        const s = backupStream(st);
        const chunks = [...s.chunks(size)];
        assert.equal(s.length, whole.length);
        assert.deepEqual(Buffer.concat(chunks), whole, `chunks of ${size}`);
        if (size === 4096 && st.mvcc.keys.length > 100)
          assert.ok(
            chunks.length > 10 && Math.max(...chunks.map((c) => c.length)) < 4096 + 3 * 70_100,
            'made in pieces, none much larger than asked (one key at most past it)',
          );
      }
      assert.deepEqual(decodeBackup(Buffer.concat([...backupStream(st).chunks(777)]), 'x').state.mvcc, st.mvcc);
    }
  });
});
