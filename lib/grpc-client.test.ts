/**
 * lib/grpc-client.ts against grpc-js's server (another implementation of the protocol), over real
 * HTTP/2 on loopback, and against peers that misbehave: each test names what a caller relies on.
 */
import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { realClock } from './clock.ts';
import { GrpcChannel, type GrpcClientCall, GrpcStatusError, Status } from './grpc-client.ts';
import { makeCerts } from '../test/support/certs.ts';
import { bytesMethod as method } from '../test/support/grpc-bytes.ts';

const service = {
  Unary: method('Unary', false, false),
  Fail: method('Fail', false, false),
  Slow: method('Slow', false, false),
  Big: method('Big', false, false),
  Chat: method('Chat', true, true),
} satisfies grpc.ServiceDefinition;

const seenMetadata: Array<Record<string, unknown>> = [];
const handlers: grpc.UntypedServiceImplementation = {
  Unary: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
    seenMetadata.push(call.metadata.getMap());
    cb(null, Buffer.concat([Buffer.from('echo:'), call.request]));
  },
  Fail: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) =>
    cb({ code: grpc.status.PERMISSION_DENIED, details: 'OPERATOR_ERR_TEST: nicht erlaubt — 100% refused' }),
  Slow: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
    setTimeout(() => cb(null, Buffer.from('late')), 2000).unref();
  },
  Big: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.alloc(64 * 1024, 7)),
  Chat: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
    call.on('data', (m: Buffer) => {
      if (m.toString() === 'fail') return call.emit('error', { code: grpc.status.ABORTED, details: 'asked to fail' });
      call.write(Buffer.concat([Buffer.from('re:'), m]));
    });
    call.on('end', () => call.end());
  },
};

function startServer(creds: grpc.ServerCredentials): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server();
  server.addService(service, handlers);
  return new Promise((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', creds, (err, port) => (err ? reject(err) : resolve({ server, port }))),
  );
}

/** A call's messages and how it ended. */
function outcome(call: GrpcClientCall): Promise<{ messages: string[]; error?: GrpcStatusError }> {
  const messages: string[] = [];
  call.on('message', (m) => messages.push(m.toString()));
  return new Promise((resolve) => {
    call.on('end', () => resolve({ messages }));
    call.on('error', (error) => resolve({ messages, error }));
  });
}

