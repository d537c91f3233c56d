/**
 * bench/store-format: the cost of the on-disk formats. Format 1 (v8 structured clone, 0.1.0)
 * against format 2 (protobuf, store/format/internal.proto), in one run, on the same data:
 *   state     a snapshot's data: encode and decode of a key space of N keys (--keys, 100,000
 *             by default, 100-byte values, two records each), MiB/s and size
 *   txn       a log entry holding a kube-apiserver style Txn (compare mod revision, put): per op
 *
 *   node bench/store-format.ts [--keys=100000]
 */
import { performance } from 'node:perf_hooks';
import { decodeEnvelope, encodeEnvelope } from '../store/format/codec.ts';
import type { Format } from '../store/format/formats.ts';
import { decodeState, encodeState } from '../store/format/state-codec.ts';
import type { Envelope, StateMachineState } from '../store/state-machine.ts';
import { machine, table, writeResult } from './lib.ts';

const arg = (name: string, def: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? def;
const keys = Number(arg('keys', '100000'));

const state: StateMachineState = {
  mvcc: {
    rev: keys * 2 + 1,
    compactRev: 0,
    keys: Array.from(
      { length: keys },
      (_, i) =>
        [
          `/registry/pods/ns-${i % 50}/pod-${i}`,
          [
            { mod: 2 * i + 1, sub: 0, create: 2 * i + 1, version: 1, value: 'x'.repeat(100), lease: '0', tomb: false },
            { mod: 2 * i + 2, sub: 0, create: 2 * i + 1, version: 2, value: 'y'.repeat(100), lease: '0', tomb: false },
          ],
        ] as [string, Array<{ mod: number; sub: number; create: number; version: number; value: string; lease: string; tomb: boolean }>],
    ),
  },
  members: [
    { id: 'a1b2c3d4e5f60718', name: 'm1', peerURLs: ['http://10.0.0.1:2380'], clientURLs: ['http://10.0.0.1:2379'], isLearner: false },
  ],
  alarms: [],
  leases: [],
};
const txn: Envelope = {
  rid: 'n1.42',
  r: {
    op: 'txn',
    req: {
      compare: [{ result: 0, target: 2, key: '/registry/pods/default/web-1', rangeEnd: '', operand: 123456 }],
      success: [
        {
          put: {
            key: '/registry/pods/default/web-1',
            value: 'k8s\u0000'.repeat(400),
            lease: '0',
            prevKv: false,
            ignoreValue: false,
            ignoreLease: false,
          },
        },
      ],
      failure: [
        {
          range: {
            key: '/registry/pods/default/web-1',
            rangeEnd: '',
            limit: 0,
            revision: 0,
            sortOrder: 0,
            sortTarget: 0,
            keysOnly: false,
            countOnly: false,
            minModRevision: 0,
            maxModRevision: 0,
            minCreateRevision: 0,
            maxCreateRevision: 0,
          },
        },
      ],
    },
  },
};

const time = (f: () => void, reps: number): number => {
  f();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) f();
  return (performance.now() - t0) / reps;
};

const rows: Array<Record<string, string | number>> = [];
const results: Record<string, Record<string, number>> = {};
for (const format of [1, 2] as Format[]) {
  const enc = encodeState(state, format);
  const encMs = time(() => encodeState(state, format), 3);
  const decMs = time(() => decodeState(enc), 3);
  const mib = enc.byteLength / 1024 / 1024;
  const t = encodeEnvelope(txn, format);
  const txnEnc = time(() => encodeEnvelope(txn, format), 20_000) * 1000;
  const txnDec = time(() => decodeEnvelope(t), 20_000) * 1000;
  results[`format${format}`] = {
    stateBytes: enc.byteLength,
    stateEncodeMs: encMs,
    stateDecodeMs: decMs,
    txnBytes: t.byteLength,
    txnEncodeUs: txnEnc,
    txnDecodeUs: txnDec,
  };
  rows.push({
    format: format === 1 ? '1 (v8)' : '2 (protobuf)',
    'state MiB': mib.toFixed(1),
    'encode ms': encMs.toFixed(0),
    'encode MiB/s': (mib / (encMs / 1000)).toFixed(0),
    'decode ms': decMs.toFixed(0),
    'decode MiB/s': (mib / (decMs / 1000)).toFixed(0),
    'txn bytes': t.byteLength,
    'txn encode µs': txnEnc.toFixed(2),
    'txn decode µs': txnDec.toFixed(2),
  });
}
console.log(`${keys} keys, two records each, 100-byte values\n${table(rows, 'formats')}`);
console.log(`wrote ${writeResult('store-format', { machine: machine(), keys, results })}`);
