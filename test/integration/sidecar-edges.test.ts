// The sidecar at the protocol edges, one test per defect found by callers and servers nobody here
// wrote (each failed on the build before its fix):
//   1. a retry never goes out with less than the whole body (a 1 MiB PUT that outgrew the replay
//      buffer during the back-off reached the upstream empty, and came back 200);
//   2. an upload does not stall after a refused stream (the first attempt's reader of the replay
//      buffer held its back-pressure for ever);
//   3. a gRPC stream with no deadline of its own is not given requestMs as one (it died at 15 s);
//   4. a response reset after its head (RST_STREAM CANCEL) ends broken, not complete;
//   5. Expect: 100-continue works, and does not count against the endpoint;
//   6. WebSocket (HTTP/1.1 Upgrade) is tunnelled;
//   7. protocol auto: an h2c caller reaches an HTTP/1.1-only upstream;
//   8. a cold sidecar does not shed a healthy burst;
//   9. a body too large for the replay buffer (by its content-length) is never hedged: the hedge
//      went out with no body, reached the fast endpoint as an empty PUT and came back 200 with 0
//      bytes (found by the byte-exactness property in CI, seed 932891567).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { type Clock, VirtualClock, realClock } from '../../lib/clock.ts';
import { silentLogger } from '../../lib/log.ts';
import { Metrics } from '../../lib/metrics.ts';
import { SeededRandom } from '../../lib/random.ts';
import { resolveConfig } from '../../sidecar/config.ts';
import { Sidecar } from '../../sidecar/sidecar.ts';
import { startFaultUpstreams } from '../support/fault-upstream.ts';
import { startUpstreams } from '../support/upstreams.ts';
import { freePort } from '../support/store-cluster.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function sidecar(upstreams: object[], clock: Clock = realClock): Promise<{ sc: Sidecar; metrics: Metrics }> {
  const metrics = new Metrics({ defaultMetrics: false });
  const sc = new Sidecar(resolveConfig({ admin: '127.0.0.1:0', upstreams }, 'test'), {
    clock,
    random: new SeededRandom(11),
    log: silentLogger,
    metrics,
  });
  await sc.start();
  cleanups.push(() => sc.stop(100));
  return { sc, metrics };
}