async function refusal(p: Promise<unknown>): Promise<GrpcStatusError> {
  const err = await p.then(
    () => assert.fail('expected the call to fail'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof GrpcStatusError, `a GrpcStatusError, not ${String(err)}`);
  return err;
}

describe('the gRPC client, against grpc-js server', () => {
  let server: grpc.Server;
  let channel: GrpcChannel;
  before(async () => {
    const s = await startServer(grpc.ServerCredentials.createInsecure());
    server = s.server;
    channel = new GrpcChannel({ address: `127.0.0.1:${s.port}`, clock: realClock, maxReceiveMessageLength: 32 * 1024 });
  });
  after(() => {
    channel.close();
    server.forceShutdown();
  });

  it('a unary call carries its metadata and gets its answer', async () => {
    const answer = await channel.unary('/test.Echo/Unary', Buffer.from('hi'), { authorization: 'Bearer t0ken' });
    assert.equal(answer.toString(), 'echo:hi');
    assert.equal(seenMetadata.at(-1)?.['authorization'], 'Bearer t0ken');
  });

  it('a refusal arrives as its code and its details, non-ASCII included (percent-decoded)', async () => {
    const err = await refusal(channel.unary('/test.Echo/Fail', Buffer.alloc(0)));
    assert.equal(err.code, Status.PERMISSION_DENIED);
    assert.equal(err.details, 'OPERATOR_ERR_TEST: nicht erlaubt — 100% refused');
    assert.match(err.message, /^7 PERMISSION_DENIED: OPERATOR_ERR_TEST/);
  });

  it('a method the server does not have: UNIMPLEMENTED (a trailers-only response)', async () => {
    assert.equal((await refusal(channel.unary('/test.Echo/Nope', Buffer.alloc(0)))).code, Status.UNIMPLEMENTED);
  });

  it('a deadline ends the call DEADLINE_EXCEEDED (the server would answer OK after 2 s), and the channel serves the next call', async () => {
    const err = await refusal(channel.unary('/test.Echo/Slow', Buffer.alloc(0), {}, 100));
    assert.equal(err.code, Status.DEADLINE_EXCEEDED);
    assert.equal((await channel.unary('/test.Echo/Unary', Buffer.from('after'))).toString(), 'echo:after');
  });

  it('an answer over the receive limit: RESOURCE_EXHAUSTED', async () => {
    assert.equal((await refusal(channel.unary('/test.Echo/Big', Buffer.alloc(0)))).code, Status.RESOURCE_EXHAUSTED);
  });

  it('a bidirectional stream: messages both ways in order, then OK when both sides end', async () => {
    const call = channel.call('/test.Echo/Chat');
    const done = outcome(call);
    for (let i = 0; i < 100; i++) call.write(Buffer.from(`m${i}`));
    call.end();
    const { messages, error } = await done;
    assert.equal(error, undefined);
    assert.deepEqual(
      messages,
      Array.from({ length: 100 }, (_, i) => `re:m${i}`),
    );
  });

  it('a stream the server ends with a status after messages: the messages, then that status', async () => {
    const call = channel.call('/test.Echo/Chat');
    const done = outcome(call);
    call.write(Buffer.from('one'));
    call.write(Buffer.from('fail'));
    const { messages, error } = await done;
    assert.deepEqual(messages, ['re:one']);
    assert.equal(error?.code, Status.ABORTED);
    assert.equal(error?.details, 'asked to fail');
  });

  it('cancel ends the call CANCELLED at once, with the reason given', async () => {
    const call = channel.call('/test.Echo/Chat');
    const done = outcome(call);
    call.cancel('the caller gave up');
    const { error } = await done;
    assert.equal(error?.code, Status.CANCELLED);
    assert.equal(error?.details, 'the caller gave up');
  });
});

describe('the gRPC client when the server is away or silent', () => {
  it('nothing listening: UNAVAILABLE, naming the refusal', async () => {
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const channel = new GrpcChannel({ address: `127.0.0.1:${port}`, clock: realClock });
    const err = await refusal(channel.unary('/test.Echo/Unary', Buffer.alloc(0)));
    assert.equal(err.code, Status.UNAVAILABLE);
    assert.match(err.details, /ECONNREFUSED/);
    channel.close();
  });

  it('the server goes away under a stream: UNAVAILABLE; the next call connects to the server that came back', async () => {
    const first = await startServer(grpc.ServerCredentials.createInsecure());
    const channel = new GrpcChannel({ address: `127.0.0.1:${first.port}`, clock: realClock });
    const call = channel.call('/test.Echo/Chat');
    const answered = new Promise((r) => call.once('message', r));
    const done = outcome(call);
    call.write(Buffer.from('hello'));
    await answered;
    first.server.forceShutdown();
    const { error } = await done;
    assert.ok(error && [Status.UNAVAILABLE, Status.INTERNAL, Status.CANCELLED].includes(error.code as 14), `ended: ${error?.message}`);
    const again = new grpc.Server();
    again.addService(service, handlers);
    await new Promise<void>((resolve, reject) =>
      again.bindAsync(`127.0.0.1:${first.port}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
    assert.equal((await channel.unary('/test.Echo/Unary', Buffer.from('back'))).toString(), 'echo:back');
    channel.close();
    again.forceShutdown();
  });

  it('a peer that accepts and then never answers: keepalive finds it and the stream fails UNAVAILABLE', async () => {
    const sockets: net.Socket[] = [];
    const silent = net.createServer((s) => sockets.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const channel = new GrpcChannel({
      address: `127.0.0.1:${(silent.address() as net.AddressInfo).port}`,
      clock: realClock,
      keepaliveMs: 50,
      keepaliveTimeoutMs: 100,
    });
    const { error } = await outcome(channel.call('/test.Echo/Chat'));
    assert.equal(error?.code, Status.UNAVAILABLE);
    assert.match(error?.details ?? '', /keepalive|ping/i);
    channel.close();
    for (const s of sockets) s.destroy();
    silent.close();
  });
});

describe('the gRPC client over TLS, against grpc-js server asking for client certificates', () => {
  const certs = makeCerts();
  const pem = (f: string): string => readFileSync(f, 'utf8');
  let server: grpc.Server;
  let port = 0;
  before(async () => {
    const s = await startServer(
      grpc.ServerCredentials.createSsl(
        Buffer.from(pem(certs.ca)),
        [{ cert_chain: Buffer.from(pem(certs.serverCert)), private_key: Buffer.from(pem(certs.serverKey)) }],
        true,
      ),
    );
    server = s.server;
    port = s.port;
  });
  after(() => server.forceShutdown());

  it('with the CA and a client certificate, the call is answered; the server name is checked against the certificate', async () => {
    const held: { cert?: { chainPem: string; keyPem: string } } = {};
    const channel = new GrpcChannel({
      address: `127.0.0.1:${port}`,
      clock: realClock,
      tls: () => ({ ca: pem(certs.ca), serverName: 'localhost', cert: held.cert }),
    });
    // No client certificate yet: the server refuses the handshake.
    assert.equal((await refusal(channel.unary('/test.Echo/Unary', Buffer.from('x')))).code, Status.UNAVAILABLE);
    // One arrives: the next connection presents it.
    held.cert = { chainPem: pem(certs.clientCert), keyPem: pem(certs.clientKey) };
    channel.reconnect();
    assert.equal((await channel.unary('/test.Echo/Unary', Buffer.from('tls'))).toString(), 'echo:tls');
    channel.close();
    // A name the server's certificate does not carry: refused by this side.
    const wrongName = new GrpcChannel({
      address: `127.0.0.1:${port}`,
      clock: realClock,
      tls: () => ({ ca: pem(certs.ca), serverName: 'discovery.example', cert: held.cert }),
    });
    const err = await refusal(wrongName.unary('/test.Echo/Unary', Buffer.from('x')));
    assert.equal(err.code, Status.UNAVAILABLE);
    assert.match(err.details, /altnames|discovery\.example/);
    wrongName.close();
  });

  it('a server whose certificate another CA signed is refused', async () => {
    const other = makeCerts();
    const channel = new GrpcChannel({
      address: `127.0.0.1:${port}`,
      clock: realClock,
      tls: () => ({ ca: pem(other.ca), serverName: 'localhost', cert: { chainPem: pem(certs.clientCert), keyPem: pem(certs.clientKey) } }),
    });
    const err = await refusal(channel.unary('/test.Echo/Unary', Buffer.from('x')));
    assert.equal(err.code, Status.UNAVAILABLE);
    assert.match(err.details, /self.signed|unable to verify|certificate/i);
    channel.close();
  });
});
