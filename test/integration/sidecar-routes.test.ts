// Gateway API routes in the sidecar, on real sockets: an upstream with httpRoutes (as the operator
// sends them for an HTTPRoute or GRPCRoute attached to its Service) matches each request to a
// rule, applies its filters and sends it to the rule's backends by weight, with the rule's
// timeouts. Two echo servers stand for two Services; the answers say which one served and what it
// received.
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { realClock } from '../../lib/clock.ts';
import { silentLogger } from '../../lib/log.ts';
import { Metrics } from '../../lib/metrics.ts';
import { SeededRandom } from '../../lib/random.ts';
import { resolveConfig } from '../../sidecar/config.ts';
import { Sidecar } from '../../sidecar/sidecar.ts';

interface Echo {
  server: http.Server;
  address: string;
  calls: Map<string, number>;
}

/**
 * An HTTP/1.1 echo: {service, method, path, headers}; /slow waits 2 s; /flaky... answers 500 to
 * its first two calls (per path); /bad502 always 502. `calls` counts the calls per path.
 */
async function echo(service: string): Promise<Echo> {
  const calls = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    const n = (calls.get(url) ?? 0) + 1;
    calls.set(url, n);
    const reply = () => {
      res.setHeader('content-type', 'application/json');
      res.setHeader('x-from', service);
      res.end(JSON.stringify({ service, method: req.method, path: req.url, headers: req.headers }));
    };
    if (url.startsWith('/slow')) setTimeout(reply, 2000);
    else if (url.startsWith('/flaky') && n <= 2) res.writeHead(500).end('not yet');
    else if (url.startsWith('/bad502')) res.writeHead(502).end('bad gateway');
    else reply();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, address: `127.0.0.1:${(server.address() as AddressInfo).port}`, calls };
}

