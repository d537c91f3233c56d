// `ballast sidecar` against real upstream servers on loopback: traffic (HTTP/1.1, h2c, gRPC with
// an etcd Watch, the HTTP proxy mode, inbound), every policy, hot reload and the admin endpoint.
// Policies whose behaviour depends on time run the sidecar on a VirtualClock: the test moves time.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, renameSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { ServerDuplexStream, ServiceClientConstructor, ServiceError } from '@grpc/grpc-js';
import { Etcd3 } from 'etcd3';
import { type Clock, VirtualClock, realClock } from '../../lib/clock.ts';
import { silentLogger } from '../../lib/log.ts';
import { Metrics } from '../../lib/metrics.ts';
import { SeededRandom } from '../../lib/random.ts';
import { resolveConfig } from '../../sidecar/config.ts';
import { Sidecar } from '../../sidecar/sidecar.ts';
import { loadProtos } from '../../store/api/server.ts';
import { StoreCluster, freePort } from '../support/store-cluster.ts';
import { type Behaviour, type TestUpstream, ok, startUpstreams, status } from '../support/upstreams.ts';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function upstreams(n: number, b = ok()): Promise<TestUpstream[]> {
  const ups = await startUpstreams(n, b);
  cleanups.push(async () => {
    for (const u of ups) await u.stop();
  });
  return ups;
}

async function sidecar(
  doc: Record<string, unknown>,
  clock: Clock = realClock,
): Promise<{ sc: Sidecar; url: (path?: string, name?: string) => string; metrics: Metrics }> {
  const metrics = new Metrics({ defaultMetrics: false });
  const sc = new Sidecar(resolveConfig({ admin: '127.0.0.1:0', ...doc }, 'test'), {
    clock,
    random: new SeededRandom(7),
    log: silentLogger,
    metrics,
  });
  await sc.start();
  cleanups.push(() => sc.stop(100));
  return { sc, metrics, url: (path = '/', name = 'web') => `http://127.0.0.1:${sc.port(name)}${path}` };
}