/** A server started here, stopped after the test. */
function serve<T extends net.Server>(server: T): Promise<number> {
  cleanups.push(
    () =>
      new Promise<void>((r) => {
        (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
        server.close(() => r());
      }),
  );
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)));
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('sidecar edges', { timeout: 120_000 }, () => {
  it('1. a retry never goes out with less than the whole body: a streamed 1 MiB PUT whose first attempt was refused is an error, not an empty request answered 200', async () => {
    const [echo] = await startFaultUpstreams(['a']);
    cleanups.push(() => echo!.stop());
    const dead = `127.0.0.1:${await freePort()}`;
    const put = async (port: number): Promise<{ status: number; got: Buffer; body: Buffer }> => {
      const body = randomBytes(1024 * 1024);
      return new Promise((resolve, reject) => {
        const req = http.request(
          { host: '127.0.0.1', port, method: 'PUT', path: '/upload', headers: { 'transfer-encoding': 'chunked' }, agent: false },
          (res) => {
            const got: Buffer[] = [];
            res.on('data', (c: Buffer) => got.push(c));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, got: Buffer.concat(got), body }));
          },
        );
        req.on('error', reject);
        void (async () => {
          for (let at = 0; at < body.length && !req.destroyed; at += 16_384) {
            req.write(body.subarray(at, at + 16_384));
            await sleep(2);
          }
          req.end();
        })();
      });
    };
    const policy = {
      balancer: { kind: 'roundRobin' },
      retries: { maxAttempts: 3, backoffBaseMs: 50, backoffMaxMs: 50 },
      hedge: { enabled: false },
      breaker: { endpoint: { consecutiveFailures: 0, failureRatePercent: 0 } },
      outlier: { enabled: false },
    };
    // The dead endpoint first: the retry waits out its back-off while the body streams past the
    // 64 KiB replay buffer, so it cannot be sent again. The refusal is the answer.
    const { sc } = await sidecar([
      { name: 'dead-first', listen: '127.0.0.1:0', protocol: 'http1', endpoints: [dead, echo!.address], policy },
      { name: 'live', listen: '127.0.0.1:0', protocol: 'http1', endpoints: [echo!.address], policy },
    ]);
    for (let i = 0; i < 2; i++) {
      const out = await put(sc.port('dead-first') as number);
      if (out.status === 200) assert.equal(sha(out.got), sha(out.body), 'a 200 carries exactly the body sent, echoed');
      else assert.equal(out.status, 503, "the refused attempt's error (SIDECAR_ERR_UPSTREAM_UNREACHABLE)");
    }
    // And when the endpoint answers, the whole streamed body goes and comes back.
    const ok = await put(sc.port('live') as number);
    assert.equal(ok.status, 200);
    assert.equal(sha(ok.got), sha(ok.body));
  });

  it('2. an upload does not stall after a refused stream: the retry carries the whole body to the other endpoint', async () => {
    // One endpoint refuses every stream (RST_STREAM REFUSED_STREAM, as a server over its
    // concurrency limit does): safe to retry anything, the server did not look at it.
    const refusing = http2.createServer();
    refusing.on('sessionError', () => undefined);
    refusing.on('stream', (st) => {
      st.on('error', () => undefined);
      st.close(http2.constants.NGHTTP2_REFUSED_STREAM);
    });
    const refusingPort = await serve(refusing);
    const [echo] = await startFaultUpstreams(['a']);
    cleanups.push(() => echo!.stop());
    const { sc } = await sidecar([
      {
        name: 'up',
        listen: '127.0.0.1:0',
        protocol: 'http2',
        endpoints: [`127.0.0.1:${refusingPort}`, echo!.address],
        policy: {
          balancer: { kind: 'roundRobin' },
          retries: { maxAttempts: 3, backoffBaseMs: 1, backoffMaxMs: 2, idempotentPaths: ['/'] },
          hedge: { enabled: false },
          timeouts: { requestMs: 20_000 },
          breaker: { endpoint: { consecutiveFailures: 0, failureRatePercent: 0 } },
          outlier: { enabled: false },
        },
      },
    ]);
    for (let i = 0; i < 2; i++) {
      const body = randomBytes(512 * 1024);
      const session = http2.connect(`http://127.0.0.1:${sc.port('up')}`);
      cleanups.push(() => session.close());
      const s = session.request({ ':method': 'PUT', ':path': '/upload' });
      const got: Buffer[] = [];
      let status = 0;
      s.on('response', (h) => {
        status = Number(h[':status']);
      });
      s.on('data', (c: Buffer) => got.push(c));
      const ended = new Promise<void>((resolve, reject) => {
        s.on('end', () => resolve());
        s.on('error', reject);
      });
      for (let at = 0; at < body.length; at += 8192) {
        if (!s.write(body.subarray(at, at + 8192))) await new Promise((r) => s.once('drain', r));
        if (at === 0) await sleep(20); // the first attempt is refused while the body streams
      }
      s.end();
      await ended;
      assert.equal(status, 200);
      assert.equal(sha(Buffer.concat(got)), sha(body), 'the whole body went to the echo endpoint and came back');
    }
  });

  it('3. a gRPC stream with no deadline outlives requestMs: the sidecar sends no grpc-timeout of its own', async () => {
    let timeoutHeader: string | undefined = 'not seen';
    const server = http2.createServer();
    server.on('stream', (stream, headers) => {
      timeoutHeader = headers['grpc-timeout'] as string | undefined;
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      let n = 0;
      const tick = setInterval(() => {
        const msg = Buffer.alloc(5 + 4);
        msg.writeUInt32BE(4, 1);
        msg.writeUInt32BE(n, 5);
        stream.write(msg);
        if (++n === 6) {
          clearInterval(tick);
          stream.end();
        }
      }, 250);
      stream.on('close', () => clearInterval(tick));
      stream.on('error', () => undefined);
    });
    const port = await serve(server);
    // requestMs 500: the stream runs 1.5 s, three times longer.
    const { sc } = await sidecar([
      {
        name: 'up',
        listen: '127.0.0.1:0',
        protocol: 'http2',
        endpoints: [`127.0.0.1:${port}`],
        policy: { timeouts: { requestMs: 500, attemptMs: 500 } },
      },
    ]);
    const Streamer = grpc.makeGenericClientConstructor(
      {
        Watch: {
          path: '/test.S/Watch',
          requestStream: false,
          responseStream: true,
          requestSerialize: (b: Buffer) => b,
          requestDeserialize: (b: Buffer) => b,
          responseSerialize: (b: Buffer) => b,
          responseDeserialize: (b: Buffer) => b,
        },
      },
      'S',
    );
    const client = new Streamer(`127.0.0.1:${sc.port('up')}`, grpc.credentials.createInsecure()) as unknown as {
      Watch(b: Buffer): grpc.ClientReadableStream<Buffer>;
      close(): void;
    };
    cleanups.push(() => client.close());
    const call = client.Watch(Buffer.alloc(0));
    const got: number[] = [];
    call.on('data', (b: Buffer) => got.push(b.readUInt32BE(0)));
    const status = await new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
    assert.equal(status.code, grpc.status.OK, status.details);
    assert.deepEqual(got, [0, 1, 2, 3, 4, 5], 'every message of a 1.5 s stream');
    assert.equal(timeoutHeader, undefined, 'no grpc-timeout was invented for a call without a deadline');
  });

  it('4. a response reset after its head (RST_STREAM CANCEL) reaches an HTTP/2 caller as a reset and a gRPC caller as UNAVAILABLE, never as a complete answer', async () => {
    // A raw HTTP/2 server: HEADERS (:status 200), some DATA, then RST_STREAM(CANCEL) without END_STREAM.
    const frame = (type: number, flags: number, stream: number, payload: Buffer) => {
      const h = Buffer.alloc(9);
      h.writeUIntBE(payload.length, 0, 3);
      h[3] = type;
      h[4] = flags;
      h.writeUInt32BE(stream, 5);
      return Buffer.concat([h, payload]);
    };
    const raw = net.createServer((sock) => {
      sock.on('error', () => undefined);
      sock.write(frame(4, 0, 0, Buffer.alloc(0)));
      let buf = Buffer.alloc(0);
      const answered = new Set<number>();
      sock.on('data', (c: Buffer) => {
        buf = Buffer.concat([buf, c]);
        // Walk the frames after the 24-byte preface; answer each HEADERS frame's stream.
        let at = buf.subarray(0, 24).toString('latin1').startsWith('PRI') ? 24 : 0;
        while (at + 9 <= buf.length) {
          const len = buf.readUIntBE(at, 3);
          const type = buf[at + 3] as number;
          const id = buf.readUInt32BE(at + 5) & 0x7fffffff;
          if (at + 9 + len > buf.length) break;
          if (type === 4 && ((buf[at + 4] as number) & 1) === 0) sock.write(frame(4, 1, 0, Buffer.alloc(0)));
          if (type === 1 && !answered.has(id)) {
            answered.add(id);
            sock.write(frame(1, 4, id, Buffer.from([0x88]))); // :status 200
            sock.write(frame(0, 0, id, Buffer.alloc(100, 'x')));
            const code = Buffer.alloc(4);
            code.writeUInt32BE(8); // CANCEL
            setTimeout(() => sock.write(frame(3, 0, id, code)), 20);
          }
          at += 9 + len;
        }
      });
    });
    const port = await serve(raw);
    const { sc } = await sidecar([
      {
        name: 'up',
        listen: '127.0.0.1:0',
        protocol: 'http2',
        endpoints: [`127.0.0.1:${port}`],
        policy: { retries: { maxAttempts: 1 }, hedge: { enabled: false } },
      },
    ]);
    const session = http2.connect(`http://127.0.0.1:${sc.port('up')}`);
    cleanups.push(() => session.close());
    session.on('error', () => undefined);
    const s = session.request({ ':path': '/' });
    s.end();
    const out = await new Promise<string>((resolve) => {
      s.on('error', (e) => resolve(`error ${(e as { code?: string }).code}`));
      s.on('end', () => resolve(s.rstCode === 0 ? 'complete' : `reset ${s.rstCode}`));
    });
    assert.notEqual(out, 'complete', 'a response the upstream reset is not passed on as complete');
    const Echo = grpc.makeGenericClientConstructor(
      {
        Echo: {
          path: '/test.E/Echo',
          requestStream: false,
          responseStream: false,
          requestSerialize: (b: Buffer) => b,
          requestDeserialize: (b: Buffer) => b,
          responseSerialize: (b: Buffer) => b,
          responseDeserialize: (b: Buffer) => b,
        },
      },
      'E',
    );
    const client = new Echo(`127.0.0.1:${sc.port('up')}`, grpc.credentials.createInsecure()) as unknown as {
      Echo(b: Buffer, cb: (e: grpc.ServiceError | null) => void): void;
      close(): void;
    };
    cleanups.push(() => client.close());
    const err = await new Promise<grpc.ServiceError | null>((resolve) => client.Echo(Buffer.from('hi'), resolve));
    assert.equal(err?.code, grpc.status.UNAVAILABLE, err?.details);
    assert.match(err?.details ?? '', /SIDECAR_ERR_UPSTREAM_RESET/);
  });

  it("5. Expect: 100-continue (curl's large uploads) is answered by the sidecar and the body echoed, and no endpoint is blamed", async () => {
    const [echo] = await startFaultUpstreams(['a']);
    cleanups.push(() => echo!.stop());
    const { sc, metrics } = await sidecar([{ name: 'up', listen: '127.0.0.1:0', protocol: 'http1', endpoints: [echo!.address] }]);
    const dir = mkdtempSync(join(tmpdir(), 'ballast-expect-'));
    const file = join(dir, 'body');
    const body = randomBytes(2 * 1024 * 1024);
    writeFileSync(file, body);
    // curl runs beside this process (the sidecar here must keep serving while it waits).
    for (let i = 0; i < 3; i++) {
      const r = await promisify(execFile)(
        'curl',
        [
          '-s',
          '--max-time',
          '20',
          '-H',
          'Expect: 100-continue',
          '-X',
          'PUT',
          '--data-binary',
          `@${file}`,
          '-o',
          join(dir, 'out'),
          '-w',
          '%{http_code}',
          `http://127.0.0.1:${sc.port('up')}/upload`,
        ],
        { encoding: 'utf8' },
      );
      assert.equal(r.stdout, '200', r.stderr);
      assert.equal(sha(readFileSync(join(dir, 'out'))), sha(body));
    }
    const text = (await metrics.render()).body;
    assert.doesNotMatch(text, /ballast_sidecar_attempts_total\{[^}]*result="(reset|protocol|invalid)"[^}]*\} [1-9]/, 'no attempt failed');
  });

  it('6. WebSocket: the Upgrade is tunnelled, and messages go both ways unchanged', async () => {
    // A minimal RFC 6455 echo server: the handshake, then each masked text frame back unmasked.
    const server = http.createServer((_req, res) => res.end('not a websocket'));
    server.on('upgrade', (req, socket) => {
      const accept = createHash('sha1')
        .update(`${req.headers['sec-websocket-key'] as string}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
        .digest('base64');
      socket.write(
        `HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ${accept}\r\n\r\n`,
      );
      let buf = Buffer.alloc(0);
      socket.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        // Small masked frames only (length < 126): 2 bytes, a 4-byte mask, the payload.
        while (buf.length >= 6 && buf.length >= 6 + ((buf[1] as number) & 0x7f)) {
          const len = (buf[1] as number) & 0x7f;
          const mask = buf.subarray(2, 6);
          const payload = Buffer.from(buf.subarray(6, 6 + len).map((b, i) => b ^ (mask[i % 4] as number)));
          if (((buf[0] as number) & 0x0f) === 0x1) socket.write(Buffer.concat([Buffer.from([0x81, payload.length]), payload]));
          buf = buf.subarray(6 + len);
        }
      });
      socket.on('error', () => undefined);
      socket.on('end', () => socket.end()); // an http.Server's sockets are half-open on EOF
    });
    const port = await serve(server);
    const { sc } = await sidecar([{ name: 'up', listen: '127.0.0.1:0', protocol: 'http1', endpoints: [`127.0.0.1:${port}`] }]);
    const ws = new WebSocket(`ws://127.0.0.1:${sc.port('up')}/chat`);
    cleanups.push(() => ws.close());
    await new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error('the WebSocket did not open through the sidecar'));
    });
    const replies: string[] = [];
    ws.onmessage = (e) => replies.push(String(e.data));
    for (const m of ['hello', 'through', 'the sidecar']) ws.send(m);
    for (let i = 0; i < 200 && replies.length < 3; i++) await sleep(10);
    assert.deepEqual(replies, ['hello', 'through', 'the sidecar']);
  });

  it('7. protocol auto: an h2c caller reaches an HTTP/1.1-only upstream (translated), bytes intact', async () => {
    const [h1] = await startFaultUpstreams(['a'], { h1Only: true });
    cleanups.push(() => h1!.stop());
    const { sc } = await sidecar([{ name: 'up', listen: '127.0.0.1:0', protocol: 'auto', endpoints: [h1!.address] }]);
    const session = http2.connect(`http://127.0.0.1:${sc.port('up')}`);
    cleanups.push(() => session.close());
    for (let i = 0; i < 3; i++) {
      const body = randomBytes(100_000);
      const s = session.request({ ':method': 'POST', ':path': '/x' });
      s.end(body);
      const got: Buffer[] = [];
      let status = 0;
      s.on('response', (h) => {
        status = Number(h[':status']);
      });
      s.on('data', (c: Buffer) => got.push(c));
      await new Promise<void>((resolve, reject) => {
        s.on('end', () => resolve());
        s.on('error', reject);
      });
      assert.equal(status, 200);
      assert.equal(sha(Buffer.concat(got)), sha(body));
    }
  });

  it('8. a cold sidecar passes a healthy burst of 200 concurrent calls (each answered 300 ms after it arrives, in virtual time): nothing shed', async () => {
    // Virtual time: the upstream answers every request it holds 300 ms (of the sidecar's clock)
    // after it arrived, however busy the machine is, so the latencies the adaptive limit learns
    // from are the upstream's, not this machine's scheduling.
    const clock = new VirtualClock();
    const [upstream] = await startUpstreams(1);
    cleanups.push(() => upstream!.stop());
    upstream!.hold();
    const { sc } = await sidecar([{ name: 'up', listen: '127.0.0.1:0', protocol: 'http1', endpoints: [upstream!.address] }], clock);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 200 });
    cleanups.push(() => agent.destroy());
    let answered = 0;
    const calls = Promise.all(
      Array.from(
        { length: 200 },
        (_, i) =>
          new Promise<number | string>((resolve) => {
            const req = http.request(
              { host: '127.0.0.1', port: sc.port('up'), method: 'POST', path: `/burst/${i}`, agent, headers: { 'content-length': '2' } },
              (res) => {
                res.resume();
                const code = res.headers['x-ballast-error'];
                res.on('end', () => {
                  answered++;
                  resolve(code ? `${res.statusCode} ${String(code)}` : (res.statusCode ?? 0));
                });
              },
            );
            req.on('error', () => resolve(0));
            req.end('hi');
          }),
      ),
    );
    // Admitted requests in flight, as the sidecar counts them under its adaptive limit.
    const admin = `http://127.0.0.1:${sc.adminPort}`;
    const inflight = async () =>
      ((await (await fetch(`${admin}/endpoints`)).json()) as Array<{ concurrencyInflight: number }>)[0]!.concurrencyInflight;
    let rounds = 0;
    for (; answered < 200; rounds++) {
      assert.ok(rounds < 100, `the burst is still not answered after ${rounds} rounds of 300 ms (${answered} answered)`);
      // Every request the sidecar admitted has reached the upstream (twice in a row: settled).
      let settled = 0;
      for (const deadline = Date.now() + 60_000; settled < 2 && answered < 200; await sleep(10)) {
        assert.ok(Date.now() < deadline, 'the admitted requests reach the upstream');
        const n = await inflight();
        settled = n > 0 && n === upstream!.held.length ? settled + 1 : 0;
      }
      await clock.advanceAsync(300);
      upstream!.releaseAll();
    }
    const byStatus: Record<string, number> = {};
    for (const s of await calls) byStatus[s] = (byStatus[s] ?? 0) + 1;
    console.log(`# a burst of 200 at a cold limit: answered in ${rounds} rounds of 300 ms`);
    assert.deepEqual(byStatus, { 200: 200 });
  });

  it('9. a PUT whose content-length exceeds the replay buffer is sent once and never hedged: no endpoint sees it empty, every answer carries the whole body', async () => {
    const ups = await startFaultUpstreams(['a', 'b']);
    cleanups.push(async () => {
      for (const u of ups) await u.stop();
    });
    const policy = {
      hedge: { enabled: true, delayMs: 5, maxHedges: 1 },
      retries: { maxAttempts: 3, idempotentPaths: ['/'] },
      outlier: { enabled: false },
    };
    const { sc } = await sidecar([{ name: 'up', listen: '127.0.0.1:0', protocol: 'http1', endpoints: ups.map((u) => u.address), policy }]);
    const outcomes: Record<string, number> = {};
    // Either endpoint slow in turn: a hedge, if one were sent, would reach the fast one and win.
    for (let i = 0; i < 40; i++) {
      const body = randomBytes(200_000 + i * 1_000);
      const faults = i % 2 ? { 'x-fault-a': 'slow:40', 'x-fault-b': 'ok' } : { 'x-fault-a': 'ok', 'x-fault-b': 'slow:40' };
      const got = await new Promise<{ status: number; body: Buffer }>((resolve, reject) => {
        const req = http.request(
          {
            host: '127.0.0.1',
            port: sc.port('up'),
            method: 'PUT',
            path: '/put',
            agent: false,
            headers: { ...faults, 'content-length': String(body.length) },
          },
          (res) => {
            const parts: Buffer[] = [];
            res.on('data', (c: Buffer) => parts.push(c));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }));
          },
        );
        req.on('error', reject);
        req.end(body);
      });
      const what =
        got.status !== 200
          ? `status ${got.status}`
          : sha(got.body) === sha(body)
            ? 'whole'
            : `200 with ${got.body.length} of ${body.length} bytes`;
      outcomes[what] = (outcomes[what] ?? 0) + 1;
    }
    assert.deepEqual(outcomes, { whole: 40 });
  });
});
