/**
 * lib/grpc-server.ts against grpc-js's client (another implementation of the protocol), over
 * real HTTP/2 on loopback: each test names the behaviour a client relies on.
 */
import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { realClock } from './clock.ts';
import { GrpcServer, type GrpcServerCall } from './grpc-server.ts';
import { bytesMethod as method, identity } from '../test/support/grpc-bytes.ts';

const service = {
  Unary: method('Unary', false, false),
  Fail: method('Fail', false, false),
  Slow: method('Slow', false, false),
  Many: method('Many', false, true),
  ManyThenFail: method('ManyThenFail', false, true),
  Echo: method('Echo', true, true),
  Sum: method('Sum', true, false),
  Missing: method('Missing', false, false),
} satisfies grpc.ServiceDefinition;

const maxReceive = 64 * 1024;
let server: GrpcServer;
let client: grpc.Client;
let gzipClient: grpc.Client;
let port = 0;
const cancelled: string[] = [];

function unary(
  c: grpc.Client,
  name: string,
  body: Buffer,
  md = new grpc.Metadata(),
  opts: grpc.CallOptions = {},
): Promise<{ value: Buffer; trailers: grpc.Metadata }> {
  return new Promise((resolve, reject) => {
    let value: Buffer | undefined;
    let error: grpc.ServiceError | null = null;
    const call = c.makeUnaryRequest(`/test.Echo/${name}`, identity, identity, body, md, opts, (err, v) => {
      error = err;
      value = v;
    });
    // The callback runs before the status event: answer once both are in.
    call.on('status', (s: grpc.StatusObject) =>
      setImmediate(() => (error ? reject(error) : resolve({ value: value as Buffer, trailers: s.metadata }))),
    );
  });
}

function collect(stream: grpc.ClientReadableStream<Buffer>): Promise<{ messages: Buffer[]; status: grpc.StatusObject }> {
  const messages: Buffer[] = [];
  return new Promise((resolve) => {
    stream.on('data', (m: Buffer) => messages.push(m));
    stream.on('error', () => undefined);
    stream.on('status', (status: grpc.StatusObject) => resolve({ messages, status }));
  });
}

before(async () => {
  server = new GrpcServer({ clock: realClock, maxReceiveMessageLength: maxReceive });
  server.addService(service, {
    Unary: (call: GrpcServerCall, cb: grpc.sendUnaryData<Buffer>) => {
      const who = call.metadata.get('who')[0] ?? 'nobody';
      const trailer = new grpc.Metadata();
      trailer.set('served-by', 'lean');
      cb(null, Buffer.concat([Buffer.from(`${String(who)}:`), call.request as Buffer]), trailer);
    },
    Fail: (_call: GrpcServerCall, cb: grpc.sendUnaryData<Buffer>) => {
      const metadata = new grpc.Metadata();
      metadata.set('reason', 'tested');
      cb({ code: grpc.status.FAILED_PRECONDITION, details: 'etcdserver: précondition 100% failed', metadata } as grpc.ServiceError);
    },
    Slow: (call: GrpcServerCall, cb: grpc.sendUnaryData<Buffer>) => {
      call.on('cancelled', (reason: string) => cancelled.push(`Slow:${reason}`));
      const ms = Number((call.request as Buffer).toString());
      realClock.setTimeout(() => cb(null, Buffer.from('late')), ms);
    },
    Many: (call: GrpcServerCall) => {
      const n = Number((call.request as Buffer).toString());
      let i = 0;
      const more = (): void => {
        while (i < n) {
          if (!call.write(Buffer.from(String(i++)))) return void call.once('drain', more);
        }
        call.end();
      };
      more();
    },
    ManyThenFail: (call: GrpcServerCall) => {
      for (let i = 0; i < 3; i++) call.write(Buffer.from(String(i)));
      call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'etcdserver: no leader' });
    },
    Echo: (call: GrpcServerCall) => {
      call.on('data', (m: Buffer) => call.write(m));
      call.on('end', () => call.end());
      call.on('cancelled', (reason: string) => cancelled.push(`Echo:${reason}`));
    },
    Sum: (call: GrpcServerCall, cb: grpc.sendUnaryData<Buffer>) => {
      let sum = 0;
      call.on('data', (m: Buffer) => (sum += m.length));
      call.on('end', () => cb(null, Buffer.from(String(sum))));
    },
  } as unknown as grpc.UntypedServiceImplementation);
  port = await server.listen('127.0.0.1', 0);
  client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  gzipClient = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.default_compression_algorithm': 2 });
});

after(() => {
  client.close();
  gzipClient.close();
  server.forceShutdown();
});