describe('sidecar: Gateway API routes', { timeout: 60_000 }, () => {
  let v1: Echo;
  let v2: Echo;
  let grpcServer: http2.Http2Server;
  let sc: Sidecar;
  let base = '';

  before(async () => {
    v1 = await echo('v1');
    v2 = await echo('v2');
    // A gRPC "service" answering with the method it was called as.
    grpcServer = http2.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const msg = Buffer.from(req.url);
        const frame = Buffer.alloc(5 + msg.length);
        frame.writeUInt32BE(msg.length, 1);
        msg.copy(frame, 5);
        res.writeHead(200, { 'content-type': 'application/grpc' });
        res.addTrailers({ 'grpc-status': '0' });
        res.end(frame);
      });
    });
    await new Promise<void>((r) => grpcServer.listen(0, '127.0.0.1', r));
    const grpcAddr = `127.0.0.1:${(grpcServer.address() as AddressInfo).port}`;
    const noRetry = { retries: { maxAttempts: 1 } };
    const config = resolveConfig(
      {
        admin: '127.0.0.1:0',
        upstreams: [
          {
            name: 'echo.ns',
            listen: '127.0.0.1:0',
            endpoints: [v1.address],
            policy: noRetry,
            httpRoutes: [
              {
                name: 'ns/split',
                created: '2026-12-01T00:00:00Z',
                rules: [
                  {
                    matches: [{ path: { type: 'PathPrefix', value: '/split' } }],
                    backends: [
                      { upstream: 'echo-v1.ns', weight: 70 },
                      { upstream: 'echo-v2.ns', weight: 30 },
                    ],
                  },
                  {
                    matches: [{ headers: [{ type: 'Exact', name: 'version', value: 'two' }] }],
                    backends: [{ upstream: 'echo-v2.ns' }],
                  },
                  {
                    matches: [{ path: { type: 'Exact', value: '/headers' } }],
                    filters: [
                      {
                        type: 'RequestHeaderModifier',
                        requestHeaderModifier: {
                          set: [{ name: 'x-set', value: 'S' }],
                          add: [{ name: 'x-add', value: 'A' }],
                          remove: ['x-drop'],
                        },
                      },
                      {
                        type: 'ResponseHeaderModifier',
                        responseHeaderModifier: { set: [{ name: 'x-resp', value: 'R' }], remove: ['x-from'] },
                      },
                    ],
                    backends: [{ upstream: 'echo-v1.ns' }],
                  },
                  {
                    matches: [{ path: { type: 'PathPrefix', value: '/old' } }],
                    filters: [
                      {
                        type: 'RequestRedirect',
                        requestRedirect: {
                          scheme: 'https',
                          path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' },
                          statusCode: 301,
                        },
                      },
                    ],
                  },
                  {
                    matches: [{ path: { type: 'PathPrefix', value: '/api/v1' } }],
                    filters: [
                      {
                        type: 'URLRewrite',
                        urlRewrite: { hostname: 'rewritten.example', path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/v1' } },
                      },
                    ],
                    backends: [{ upstream: 'echo-v1.ns' }],
                  },
                  {
                    matches: [{ path: { type: 'PathPrefix', value: '/slow' } }],
                    timeouts: { requestMs: 300 },
                    backends: [{ upstream: 'echo-v1.ns' }],
                  },
                  { matches: [{ path: { type: 'PathPrefix', value: '/missing' } }], backends: [{ upstream: '' }] },
                  {
                    // A ResiliencePolicy attached to this route (the operator's gatewayRoute): an upstream of its own, no hosts.
                    matches: [{ path: { type: 'PathPrefix', value: '/flaky-attached' } }],
                    backends: [{ upstream: 'echo-v1.ns.80.route.ns.split' }],
                  },
                  {
                    matches: [{ path: { type: 'PathPrefix', value: '/flaky-once' } }],
                    retry: { codes: [500], attempts: 1 },
                    backends: [{ upstream: 'echo-v1.ns' }],
                  },
                  {
                    matches: [{ path: { type: 'PathPrefix', value: '/flaky' } }, { path: { type: 'PathPrefix', value: '/bad502' } }],
                    retry: { codes: [500], attempts: 2, backoffMs: 60 },
                    backends: [{ upstream: 'echo-v1.ns' }],
                  },
                  {
                    matches: [{ path: { type: 'PathPrefix', value: '/' }, method: 'GET' }],
                    backends: [{ upstream: 'echo-v1.ns' }],
                  },
                ],
              },
            ],
          },
          { name: 'echo-v1.ns', hosts: ['echo-v1'], endpoints: [v1.address], policy: noRetry },
          {
            name: 'echo-v1.ns.80.route.ns.split',
            endpoints: [v1.address],
            policy: { retries: { maxAttempts: 3, retryOn: ['5xx'], backoffBaseMs: 1, backoffMaxMs: 2 } },
          },
          { name: 'echo-v2.ns', hosts: ['echo-v2'], endpoints: [v2.address], policy: noRetry },
          {
            name: 'grpc.ns',
            listen: '127.0.0.1:0',
            endpoints: [grpcAddr],
            httpRoutes: [
              {
                name: 'ns/grpc',
                rules: [{ matches: [{ path: { type: 'Exact', value: '/echo.Echo/Say' } }], backends: [{ upstream: 'grpc.ns' }] }],
              },
            ],
          },
        ],
      },
      'test',
    );
    sc = new Sidecar(config, { clock: realClock, random: new SeededRandom(7), log: silentLogger, metrics: new Metrics() });
    await sc.start();
    base = `http://127.0.0.1:${sc.port('echo.ns')}`;
  });

  after(async () => {
    await sc.stop(100);
    v1.server.close();
    v2.server.close();
    grpcServer.close();
  });

  const get = async (path: string, init: RequestInit = {}) => {
    const r = await fetch(`${base}${path}`, { redirect: 'manual', ...init });
    const text = await r.text();
    return { r, text, body: text.startsWith('{') ? (JSON.parse(text) as Record<string, unknown>) : {} };
  };

  it('weighted backends split traffic between Services by weight', async () => {
    const seen: Record<string, number> = {};
    for (let i = 0; i < 200; i++) {
      const { body } = await get('/split/x');
      const s = body['service'] as string;
      seen[s] = (seen[s] ?? 0) + 1;
    }
    assert.ok((seen['v1'] ?? 0) > 100 && (seen['v2'] ?? 0) > 30, `70/30 split of 200: ${JSON.stringify(seen)}`);
  });

  it('header matches pick their rule; a request no rule matches is answered 404 with the code', async () => {
    // (A GET would take the catch-all GET rule: a method match outranks header matches.)
    assert.equal((await get('/anything', { method: 'POST', headers: { Version: 'two' } })).body['service'], 'v2');
    assert.equal((await get('/anything')).body['service'], 'v1');
    const miss = await get('/anything', { method: 'DELETE' });
    assert.equal(miss.r.status, 404);
    assert.equal(miss.r.headers.get('x-ballast-error'), 'SIDECAR_ERR_ROUTE_NOT_MATCHED');
  });

  it('request and response header modifiers', async () => {
    const { r, body } = await get('/headers', { headers: { 'x-set': 'old', 'x-add': 'first', 'x-drop': 'gone' } });
    const h = body['headers'] as Record<string, string>;
    assert.equal(h['x-set'], 'S');
    assert.equal(h['x-add'], 'first,A');
    assert.equal(h['x-drop'], undefined);
    assert.equal(r.headers.get('x-resp'), 'R');
    assert.equal(r.headers.get('x-from'), null, 'removed from the response');
  });

  it('a redirect is answered by the sidecar; a rewrite changes the path and host the backend sees', async () => {
    const { r } = await get('/old/page?q=1');
    assert.equal(r.status, 301);
    assert.equal(r.headers.get('location'), `https://127.0.0.1/new/page?q=1`);
    const { body } = await get('/api/v1/users?id=3');
    assert.equal(body['path'], '/v1/users?id=3');
    assert.equal((body['headers'] as Record<string, string>)['host'], 'rewritten.example');
  });

  it("the rule's request timeout applies (504), and a backend that did not resolve is answered 500", async () => {
    const slow = await get('/slow');
    assert.equal(slow.r.status, 504);
    assert.equal(slow.r.headers.get('x-ballast-error'), 'SIDECAR_ERR_TIMEOUT');
    const missing = await get('/missing');
    assert.equal(missing.r.status, 500);
    assert.equal(missing.r.headers.get('x-ballast-error'), 'SIDECAR_ERR_BACKEND_INVALID');
  });

  it("HTTPRouteRetry: the rule's codes are retried up to its attempts with at least its back-off, over a policy that never retries; other codes are not", async () => {
    const start = Date.now();
    const ok = await get('/flaky/a');
    assert.equal(ok.r.status, 200, 'two 500s, then the third try answers');
    assert.equal(v1.calls.get('/flaky/a'), 3);
    assert.ok(Date.now() - start >= 120, `two back-offs of at least 60 ms (took ${Date.now() - start} ms)`);
    const once = await get('/flaky-once/b');
    assert.equal(once.r.status, 500, 'one retry is not enough for two 500s');
    assert.equal(v1.calls.get('/flaky-once/b'), 2);
    const bad = await get('/bad502');
    assert.equal(bad.r.status, 502);
    assert.equal(v1.calls.get('/bad502'), 1, '502 is not among the codes');
    // Through the route a policy is attached to: that policy's retries (the Service's own policy never retries).
    const attached = await get('/flaky-attached/d');
    assert.equal(attached.r.status, 200, `${attached.text} after ${v1.calls.get('/flaky-attached/d')} call(s)`);
    assert.equal(v1.calls.get('/flaky-attached/d'), 3);
    // A POST is not idempotent: a 500 it got is not retried (the policy's rule holds).
    const post = await get('/flaky/c', { method: 'POST', body: 'x' });
    assert.equal(post.r.status, 500);
    assert.equal(v1.calls.get('/flaky/c'), 1);
  });

  it('GRPCRoute: a method matches; an unmatched method is UNIMPLEMENTED', async () => {
    const Client = grpc.makeGenericClientConstructor({}, 'Echo');
    const c = new Client(`127.0.0.1:${sc.port('grpc.ns')}`, grpc.credentials.createInsecure());
    const call = (method: string) =>
      new Promise<{ err: grpc.ServiceError | null; v?: Buffer }>((resolve) =>
        c.makeUnaryRequest(
          method,
          (b: Buffer) => b,
          (b: Buffer) => b,
          Buffer.from('hi'),
          (err: grpc.ServiceError | null, v?: Buffer) => resolve({ err, ...(v ? { v } : {}) }),
        ),
      );
    const ok = await call('/echo.Echo/Say');
    assert.equal(ok.err, null);
    assert.equal(ok.v?.toString(), '/echo.Echo/Say');
    const no = await call('/echo.Echo/Other');
    assert.equal(no.err?.code, grpc.status.UNIMPLEMENTED);
    assert.match(no.err?.details ?? '', /SIDECAR_ERR_ROUTE_NOT_MATCHED/);
    c.close();
  });
});
