import assert from 'node:assert/strict';
import { describe, it, test } from 'node:test';
import {
  type HttpRoute,
  RouteTable,
  modifyHeaders,
  modifyPath,
  pickBackend,
  redirectLocation,
  routeProblems,
  underPrefix,
} from './routes.ts';

const route = (name: string, rules: HttpRoute['rules'], created = '2026-12-01T00:00:00Z'): HttpRoute => ({ name, created, rules });
const none = (): undefined => undefined;
const hdrs =
  (h: Record<string, string>) =>
  (n: string): string | undefined =>
    h[n];

test('PathPrefix matches element by element; a trailing slash in the prefix changes nothing', () => {
  assert.ok(underPrefix('/foo', '/foo'));
  assert.ok(underPrefix('/foo/', '/foo'));
  assert.ok(underPrefix('/foo/bar', '/foo/'));
  assert.ok(!underPrefix('/foobar', '/foo'));
  assert.ok(underPrefix('/anything', '/'));
});

test('precedence: Exact, then the longest prefix, then method, headers and query parameters, then the older route', () => {
  const t = new RouteTable([
    route('ns/prefix', [
      { matches: [{ path: { type: 'PathPrefix', value: '/' } }] },
      { matches: [{ path: { type: 'PathPrefix', value: '/v2' } }] },
    ]),
    route('ns/exact', [{ matches: [{ path: { type: 'Exact', value: '/v2/orders' } }] }]),
    route('ns/method', [{ matches: [{ path: { type: 'PathPrefix', value: '/v2' }, method: 'POST' }] }]),
    route('ns/header', [
      {
        matches: [
          {
            path: { type: 'PathPrefix', value: '/v2' },
            headers: [{ type: 'Exact', name: 'X-Version', value: 'canary' }],
          },
        ],
      },
    ]),
    route('ns/query', [
      { matches: [{ path: { type: 'PathPrefix', value: '/v2' }, queryParams: [{ type: 'Exact', name: 'debug', value: '1' }] }] },
    ]),
  ]);
  const pick = (m: string, t0: string, h: Record<string, string> = {}) => {
    const c = t.choose(m, t0, hdrs(h));
    return c && `${c.route}#${c.rule}`;
  };
  assert.equal(pick('GET', '/v2/orders'), 'ns/exact#0');
  assert.equal(pick('GET', '/v2/items'), 'ns/prefix#1', 'the longer prefix');
  assert.equal(pick('GET', '/v1'), 'ns/prefix#0');
  assert.equal(pick('POST', '/v2/items', { 'x-version': 'canary' }), 'ns/method#0', 'a method match outranks header matches');
  assert.equal(pick('GET', '/v2/items', { 'x-version': 'canary' }), 'ns/header#0', 'header names are case-insensitive');
  assert.equal(pick('GET', '/v2/items?debug=1'), 'ns/query#0');
  assert.equal(pick('GET', '/v2/items?debug=2'), 'ns/prefix#1');
  // Ties: the older route, then the name.
  const tie = new RouteTable([route('ns/b', [{}], '2026-12-01T00:00:00Z'), route('ns/a', [{}], '2026-12-02T00:00:00Z')]);
  assert.equal(tie.choose('GET', '/', none)?.route, 'ns/b');
  assert.equal(new RouteTable([route('ns/b', [{}]), route('ns/a', [{}])]).choose('GET', '/', none)?.route, 'ns/a');
});

test('regular expressions match whole values; nothing matching gives no rule', () => {
  const t = new RouteTable([
    route('ns/re', [
      {
        matches: [
          {
            path: { type: 'RegularExpression', value: '/users/[0-9]+' },
            headers: [{ type: 'RegularExpression', name: 'x-tier', value: 'gold|silver' }],
          },
        ],
      },
    ]),
  ]);
  assert.equal(t.choose('GET', '/users/42', hdrs({ 'x-tier': 'gold' }))?.route, 'ns/re');
  assert.equal(t.choose('GET', '/users/42/x', hdrs({ 'x-tier': 'gold' })), undefined);
  assert.equal(t.choose('GET', '/users/42', hdrs({ 'x-tier': 'golden' })), undefined);
  assert.equal(t.choose('GET', '/users/42', none), undefined, 'a missing header does not match');
});

