// Client and peer TLS with etcd's flags, certificate authentication on both, and a certificate
// rotated on disk taking effect without a restart.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { makeCerts, presentedSerial, type TestCerts } from '../support/certs.ts';
import { StoreCluster } from '../support/store-cluster.ts';

describe('ballast store over TLS', { timeout: 120_000 }, () => {
  let c: StoreCluster;
  let certs: TestCerts;
  before(async () => {
    certs = makeCerts();
    c = await StoreCluster.start(3, {
      scheme: 'https',
      extraArgs: [
        `--cert-file=${certs.serverCert}`, `--key-file=${certs.serverKey}`, `--trusted-ca-file=${certs.ca}`, '--client-cert-auth',
        `--peer-cert-file=${certs.serverCert}`, `--peer-key-file=${certs.serverKey}`, `--peer-trusted-ca-file=${certs.ca}`, '--peer-client-cert-auth',
      ],
      etcdctlArgs: [`--cacert=${certs.ca}`, `--cert=${certs.clientCert}`, `--key=${certs.clientKey}`],
    });
  });
  after(() => c?.shutdown());

  it('etcdctl with a client certificate reads and writes; members talk over TLS', () => {
    assert.equal(c.etcdctl(['put', 'tls/k', 'v']).status, 0);
    assert.equal(c.etcdctl(['get', 'tls/k', '--print-value-only']).stdout, 'v\n');
    assert.match(c.etcdctl(['member', 'list']).stdout, /https:\/\/127\.0\.0\.1:\d+, https:\/\/127\.0\.0\.1:\d+/);
  });

  it('refuses a client without a certificate, and a client that does not trust the CA', () => {
    const saved = c.etcdctlArgs;
    try {
      c.etcdctlArgs = [`--cacert=${certs.ca}`, '--command-timeout=2s'];
      assert.notEqual(c.etcdctl(['get', 'tls/k']).status, 0, 'no client certificate');
      c.etcdctlArgs = ['--command-timeout=2s'];
      assert.notEqual(c.etcdctl(['get', 'tls/k']).status, 0, 'server certificate not trusted');
    } finally {
      c.etcdctlArgs = saved;
    }
  });

  it('a rotated certificate is served to new connections without a restart', async () => {
    const port = c.members[0]!.clientPort;
    const before = presentedSerial(port, certs);
    const rotated = certs.rotateServer();
    assert.notEqual(rotated, before);
    let now = before;
    for (let i = 0; i < 40 && now !== rotated; i++) {
      await new Promise((r) => setTimeout(r, 500));
      now = presentedSerial(port, certs);
    }
    assert.equal(now, rotated, 'the client port serves the new certificate');
    assert.equal(c.etcdctl(['put', 'tls/after', 'v']).status, 0, 'and the cluster keeps working (peers reconnect with the new certificate)');
  });

  it('https URLs without a certificate fail at start, naming the flag', async () => {
    const { spawnSync } = await import('node:child_process');
    const { bin } = await import('../support/store-cluster.ts');
    const r = spawnSync(bin, ['store', '--listen-client-urls=https://127.0.0.1:1', '--client-cert-auth'], { encoding: 'utf8' });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--cert-file: .*because --listen-client-urls are https/);
    assert.match(r.stderr, /--trusted-ca-file: .*because --client-cert-auth is on/);
  });
});
