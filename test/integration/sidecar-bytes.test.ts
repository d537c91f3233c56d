// The sidecar never alters, truncates or silently drops a request or a response. A property
// test on real sockets: random body sizes (0 B to 4 MiB), chunkings, protocols (HTTP/1.1, h2c,
// h2c to an HTTP/1.1-only upstream, gRPC), faults at random points on each endpoint (refused,
// reset before the head, reset or dropped after it, 503, slow), retries and hedges on and off.
// For every call: either the caller gets an error it can see, or the upstream received exactly
// the bytes the caller sent and the caller exactly the bytes the upstream sent (the upstream
// echoes, so one comparison checks both). CASES (default 300) and SEED are printed and can be
// set: SIDECAR_PROPERTY_CASES, SIDECAR_PROPERTY_SEED.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import http2 from 'node:http2';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { realClock } from '../../lib/clock.ts';
import { silentLogger } from '../../lib/log.ts';
import { Metrics } from '../../lib/metrics.ts';
import { SeededRandom } from '../../lib/random.ts';
import { resolveConfig } from '../../sidecar/config.ts';
import { Sidecar } from '../../sidecar/sidecar.ts';
import { type FaultUpstream, startFaultUpstreams } from '../support/fault-upstream.ts';
import { freePort } from '../support/store-cluster.ts';

const cases = Number(process.env['SIDECAR_PROPERTY_CASES'] ?? 300);
const seed = Number(process.env['SIDECAR_PROPERTY_SEED'] ?? Math.floor(Math.random() * 2 ** 31));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Outcome = { kind: 'ok'; body: Buffer } | { kind: 'error'; what: string };
type Protocol = 'h1' | 'h2c' | 'h2c-to-h1' | 'grpc';

