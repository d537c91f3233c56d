// lib/grpc-server.ts (the store's gRPC server) against a suite nobody here wrote: grpc-go's interop
// client (google.golang.org/grpc/interop/client v1.85.0, built by `make conformance`) runs every
// plaintext test case against grpc.testing.TestService implemented on it, with grpc-go's own
// interop server in the same run as the reference. The service follows the interop spec
// (grpc/grpc doc/interop-test-descriptions.md): payloads of zeros of the asked size, the
// echoed status, the echoed initial and trailing metadata.
import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import protobuf from 'protobufjs';
import { realClock } from '../../lib/clock.ts';
import { GrpcServer, type GrpcServerCall } from '../../lib/grpc-server.ts';
import { freePort } from '../support/store-cluster.ts';
import { interopCase, interopCases, interopDir } from '../support/interop-cases.ts';

const interop = interopDir;

// grpc/testing/messages.proto and test.proto, the fields the plaintext cases use (field numbers
// as upstream; google.protobuf.BoolValue has the same wire form as BoolValue here).
const root = protobuf.parse(
  `
syntax = "proto3";
package grpc.testing;
message Empty {}
message BoolValue { bool value = 1; }
message Payload { int32 type = 1; bytes body = 2; }
message EchoStatus { int32 code = 1; string message = 2; }
message SimpleRequest { int32 response_type = 1; int32 response_size = 2; Payload payload = 3; bool fill_username = 4;
  bool fill_oauth_scope = 5; BoolValue response_compressed = 6; EchoStatus response_status = 7; BoolValue expect_compressed = 8; }
message SimpleResponse { Payload payload = 1; string username = 2; string oauth_scope = 3; }
message StreamingInputCallRequest { Payload payload = 1; BoolValue expect_compressed = 2; }
message StreamingInputCallResponse { int32 aggregated_payload_size = 1; }
message ResponseParameters { int32 size = 1; int32 interval_us = 2; BoolValue compressed = 3; }
message StreamingOutputCallRequest { int32 response_type = 1; repeated ResponseParameters response_parameters = 2;
  Payload payload = 3; EchoStatus response_status = 7; }
message StreamingOutputCallResponse { Payload payload = 1; }
`,
  { keepCase: true },
).root;

interface Msg {
  [k: string]: unknown;
}
const type = (name: string): protobuf.Type => root.lookupType(`grpc.testing.${name}`);
const method = (
  name: string,
  req: string,
  res: string,
  requestStream: boolean,
  responseStream: boolean,
): grpc.MethodDefinition<Msg, Msg> => ({
  path: `/grpc.testing.TestService/${name}`,
  requestStream,
  responseStream,
  requestSerialize: (m) => Buffer.from(type(req).encode(type(req).fromObject(m)).finish()),
  requestDeserialize: (b) => type(req).toObject(type(req).decode(b), { defaults: true }) as Msg,
  responseSerialize: (m) => Buffer.from(type(res).encode(type(res).fromObject(m)).finish()),
  responseDeserialize: (b) => type(res).toObject(type(res).decode(b), { defaults: true }) as Msg,
});
const testService: grpc.ServiceDefinition = {
  EmptyCall: method('EmptyCall', 'Empty', 'Empty', false, false),
  UnaryCall: method('UnaryCall', 'SimpleRequest', 'SimpleResponse', false, false),
  StreamingOutputCall: method('StreamingOutputCall', 'StreamingOutputCallRequest', 'StreamingOutputCallResponse', false, true),
  StreamingInputCall: method('StreamingInputCall', 'StreamingInputCallRequest', 'StreamingInputCallResponse', true, false),
  FullDuplexCall: method('FullDuplexCall', 'StreamingOutputCallRequest', 'StreamingOutputCallResponse', true, true),
  HalfDuplexCall: method('HalfDuplexCall', 'StreamingOutputCallRequest', 'StreamingOutputCallResponse', true, true),
  UnimplementedCall: method('UnimplementedCall', 'Empty', 'Empty', false, false),
};

const payload = (size: number): Msg => ({ type: 0, body: Buffer.alloc(size) });
const echoInitial = 'x-grpc-test-echo-initial';
const echoTrailing = 'x-grpc-test-echo-trailing-bin';

