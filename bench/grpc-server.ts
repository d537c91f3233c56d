/**
 * What serving one etcd Put costs in the gRPC layer alone, four ways: the store's grpc-js server
 * as it was configured until 2026-12-03 (`grpc-js`), with channelz off, with no protobuf codec at
 * all (bytes in, bytes out: grpc-js and HTTP/2 alone), and the store's own server on `node:http2`
 * (`ballast`, lib/grpc-server.ts) with the same proto-loader codec, its handler reading the call's
 * metadata as the store's do with auth on (`ballast-md-unread`: not reading it, as with auth off). Each answers
 * `etcdserverpb.KV/Put` with the same fixed PutResponse: no Raft, no disk, so the difference is
 * the part of a put's CPU that docs/store.md names as the largest. etcd's Go client
 * (`bench/loadgen`) drives each server; the server process's CPU comes from /proc.
 *
 *   node bench/grpc-server.ts [--rounds=3] [--clients=1,16,256] [--seconds=5] [--kinds=grpc-js,ballast]
 *   node bench/grpc-server.ts serve grpc-js|grpc-js-no-channelz|grpc-js-bytes|ballast PORT
 */
import * as grpc from '@grpc/grpc-js';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer as netServer } from 'node:net';
import { realClock } from '../lib/clock.ts';
import { GrpcServer } from '../lib/grpc-server.ts';
import { loadProtos } from '../store/api/protos.ts';
import { machine, root, table, writeResult } from './lib.ts';

const kinds = ['grpc-js', 'grpc-js-no-channelz', 'grpc-js-bytes', 'ballast', 'ballast-md-unread'] as const;
type Kind = (typeof kinds)[number];
const response = { header: { cluster_id: '1', member_id: '2', revision: '3', raft_term: '4' } };

function putMethod(): grpc.MethodDefinition<unknown, unknown> {
  const pb = loadProtos()['etcdserverpb'] as Record<string, { service: grpc.ServiceDefinition }>;
  const put = pb['KV']?.service['Put'];
  if (!put) throw new Error('rpc.proto lacks KV/Put');
  return put;
}

function serve(kind: Kind, port: number): void {
  const put = putMethod();
  const listening = (): void => void process.stdout.write(`listening ${port}\n`);
  if (kind === 'ballast' || kind === 'ballast-md-unread') {
    // The server the store ships (lib/grpc-server.ts), with the same handler as grpc-js gets.
    const server = new GrpcServer({ clock: realClock, maxReceiveMessageLength: 2 * 1024 * 1024 });
    server.addService({ Put: put } as grpc.ServiceDefinition, {
      Put: (call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        // `ballast`: the handler looks up the auth token, as the store's do with auth on;
        // `ballast-md-unread`: it does not, as with auth off (the default) and no tracing.
        if (kind === 'ballast') call.metadata.get('token');
        cb(null, response);
      },
    });
    void server.listen('127.0.0.1', port).then(listening);
    return;
  }
  const server = new grpc.Server(kind === 'grpc-js' ? {} : { 'grpc.enable_channelz': 0 });
  // grpc-js-bytes: no protobufjs at all (the request is not decoded, the response is bytes
  // encoded once), so what is left is grpc-js and HTTP/2 alone.
  const encoded = put.responseSerialize(response);
  const method: grpc.MethodDefinition<unknown, unknown> =
    kind === 'grpc-js-bytes' ? { ...put, requestDeserialize: (b: Buffer) => b, responseSerialize: (b: unknown) => b as Buffer } : put;
  server.addService({ Put: method } as grpc.ServiceDefinition, {
    Put: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, kind === 'grpc-js-bytes' ? encoded : response),
  });
  server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err) => {
    if (err) throw err;
    listening();
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = netServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (a && typeof a === 'object' ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(f[11]) + Number(f[12])) / 100;
}

interface Row {
  server: Kind;
  clients: number;
  round: number;
  okPerSec: number;
  errors: number;
  p50ms: number;
  p99ms: number;
  cpuUsPerCall: number;
}