const web = (ups: TestUpstream[], policy: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => ({
  upstreams: [{ name: 'web', listen: '127.0.0.1:0', endpoints: ups.map((u) => u.address), policy, ...extra }],
});

async function get(url: string, init: RequestInit = {}): Promise<{ status: number; body: string; headers: Headers }> {
  const r = await fetch(url, init);
  return { status: r.status, body: await r.text(), headers: r.headers };
}

describe('sidecar traffic', () => {
  it('HTTP/1.1: method, path, query, headers and a 1 MiB body stream both ways; hop-by-hop headers stop at the sidecar', async () => {
    const [u] = await upstreams(1, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        (res as http.ServerResponse).writeHead(201, { 'x-echo-method': req.method ?? '', 'x-echo-len': String(body.length) });
        res.end(body);
      });
    });
    const { url } = await sidecar(web([u!]));
    const big = Buffer.alloc(1 << 20, 7);
    const r = await fetch(url('/a/b?c=d'), { method: 'PUT', body: big, headers: { 'x-app': 'yes', 'proxy-authorization': 'secret' } });
    const back = Buffer.from(await r.arrayBuffer());
    assert.equal(r.status, 201);
    assert.equal(r.headers.get('x-echo-len'), String(1 << 20));
    assert.ok(back.equals(big));
    const seen = u!.seen[0]!;
    assert.equal(seen.path, '/a/b?c=d');
    assert.equal(seen.headers['x-app'], 'yes');
    assert.equal(seen.headers['proxy-authorization'], undefined, 'hop-by-hop');
  });

  it('h2c and gRPC: an etcd client (put, get, and a Watch stream) works through the sidecar', async () => {
    const store = await StoreCluster.start(1);
    cleanups.push(() => store.shutdown());
    const { url } = await sidecar({
      upstreams: [
        {
          name: 'etcd',
          listen: '127.0.0.1:0',
          protocol: 'http2',
          endpoints: [store.endpoints()],
          policy: { retries: { idempotentPaths: ['/etcdserverpb.KV/Range'] } },
        },
      ],
    });
    const client = new Etcd3({ hosts: url('', 'etcd').replace(/\/$/, '') });
    cleanups.push(async () => client.close());
    await client.put('k1').value('v1');
    assert.equal(await client.get('k1').string(), 'v1');
    const watcher = await client.watch().key('k2').create();
    const events: string[] = [];
    watcher.on('put', (kv) => events.push(kv.value.toString()));
    for (const v of ['a', 'b', 'c']) await client.put('k2').value(v);
    await until(() => events.length === 3, 'three watch events');
    assert.deepEqual(events, ['a', 'b', 'c']);
    await watcher.cancel();
  });

  it("gRPC errors keep their status through the sidecar: the store's own (trailers-only) answers, the sidecar's refusals, and a response broken after its head", async () => {
    const store = await StoreCluster.start(1);
    cleanups.push(() => store.shutdown());
    // An HTTP/2 endpoint that sends a gRPC response head and part of a message, then resets.
    const broken = http2.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/grpc' });
      res.write(Buffer.from([0, 0, 0, 0, 9, 1]));
      setTimeout(() => res.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR), 20);
    });
    await new Promise<void>((r) => broken.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => new Promise((r) => broken.close(() => r())));
    const closedPort = await freePort();
    const { url } = await sidecar({
      upstreams: [
        { name: 'etcd', listen: '127.0.0.1:0', protocol: 'http2', endpoints: [store.endpoints()], policy: {} },
        {
          name: 'down',
          listen: '127.0.0.1:0',
          protocol: 'http2',
          endpoints: [`127.0.0.1:${closedPort}`],
          policy: { retries: { maxAttempts: 1 } },
        },
        {
          name: 'broken',
          listen: '127.0.0.1:0',
          protocol: 'http2',
          endpoints: [`127.0.0.1:${(broken.address() as { port: number }).port}`],
          policy: { retries: { maxAttempts: 1 } },
        },
      ],
    });
    const pb = loadProtos()['etcdserverpb'] as Record<string, ServiceClientConstructor>;
    type Call = (r: object, cb: (e: ServiceError | null) => void) => void;
    const client = (service: 'KV' | 'Lease', name: string) => {
      const c = new (pb[service] as ServiceClientConstructor)(
        url('', name).replace(/^http:\/\/|\/$/g, ''),
        grpc.credentials.createInsecure(),
      );
      cleanups.push(async () => c.close());
      return c as unknown as Record<string, Call>;
    };
    const call = (c: Record<string, Call>, method: string, req: object) =>
      new Promise<ServiceError | null>((res) => (c[method] as Call).call(c, req, res));
    const kv = client('KV', 'etcd');
    assert.equal(await call(kv, 'Put', { key: Buffer.from('k'), value: Buffer.from('v') }), null);
    const empty = await call(kv, 'Put', { key: Buffer.alloc(0), value: Buffer.from('v') });
    assert.equal(empty?.code, grpc.status.INVALID_ARGUMENT, String(empty?.details));
    assert.equal(empty?.details, 'etcdserver: key is not provided');
    const revoke = await call(client('Lease', 'etcd'), 'LeaseRevoke', { ID: 12345 });
    assert.equal(revoke?.code, grpc.status.NOT_FOUND, String(revoke?.details));
    assert.equal(revoke?.details, 'etcdserver: requested lease not found');
    const down = await call(client('KV', 'down'), 'Range', { key: Buffer.from('k') });
    assert.equal(down?.code, grpc.status.UNAVAILABLE, String(down?.details));
    assert.match(String(down?.details), /^SIDECAR_ERR_UPSTREAM_UNREACHABLE: /);
    const mid = await call(client('KV', 'broken'), 'Range', { key: Buffer.from('k') });
    assert.equal(mid?.code, grpc.status.UNAVAILABLE, String(mid?.details));
    assert.match(String(mid?.details), /^SIDECAR_ERR_UPSTREAM_RESET: /);
  });

  it('h2c from the caller to an HTTP/1.1 endpoint (protocol auto follows the caller; http1 forces it)', async () => {
    const ups = await upstreams(1);
    const { sc } = await sidecar(web(ups, {}, { protocol: 'http1' }));
    const s = http2.connect(`http://127.0.0.1:${sc.port('web')}`);
    cleanups.push(async () => {
      s.close();
    });
    const r = s.request({ ':path': '/h2' });
    const st = await new Promise<number>((resolve) => r.on('response', (h) => resolve(Number(h[':status']))));
    let body = '';
    r.on('data', (c: Buffer) => {
      body += c.toString();
    });
    await new Promise((res) => r.on('end', res));
    assert.equal(st, 200);
    assert.equal(body, 'ok');
    assert.equal(ups[0]!.seen[0]!.h2, false);
  });

  it("TLS both ways: HTTPS and HTTP/2 over TLS (ALPN) on the sidecar's listener, and to TLS endpoints verified against a CA", async () => {
    const { makeCerts } = await import('../support/certs.ts');
    const { readFileSync } = await import('node:fs');
    const certs = makeCerts();
    const seen: string[] = [];
    const tlsUp = http2.createSecureServer(
      { cert: readFileSync(certs.serverCert), key: readFileSync(certs.serverKey), allowHTTP1: true },
      (req, res) => {
        seen.push(`${req.httpVersion} ${req.url}`);
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(`tls ${req.httpVersion}`);
      },
    );
    await new Promise<void>((r) => tlsUp.listen(0, '127.0.0.1', r));
    cleanups.push(async () => {
      tlsUp.close();
    });
    const upAddr = `127.0.0.1:${(tlsUp.address() as { port: number }).port}`;
    const listenTls = { certFile: certs.serverCert, keyFile: certs.serverKey };
    const tls = { enabled: true, caFile: certs.ca };
    const { sc } = await sidecar({
      upstreams: [
        { name: 'h1', listen: '127.0.0.1:0', listenTls, protocol: 'http1', tls, endpoints: [upAddr] },
        { name: 'h2', listen: '127.0.0.1:0', listenTls, protocol: 'http2', tls, endpoints: [upAddr] },
      ],
    });
    const ca = readFileSync(certs.ca);
    const httpsGet = (port: number) =>
      new Promise<string>((resolve, reject) => {
        const https = import('node:https');
        void https.then((h) =>
          h
            .get({ host: '127.0.0.1', port, path: '/one', ca }, (res) => {
              let b = '';
              res.on('data', (c: Buffer) => {
                b += c.toString();
              });
              res.on('end', () => resolve(b));
            })
            .on('error', reject),
        );
      });
    assert.equal(await httpsGet(sc.port('h1')!), 'tls 1.1');
    const session = http2.connect(`https://127.0.0.1:${sc.port('h2')}`, { ca });
    cleanups.push(async () => {
      session.close();
    });
    const body = await new Promise<string>((resolve, reject) => {
      const r = session.request({ ':path': '/two' });
      let b = '';
      r.on('data', (c: Buffer) => {
        b += c.toString();
      });
      r.on('end', () => resolve(b));
      r.on('error', reject);
    });
    assert.equal(body, 'tls 2.0');
    assert.deepEqual(seen, ['1.1 /one', '2.0 /two']);
    // A CA that did not sign the endpoint's certificate: refused, by name. Nothing was sent, so it
    // is a connect failure (503 UNREACHABLE, as Envoy answers a TLS failure), safe to retry elsewhere.
    const other = makeCerts();
    const bad = await sidecar({
      upstreams: [
        {
          name: 'bad',
          listen: '127.0.0.1:0',
          protocol: 'http1',
          tls: { enabled: true, caFile: other.ca },
          endpoints: [upAddr],
          policy: { retries: { maxAttempts: 1 } },
        },
      ],
    });
    const r = await get(bad.url('/', 'bad'));
    assert.equal(r.status, 503);
    assert.equal(r.headers.get('x-ballast-error'), 'SIDECAR_ERR_UPSTREAM_UNREACHABLE');
    assert.match(r.body, /certificate/);
  });

  it('explicit HTTP proxy mode: absolute-form requests are routed by host; an unknown host is refused by name', async () => {
    const ups = await upstreams(1);
    const { sc } = await sidecar({
      proxy: { listen: '127.0.0.1:0' },
      upstreams: [{ name: 'orders', hosts: ['orders.shop.svc', 'orders'], endpoints: [ups[0]!.address] }],
    });
    const via = (target: string) =>
      new Promise<{ status: number; code: string | undefined }>((resolve, reject) => {
        const req = http.request(
          { host: '127.0.0.1', port: sc.port('proxy'), path: target, headers: { host: new URL(target).host } },
          (res) => {
            res.resume();
            res.on('end', () => resolve({ status: res.statusCode ?? 0, code: res.headers['x-ballast-error'] as string | undefined }));
          },
        );
        req.on('error', reject);
        req.end();
      });
    assert.equal((await via('http://orders.shop.svc:8080/items?x=1')).status, 200);
    assert.equal(ups[0]!.seen[0]!.path, '/items?x=1');
    assert.deepEqual(await via('http://elsewhere.example/'), { status: 502, code: 'SIDECAR_ERR_NO_ROUTE' });
  });

  it('inbound listener: policies in front of the application (rate limit)', async () => {
    const [app] = await upstreams(1);
    const { url } = await sidecar({
      inbound: [{ name: 'app', listen: '127.0.0.1:0', target: app!.address, policy: { rateLimit: { perSecond: 1, burst: 2 } } }],
    });
    const codes = [];
    for (let i = 0; i < 4; i++) codes.push((await get(url('/', 'app'))).status);
    assert.deepEqual(codes, [200, 200, 429, 429]);
  });
});