/** The initial metadata to echo now, and the trailers to end with. */
function echoMetadata(call: GrpcServerCall): grpc.Metadata | undefined {
  const initial = call.metadata.get(echoInitial);
  if (initial.length > 0) {
    const md = new grpc.Metadata();
    md.set(echoInitial, initial[0] as string);
    call.sendMetadata(md);
  }
  const trailing = call.metadata.get(echoTrailing);
  if (trailing.length === 0) return undefined;
  const md = new grpc.Metadata();
  md.set(echoTrailing, trailing[0] as Buffer);
  return md;
}

function statusError(s: Msg | null | undefined, trailers: grpc.Metadata | undefined): grpc.ServiceError | undefined {
  if (!s || !s['code']) return undefined;
  return Object.assign(new Error(String(s['message'])), {
    code: Number(s['code']),
    details: String(s['message']),
    metadata: trailers ?? new grpc.Metadata(),
  });
}

const impl = {
  EmptyCall: (_call: GrpcServerCall, cb: grpc.sendUnaryData<Msg>) => cb(null, {}),
  UnaryCall: (call: GrpcServerCall, cb: grpc.sendUnaryData<Msg>) => {
    const trailers = echoMetadata(call);
    const req = call.request as Msg;
    const err = statusError(req['response_status'] as Msg | undefined, trailers);
    if (err) return cb(err);
    cb(null, { payload: payload(Number(req['response_size'] ?? 0)) }, trailers);
  },
  StreamingOutputCall: (call: GrpcServerCall) => {
    void respond(call, call.request as Msg).then(() => call.end());
  },
  StreamingInputCall: (call: GrpcServerCall, cb: grpc.sendUnaryData<Msg>) => {
    let total = 0;
    call.on('data', (m: Msg) => (total += ((m['payload'] as Msg | undefined)?.['body'] as Buffer | undefined)?.length ?? 0));
    call.on('end', () => cb(null, { aggregated_payload_size: total }));
  },
  FullDuplexCall: (call: GrpcServerCall) => {
    const trailers = echoMetadata(call);
    let chain = Promise.resolve();
    call.on('data', (m: Msg) => {
      chain = chain.then(async () => {
        const err = statusError(m['response_status'] as Msg | undefined, trailers);
        if (err) return void call.emit('error', err);
        await respond(call, m);
      });
    });
    call.on('end', () => void chain.then(() => (trailers ? call.end(trailers) : call.end())));
  },
};

async function respond(call: GrpcServerCall, req: Msg): Promise<void> {
  for (const p of (req['response_parameters'] as Msg[] | undefined) ?? []) {
    const us = Number(p['interval_us'] ?? 0);
    if (us > 0) await new Promise((r) => realClock.setTimeout(() => r(undefined), us / 1000));
    if (call.cancelled) return;
    call.write({ payload: payload(Number(p['size'] ?? 0)) });
  }
}

const procs: ChildProcess[] = [];
let server: GrpcServer;
let ours = 0;
let reference = 0;

describe("grpc-go's interop client against lib/grpc-server.ts", { timeout: 300_000 }, () => {
  before(async () => {
    assert.ok(existsSync(join(interop, 'client')), 'the interop tools are built (make conformance)');
    server = new GrpcServer({ clock: realClock, maxReceiveMessageLength: 4 * 1024 * 1024 });
    server.addService(testService, impl as unknown as grpc.UntypedServiceImplementation);
    ours = await server.listen('127.0.0.1', 0);
    reference = await freePort();
    const p = spawn(join(interop, 'server'), [`-port=${reference}`], { stdio: 'ignore' });
    procs.push(p);
    for (let i = 0; i < 100; i++) {
      if ((await interopCase(reference, 'empty_unary')) === 'pass') return;
      await new Promise((r) => realClock.setTimeout(() => r(undefined), 100));
    }
    assert.fail("grpc-go's interop server did not come up");
  });

  after(() => {
    server?.forceShutdown();
    for (const p of procs) p.kill('SIGKILL');
  });

  it('passes every plaintext case that grpc-go’s own server passes in the same run', async () => {
    const results: Record<string, { reference: string; ours: string }> = {};
    for (const test of interopCases) results[test] = { reference: await interopCase(reference, test), ours: await interopCase(ours, test) };
    const failed = Object.entries(results).filter(([, r]) => r.reference === 'pass' && r.ours !== 'pass');
    assert.deepEqual(failed, [], JSON.stringify(results, null, 1));
    assert.ok(
      Object.values(results).every((r) => r.reference === 'pass'),
      `the reference passes every case: ${JSON.stringify(results, null, 1)}`,
    );
  });
});
