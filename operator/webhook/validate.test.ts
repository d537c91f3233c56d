import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { StoreCluster } from '../api/storecluster.ts';
import { type ValidationLookups, validateStoreCluster } from './validate.ts';

const base: StoreCluster = {
  apiVersion: 'ballast.dev/v1alpha1',
  kind: 'StoreCluster',
  metadata: { name: 'orders', namespace: 'shop' },
  spec: { replicas: 3, version: '0.2.0', storage: { size: '1Gi', retainOnScaleDown: false } },
} as StoreCluster;
const with_ = (patch: Partial<StoreCluster['spec']>, status?: StoreCluster['status']): StoreCluster => ({
  ...base,
  spec: { ...base.spec, ...patch },
  ...(status ? { status } : {}),
});
const lookups = (
  o: { classes?: string[]; set?: Array<{ kind: string; name: string }>; secrets?: Record<string, string[]> } = {},
): ValidationLookups => ({
  storageClasses: async () => o.classes ?? ['standard'],
  statefulSet: async () => (o.set ? { owners: o.set } : undefined),
  secretKeys: async (_ns, name) => o.secrets?.[name],
});

describe('StoreCluster validation (what CEL cannot judge)', () => {
  it('a plain StoreCluster passes', async () => {
    assert.deepEqual(await validateStoreCluster('CREATE', base, undefined, lookups()), []);
  });

  it('a missing StorageClass is refused, naming the ones that exist', async () => {
    const [p] = await validateStoreCluster(
      'CREATE',
      with_({ storage: { size: '1Gi', storageClassName: 'fast', retainOnScaleDown: false } }),
      undefined,
      lookups({ classes: ['standard', 'local'] }),
    );
    assert.match(p ?? '', /^spec\.storage\.storageClassName: StorageClass "fast" does not exist; use one of "standard", "local"/);
    assert.deepEqual(
      await validateStoreCluster(
        'CREATE',
        with_({ storage: { size: '1Gi', storageClassName: 'local', retainOnScaleDown: false } }),
        undefined,
        lookups({ classes: ['local'] }),
      ),
      [],
    );
  });

  it('an unchanged class is not looked up again on update (a class removed later does not block edits)', async () => {
    const sc = with_({ storage: { size: '1Gi', storageClassName: 'gone', retainOnScaleDown: false } });
    assert.deepEqual(await validateStoreCluster('UPDATE', { ...sc, spec: { ...sc.spec, replicas: 5 } }, sc, lookups({ classes: [] })), []);
  });

  it('a StatefulSet of the same name that is not its own is refused on create', async () => {
    const [p] = await validateStoreCluster('CREATE', base, undefined, lookups({ set: [{ kind: 'Deployment', name: 'x' }] }));
    assert.match(
      p ?? '',
      /^metadata\.name: a StatefulSet named "orders" already exists in namespace "shop" and is not this StoreCluster's; choose another name/,
    );
    assert.deepEqual(
      await validateStoreCluster('CREATE', base, undefined, lookups({ set: [{ kind: 'StoreCluster', name: 'orders' }] })),
      [],
      'its own (re-created after a delete with orphans)',
    );
  });

  it('the TLS Secrets must exist and hold a certificate, its key and the CA', async () => {
    const sc = with_({ tls: { clientSecretName: 'orders-tls', peerSecretName: 'orders-peer' } });
    const problems = await validateStoreCluster('CREATE', sc, undefined, lookups({ secrets: { 'orders-tls': ['tls.crt', 'tls.key'] } }));
    assert.deepEqual(
      problems.map((p) => p.split(':')[0]),
      ['spec.tls.clientSecretName', 'spec.tls.peerSecretName'],
    );
    assert.match(problems[0] ?? '', /Secret "orders-tls" lacks ca\.crt/);
    assert.match(problems[1] ?? '', /Secret "orders-peer" does not exist in namespace "shop"; create it first/);
    assert.deepEqual(
      await validateStoreCluster(
        'CREATE',
        sc,
        undefined,
        lookups({ secrets: { 'orders-tls': ['ca.crt', 'tls.crt', 'tls.key'], 'orders-peer': ['ca.crt', 'tls.crt', 'tls.key'] } }),
      ),
      [],
    );
  });

  it('while quorum is lost or a recovery runs, replicas and version cannot change; other edits can', async () => {
    const old = with_({}, { phase: 'QuorumLost' } as StoreCluster['status']);
    const problems = await validateStoreCluster('UPDATE', with_({ replicas: 5, version: '0.3.0' }), old, lookups());
    assert.equal(problems.length, 2);
    assert.match(
      problems[0] ?? '',
      /^spec\.replicas: .* the cluster has lost quorum .* bring the members back first \(kubectl get pods -n shop -l app\.kubernetes\.io\/instance=orders\) or approve the recovery plan/,
    );
    assert.match(problems[1] ?? '', /^spec\.version: .*the cluster has lost quorum/);
    const recovering = with_({}, { phase: 'Recovering', recovery: { planId: 'abc123' } } as StoreCluster['status']);
    assert.match(
      (await validateStoreCluster('UPDATE', with_({ replicas: 5 }), recovering, lookups()))[0] ?? '',
      /^spec\.replicas: .*recovery plan abc123 is running \(status\.recovery\); wait until it completes/,
    );
    assert.deepEqual(
      await validateStoreCluster('UPDATE', with_({ replicas: 5 }), with_({}, { phase: 'Ready' } as StoreCluster['status']), lookups()),
      [],
    );
  });
});

describe('StoreCluster validation: going back a version', () => {
  it('refuses 0.2.0 → 0.1.0 once every member runs 0.2.0, and allows it in the middle of the upgrade', async () => {
    const members = (...versions: string[]) =>
      ({ phase: 'Ready', members: versions.map((version, i) => ({ name: `orders-${i}`, version })) }) as unknown as StoreCluster['status'];
    const done = await validateStoreCluster(
      'UPDATE',
      with_({ version: '0.1.0' }),
      with_({ version: '0.2.0' }, members('0.2.0', '0.2.0', '0.2.0')),
      lookups(),
    );
    assert.equal(done.length, 1);
    assert.match(
      done[0] ?? '',
      /^spec\.version: every member runs 0\.2\.0, which writes its data in format 2; 0\.1\.0 reads only format 1 .* Set spec\.version back to 0\.2\.0/,
    );
    assert.deepEqual(
      await validateStoreCluster(
        'UPDATE',
        with_({ version: '0.1.0' }),
        with_({ version: '0.2.0' }, members('0.2.0', '0.1.0', '0.1.0')),
        lookups(),
      ),
      [],
    );
  });
});
