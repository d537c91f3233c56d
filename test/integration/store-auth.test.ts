// Auth, as etcd's users meet it: etcdctl's `user`, `role` and `auth` commands and every kind of
// call with and without credentials, run against etcd v3.5 (the anchor, in the same run) and
// against a 3-member `ballast store`, must give the same answers, errors and exit codes. Then
// what a comparison cannot show: the `etcd3` npm client's auth, JWT tokens checked by every
// member, CN identity from client certificates, and the auth state surviving restarts,
// snapshots and a member that joins later.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { after, describe, it } from 'node:test';
import { Etcd3, EtcdPermissionDeniedError } from 'etcd3';
import { makeCerts } from '../support/certs.ts';
import { EtcdMember } from '../support/etcd.ts';
import { StoreCluster, bin } from '../support/store-cluster.ts';

interface Step {
  /** etcdctl's arguments (after --endpoints). */
  args: string[];
  /** As whom (user:password), or nobody. */
  as?: string;
  input?: string;
  /** Compare only the exit status (the output holds ids or revisions). */
  statusOnly?: boolean;
  /**
   * Where ballast answers differently on purpose (docs/store.md, Known differences): what each
   * says. etcd 3.5 sends some auth refusals unconverted (status UNKNOWN, its internal "auth: ..."
   * text); ballast sends them as it does every other refusal, with etcd's public status and message.
   */
  differs?: { etcd: RegExp; ballast: RegExp };
}

const root = 'root:rootpw';
const alice = 'alice:pass';

