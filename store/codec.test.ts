import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeMessages, encodeMessages } from './codec.ts';
import { EntryType, type Message } from './raft/types.ts';

describe('codec', () => {
  for (const format of [1, 2] as const)
    it(`round-trips every message shape, entries and snapshots included (snapshot metadata in format ${format})`, () => {
      const msgs: Message[] = [
        {
          type: 'app',
          from: '0123456789abcdef',
          to: 'fedcba9876543210',
          term: 7,
          logTerm: 6,
          index: 41,
          commit: 40,
          entries: [
            { term: 7, index: 42, type: EntryType.normal, data: new Uint8Array([1, 2, 3]) },
            { term: 7, index: 43, type: EntryType.confChange, data: new Uint8Array(0) },
          ],
        },
        { type: 'appResp', from: 'b', to: 'a', term: 7, index: 41, reject: true, logTerm: 5, commit: 30 },
        { type: 'heartbeat', from: 'a', to: 'b', term: 7, commit: 40, context: 'r\u00ff1' },
        {
          type: 'snap',
          from: 'a',
          to: 'b',
          term: 7,
          snapshot: { meta: { index: 100, term: 6, conf: { voters: ['a', 'b'], learners: ['c'] } }, data: new Uint8Array(5000).fill(9) },
        },
        { type: 'timeoutNow', from: 'a', to: 'b', term: 8 },
      ];
      const back = decodeMessages(encodeMessages(msgs, format));
      assert.deepEqual(
        back.map((m) => ({
          ...m,
          entries: m.entries?.map((e) => ({ ...e, data: [...e.data] })),
          snapshot: m.snapshot && { ...m.snapshot, data: m.snapshot.data.length },
        })),
        msgs.map((m) => ({
          ...m,
          entries: m.entries?.map((e) => ({ ...e, data: [...e.data] })),
          snapshot: m.snapshot && { ...m.snapshot, data: m.snapshot.data.length },
        })),
      );
    });
});