async function measure(kind: Kind, clients: number, seconds: number, round: number): Promise<Row> {
  const port = await freePort();
  const child = spawn(process.execPath, [new URL(import.meta.url).pathname, 'serve', kind, String(port)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${kind} server exited (${code}) before listening`)));
    child.stdout.on('data', (d: Buffer) => d.toString().includes('listening') && resolve());
  });
  const pid = child.pid as number;
  const load = (secs: number) =>
    spawnSync(
      `${root}/.tools/loadgen`,
      ['-endpoints', `127.0.0.1:${port}`, '-op', 'put', '-clients', String(clients), '-duration', `${secs}s`, '-warmup', '0s'],
      {
        encoding: 'utf8',
        timeout: 120_000,
      },
    );
  load(1); // warm up (JIT, connections), outside the CPU window
  const c0 = cpuSeconds(pid);
  const r = load(seconds);
  const c1 = cpuSeconds(pid);
  child.kill('SIGTERM');
  if (r.status !== 0) throw new Error(`loadgen against ${kind}: ${r.stderr}`);
  const j = JSON.parse(r.stdout) as { opsPerSec: number; p50ms: number; p99ms: number; errors: number };
  return {
    server: kind,
    clients,
    round,
    okPerSec: Math.round(j.opsPerSec),
    errors: j.errors,
    p50ms: j.p50ms,
    p99ms: j.p99ms,
    cpuUsPerCall: Math.round(((c1 - c0) * 1e6) / (j.opsPerSec * seconds)),
  };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
};

async function main(): Promise<void> {
  const arg = (k: string, d: string): string => process.argv.find((a) => a.startsWith(`--${k}=`))?.slice(k.length + 3) ?? d;
  const rounds = Number(arg('rounds', '3'));
  const clientCounts = arg('clients', '1,16,256').split(',').map(Number);
  const only = arg('kinds', kinds.join(',')).split(',');
  const seconds = Number(arg('seconds', '5'));
  const rows: Row[] = [];
  for (let round = 1; round <= rounds; round++)
    for (const clients of clientCounts)
      for (const kind of kinds.filter((k) => only.includes(k))) {
        const row = await measure(kind, clients, seconds, round);
        rows.push(row);
        process.stderr.write(`${JSON.stringify(row)}\n`);
      }
  const summary = clientCounts.flatMap((clients) => {
    const base = rows.filter((r) => r.server === 'grpc-js' && r.clients === clients);
    return kinds
      .filter((k) => only.includes(k))
      .map((kind) => {
        const rs = rows.filter((r) => r.server === kind && r.clients === clients);
        const cpu = median(rs.map((r) => r.cpuUsPerCall));
        return {
          server: kind,
          clients,
          'ok/s median': median(rs.map((r) => r.okPerSec)),
          'p99 ms median': median(rs.map((r) => r.p99ms)),
          'server CPU µs/call median (min–max)': `${cpu} (${Math.min(...rs.map((r) => r.cpuUsPerCall))}–${Math.max(...rs.map((r) => r.cpuUsPerCall))})`,
          'CPU ÷ grpc-js': (cpu / median(base.map((r) => r.cpuUsPerCall))).toFixed(2),
          errors: rs.reduce((a, r) => a + r.errors, 0),
        };
      });
  });
  console.log(table(summary, 'etcd Put answered by the gRPC layer alone (fixed response, no Raft, no disk)'));
  console.log(
    writeResult('grpc-server', { machine: machine(), node: process.version, grpcJs: grpcJsVersion(), rounds, seconds, rows, summary }),
  );
}

function grpcJsVersion(): string {
  return (JSON.parse(readFileSync(`${root}/node_modules/@grpc/grpc-js/package.json`, 'utf8')) as { version: string }).version;
}

if (process.argv[2] === 'serve') serve(process.argv[3] as Kind, Number(process.argv[4]));
else await main();
