import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type * as grpc from '@grpc/grpc-js';
import type { Event } from '../mvcc/types.ts';
import { kvOut } from './convert.ts';
import { loadProtos } from './server.ts';
import { WatchEncoder, watchService } from './watch.ts';

/* eslint-disable @typescript-eslint/no-explicit-any -- wire objects */
const def = (loadProtos()['etcdserverpb'] as Record<string, { service: grpc.ServiceDefinition }>)['Watch']!.service;
const method = def['Watch'] as grpc.MethodDefinition<Record<string, any>, Record<string, any>>;

const kv = (key: string, rev: number, value: string) => ({ key, createRevision: 2, modRevision: rev, version: 3, value, lease: '0' });
const events: Event[] = [
  { type: 0, kv: kv('a', 9, 'x'.repeat(300)) },
  { type: 1, kv: kv('b/é', 9, ''), prevKv: kv('b/é', 7, 'old') },
];
const header = { cluster_id: '15157999810668162203', member_id: '16294728430103968036', revision: 9, raft_term: 4 };

describe('WatchEncoder', () => {
  it('splices a WatchResponse that decodes exactly as the object protobufjs would encode', () => {
    const enc = new WatchEncoder(method.responseSerialize);
    for (const [watchId, fragment] of [
      [0, undefined],
      [7, true],
      [300, false],
      [2 ** 40, undefined],
    ] as const) {
      const spliced = method.responseDeserialize(enc.response(header, watchId, events, fragment));
      const whole = method.responseDeserialize(
        method.responseSerialize({
          header,
          watch_id: String(watchId),
          fragment: fragment ?? false,
          events: events.map((e) => ({ type: e.type, kv: kvOut(e.kv), ...(e.prevKv ? { prev_kv: kvOut(e.prevKv) } : {}) })),
        }),
      );
      assert.deepEqual(spliced, whole, `watch id ${watchId}`);
    }
  });

  it('the service passes bytes through and still encodes objects (created, canceled, progress)', () => {
    const svc = watchService(def)['Watch'] as grpc.MethodDefinition<any, any>;
    const bytes = Buffer.from([1, 2, 3]);
    assert.equal(svc.responseSerialize(bytes), bytes);
    assert.deepEqual(svc.responseSerialize({ watch_id: '5', created: true }), method.responseSerialize({ watch_id: '5', created: true }));
  });
});