/** etcd's e2e auth scenarios (tests/e2e/ctl_v3_auth_test.go), as a user types them. */
const steps: Step[] = [
  { args: ['user', 'add', 'root', '--new-user-password=rootpw'] },
  { args: ['auth', 'enable'] },
  { args: ['auth', 'enable'], as: root },
  { args: ['put', 'foo', 'bar'] },
  { args: ['get', 'foo'], as: 'root:wrong' },
  { args: ['get', 'foo'], as: 'nobody:x' },
  { args: ['put', 'foo', 'bar'], as: root },
  { args: ['role', 'add', 'app'], as: root },
  { args: ['role', 'add', 'app'], as: root },
  { args: ['role', 'grant-permission', 'app', 'readwrite', 'foo'], as: root },
  { args: ['role', 'grant-permission', 'app', 'read', '/pre/', '--prefix'], as: root },
  { args: ['role', 'grant-permission', 'app', 'write', '/w/', '/w0'], as: root },
  { args: ['role', 'grant-permission', 'app', 'read', 'zz', '--from-key'], as: root },
  { args: ['role', 'grant-permission', 'nope', 'read', 'x'], as: root },
  { args: ['role', 'get', 'app'], as: root },
  { args: ['user', 'add', 'alice', '--new-user-password=pass'], as: root },
  { args: ['user', 'add', 'alice', '--new-user-password=pass'], as: root },
  { args: ['user', 'grant-role', 'alice', 'app'], as: root },
  { args: ['user', 'grant-role', 'alice', 'nope'], as: root },
  { args: ['user', 'grant-role', 'ghost', 'app'], as: root },
  { args: ['put', 'foo', 'bar2'], as: alice },
  { args: ['get', 'foo'], as: alice },
  { args: ['put', 'bad', 'x'], as: alice },
  { args: ['get', 'foo1'], as: alice },
  { args: ['get', 'foo', 'foo1'], as: alice },
  { args: ['put', '/pre/a', 'x'], as: root },
  { args: ['get', '/pre/', '--prefix'], as: alice },
  { args: ['put', '/pre/b', 'x'], as: alice },
  { args: ['put', '/w/a', 'x'], as: alice },
  { args: ['get', '/w/a'], as: alice },
  { args: ['put', 'foo', 'bar3', '--prev-kv'], as: alice },
  { args: ['del', '/w/a'], as: alice },
  { args: ['del', '/w/a', '--prev-kv'], as: alice },
  { args: ['del', '/w/', '--prefix'], as: alice },
  { args: ['get', 'zzz'], as: alice },
  { args: ['get', 'zz', '--from-key'], as: alice },
  { args: ['get', 'z', '--from-key'], as: alice },
  // Both branches are checked, whichever runs.
  { args: ['txn'], as: alice, input: 'value("foo") = "bar3"\n\nput foo bar4\n\nput bad y\n\n' },
  { args: ['txn'], as: alice, input: 'value("foo") = "bar3"\n\nput foo bar4\n\nget /pre/a\n\n' },
  { args: ['txn'], as: alice, input: 'value("bad") = "x"\n\nput foo bar5\n\n\n' },
  { args: ['user', 'list'], as: alice },
  { args: ['user', 'get', 'alice'], as: alice },
  { args: ['user', 'get', 'root'], as: alice },
  { args: ['role', 'get', 'app'], as: alice },
  { args: ['role', 'list'], as: alice },
  { args: ['role', 'add', 'x'], as: alice },
  { args: ['auth', 'disable'], as: alice },
  { args: ['compaction', '1'], as: alice },
  { args: ['member', 'list'], as: alice, statusOnly: true },
  { args: ['member', 'list'], statusOnly: true },
  { args: ['endpoint', 'status'], as: alice, statusOnly: true },
  { args: ['endpoint', 'status'], statusOnly: true },
  {
    args: ['endpoint', 'hashkv'],
    as: alice,
    differs: { etcd: /Unknown desc = auth: permission denied/, ballast: /→ 1 Error: etcdserver: permission denied$/ },
  },
  { args: ['alarm', 'list'], as: alice },
  { args: ['alarm', 'list'] },
  { args: ['alarm', 'disarm'], as: alice },
  { args: ['defrag'], as: alice },
  { args: ['lease', 'grant', '60'] },
  { args: ['lease', 'grant', '60'], as: alice, statusOnly: true },
  { args: ['lease', 'list'], as: alice, statusOnly: true },
  { args: ['lock', 'mylock', 'echo', 'locked'], as: alice },
  { args: ['role', 'grant-permission', 'app', 'readwrite', 'mylock/', '--prefix'], as: root },
  { args: ['lock', 'mylock', 'echo', 'locked'], as: alice },
  { args: ['role', 'revoke-permission', 'app', 'foo'], as: root },
  { args: ['role', 'revoke-permission', 'app', 'foo'], as: root },
  { args: ['role', 'revoke-permission', 'app', '/pre/', '--prefix'], as: root },
  { args: ['get', 'foo'], as: alice },
  { args: ['user', 'passwd', 'alice', '--interactive=false'], as: root, input: 'pass2\n' },
  { args: ['get', '/pre/a'], as: alice },
  { args: ['get', 'zzz'], as: 'alice:pass2' },
  { args: ['user', 'revoke-role', 'alice', 'app'], as: root },
  { args: ['user', 'revoke-role', 'alice', 'app'], as: root },
  { args: ['get', 'zzz'], as: 'alice:pass2' },
  { args: ['user', 'add', 'cn-only', '--no-password'], as: root },
  {
    args: ['get', 'foo'],
    as: 'cn-only:x',
    differs: {
      etcd: /Unknown desc = auth: authentication failed, password was given for no password user/,
      ballast: /InvalidArgument desc = etcdserver: authentication failed, password was given for no password user/,
    },
  },
  { args: ['user', 'delete', 'root'], as: root },
  { args: ['role', 'delete', 'root'], as: root },
  { args: ['user', 'revoke-role', 'root', 'root'], as: root },
  { args: ['user', 'list'], as: root },
  { args: ['role', 'list'], as: root },
  { args: ['role', 'delete', 'app'], as: root },
  { args: ['role', 'delete', 'app'], as: root },
  { args: ['user', 'delete', 'alice'], as: root },
  { args: ['get', 'zzz'], as: 'alice:pass2' },
  { args: ['auth', 'disable'], as: root },
  { args: ['get', 'foo'] },
  { args: ['user', 'list'] },
  { args: ['user', 'delete', 'root'] },
  { args: ['auth', 'enable'] },
];

type Run = (args: string[], input?: string) => { status: number | null; stdout: string; stderr: string };

/** What a step shows a user: the exit status, stdout without ids, and etcdctl's Error: line. */
function play(run: Run): string[] {
  return steps.map((s) => {
    const r = run([...(s.as ? [`--user=${s.as}`] : []), ...s.args], s.input);
    const err = r.stderr
      .split('\n')
      .filter((l) => l.startsWith('Error:'))
      .join(' | ');
    const out = s.statusOnly
      ? ''
      : r.stdout
          .replace(/\b[0-9a-f]{16}\b/g, 'ID')
          .replace(/mylock\/[0-9a-f]+/g, 'mylock/ID')
          .trim();
    return `etcdctl ${s.as ? `--user=${s.as} ` : ''}${s.args.join(' ')} → ${r.status}${out ? ` ${JSON.stringify(out)}` : ''}${err ? ` ${err}` : ''}`;
  });
}

