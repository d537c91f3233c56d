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
        `--cert-file=${certs.serverCert}`,
        `--key-file=${certs.serverKey}`,
        `--trusted-ca-file=${certs.ca}`,
        '--client-cert-auth',
        `--peer-cert-file=${certs.serverCert}`,
        `--peer-key-file=${certs.serverKey}`,
        `--peer-trusted-ca-file=${certs.ca}`,
        '--peer-client-cert-auth',
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

  it('the etcdctl surface works over TLS: watch, lease, compaction, snapshot save, lock, elect, hashkv', async () => {
    const { spawn } = await import('node:child_process');
    const { join } = await import('node:path');
    const ok = (args: string[]) => {
      const r = c.etcdctl(args);
      assert.equal(r.status, 0, `etcdctl ${args.join(' ')}: ${r.stderr}`);
      return r.stdout + r.stderr;
    };
    const env = { ...process.env, ETCDCTL_API: '3' };
    const tlsArgs = [`--endpoints=${c.endpoints()}`, ...c.etcdctlArgs];
    const w = spawn('etcdctl', [...tlsArgs, 'watch', 'tw/', '--prefix', '--prev-kv'], { env });
    let out = '';
    w.stdout.on('data', (d: Buffer) => (out += d.toString()));
    await new Promise((r) => setTimeout(r, 500));
    ok(['put', 'tw/a', '1']);
    ok(['put', 'tw/a', '2']);
    for (let i = 0; i < 50 && !out.includes('2\n'); i++) await new Promise((r) => setTimeout(r, 100));
    w.kill();
    assert.match(out, /PUT\ntw\/a\n1\nPUT\ntw\/a\n1\ntw\/a\n2\n/);
    const id = /lease ([0-9a-f]+) granted/.exec(ok(['lease', 'grant', '30']))![1]!;
    ok(['put', 'tw/l', 'x', `--lease=${id}`]);
    assert.match(ok(['lease', 'keep-alive', '--once', id]), /keepalived/);
    assert.match(ok(['lease', 'timetolive', id, '--keys']), /attached keys\(\[tw\/l\]\)/);
    ok(['lease', 'revoke', id]);
    const rev = (JSON.parse(c.etcdctl(['put', 'tw/c', 'x', '-w', 'json']).stdout) as { header: { revision: number } }).header.revision;
    assert.match(ok(['compaction', String(rev)]), /compacted revision/);
    const snap = c.etcdctl(['snapshot', 'save', join(c.dir, 'tls-backup.db')], { endpoints: `127.0.0.1:${c.members[0]!.clientPort}` });
    assert.match(snap.stdout + snap.stderr, /Snapshot saved at/, 'snapshot save takes one endpoint');
    const lock = spawn('etcdctl', [...tlsArgs, 'lock', 'tlock'], { env });
    let lockOut = '';
    lock.stdout.on('data', (d: Buffer) => (lockOut += d.toString()));
    for (let i = 0; i < 50 && !lockOut.includes('tlock/'); i++) await new Promise((r) => setTimeout(r, 100));
    lock.kill('SIGINT');
    assert.match(lockOut, /^tlock\//);
    const elect = spawn('etcdctl', [...tlsArgs, 'elect', 'telect', 'me'], { env });
    let electOut = '';
    elect.stdout.on('data', (d: Buffer) => (electOut += d.toString()));
    for (let i = 0; i < 50 && !electOut.includes('me'); i++) await new Promise((r) => setTimeout(r, 100));
    elect.kill('SIGINT');
    assert.match(electOut, /telect\/[0-9a-f]+\nme\n/);
    const hashes = (JSON.parse(c.etcdctl(['endpoint', 'hashkv', '-w', 'json']).stdout) as Array<{ HashKV: { hash: number } }>).map(
      (h) => h.HashKV.hash,
    );
    assert.equal(hashes.length, 3);
    assert.equal(new Set(hashes).size, 1, 'HashKV equal on every member');
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
    assert.equal(
      c.etcdctl(['put', 'tls/after', 'v']).status,
      0,
      'and the cluster keeps working (peers reconnect with the new certificate)',
    );
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