describe('sidecar policies', () => {
  it('retries: a 503 goes to another endpoint; POST is not retried on 503 but is on connection refused', async () => {
    const ups = await upstreams(2);
    ups[0]!.behaviour = status(503);
    const { url } = await sidecar(
      web(ups, { balancer: { kind: 'roundRobin' }, outlier: { enabled: false }, breaker: { endpoint: { consecutiveFailures: 0 } } }),
    );
    for (let i = 0; i < 4; i++) assert.equal((await get(url())).status, 200);
    const posts = [];
    for (let i = 0; i < 4; i++) posts.push((await get(url(), { method: 'POST', body: 'x' })).status);
    assert.ok(posts.includes(503), `POST answers: ${posts}`);
    // A closed port: the request never reached it, so even POST is retried.
    await ups[0]!.stop();
    for (let i = 0; i < 4; i++) assert.equal((await get(url(), { method: 'POST', body: 'x' })).status, 200);
  });

  it('retries go back to an endpoint already tried when every other one is refused by its breaker (a cluster mid-election with one member down)', async () => {
    const ups = await upstreams(3);
    const { url, sc } = await sidecar(
      web(ups, { balancer: { kind: 'roundRobin' }, outlier: { enabled: false }, breaker: { endpoint: { consecutiveFailures: 2 } } }),
    );
    await ups[2]!.stop();
    for (let i = 0; i < 6; i++) assert.equal((await get(url())).status, 200);
    const eps = await (await fetch(`http://127.0.0.1:${sc.adminPort}/endpoints`)).text();
    assert.match(eps, /open/, `the stopped endpoint's breaker is open: ${eps}`);
    // Both live endpoints answer 503 once (one failure each: their breakers stay closed).
    let calls = 0;
    for (const u of ups.slice(0, 2)) {
      let n = 0;
      u.behaviour = (_req, res) => {
        calls++;
        res.statusCode = n++ === 0 ? 503 : 200;
        res.end();
      };
    }
    const r = await get(url());
    assert.equal(r.status, 200, `${r.headers.get('x-ballast-error')}: ${r.body}`);
    assert.equal(calls, 3, 'two 503s, then the retry went back to an endpoint that had answered 503');
  });

  it('a hedge due while a retry waits out its back-off sends nothing and fails nothing (virtual time): the retry answers', async () => {
    const clock = new VirtualClock();
    const ups = await upstreams(2);
    const { url, sc } = await sidecar(
      web(ups, {
        balancer: { kind: 'roundRobin' },
        outlier: { enabled: false },
        breaker: { endpoint: { consecutiveFailures: 2 } },
        hedge: { enabled: true, delayMs: 50 },
      }),
      clock,
    );
    // The second endpoint is down and its breaker open (virtual time stands still: it stays open).
    await ups[1]!.stop();
    // Move virtual time on in small steps until the request ends (its retry back-off is virtual).
    const answered = async (p: Promise<{ status: number }>): Promise<number> => {
      let done: number | undefined;
      void p.then((r) => {
        done = r.status;
      });
      while (done === undefined) {
        await new Promise((r) => setTimeout(r, 5));
        await clock.advanceAsync(10);
      }
      return done;
    };
    for (let i = 0; i < 4; i++) assert.equal(await answered(get(url())), 200);
    assert.match(await (await fetch(`http://127.0.0.1:${sc.adminPort}/endpoints`)).text(), /"breaker": ?"open"/);
    let calls = 0;
    ups[0]!.behaviour = (_req, res) => {
      if (calls++ === 0) {
        res.statusCode = 503;
        res.setHeader('retry-after', '1');
      }
      res.end();
    };
    const p = get(url());
    await until(() => calls === 1, 'the first attempt (503, retry after 1 s)');
    await new Promise((r) => setTimeout(r, 50)); // the 503 reaches the sidecar, which schedules the retry
    await clock.advanceAsync(50); // the hedge is due: no attempt is out, the retry is waiting
    await new Promise((r) => setTimeout(r, 20));
    await clock.advanceAsync(1000);
    const r = await p;
    assert.equal(r.status, 200, `${r.headers.get('x-ballast-error')}: ${r.body}`);
    assert.equal(calls, 2);
  });

  it('a half-open breaker whose trial request is cancelled (the caller left) makes another trial instead of refusing for good (virtual time)', async () => {
    const clock = new VirtualClock();
    const ups = await upstreams(1, status(500));
    const { url } = await sidecar(
      web(ups, {
        retries: { maxAttempts: 1 },
        outlier: { enabled: false, panicThresholdPercent: 0 },
        hedge: { enabled: false },
        breaker: { endpoint: { consecutiveFailures: 1, openMs: 100, halfOpenTrials: 1 } },
      }),
      clock,
    );
    assert.equal((await get(url())).status, 500);
    assert.equal((await get(url())).headers.get('x-ballast-error'), 'SIDECAR_ERR_CIRCUIT_OPEN');
    await clock.advanceAsync(100); // half-open: one trial may go
    ups[0]!.hold();
    const caller = new AbortController();
    const trial = get(url(), { signal: caller.signal }).catch(() => undefined);
    await until(() => ups[0]!.seen.length === 2, 'the trial reaches the endpoint');
    caller.abort();
    await trial;
    await until(() => ups[0]!.seen[1]!.aborted, 'the trial is cancelled');
    ups[0]!.behaviour = ok();
    const r = await get(url());
    assert.equal(r.status, 200, `${r.headers.get('x-ballast-error')}: ${r.body}`);
  });

  it('retries honour the budget: when it is spent, the failure is returned as it is', async () => {
    const ups = await upstreams(2, status(503));
    const { url, metrics } = await sidecar(web(ups, { retries: { budget: { ratioPercent: 0, minPerSecond: 0 } } }));
    assert.equal((await get(url())).status, 503);
    const m = await metrics.registry.getSingleMetricAsString('ballast_sidecar_retries_total');
    assert.doesNotMatch(m, /ballast_sidecar_retries_total\{/, 'no retry was spent');
  });

  it('a body larger than the replay buffer is sent once and not retried; a small one is retried', async () => {
    const ups = await upstreams(2);
    ups[0]!.behaviour = status(503);
    const { url } = await sidecar({
      replayBufferBytes: 1024,
      ...web(ups, { balancer: { kind: 'roundRobin' }, outlier: { enabled: false }, breaker: { endpoint: { consecutiveFailures: 0 } } }),
    });
    const big = [];
    const small = [];
    for (let i = 0; i < 4; i++) big.push((await get(url(), { method: 'PUT', body: 'x'.repeat(4096) })).status);
    for (let i = 0; i < 4; i++) small.push((await get(url(), { method: 'PUT', body: 'x'.repeat(100) })).status);
    assert.ok(big.includes(503), `big: ${big}`);
    assert.deepEqual(small, [200, 200, 200, 200]);
  });

  it('Retry-After is honoured (virtual time): the retry waits as long as the server asked', async () => {
    const clock = new VirtualClock();
    const ups = await upstreams(2);
    ups[0]!.behaviour = status(503, { 'retry-after': '2' });
    const { url } = await sidecar(web(ups, { balancer: { kind: 'roundRobin' } }), clock);
    const p = get(url());
    await until(() => ups[0]!.seen.length === 1, 'the first attempt');
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(ups[1]!.seen.length, 0, 'not retried before 2 s');
    await clock.advanceAsync(2000);
    assert.equal((await p).status, 200);
    assert.equal(ups[1]!.seen.length, 1);
  });

  it('attempt timeout (virtual time): a silent endpoint is abandoned and the next one answers; the overall deadline gives 504', async () => {
    const clock = new VirtualClock();
    const ups = await upstreams(2);
    ups[0]!.hold();
    const { url } = await sidecar(web(ups, { balancer: { kind: 'roundRobin' }, timeouts: { attemptMs: 100, requestMs: 1000 } }), clock);
    const p = get(url());
    await until(() => ups[0]!.seen.length === 1, 'the first attempt');
    await clock.advanceAsync(100); // the attempt times out...
    await clock.advanceAsync(25); // ...and the first retry's back-off (full jitter below 25 ms) passes
    assert.equal((await p).status, 200);
    await until(() => ups[0]!.seen[0]!.aborted, 'the abandoned attempt is cancelled');
    ups[1]!.hold();
    const q = get(url(), { method: 'POST', body: 'x' });
    await until(() => ups[0]!.seen.length + ups[1]!.seen.length === 3, 'the POST');
    await clock.advanceAsync(1000);
    const r = await q;
    assert.equal(r.status, 504);
    assert.equal(r.headers.get('x-ballast-error'), 'SIDECAR_ERR_TIMEOUT');
  });

  it("deadlines propagate: the caller's x-ballast-timeout-ms shortens ours and the time left is passed on", async () => {
    const ups = await upstreams(1);
    const { url } = await sidecar(web(ups));
    await get(url(), { headers: { 'x-ballast-timeout-ms': '800' } });
    const left = Number(ups[0]!.seen[0]!.headers['x-ballast-timeout-ms']);
    assert.ok(left > 0 && left <= 800, `passed on ${left}`);
  });

  it('circuit breaker: the upstream breaker opens on failures and then fails fast with SIDECAR_ERR_CIRCUIT_OPEN', async () => {
    const ups = await upstreams(1, status(500));
    const { url } = await sidecar(
      web(ups, {
        retries: { maxAttempts: 1 },
        outlier: { enabled: false },
        breaker: { endpoint: { consecutiveFailures: 0 }, upstream: { failureRatePercent: 50, minCalls: 5 } },
      }),
    );
    for (let i = 0; i < 5; i++) assert.equal((await get(url())).status, 500);
    const r = await get(url());
    assert.equal(r.status, 503);
    assert.equal(r.headers.get('x-ballast-error'), 'SIDECAR_ERR_CIRCUIT_OPEN');
    assert.ok(r.headers.get('retry-after'));
    assert.equal(ups[0]!.seen.length, 5, 'the open breaker sent nothing');
  });

  it("panic routing: when failures on one path open every endpoint's breaker, other requests still go through (Envoy's panic threshold applies to breakers too); with the threshold at 0 they are refused", async () => {
    // 500: a failure of those requests, not an overload signal (a 503 would rightly engage client-side throttling).
    const failing: Behaviour = (req, res, n) => (req.url?.startsWith('/bad') ? status(500) : ok())(req, res, n);
    const ups = await upstreams(2, failing);
    const { url } = await sidecar(
      web(ups, {
        retries: { maxAttempts: 2, retryOn: ['5xx'] },
        balancer: { kind: 'roundRobin' },
        breaker: { endpoint: { consecutiveFailures: 2, openMs: 60_000 } },
      }),
    );
    for (let i = 0; i < 4; i++) assert.equal((await get(url('/bad'))).status, 500);
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) statuses.push((await get(url('/good'))).status);
    assert.deepEqual(statuses, Array(20).fill(200), 'healthy requests are served while every breaker is open');
    const strict = await upstreams(2, failing);
    const s2 = await sidecar(
      web(strict, {
        retries: { maxAttempts: 2, retryOn: ['5xx'] },
        balancer: { kind: 'roundRobin' },
        outlier: { panicThresholdPercent: 0 },
        breaker: { endpoint: { consecutiveFailures: 2, openMs: 60_000 } },
      }),
    );
    for (let i = 0; i < 4; i++) await get(s2.url('/bad'));
    const r = await get(s2.url('/good'));
    assert.equal(r.status, 503);
    assert.equal(
      r.headers.get('x-ballast-error'),
      'SIDECAR_ERR_CIRCUIT_OPEN',
      "every endpoint's breaker is open: a local refusal, named as such",
    );
  });

  it('bulkhead: maxConcurrent run, queueLength wait, the rest fail fast; a waiter times out (virtual time)', async () => {
    const clock = new VirtualClock();
    const ups = await upstreams(1);
    ups[0]!.hold();
    const { url } = await sidecar(
      web(ups, { bulkhead: { maxConcurrent: 2, queueLength: 1, queueWaitMs: 500 }, shed: { adaptive: { enabled: false } } }),
      clock,
    );
    const running = [get(url()), get(url())];
    await until(() => ups[0]!.seen.length === 2, 'two running');
    const queued = get(url());
    await new Promise((r) => setTimeout(r, 50));
    const full = await get(url());
    assert.equal(full.status, 503);
    assert.equal(full.headers.get('x-ballast-error'), 'SIDECAR_ERR_BULKHEAD_FULL');
    await clock.advanceAsync(500);
    assert.equal((await queued).headers.get('x-ballast-error'), 'SIDECAR_ERR_QUEUE_TIMEOUT');
    ups[0]!.releaseAll();
    for (const r of await Promise.all(running)) assert.equal(r.status, 200);
  });

  it('a request the bulkhead refuses gives back its place under the adaptive limit: after a burst of refusals the next requests pass', async () => {
    const ups = await upstreams(1);
    ups[0]!.hold();
    const { sc, url } = await sidecar(
      web(ups, {
        bulkhead: { maxConcurrent: 1, queueLength: 0 },
        shed: { adaptive: { initialLimit: 4, minLimit: 4, maxLimit: 4 }, throttle: { enabled: false } },
      }),
    );
    const running = get(url());
    await until(() => ups[0]!.seen.length === 1, 'one running');
    for (let i = 0; i < 8; i++) assert.equal((await get(url())).headers.get('x-ballast-error'), 'SIDECAR_ERR_BULKHEAD_FULL');
    const admin = `http://127.0.0.1:${sc.adminPort}`;
    const inflight = async () =>
      ((await (await fetch(`${admin}/endpoints`)).json()) as Array<{ concurrencyInflight: number }>)[0]!.concurrencyInflight;
    assert.equal(await inflight(), 1, 'only the running request holds a place under the adaptive limit');
    ups[0]!.behaviour = ok();
    ups[0]!.releaseAll();
    assert.equal((await running).status, 200);
    for (let i = 0; i < 6; i++) assert.equal((await get(url())).status, 200);
    assert.equal(await inflight(), 0);
  });

  it('rate limit per route: 429 with Retry-After on the limited route only', async () => {
    const ups = await upstreams(1);
    const { url } = await sidecar(
      web(ups, {}, { routes: [{ name: 'search', pathPrefix: '/search', policy: { rateLimit: { perSecond: 1, burst: 1 } } }] }),
    );
    assert.equal((await get(url('/search'))).status, 200);
    const r = await get(url('/search'));
    assert.equal(r.status, 429);
    assert.equal(r.headers.get('x-ballast-error'), 'SIDECAR_ERR_RATE_LIMITED');
    assert.equal(r.headers.get('retry-after'), '1');
    assert.equal((await get(url('/other'))).status, 200);
  });

  it('load shedding: once the upstream showed overload, sheddable requests are refused first at the concurrency limit; critical ones still pass', async () => {
    const ups = await upstreams(1, status(503));
    const { url } = await sidecar(
      web(ups, {
        shed: { adaptive: { initialLimit: 4, minLimit: 4, maxLimit: 4 }, throttle: { enabled: false } },
        retries: { maxAttempts: 1 },
        breaker: { upstream: { failureRatePercent: 0 }, endpoint: { failureRatePercent: 0, consecutiveFailures: 0 } },
        outlier: { enabled: false },
      }),
    );
    // Overloaded answers (503) are the evidence that turns shedding on.
    for (let i = 0; i < 12; i++) await get(url());
    ups[0]!.hold();
    const base = ups[0]!.seen.length;
    const held = [get(url()), get(url()), get(url())];
    await until(() => ups[0]!.seen.length === base + 3, 'three in flight');
    const shed = await get(url(), { headers: { 'x-ballast-priority': 'sheddable' } });
    assert.equal(shed.headers.get('x-ballast-error'), 'SIDECAR_ERR_SHED');
    const crit = get(url(), { headers: { 'x-ballast-priority': 'critical' } });
    await until(() => ups[0]!.seen.length === base + 4, 'critical admitted');
    ups[0]!.releaseAll();
    await Promise.all([...held, crit]);
  });

  it('hedging (virtual time): a request still unanswered after the delay also goes to another endpoint; the first answer wins, the other is cancelled', async () => {
    const clock = new VirtualClock();
    const ups = await upstreams(2);
    ups[0]!.hold();
    const { url, metrics } = await sidecar(web(ups, { balancer: { kind: 'roundRobin' }, hedge: { enabled: true, delayMs: 50 } }), clock);
    const p = get(url());
    await until(() => ups[0]!.seen.length === 1, 'first attempt');
    await clock.advanceAsync(50);
    const r = await p;
    assert.equal(r.status, 200);
    await until(() => ups[0]!.seen[0]!.aborted, 'the slow attempt is cancelled');
    assert.match(await metrics.registry.getSingleMetricAsString('ballast_sidecar_hedges_total'), /hedges_total\{upstream="web"\} 1/);
  });

  it('outlier detection: five 503s in a row eject an endpoint (visible at /endpoints); traffic goes elsewhere', async () => {
    const ups = await upstreams(3);
    ups[0]!.behaviour = status(503);
    const { sc, url } = await sidecar(web(ups, { balancer: { kind: 'roundRobin' }, breaker: { endpoint: { consecutiveFailures: 0 } } }));
    for (let i = 0; i < 30; i++) assert.equal((await get(url())).status, 200);
    const eps = (await (await fetch(`http://127.0.0.1:${sc.adminPort}/endpoints`)).json()) as Array<{
      endpoints: Array<{ address: string; ejected: boolean }>;
    }>;
    assert.deepEqual(
      eps[0]!.endpoints.filter((e) => e.ejected).map((e) => e.address),
      [ups[0]!.address],
    );
    const before = ups[0]!.seen.length;
    for (let i = 0; i < 10; i++) await get(url());
    assert.equal(ups[0]!.seen.length, before, 'nothing sent to the ejected endpoint');
  });

  it('ring hash on a header: a user sticks to one endpoint', async () => {
    const ups = await upstreams(3);
    const { url } = await sidecar(web(ups, { balancer: { kind: 'ringHash', hashOn: 'header:x-user' } }));
    for (let i = 0; i < 6; i++) await get(url(), { headers: { 'x-user': 'alice' } });
    assert.equal(ups.filter((u) => u.seen.length > 0).length, 1);
  });

  it('fault injection aborts the configured share of requests with the configured status', async () => {
    const ups = await upstreams(1);
    const { url } = await sidecar(web(ups, { fault: { abortPercent: 100, abortStatus: 418 } }));
    const r = await get(url());
    assert.equal(r.status, 418);
    assert.equal(r.headers.get('x-ballast-error'), 'SIDECAR_ERR_FAULT_INJECTED');
    assert.equal(ups[0]!.seen.length, 0);
  });
});

