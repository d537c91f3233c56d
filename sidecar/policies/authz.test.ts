import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { AuthorizationPolicy } from '../../api/resiliencepolicy.ts';
import { authorize } from './authz.ts';

const id = (ns: string, sa: string) => `spiffe://cluster.local/ns/${ns}/sa/${sa}`;
const rule = (r: Partial<AuthorizationPolicy['rules'][number]>) => ({ action: 'allow' as const, pathPrefixes: [], methods: [], ...r });

it('first matching rule decides, by caller (ServiceAccount, bare or namespaced, or namespace), path prefix and method; else the default', () => {
  const p: AuthorizationPolicy = {
    default: 'deny',
    rules: [
      rule({ action: 'deny', pathPrefixes: ['/admin'] }),
      rule({ from: { serviceAccounts: ['web', 'batch/reports'] }, pathPrefixes: ['/api/'], methods: ['GET', 'post'] }),
      rule({ from: { namespaces: ['ops'] } }),
      rule({ pathPrefixes: ['/healthz'] }),
    ],
  };
  const ask = (identity: string, method: string, path: string) => authorize(p, 'shop', { identity, method, path });
  assert.deepEqual(ask(id('shop', 'web'), 'GET', '/api/orders'), { allowed: true, rule: 1 });
  assert.deepEqual(ask(id('shop', 'web'), 'POST', '/api/orders'), { allowed: true, rule: 1 }, 'methods match case-insensitively');
  assert.deepEqual(ask(id('shop', 'web'), 'DELETE', '/api/orders'), { allowed: false, rule: 'default' });
  assert.deepEqual(ask(id('batch', 'reports'), 'GET', '/api/x'), { allowed: true, rule: 1 });
  assert.deepEqual(
    ask(id('other', 'web'), 'GET', '/api/x'),
    { allowed: false, rule: 'default' },
    "a bare name is the listener's namespace",
  );
  assert.deepEqual(ask(id('ops', 'anyone'), 'DELETE', '/anything'), { allowed: true, rule: 2 });
  assert.deepEqual(ask(id('ops', 'anyone'), 'GET', '/admin/users'), { allowed: false, rule: 0 }, 'an earlier deny wins');
  assert.deepEqual(ask('', 'GET', '/healthz'), { allowed: true, rule: 3 }, 'a rule without from matches plaintext callers');
  assert.deepEqual(ask('', 'GET', '/api/orders'), { allowed: false, rule: 'default' }, 'rules naming callers need an identity');
});

it('from: {} is any meshed caller; default allow with deny rules; no policy allows all', () => {
  const meshedOnly: AuthorizationPolicy = { default: 'deny', rules: [rule({ from: {} })] };
  assert.equal(authorize(meshedOnly, 'shop', { identity: id('x', 'y'), method: 'GET', path: '/' }).allowed, true);
  assert.equal(authorize(meshedOnly, 'shop', { identity: '', method: 'GET', path: '/' }).allowed, false);
  const denyList: AuthorizationPolicy = {
    default: 'allow',
    rules: [rule({ action: 'deny', from: { serviceAccounts: ['shop/intruder'] } })],
  };
  assert.equal(authorize(denyList, 'shop', { identity: id('shop', 'intruder'), method: 'GET', path: '/' }).allowed, false);
  assert.equal(authorize(denyList, 'shop', { identity: id('shop', 'web'), method: 'GET', path: '/' }).allowed, true);
  assert.equal(authorize(undefined, 'shop', { identity: '', method: 'GET', path: '/' }).allowed, true);
});