test('weighted backends: shares follow weights, weight 0 never chosen, none with weight gives none', () => {
  const b = [
    { upstream: 'a', weight: 3 },
    { upstream: 'b', weight: 1 },
    { upstream: 'c', weight: 0 },
  ];
  const counts: Record<string, number> = {};
  for (let i = 0; i < 1000; i++) {
    const u = pickBackend(b, i / 1000)!.upstream;
    counts[u] = (counts[u] ?? 0) + 1;
  }
  assert.deepEqual(counts, { a: 750, b: 250 });
  assert.equal(pickBackend([{ upstream: 'a', weight: 0 }], 0.5), undefined);
  assert.equal(pickBackend([], 0.5), undefined);
});

test('path rewrites and redirects as the Gateway API conformance cases spell them', () => {
  const m = { path: { type: 'PathPrefix' as const, value: '/prefix/one' } };
  assert.equal(modifyPath('/prefix/one/two', { type: 'ReplacePrefixMatch', replacePrefixMatch: '/one' }, m), '/one/two');
  assert.equal(modifyPath('/prefix/one', { type: 'ReplacePrefixMatch', replacePrefixMatch: '/one' }, m), '/one');
  const strip = { path: { type: 'PathPrefix' as const, value: '/strip-prefix' } };
  assert.equal(modifyPath('/strip-prefix/three', { type: 'ReplacePrefixMatch', replacePrefixMatch: '/' }, strip), '/three');
  assert.equal(modifyPath('/strip-prefix', { type: 'ReplacePrefixMatch', replacePrefixMatch: '/' }, strip), '/');
  assert.equal(modifyPath('/full/path', { type: 'ReplaceFullPath', replaceFullPath: '/one' }, m), '/one');
  const req = { scheme: 'http' as const, authority: 'echo', target: '/scheme?x=1' };
  assert.equal(redirectLocation({ scheme: 'https' }, req, {}), 'https://echo/scheme?x=1');
  assert.equal(redirectLocation({ hostname: 'example.org', port: 8080 }, req, {}), 'http://example.org:8080/scheme?x=1');
  assert.equal(redirectLocation({ scheme: 'https', port: 443 }, req, {}), 'https://echo/scheme?x=1');
  assert.equal(redirectLocation({}, { ...req, authority: 'echo:8000' }, {}), 'http://echo:8000/scheme?x=1');
  assert.equal(redirectLocation({ scheme: 'https' }, { ...req, authority: 'echo:8000' }, {}), 'https://echo/scheme?x=1');
  assert.equal(
    redirectLocation({ path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/one' } }, { ...req, target: '/prefix/one/two' }, m),
    'http://echo/one/two',
  );
});

test('header modifiers: set replaces, add appends, remove drops, names case-insensitive', () => {
  const h: Record<string, string | string[] | undefined> = { 'x-a': '1', 'x-b': '2', 'x-c': '3' };
  modifyHeaders(h, {
    set: [{ name: 'X-A', value: 'one' }],
    add: [
      { name: 'x-b', value: 'two' },
      { name: 'x-new', value: 'n' },
    ],
    remove: ['X-C'],
  });
  assert.deepEqual(h, { 'x-a': 'one', 'x-b': '2,two', 'x-new': 'n' });
});

describe('route problems the schema cannot see', () => {
  it('a RequestRedirect or URLRewrite filter without the field its type names is refused, not skipped', () => {
    const route = {
      name: 'ns/r',
      created: '2026-01-01T00:00:00Z',
      rules: [
        {
          filters: [{ type: 'RequestRedirect' as const }],
          backends: [{ upstream: 'a.ns', weight: 1, filters: [{ type: 'URLRewrite' as const }] }],
        },
      ],
    };
    assert.deepEqual(
      routeProblems(route, 'up.httpRoutes[0]').map((p) => `${p.path}: ${p.message}`),
      [
        'up.httpRoutes[0].rules[0].filters[0].requestRedirect: is required when type is RequestRedirect',
        'up.httpRoutes[0].rules[0].backends[0].filters[0].urlRewrite: is required when type is URLRewrite',
      ],
    );
  });
});