describe(`sidecar byte-exactness property (${cases} cases, seed ${seed})`, { timeout: 600_000 }, () => {
  let both: FaultUpstream[] = [];
  let h1only: FaultUpstream[] = [];
  let sc: Sidecar;
  const port = (name: string) => sc.port(name);
  const r = new SeededRandom(seed);

  before(async () => {
    both = await startFaultUpstreams(['a', 'b']);
    h1only = await startFaultUpstreams(['a', 'b'], { h1Only: true });
    const dead = `127.0.0.1:${await freePort()}`;
    const policy = (retries: boolean) => ({
      timeouts: { requestMs: 20_000, attemptMs: 5_000, idleMs: 10_000 },
      retries: retries
        ? { maxAttempts: 3, backoffBaseMs: 2, backoffMaxMs: 20, idempotentPaths: ['/'], budget: { ratioPercent: 100, minPerSecond: 1000 } }
        : { maxAttempts: 1 },
      hedge: retries ? { enabled: true, delayMs: 15, maxHedges: 1 } : { enabled: false },
      // Breakers, ejection and client-side throttling off: every request meets the attempt paths
      // (they are tested apart). The throttle especially: a third of the picks go to a dead
      // endpoint and a tenth of the answers are 503s, which can put the upstream's accepts below
      // 1/K of its requests; it then refuses most requests locally for its 120 s window, and a CI
      // run once saw 1 h2c success in 85 and none for gRPC (SIDECAR_ERR_THROTTLED, fast).
      breaker: { endpoint: { consecutiveFailures: 0, failureRatePercent: 0 }, upstream: { consecutiveFailures: 0, failureRatePercent: 0 } },
      outlier: { enabled: false },
      shed: { throttle: { enabled: false } },
    });
    const upstream = (name: string, protocol: string, eps: string[], retries: boolean) => ({
      name,
      listen: '127.0.0.1:0',
      protocol,
      endpoints: eps,
      policy: policy(retries),
    });
    const eps = [...both.map((u) => u.address), dead];
    sc = new Sidecar(
      resolveConfig(
        {
          admin: '127.0.0.1:0',
          upstreams: [
            upstream('h1-retry', 'http1', eps, true),
            upstream('h1-once', 'http1', eps, false),
            upstream('h2-retry', 'http2', eps, true),
            upstream('h2-once', 'http2', eps, false),
            upstream('auto-retry', 'auto', [...h1only.map((u) => u.address), dead], true),
            upstream('auto-once', 'auto', [...h1only.map((u) => u.address), dead], false),
          ],
        },
        'test',
      ),
      { clock: realClock, random: new SeededRandom(seed + 1), log: silentLogger, metrics: new Metrics({ defaultMetrics: false }) },
    );
    await sc.start();
  });
  after(async () => {
    await sc?.stop(100);
    for (const u of [...both, ...h1only]) await u.stop();
  });

  /** Log-uniform sizes: mostly small, some past the replay buffer, a few up to 4 MiB. */
  const size = (): number => (r.next() < 0.1 ? 0 : Math.floor(2 ** (r.next() * 22)));
  const fault = (): string => {
    const x = r.next();
    if (x < 0.45) return 'ok';
    if (x < 0.55) return `slow:${Math.floor(r.next() * 60)}`;
    if (x < 0.65) return '503';
    if (x < 0.77) return `reset-before:${Math.floor(r.next() * 100_000)}`;
    if (x < 0.89) return 'reset-after';
    return 'drop-after';
  };

  /** Write `body` in random chunks, with a pause now and then. */
  async function writeChunked(
    w: { write(c: Buffer): boolean; end(): void; once(e: 'drain', f: () => void): unknown },
    body: Buffer,
  ): Promise<void> {
    const max = 1 + Math.floor(r.next() * 65_536);
    for (let at = 0; at < body.length;) {
      const n = Math.min(body.length - at, 1 + Math.floor(r.next() * max));
      if (!w.write(body.subarray(at, at + n))) await new Promise<void>((res) => w.once('drain', res));
      at += n;
      if (r.next() < 0.05) await sleep(Math.floor(r.next() * 3));
    }
    w.end();
  }

  function callH1(upstream: string, body: Buffer, faults: Record<string, string>): Promise<Outcome> {
    return new Promise((resolve) => {
      const chunked = r.next() < 0.5;
      const req = http.request(
        {
          host: '127.0.0.1',
          port: port(upstream),
          method: 'PUT',
          path: '/echo',
          agent: false,
          headers: { ...faults, ...(chunked ? { 'transfer-encoding': 'chunked' } : { 'content-length': String(body.length) }) },
        },
        (res) => {
          const got: Buffer[] = [];
          res.on('data', (c: Buffer) => got.push(c));
          res.on('end', () =>
            resolve(
              res.statusCode === 200 ? { kind: 'ok', body: Buffer.concat(got) } : { kind: 'error', what: `status ${res.statusCode}` },
            ),
          );
          res.on('error', (e) => resolve({ kind: 'error', what: e.message }));
          res.on('aborted', () => resolve({ kind: 'error', what: 'aborted' }));
        },
      );
      req.on('error', (e) => resolve({ kind: 'error', what: e.message }));
      void writeChunked(req, body).catch(() => undefined);
    });
  }

  function callH2(upstream: string, body: Buffer, faults: Record<string, string>): Promise<Outcome> {
    return new Promise((resolve) => {
      const session = http2.connect(`http://127.0.0.1:${port(upstream)}`);
      session.on('error', () => undefined);
      const done = (o: Outcome) => {
        session.close();
        resolve(o);
      };
      const s = session.request({ ':method': 'PUT', ':path': '/echo', ...faults });
      let status = 0;
      const got: Buffer[] = [];
      s.on('response', (h) => {
        status = Number(h[':status']);
      });
      s.on('data', (c: Buffer) => got.push(c));
      s.on('error', (e) => done({ kind: 'error', what: e.message }));
      // A stream the peer reset ends as if complete: only END_STREAM with no reset code is complete.
      s.on('end', () =>
        done(
          s.rstCode !== http2.constants.NGHTTP2_NO_ERROR
            ? { kind: 'error', what: `reset ${s.rstCode}` }
            : status === 200
              ? { kind: 'ok', body: Buffer.concat(got) }
              : { kind: 'error', what: `status ${status}` },
        ),
      );
      s.on('close', () => done({ kind: 'error', what: `closed (${s.rstCode})` }));
      void writeChunked(s, body).catch(() => undefined);
    });
  }

  const Echo = grpc.makeGenericClientConstructor(
    {
      Echo: {
        path: '/test.Echo/Echo',
        requestStream: false,
        responseStream: false,
        requestSerialize: (b: Buffer) => b,
        requestDeserialize: (b: Buffer) => b,
        responseSerialize: (b: Buffer) => b,
        responseDeserialize: (b: Buffer) => b,
      },
    },
    'Echo',
  );
  function callGrpc(upstream: string, body: Buffer, faults: Record<string, string>): Promise<Outcome> {
    return new Promise((resolve) => {
      const client = new Echo(`127.0.0.1:${port(upstream)}`, grpc.credentials.createInsecure(), {
        'grpc.max_receive_message_length': -1,
        'grpc.max_send_message_length': -1,
      }) as unknown as {
        Echo(b: Buffer, md: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: Buffer) => void): void;
        close(): void;
      };
      const md = new grpc.Metadata();
      for (const [k, v] of Object.entries(faults)) md.set(k, v);
      client.Echo(body, md, { deadline: Date.now() + 30_000 }, (e, res) => {
        client.close();
        resolve(e ? { kind: 'error', what: `${e.code} ${e.details}` } : { kind: 'ok', body: res ?? Buffer.alloc(0) });
      });
    });
  }

  it('every success carries exactly the bytes sent, both ways; everything else is an error the caller sees', async (t) => {
    const tally: Record<string, number> = {};
    const reasons = new Map<string, number>();
    const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex').slice(0, 12);
    for (let i = 0; i < cases; i++) {
      const protocol = (['h1', 'h2c', 'h2c-to-h1', 'grpc'] as Protocol[])[Math.floor(r.next() * 4)] as Protocol;
      const retries = r.next() < 0.5;
      const upstream = `${protocol === 'h1' ? 'h1' : protocol === 'h2c-to-h1' ? 'auto' : 'h2'}-${retries ? 'retry' : 'once'}`;
      const n = protocol === 'grpc' ? Math.min(size(), 4 * 1024 * 1024 - 5) : size();
      const body = Buffer.alloc(n);
      let x = Math.floor(r.next() * 2 ** 31);
      for (let j = 0; j < n; j++) body[j] = (x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 24;
      const faults = { 'x-fault-a': fault(), 'x-fault-b': fault() };
      const what = `case ${i} (seed ${seed}): ${protocol} via ${upstream}, ${n} bytes, faults a=${faults['x-fault-a']} b=${faults['x-fault-b']}`;
      const out =
        protocol === 'h1'
          ? await callH1(upstream, body, faults)
          : protocol === 'grpc'
            ? await callGrpc(upstream, body, faults)
            : await callH2(upstream, body, faults);
      if (out.kind === 'ok') {
        assert.equal(out.body.length, body.length, `${what}: a success with ${out.body.length} bytes instead of ${body.length}`);
        assert.equal(sha(out.body), sha(body), `${what}: a success whose bytes differ from those sent`);
      }
      const key = `${protocol} ${out.kind}`;
      tally[key] = (tally[key] ?? 0) + 1;
      if (out.kind === 'error') {
        // What the errors were, by kind (numbers folded), so a run where one protocol never
        // succeeds says why.
        const why = `${protocol}: ${out.what.replace(/\d+/g, 'N').slice(0, 100)}`;
        reasons.set(why, (reasons.get(why) ?? 0) + 1);
      }
    }
    t.diagnostic(
      `seed ${seed}: ${Object.entries(tally)
        .sort()
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
    );
    t.diagnostic(
      `most frequent errors: ${[...reasons]
        .sort((a, b) => b[1] - a[1])
        .slice(0, 8)
        .map(([k, v]) => `${k} ×${v}`)
        .join('; ')}`,
    );
    // Enough of each kind happened for the property to mean something.
    for (const p of ['h1', 'h2c', 'h2c-to-h1', 'grpc'])
      assert.ok(
        (tally[`${p} ok`] ?? 0) > 0 && (tally[`${p} error`] ?? 0) > 0,
        `${p}: successes and errors both happened (${JSON.stringify(tally)}; errors: ${JSON.stringify(Object.fromEntries(reasons))})`,
      );
  });
});