describe('GrpcServer (grpc-js client)', () => {
  it('answers a unary call with the handler value, the metadata the client sent, and trailers', async () => {
    const md = new grpc.Metadata();
    md.set('who', 'alice');
    const r = await unary(client, 'Unary', Buffer.from('hi'), md);
    assert.equal(r.value.toString(), 'alice:hi');
    assert.deepEqual(r.trailers.get('served-by'), ['lean'], JSON.stringify(r.trailers.getMap()));
  });

  it("ends a failed call with the error's code, details (non-ASCII kept) and metadata", async () => {
    const err = await unary(client, 'Fail', Buffer.alloc(0)).then(
      () => assert.fail('Fail answered'),
      (e: grpc.ServiceError) => e,
    );
    assert.equal(err.code, grpc.status.FAILED_PRECONDITION);
    assert.equal(err.details, 'etcdserver: précondition 100% failed');
    assert.deepEqual(err.metadata.get('reason'), ['tested']);
  });

  it('answers an unknown method UNIMPLEMENTED, naming it', async () => {
    const err = await unary(client, 'Nope', Buffer.alloc(0)).then(
      () => assert.fail('answered'),
      (e: grpc.ServiceError) => e,
    );
    assert.equal(err.code, grpc.status.UNIMPLEMENTED);
    assert.match(err.details, /\/test\.Echo\/Nope/);
    const missing = await unary(client, 'Missing', Buffer.alloc(0)).catch((e: grpc.ServiceError) => e);
    assert.equal((missing as grpc.ServiceError).code, grpc.status.UNIMPLEMENTED, 'a method in the definition with no handler');
  });

  it('streams 20,000 responses in order through backpressure, then OK', async () => {
    const r = await collect(client.makeServerStreamRequest('/test.Echo/Many', identity, identity, Buffer.from('20000')));
    assert.equal(r.status.code, grpc.status.OK);
    assert.equal(r.messages.length, 20_000);
    assert.ok(r.messages.every((m, i) => m.toString() === String(i)));
  });

  it("ends a stream with the status a handler emits as 'error', after the messages it wrote", async () => {
    const r = await collect(client.makeServerStreamRequest('/test.Echo/ManyThenFail', identity, identity, Buffer.alloc(0)));
    assert.deepEqual(
      r.messages.map((m) => m.toString()),
      ['0', '1', '2'],
    );
    assert.equal(r.status.code, grpc.status.UNAVAILABLE);
    assert.equal(r.status.details, 'etcdserver: no leader');
  });

  it('echoes a bidirectional stream and ends it when the client half-closes', async () => {
    const call = client.makeBidiStreamRequest('/test.Echo/Echo', identity, identity);
    const got = collect(call);
    for (let i = 0; i < 100; i++) call.write(Buffer.from(`m${i}`));
    call.end();
    const r = await got;
    assert.equal(r.status.code, grpc.status.OK);
    assert.deepEqual(
      r.messages.map((m) => m.toString()),
      Array.from({ length: 100 }, (_, i) => `m${i}`),
    );
  });

  it("tells the handler 'cancelled' when the client cancels", async () => {
    const call = client.makeBidiStreamRequest('/test.Echo/Echo', identity, identity);
    call.on('error', () => undefined);
    call.write(Buffer.from('x'));
    await new Promise((r) => call.once('data', r));
    call.cancel();
    for (let i = 0; i < 100 && !cancelled.includes('Echo:cancelled'); i++)
      await new Promise((r) => realClock.setTimeout(() => r(undefined), 20));
    assert.ok(cancelled.includes('Echo:cancelled'), `cancel events: ${cancelled.join(', ')}`);
  });

  it("ends a call past the client's deadline DEADLINE_EXCEEDED and tells the handler it is over", async () => {
    const err = await unary(client, 'Slow', Buffer.from('2000'), new grpc.Metadata(), { deadline: realClock.wallNow() + 200 }).catch(
      (e: grpc.ServiceError) => e,
    );
    assert.equal((err as grpc.ServiceError).code, grpc.status.DEADLINE_EXCEEDED);
    for (let i = 0; i < 100 && !cancelled.includes('Slow:cancelled'); i++)
      await new Promise((r) => realClock.setTimeout(() => r(undefined), 20));
    assert.ok(cancelled.includes('Slow:cancelled'), `cancel events: ${cancelled.join(', ')}`);
  });

  it('refuses a request over the receive limit RESOURCE_EXHAUSTED and takes one just under it across DATA frames', async () => {
    const err = await unary(client, 'Unary', Buffer.alloc(maxReceive + 1, 1)).catch((e: grpc.ServiceError) => e);
    assert.equal((err as grpc.ServiceError).code, grpc.status.RESOURCE_EXHAUSTED);
    const ok = await unary(client, 'Unary', Buffer.alloc(maxReceive - 10, 7));
    assert.equal(ok.value.length, 'nobody:'.length + maxReceive - 10);
  });

  it('takes gzip-compressed requests, and a client stream of them', async () => {
    const r = await unary(gzipClient, 'Unary', Buffer.alloc(5000, 'z'));
    assert.equal(r.value.toString(), `nobody:${'z'.repeat(5000)}`);
    const sum = await new Promise<Buffer>((resolve, reject) => {
      const call = gzipClient.makeClientStreamRequest('/test.Echo/Sum', identity, identity, (err, v) =>
        err ? reject(err) : resolve(v as Buffer),
      );
      for (let i = 0; i < 50; i++) call.write(Buffer.alloc(1000, 'a'));
      call.end();
    });
    assert.equal(sum.toString(), '50000');
  });

  it('lets a call in progress finish on a graceful shutdown', async () => {
    const other = new GrpcServer({ clock: realClock, maxReceiveMessageLength: maxReceive });
    other.addService({ Slow: service.Slow }, {
      Slow: (call: GrpcServerCall, cb: grpc.sendUnaryData<Buffer>) =>
        realClock.setTimeout(() => cb(null, Buffer.from(`done after ${(call.request as Buffer).toString()}`)), 300),
    } as unknown as grpc.UntypedServiceImplementation);
    const p = await other.listen('127.0.0.1', 0);
    const c = new grpc.Client(`127.0.0.1:${p}`, grpc.credentials.createInsecure());
    const answer = unary(c, 'Slow', Buffer.from('300'));
    await new Promise((r) => realClock.setTimeout(() => r(undefined), 100));
    const closed = new Promise<void>((r) => other.tryShutdown(r));
    assert.equal((await answer).value.toString(), 'done after 300');
    c.close();
    await closed;
  });
});