describe('sidecar configuration and operations', () => {
  it('bad configuration is refused with every problem named by its field path', () => {
    assert.throws(
      () =>
        resolveConfig(
          {
            upstreams: [
              {
                name: 'web',
                listen: '127.0.0.1:1',
                endpoints: ['x:1'],
                policy: { retrys: {}, bulkhead: { maxConcurrent: 0 }, balancer: { kind: 'roundrobin' } },
              },
            ],
          },
          'f.yaml',
        ),
      (e: Error) => {
        assert.match(e.message, /config\.upstreams\[0\]\.policy\.retrys: unknown field \(did you mean "retries"\?\)/);
        assert.match(e.message, /policy\.bulkhead\.maxConcurrent: must be at least 1, got 0/);
        assert.match(e.message, /policy\.balancer\.kind: must be one of .* \(did you mean "roundRobin"\?\)/);
        return true;
      },
    );
  });

  it('a document of the wrong shape (upstreams not a list, routes not a list) is refused by field path, not with a TypeError', () => {
    for (const [doc, path] of [
      [{ upstreams: 12 }, /config\.upstreams: /],
      [
        { upstreams: [{ name: 'web', listen: '127.0.0.1:1', endpoints: ['x:1'], httpRoutes: 'all' }] },
        /config\.upstreams\[0\]\.httpRoutes: /,
      ],
      [{ inbound: { name: 'in' } }, /config\.inbound: /],
    ] as const)
      assert.throws(
        () => resolveConfig(doc, 'f.yaml'),
        (e: Error & { code?: string }) => {
          assert.equal(e.code, 'SIDECAR_ERR_CONFIG_INVALID');
          assert.match(e.message, path);
          assert.doesNotMatch(e.message, /is not a function|Cannot read/);
          return true;
        },
      );
  });

  it('hot reload: endpoints change without dropping an in-flight request or an open connection; a bad file keeps the last good config', async () => {
    const ups = await upstreams(2);
    ups[0]!.hold();
    const dir = mkdtempSync(join(tmpdir(), 'sidecar-'));
    const file = join(dir, 'sidecar.yaml');
    const port = 15000 + (process.pid % 5000);
    const write = (text: string) => {
      writeFileSync(`${file}.tmp`, text);
      renameSync(`${file}.tmp`, file);
    };
    write(`admin: 127.0.0.1:0\nupstreams:\n  - name: web\n    listen: 127.0.0.1:${port}\n    endpoints: ["${ups[0]!.address}"]\n`);
    const { loadConfigFile } = await import('../../sidecar/config.ts');
    const sc = new Sidecar(loadConfigFile(file), {
      clock: realClock,
      random: new SeededRandom(1),
      log: silentLogger,
      metrics: new Metrics({ defaultMetrics: false }),
    });
    await sc.start();
    sc.watchFile(file);
    cleanups.push(() => sc.stop(100));
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    cleanups.push(async () => agent.destroy());
    const call = () =>
      new Promise<{ status: number; socket: unknown }>((resolve, reject) => {
        const req = http.get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0, socket: req.socket }));
        });
        req.on('error', reject);
      });
    const inflight = call();
    await until(() => ups[0]!.seen.length === 1, 'in flight on the old endpoint');
    write(`admin: 127.0.0.1:0\nupstreams:\n  - name: web\n    listen: 127.0.0.1:${port}\n    endpoints: ["${ups[1]!.address}"]\n`);
    await until(() => sc.config.upstreams[0]!.endpoints[0]!.address === ups[1]!.address, 'the reload');
    ups[0]!.releaseAll();
    const first = await inflight;
    assert.equal(first.status, 200, 'the in-flight request finished');
    const second = await call();
    assert.equal(second.status, 200);
    assert.equal(second.socket, first.socket, 'the same connection');
    assert.equal(ups[1]!.seen.length, 1, 'new requests go to the new endpoint');
    write('upstreams: [ { name: web, listen: nonsense } ]\n');
    await until(() => (sc as unknown as { config: unknown }).config !== undefined && ups[1]!.seen.length === 1, 'noop');
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal((await call()).status, 200, 'the last good configuration is still serving');
    const dump = (await (await fetch(`http://127.0.0.1:${sc.adminPort}/config`)).json()) as { lastReload: { ok: boolean; error: string } };
    assert.equal(dump.lastReload.ok, false);
    assert.match(dump.lastReload.error, /listen/);
  });

  it("traces: one span per attempt under the caller's traceparent, exported over OTLP/HTTP; the upstream sees the attempt's span as its parent", async () => {
    const batches: unknown[] = [];
    const collector = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => {
        body += c.toString();
      });
      req.on('end', () => {
        if (req.url === '/v1/traces') batches.push(JSON.parse(body));
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((r) => collector.listen(0, '127.0.0.1', r));
    cleanups.push(async () => {
      collector.close();
    });
    const ups = await upstreams(2);
    ups[0]!.behaviour = status(503);
    const { sc, url } = await sidecar({
      ...web(ups, { balancer: { kind: 'roundRobin' }, outlier: { enabled: false } }),
      tracing: { endpoint: `http://127.0.0.1:${(collector.address() as { port: number }).port}`, samplePercent: 0 },
    });
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    assert.equal((await get(url(), { headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` } })).status, 200);
    const sent = [...ups[0]!.seen, ...ups[1]!.seen].map((x) => String(x.headers['traceparent']));
    assert.equal(sent.length, 2, 'a failed attempt and its retry');
    for (const tp of sent) {
      assert.match(tp, new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
      assert.notEqual(tp.split('-')[2], '00f067aa0ba902b7', "the attempt's own span, not the caller's");
    }
    await sc.stop(100);
    type Span = {
      traceId: string;
      spanId: string;
      parentSpanId: string;
      attributes: Array<{ key: string; value: Record<string, unknown> }>;
      status?: { code?: number };
    };
    const spansOf = () =>
      (batches as Array<{ resourceSpans: Array<{ scopeSpans: Array<{ spans: Span[] }> }> }>).flatMap((b) =>
        b.resourceSpans.flatMap((r) => r.scopeSpans.flatMap((x) => x.spans)),
      );
    const answered = () => spansOf().filter((s) => s.attributes.some((a) => a.key === 'http.response.status_code'));
    await until(() => answered().length >= 2, 'spans of both answered attempts at the collector');
    for (const s of spansOf()) {
      assert.equal(s.traceId, traceId);
      assert.equal(s.parentSpanId, '00f067aa0ba902b7');
    }
    // One span per attempt: the two the upstreams answered carry the ids they saw and their
    // statuses. On a loaded machine an attempt can also fail before any upstream saw it (a
    // connection refused or timed out, then retried): its span has no status code and is an error.
    assert.deepEqual(new Set(answered().map((s) => s.spanId)), new Set(sent.map((tp) => tp.split('-')[2])));
    const statuses = answered()
      .map((s) => s.attributes.find((a) => a.key === 'http.response.status_code')?.value['intValue'])
      .map(Number)
      .sort();
    assert.deepEqual(statuses, [200, 503]);
    for (const s of spansOf().filter((x) => !answered().includes(x)))
      assert.equal(s.status?.code, 2, `an unanswered attempt's span is an error: ${JSON.stringify(s)}`);
  });

  it("discovery: snapshots from the operator's stream are applied and acknowledged; a bad one is refused by name; while the server is away the last good configuration serves", async () => {
    const ups = await upstreams(2);
    const { discoveryService } = await import('../../api/discovery.ts');
    const hellos: Array<{ node: string; version: string }> = [];
    const acks: Array<{ version: string; error: string }> = [];
    let stream:
      | ServerDuplexStream<
          { hello?: { node: string; version: string }; ack?: { version: string; error: string } },
          { version: string; upstreams_json: string }
        >
      | undefined;
    const startServer = async (port: number) => {
      const server = new grpc.Server();
      server.addService(discoveryService().service, {
        Stream: (call: NonNullable<typeof stream>) => {
          stream = call;
          call.on('data', (m) => {
            if (m.hello) hellos.push(m.hello);
            if (m.ack) acks.push(m.ack);
          });
          call.on('error', () => undefined);
        },
      });
      const bound = await new Promise<number>((res, rej) =>
        server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))),
      );
      return { server, port: bound };
    };
    let srv = await startServer(0);
    const port = srv.port;
    const listen = `127.0.0.1:${15000 + ((process.pid + 7) % 5000)}`;
    const { sc } = await sidecar({ discovery: { address: `127.0.0.1:${port}` } });
    sc.startDiscovery('shop/web-0');
    await until(() => hellos.length === 1 && stream !== undefined, 'hello');
    assert.deepEqual(hellos[0], { node: 'shop/web-0', version: '' });
    const send = (version: string, upstreamsJson: unknown) => stream!.write({ version, upstreams_json: JSON.stringify(upstreamsJson) });
    send('v1', [{ name: 'orders.shop', listen, endpoints: [ups[0]!.address] }]);
    await until(() => acks.length === 1, 'ack of v1');
    assert.deepEqual(acks[0], { version: 'v1', error: '' });
    assert.equal((await get(`http://${listen}/`)).status, 200);
    send('v2', [{ name: 'orders.shop', listen, endpoints: [ups[0]!.address], policy: { retries: { maxAttempts: 0 } } }]);
    await until(() => acks.length === 2, 'ack of v2');
    assert.equal(acks[1]!.version, 'v2');
    assert.match(acks[1]!.error, /policy\.retries\.maxAttempts: must be at least 1/);
    // The server goes away: the last good configuration keeps serving.
    srv.server.forceShutdown();
    await new Promise((r) => setTimeout(r, 200));
    assert.equal((await get(`http://${listen}/`)).status, 200);
    assert.equal(ups[0]!.seen.length, 2);
    // It comes back: the sidecar reconnects, says which version it holds, and takes the next one.
    stream = undefined;
    srv = await startServer(port);
    cleanups.push(async () => {
      srv.server.forceShutdown();
    });
    await until(() => hellos.length === 2 && stream !== undefined, 'reconnect', 10_000);
    assert.deepEqual(hellos[1], { node: 'shop/web-0', version: 'v1' });
    send('v3', [{ name: 'orders.shop', listen, endpoints: [ups[1]!.address] }]);
    await until(() => acks.some((a) => a.version === 'v3'), 'ack of v3');
    assert.equal((await get(`http://${listen}/`)).status, 200);
    assert.equal(ups[1]!.seen.length, 1, 'the new endpoint');
  });

  it('admin endpoint: /live, /ready, /metrics with per-upstream and per-endpoint series', async () => {
    const ups = await upstreams(1);
    const { sc, url } = await sidecar(web(ups));
    await get(url());
    const admin = `http://127.0.0.1:${sc.adminPort}`;
    assert.equal((await fetch(`${admin}/live`)).status, 200);
    assert.equal((await fetch(`${admin}/ready`)).status, 200);
    const text = await (await fetch(`${admin}/metrics`)).text();
    assert.match(text, /ballast_sidecar_requests_total\{upstream="web",route="default",outcome="2xx"\} 1/);
    assert.match(text, new RegExp(`ballast_sidecar_attempts_total\\{upstream="web",endpoint="${ups[0]!.address}",result="ok"\\} 1`));
    assert.match(text, /ballast_sidecar_concurrency_limit\{upstream="web"\}/);
    assert.match(text, /ballast_sidecar_retry_budget_remaining\{upstream="web"\} \d+/);
    assert.match(text, /ballast_sidecar_queue_length\{upstream="web",route="default"\} 0/);
    assert.match(text, /ballast_sidecar_inflight\{upstream="web",route="default"\} 0/);
  });
});

after(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