describe('etcdctl auth: ballast answers as etcd v3.5 does', { timeout: 240_000 }, () => {
  let etcd: EtcdMember | undefined;
  let c: StoreCluster | undefined;
  after(async () => {
    await etcd?.stop();
    await c?.shutdown();
  });

  it('users, roles, permissions on keys, prefixes and ranges, root-only calls, passwords, and every refusal', async () => {
    etcd = await EtcdMember.start();
    const anchor = play((args, input) => etcdctlRun(etcd!.endpoint, args, input));
    c = await StoreCluster.start(3);
    const ours = play((args, input) => c!.etcdctl(args, input === undefined ? {} : { input }));
    // Said once, for the record of what was compared.
    console.log(`# ${steps.length} etcdctl steps; etcd ${EtcdMember.version}:\n${anchor.map((l) => `#   ${l}`).join('\n')}`);
    for (const [i, s] of steps.entries()) {
      if (!s.differs) continue;
      assert.match(anchor[i]!, s.differs.etcd, 'etcd still answers this way (if not, drop the difference)');
      assert.match(ours[i]!, s.differs.ballast);
      anchor[i] = ours[i]!;
    }
    assert.deepEqual(ours, anchor);
  });
});

function etcdctlRun(endpoint: string, args: string[], input?: string) {
  const r = spawnSync('etcdctl', [`--endpoints=${endpoint}`, '--dial-timeout=3s', '--command-timeout=10s', ...args], {
    encoding: 'utf8',
    input: input ?? '',
    env: { ...process.env, ETCDCTL_API: '3' },
    timeout: 120_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Restart every member, one at a time, and wait until all answer (as root: auth is on). */
async function restartAll(c: StoreCluster): Promise<void> {
  for (const m of c.members) {
    await c.stop(m.name);
    c.restart(m.name);
  }
  await until(
    () => c.members.every((m) => c.etcdctl(['--user=root:rootpw', 'endpoint', 'status'], { endpoints: c.addr(m) }).status === 0),
    'every member answers after its restart',
  );
}

describe('the etcd3 npm client with a user and password', { timeout: 120_000 }, () => {
  let c: StoreCluster | undefined;
  const clients: Etcd3[] = [];
  after(async () => {
    for (const x of clients) x.close();
    await c?.shutdown();
  });

  it('authenticates, is refused what its roles do not grant (watches too), and authenticates again after a restart forgets its token', async () => {
    c = await StoreCluster.start(3);
    const setup = [
      ['user', 'add', 'root', '--new-user-password=rootpw'],
      ['auth', 'enable'],
      ['--user=root:rootpw', 'role', 'add', 'app'],
      ['--user=root:rootpw', 'role', 'grant-permission', 'app', 'readwrite', '/app/', '--prefix'],
      ['--user=root:rootpw', 'user', 'add', 'app', '--new-user-password=apppw'],
      ['--user=root:rootpw', 'user', 'grant-role', 'app', 'app'],
    ];
    for (const a of setup) assert.equal(c.etcdctl(a).status, 0, a.join(' '));
    const hosts = c.members.map((m) => `http://127.0.0.1:${m.clientPort}`);
    const app = new Etcd3({ hosts, auth: { username: 'app', password: 'apppw' } });
    clients.push(app);
    await app.put('/app/a').value('1');
    assert.equal(await app.get('/app/a').string(), '1');
    await assert.rejects(app.put('/other').value('x').exec(), EtcdPermissionDeniedError);
    await assert.rejects(app.get('/other').string(), EtcdPermissionDeniedError);
    const anonymous = new Etcd3({ hosts });
    clients.push(anonymous);
    await assert.rejects(anonymous.get('/app/a').string(), /user name is empty/);
    // A watch on keys it may read delivers; one on keys it may not is refused.
    const w = await app.watch().prefix('/app/').create();
    const got = new Promise<string>((resolve) => w.on('put', (kv) => resolve(kv.value.toString())));
    await app.put('/app/b').value('2');
    assert.equal(await got, '2');
    await w.cancel();
    await assert.rejects(app.watch().key('/other').create(), /permission denied/);
    // etcd's Lock and Election services work as their caller: a lock under /app/ it may take, one elsewhere not.
    const ep = `127.0.0.1:${c.members[0]!.clientPort}`;
    const token = await authenticate(ep, 'app', 'apppw');
    const locked = await rawCall(ep, 'Lock', 'Lock', { name: Buffer.from('/app/lock') }, token, 'v3lockpb');
    assert.match(Buffer.from(locked['key'] as Buffer).toString(), /^\/app\/lock\//);
    await rawCall(ep, 'Lock', 'Unlock', { key: locked['key'] }, token, 'v3lockpb');
    await assert.rejects(rawCall(ep, 'Lock', 'Lock', { name: Buffer.from('/other-lock') }, token, 'v3lockpb'), /permission denied/);
    await assert.rejects(
      rawCall(ep, 'Election', 'Leader', { name: Buffer.from('/other-election') }, token, 'v3electionpb'),
      /permission denied/,
    );
    // Every member forgets its tokens when it restarts: the client authenticates again by itself.
    await restartAll(c);
    await app.put('/app/c').value('3');
    assert.equal(await app.get('/app/c').string(), '3');
  });
});

describe('JWT tokens (--auth-token=jwt,...)', { timeout: 120_000 }, () => {
  let c: StoreCluster | undefined;
  after(() => c?.shutdown());

  it('a token signed by one member is honoured by the others; a token from before an auth change is refused as old', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ballast-jwt-'));
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    writeFileSync(join(dir, 'priv.pem'), privateKey.export({ type: 'pkcs1', format: 'pem' }));
    writeFileSync(join(dir, 'pub.pem'), publicKey.export({ type: 'spki', format: 'pem' }));
    c = await StoreCluster.start(3, {
      extraArgs: [`--auth-token=jwt,pub-key=${join(dir, 'pub.pem')},priv-key=${join(dir, 'priv.pem')},sign-method=RS256,ttl=10m`],
    });
    for (const a of [
      ['user', 'add', 'root', '--new-user-password=rootpw'],
      ['auth', 'enable'],
    ])
      assert.equal(c.etcdctl(a).status, 0, a.join(' '));
    const [m1, m2] = c.members as [(typeof c.members)[0], (typeof c.members)[0]];
    const token = await authenticate(`127.0.0.1:${m1.clientPort}`, 'root', 'rootpw');
    assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/, 'a JWT');
    const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
    assert.equal(claims['username'], 'root');
    assert.equal(typeof claims['revision'], 'number');
    assert.equal(typeof claims['exp'], 'number');
    const put = (port: number, tok: string) =>
      rawCall(`127.0.0.1:${port}`, 'KV', 'Put', { key: Buffer.from('k'), value: Buffer.from('v') }, tok);
    await put(m2.clientPort, token); // signed by m1, checked by m2
    assert.equal(c.etcdctl(['--user=root:rootpw', 'role', 'add', 'r']).status, 0);
    await assert.rejects(put(m2.clientPort, token), /revision of auth store is old/);
    await assert.rejects(put(m2.clientPort, `${token.slice(0, -4)}AAAA`), /invalid auth token/);
  });

  it('bad --auth-token values are refused at start, saying what to fix', async () => {
    const run = (args: string[]) => spawnSync(bin, args, { encoding: 'utf8', timeout: 30_000 });
    const r = run(['store', '--auth-token=jwt,sign-method=RS256']);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /--auth-token.*RS256 needs pub-key/);
    const r2 = run(['store', '--auth-token=oauth']);
    assert.match(r2.stderr, /--auth-token.*expected simple, or jwt/);
  });
});

describe('CN identity: a client certificate names the user', { timeout: 120_000 }, () => {
  let c: StoreCluster | undefined;
  after(() => c?.shutdown());

  it("with --client-cert-auth and no token, the certificate's common name is the user (a --no-password user)", async () => {
    const certs = makeCerts();
    c = await StoreCluster.start(3, {
      scheme: 'https',
      peerScheme: 'http',
      extraArgs: [
        `--cert-file=${certs.serverCert}`,
        `--key-file=${certs.serverKey}`,
        `--trusted-ca-file=${certs.ca}`,
        '--client-cert-auth',
      ],
      etcdctlArgs: [`--cacert=${certs.ca}`, `--cert=${certs.clientCert}`, `--key=${certs.clientKey}`],
    });
    // The client certificate's CN is "client".
    for (const a of [
      ['user', 'add', 'root', '--new-user-password=rootpw'],
      ['auth', 'enable'],
      ['--user=root:rootpw', 'user', 'add', 'client', '--no-password'],
      ['--user=root:rootpw', 'role', 'add', 'c'],
      ['--user=root:rootpw', 'role', 'grant-permission', 'c', 'readwrite', '/c/', '--prefix'],
      ['--user=root:rootpw', 'user', 'grant-role', 'client', 'c'],
    ]) {
      const r = c.etcdctl(a);
      assert.equal(r.status, 0, `${a.join(' ')}: ${r.stderr}`);
    }
    const ok = c.etcdctl(['put', '/c/x', 'y']);
    assert.equal(ok.status, 0, ok.stderr);
    const denied = c.etcdctl(['put', '/d/x', 'y']);
    assert.match(denied.stderr, /Error: etcdserver: permission denied/);
    assert.match(c.etcdctl(['--user=client:x', 'get', '/c/x']).stderr, /password was given for no password user|authentication failed/);
  });
});

describe('the auth state is replicated and durable', { timeout: 180_000 }, () => {
  let c: StoreCluster | undefined;
  after(() => c?.shutdown());

  it('survives every member restarting, reaches members through snapshots, and a member added later enforces it', async () => {
    c = await StoreCluster.start(3, { extraArgs: ['--snapshot-count=20'] });
    for (const a of [
      ['user', 'add', 'root', '--new-user-password=rootpw'],
      ['--user=root:rootpw', 'role', 'add', 'r'],
      ['--user=root:rootpw', 'role', 'grant-permission', 'r', 'read', '/r/', '--prefix'],
      ['user', 'add', 'u', '--new-user-password=upw'],
      ['user', 'grant-role', 'u', 'r'],
      ['auth', 'enable'],
    ])
      assert.equal(c.etcdctl(a).status, 0, a.join(' '));
    // Enough writes that every member snapshots (the auth state is in the snapshot, not only the log).
    for (let i = 0; i < 60; i++) assert.equal(c.etcdctl(['--user=root:rootpw', 'put', `/r/${i}`, 'v']).status, 0);
    await restartAll(c);
    for (const m of c.members) {
      const at = { endpoints: `127.0.0.1:${m.clientPort}` };
      assert.equal(
        c.etcdctl(['--user=u:upw', 'get', '/r/1', '--print-value-only'], at).stdout.trim(),
        'v',
        `${m.name} knows u and its role`,
      );
      assert.match(c.etcdctl(['--user=u:upw', 'put', '/r/1', 'w'], at).stderr, /permission denied/, `${m.name} enforces the role`);
      assert.match(c.etcdctl(['get', '/r/1'], at).stderr, /user name is empty/, `${m.name} knows auth is on`);
    }
    const joined = await c.addSpec('m4');
    assert.equal(c.etcdctl(['--user=root:rootpw', 'member', 'add', 'm4', `--peer-urls=http://127.0.0.1:${joined.peerPort}`]).status, 0);
    c.spawn(joined, 'existing');
    const at = { endpoints: c.addr(joined) };
    await until(
      () => c!.etcdctl(['--user=u:upw', 'get', '/r/1', '--print-value-only', '--consistency=s'], at).stdout.trim() === 'v',
      'the new member learned the users',
    );
    assert.match(c.etcdctl(['--user=u:upw', 'put', '/r/2', 'w'], at).stderr, /permission denied/);
  });
});

async function until(f: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (f()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.fail(`timed out waiting: ${what}`);
}

/** Authenticate over raw gRPC; the token. */
async function authenticate(endpoint: string, name: string, password: string): Promise<string> {
  const r = await rawCall(endpoint, 'Auth', 'Authenticate', { name, password });
  return String(r['token']);
}

/** One unary call to etcd's API with an optional token, over grpc-js. */
async function rawCall(
  endpoint: string,
  service: string,
  method: string,
  req: Record<string, unknown>,
  token?: string,
  pkg = 'etcdserverpb',
): Promise<Record<string, unknown>> {
  const grpc = await import('@grpc/grpc-js');
  const { loadProtos } = await import('../../store/api/protos.ts');
  const pb = loadProtos()[pkg] as unknown as Record<
    string,
    new (
      addr: string,
      creds: unknown,
    ) => Record<string, (req: unknown, md: unknown, cb: (e: Error | null, r: Record<string, unknown>) => void) => void> & { close(): void }
  >;
  const Client = pb[service]!;
  const client = new Client(endpoint, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  if (token) md.set('token', token);
  try {
    return await new Promise((resolve, reject) => client[method]!.call(client, req, md, (e, r) => (e ? reject(e) : resolve(r))));
  } finally {
    client.close();
  }
}
