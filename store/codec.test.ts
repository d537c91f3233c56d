import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeEnvelope, decodeMessages, encodeEnvelope, encodeMessages } from './codec.ts';
import { EntryType, type Message } from './raft/types.ts';

describe('codec', () => {
  it('round-trips every message shape, entries and snapshots included', () => {
    const msgs: Message[] = [
      { type: 'app', from: '0123456789abcdef', to: 'fedcba9876543210', term: 7, logTerm: 6, index: 41, commit: 40, entries: [
        { term: 7, index: 42, type: EntryType.normal, data: new Uint8Array([1, 2, 3]) },
        { term: 7, index: 43, type: EntryType.confChange, data: new Uint8Array(0) },
      ] },
      { type: 'appResp', from: 'b', to: 'a', term: 7, index: 41, reject: true, logTerm: 5, commit: 30 },
      { type: 'heartbeat', from: 'a', to: 'b', term: 7, commit: 40, context: 'r\u00ff1' },
      { type: 'snap', from: 'a', to: 'b', term: 7, snapshot: { meta: { index: 100, term: 6, conf: { voters: ['a', 'b'], learners: ['c'] } }, data: new Uint8Array(5000).fill(9) } },
      { type: 'timeoutNow', from: 'a', to: 'b', term: 8 },
    ];
    const back = decodeMessages(encodeMessages(msgs));
    assert.deepEqual(back.map((m) => ({ ...m, entries: m.entries?.map((e) => ({ ...e, data: [...e.data] })), snapshot: m.snapshot && { ...m.snapshot, data: m.snapshot.data.length } })),
      msgs.map((m) => ({ ...m, entries: m.entries?.map((e) => ({ ...e, data: [...e.data] })), snapshot: m.snapshot && { ...m.snapshot, data: m.snapshot.data.length } })));
  });

  it('round-trips put envelopes with binary keys and values, and other requests', () => {
    const put = { rid: 'abc.1', r: { op: 'put' as const, req: { key: 'k\u0000\u00ff', value: 'v'.repeat(1000), lease: '123456789012345678', prevKv: true, ignoreValue: false, ignoreLease: true } } };
    assert.deepEqual(decodeEnvelope(encodeEnvelope(put)), put);
    const del = { rid: 'abc.2', r: { op: 'deleteRange' as const, req: { key: 'a', rangeEnd: 'b', prevKv: false } } };
    assert.deepEqual(decodeEnvelope(encodeEnvelope(del)), del);
  });
});
