// Watch and Lease on `ballast store`, through Debian's etcdctl and a raw gRPC watch client.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { loadProtos } from '../../store/api/server.ts';
import { EtcdMember } from '../support/etcd.ts';
import { StoreCluster } from '../support/store-cluster.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/* eslint-disable @typescript-eslint/no-explicit-any -- wire objects */
type Wire = Record<string, any>;

/** A raw Watch stream: every response it receives, in order. */
function openWatch(endpoint: string, create: Wire): { responses: Wire[]; send(req: Wire): void; close(): void } {
  const Watch = (loadProtos()['etcdserverpb'] as Record<string, grpc.ServiceClientConstructor>)['Watch'] as grpc.ServiceClientConstructor;
  const client = new Watch(endpoint, grpc.credentials.createInsecure());
  const stream = (client as unknown as { Watch(): grpc.ClientDuplexStream<Wire, Wire> }).Watch();
  const responses: Wire[] = [];
  stream.on('data', (r: Wire) => responses.push(r));
  stream.on('error', () => undefined);
  stream.write({ create_request: create });
  return {
    responses,
    send: (req) => stream.write(req),
    close: () => {
      stream.cancel();
      client.close();
    },
  };
}

const eventsOf = (responses: Wire[]) => responses.flatMap((r) => (r['events'] ?? []) as Wire[]);

describe('ballast store: watch and lease', { timeout: 180_000 }, () => {
  let c: StoreCluster;
  before(async () => {
    c = await StoreCluster.start(3);
  });
  after(() => c?.shutdown());

  const ok = (args: string[]) => {
    const r = c.etcdctl(args);
    assert.equal(r.status, 0, `etcdctl ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };

  it('etcdctl watch --prefix --prev-kv sees puts and deletes as they happen', async () => {
    const w = spawn('etcdctl', [`--endpoints=${c.endpoints()}`, 'watch', 'w/', '--prefix', '--prev-kv'], {
      env: { ...process.env, ETCDCTL_API: '3' },
    });
    let out = '';
    w.stdout.on('data', (d: Buffer) => (out += d.toString()));
    await sleep(500);
    ok(['put', 'w/a', '1']);
    ok(['put', 'w/a', '2']);
    ok(['del', 'w/a']);
    for (let i = 0; i < 50 && !out.includes('DELETE'); i++) await sleep(100);
    w.kill();
    // A DELETE prints its previous key-value, then the deleted key with an empty value.
    assert.match(out, /^PUT\nw\/a\n1\nPUT\nw\/a\n1\nw\/a\n2\nDELETE\nw\/a\n2\nw\/a\n\n$/);
  });

  it('watch --rev replays history, and a compacted revision is refused with compact_revision', () => {
    const first = (JSON.parse(ok(['put', 'h/k', 'v1', '-w', 'json'])) as { header: { revision: number } }).header.revision;
    ok(['put', 'h/k', 'v2']);
    const w = openWatch(`127.0.0.1:${c.members[1]!.clientPort}`, { key: Buffer.from('h/k'), start_revision: String(first) });
    return (async () => {
      for (let i = 0; i < 50 && eventsOf(w.responses).length < 2; i++) await sleep(50);
      w.close();
      assert.deepEqual(
        eventsOf(w.responses).map((e) => e['kv'].value.toString()),
        ['v1', 'v2'],
      );
      const last = (JSON.parse(ok(['put', 'h/k', 'v3', '-w', 'json'])) as { header: { revision: number } }).header.revision;
      ok(['compact', String(last)]);
      const old = openWatch(`127.0.0.1:${c.members[0]!.clientPort}`, { key: Buffer.from('h/k'), start_revision: String(first) });
      for (let i = 0; i < 50 && old.responses.length === 0; i++) await sleep(50);
      old.close();
      const res = old.responses[0]!;
      assert.equal(res['canceled'], true);
      assert.equal(Number(res['compact_revision']), last);
      assert.match(res['cancel_reason'], /compacted/);
    })();
  });

  it('watchers on every member see every revision in order, no gaps or duplicates, across leader moves', async () => {
    const start = (JSON.parse(ok(['put', 'ord/start', 'x', '-w', 'json'])) as { header: { revision: number } }).header.revision;
    const watchers = c.members.map((m) =>
      openWatch(`127.0.0.1:${m.clientPort}`, {
        key: Buffer.from('ord/'),
        range_end: Buffer.from('ord0'),
        start_revision: String(start + 1),
      }),
    );
    const writes = 60;
    for (let i = 0; i < writes; i++) {
      c.etcdctl(['put', `ord/${i % 5}`, String(i)]);
      if (i % 20 === 10) {
        const lead = c.leader();
        const target = c.members.find((m) => m.name !== lead);
        const list = ok(['member', 'list']);
        const id = list
          .split('\n')
          .find((l) => l.includes(`, ${target!.name}, `))!
          .split(',')[0]!;
        c.etcdctl(['move-leader', id], { endpoints: `127.0.0.1:${c.member(lead!).clientPort}` });
      }
    }
    for (let i = 0; i < 100 && watchers.some((w) => eventsOf(w.responses).length < writes); i++) await sleep(50);
    const seqs = watchers.map((w) => eventsOf(w.responses).map((e) => Number(e['kv'].mod_revision)));
    for (const w of watchers) w.close();
    for (const seq of seqs) {
      assert.equal(seq.length, writes, `each watcher got all ${writes} events`);
      for (let i = 1; i < seq.length; i++) assert.ok(seq[i]! > seq[i - 1]!, `revisions strictly increase: ${seq[i - 1]} then ${seq[i]}`);
    }
    assert.deepEqual(seqs[1], seqs[0]);
    assert.deepEqual(seqs[2], seqs[0], 'every member delivers the same sequence');
  });

  it('300 watchers on one stream whose client stops reading: once it reads again, each gets every revision once, in order (fault: a client that stops reading mid-fan-out; promise: nothing lost or repeated, the server catches it up from history)', async () => {
    const ep = `127.0.0.1:${c.members[1]!.clientPort}`;
    const P = loadProtos()['etcdserverpb'] as Record<string, grpc.ServiceClientConstructor>;
    const kv = new (P['KV'] as grpc.ServiceClientConstructor)(ep, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
      Put(req: Wire, cb: (err: Error | null, res: Wire) => void): void;
    };
    const put = (key: string, value: string) =>
      new Promise<number>((resolve, reject) =>
        kv.Put({ key: Buffer.from(key), value: Buffer.from(value) }, (err, res) =>
          err ? reject(err) : resolve(Number(res['header'].revision)),
        ),
      );
    const start = await put('fan/start', 'x');
    const client = new (P['Watch'] as grpc.ServiceClientConstructor)(ep, grpc.credentials.createInsecure());
    const stream = (client as unknown as { Watch(): grpc.ClientDuplexStream<Wire, Wire> }).Watch();
    const watchers = 300;
    const seen = new Map<number, number[]>();
    let created = 0;
    stream.on('data', (r: Wire) => {
      if (r['created']) created++;
      const id = Number(r['watch_id']);
      for (const e of (r['events'] ?? []) as Wire[]) {
        const list = seen.get(id) ?? [];
        list.push(Number(e['kv'].mod_revision));
        seen.set(id, list);
      }
    });
    stream.on('error', () => undefined);
    for (let i = 0; i < watchers; i++)
      stream.write({ create_request: { key: Buffer.from('fan/'), range_end: Buffer.from('fan0'), start_revision: String(start + 1) } });
    for (let i = 0; i < 200 && created < watchers; i++) await sleep(25);
    assert.equal(created, watchers);
    stream.pause(); // stop reading: HTTP/2 flow control stops the server's writes, its buffer fills
    const writes = 150;
    const value = 'v'.repeat(200);
    let last = 0;
    for (let i = 0; i < writes; i++) last = await put(`fan/${i % 7}`, value);
    await sleep(500);
    stream.resume();
    const done = () => [...seen.values()].filter((l) => l.at(-1) === last).length;
    for (let i = 0; i < 600 && done() < watchers; i++) await sleep(50);
    stream.cancel();
    client.close();
    kv.close();
    assert.equal(seen.size, watchers);
    const expected = Array.from({ length: writes }, (_, i) => start + 1 + i);
    for (const [id, revs] of seen) assert.deepEqual(revs, expected, `watcher ${id}: every revision once, in order`);
  });

  it('a progress request is answered with the current revision', async () => {
    const w = openWatch(`127.0.0.1:${c.members[2]!.clientPort}`, { key: Buffer.from('nothing-here') });
    await sleep(200);
    w.send({ progress_request: {} });
    for (let i = 0; i < 50 && w.responses.length < 2; i++) await sleep(50);
    w.close();
    const progress = w.responses.find((r) => !r['created']);
    assert.ok(progress, 'a progress response arrived');
    assert.equal(Number(progress['watch_id']), -1);
    assert.ok(Number(progress['header'].revision) > 0);
  });

  it('lease grant, put --lease, keep-alive, timetolive --keys, list and revoke (which deletes the keys)', () => {
    const grant = ok(['lease', 'grant', '60']);
    const id = /lease ([0-9a-f]+) granted with TTL\(60s\)/.exec(grant)![1]!;
    ok(['put', 'leased/a', '1', `--lease=${id}`]);
    ok(['put', 'leased/b', '2', `--lease=${id}`]);
    assert.match(ok(['lease', 'keep-alive', '--once', id]), new RegExp(`lease ${id} keepalived with TTL\\(60\\)`));
    const ttl = ok(['lease', 'timetolive', id, '--keys']);
    assert.match(
      ttl,
      new RegExp(`lease ${id} granted with TTL\\(60s\\), remaining\\(\\d+s\\), attached keys\\(\\[leased/a leased/b\\]\\)`),
    );
    assert.match(ok(['lease', 'list']), new RegExp(id));
    assert.match(ok(['lease', 'revoke', id]), /revoked/);
    assert.equal(ok(['get', 'leased/', '--prefix']), '');
    const missing = c.etcdctl(['put', 'leased/c', '3', `--lease=${id}`]);
    assert.notEqual(missing.status, 0);
    assert.match(missing.stderr, /requested lease not found/);
  });

  it('a lease that is not kept alive expires and its keys are deleted on every member', async () => {
    const id = /lease ([0-9a-f]+) granted/.exec(ok(['lease', 'grant', '2']))![1]!;
    ok(['put', 'exp/k', 'v', `--lease=${id}`]);
    await sleep(3500);
    for (const m of c.members) {
      assert.equal(c.etcdctl(['get', 'exp/k'], { endpoints: `127.0.0.1:${m.clientPort}` }).stdout, '', `gone on ${m.name}`);
    }
    assert.match(ok(['lease', 'timetolive', id]), /already expired/);
  });

  it('leases survive a leader failover without all expiring at once', async () => {
    const id = /lease ([0-9a-f]+) granted/.exec(ok(['lease', 'grant', '8']))![1]!;
    ok(['put', 'fo/k', 'v', `--lease=${id}`]);
    const lead = await c.waitLeader();
    await c.kill9(lead);
    await c.waitLeader();
    await sleep(1500);
    const survivors = c.members
      .filter((m) => m.name !== lead)
      .map((m) => `127.0.0.1:${m.clientPort}`)
      .join(',');
    assert.equal(
      c.etcdctl(['get', 'fo/k', '--print-value-only'], { endpoints: survivors }).stdout,
      'v\n',
      'the new leader restarted the TTL instead of expiring it',
    );
    // ...and still expires it once nobody keeps it alive.
    await sleep(8000);
    assert.equal(c.etcdctl(['get', 'fo/k'], { endpoints: survivors }).stdout, '', 'expired under the new leader');
    c.restart(lead);
    await c.waitHealthy();
  });
});

describe('ballast store: lock and election (etcdctl lock / elect)', { timeout: 120_000 }, () => {
  let c: StoreCluster;
  before(async () => {
    c = await StoreCluster.start(3);
  });
  after(() => c?.shutdown());

  it('etcdctl lock: a second holder waits until the first releases', async () => {
    const env = { ...process.env, ETCDCTL_API: '3' };
    const first = spawn('etcdctl', [`--endpoints=${c.endpoints()}`, 'lock', 'mylock'], { env });
    let firstOut = '';
    first.stdout.on('data', (d: Buffer) => (firstOut += d.toString()));
    for (let i = 0; i < 50 && !firstOut.includes('mylock/'); i++) await sleep(100);
    assert.match(firstOut, /^mylock\/[0-9a-f]+\n/, 'the first holder got the lock');
    const second = spawn('etcdctl', [`--endpoints=${c.endpoints()}`, 'lock', 'mylock'], { env });
    let secondOut = '';
    second.stdout.on('data', (d: Buffer) => (secondOut += d.toString()));
    await sleep(1500);
    assert.equal(secondOut, '', 'the second waits while the first holds the lock');
    first.kill('SIGINT'); // etcdctl releases the lock (revokes its session) on interrupt
    for (let i = 0; i < 100 && !secondOut.includes('mylock/'); i++) await sleep(100);
    second.kill('SIGINT');
    assert.match(secondOut, /^mylock\/[0-9a-f]+\n/, 'the second got the lock after the release');
  });

  it('etcdctl elect: the first campaigner leads, an observer sees it, the next takes over after resign', async () => {
    const env = { ...process.env, ETCDCTL_API: '3' };
    const observer = spawn('etcdctl', [`--endpoints=${c.endpoints()}`, 'elect', '-l', 'myelection'], { env });
    let seen = '';
    observer.stdout.on('data', (d: Buffer) => (seen += d.toString()));
    const a = spawn('etcdctl', [`--endpoints=${c.endpoints()}`, 'elect', 'myelection', 'alpha'], { env });
    let aOut = '';
    a.stdout.on('data', (d: Buffer) => (aOut += d.toString()));
    for (let i = 0; i < 50 && !aOut.includes('alpha'); i++) await sleep(100);
    assert.match(aOut, /myelection\/[0-9a-f]+\nalpha\n/);
    const b = spawn('etcdctl', [`--endpoints=${c.endpoints()}`, 'elect', 'myelection', 'beta'], { env });
    let bOut = '';
    b.stdout.on('data', (d: Buffer) => (bOut += d.toString()));
    await sleep(1000);
    assert.equal(bOut, '', 'beta waits while alpha leads');
    a.kill('SIGINT'); // resigns
    for (let i = 0; i < 100 && !bOut.includes('beta'); i++) await sleep(100);
    for (let i = 0; i < 50 && !seen.includes('beta'); i++) await sleep(100);
    b.kill('SIGINT');
    observer.kill('SIGINT');
    assert.match(bOut, /myelection\/[0-9a-f]+\nbeta\n/);
    assert.match(seen, /alpha[\s\S]*beta/, 'the observer saw alpha, then beta');
  });
});

describe('ballast store: v3lock and v3election gRPC services', { timeout: 60_000 }, () => {
  let c: StoreCluster;
  before(async () => {
    c = await StoreCluster.start(1);
  });
  after(() => c?.shutdown());

  function client(
    pkg: string,
    svc: string,
  ): Record<string, (req: Wire, cb: (e: grpc.ServiceError | null, r: Wire) => void) => void> & { close(): void } {
    const Ctor = (loadProtos()[pkg] as Record<string, grpc.ServiceClientConstructor>)[svc] as grpc.ServiceClientConstructor;
    return new Ctor(`127.0.0.1:${c.members[0]!.clientPort}`, grpc.credentials.createInsecure()) as never;
  }
  const call = (cl: ReturnType<typeof client>, m: string, req: Wire) =>
    new Promise<Wire>((resolve, reject) => cl[m]!.call(cl, req, (e, r) => (e ? reject(e) : resolve(r))));

  it('Lock waits for the holder, Unlock releases it (no herd: only the next waiter wakes)', async () => {
    const lock = client('v3lockpb', 'Lock');
    const leaseOf = (out: string) => BigInt(`0x${/lease ([0-9a-f]+) granted/.exec(out)![1]}`).toString();
    const l1 = leaseOf(c.etcdctl(['lease', 'grant', '30']).stdout);
    const l2 = leaseOf(c.etcdctl(['lease', 'grant', '30']).stdout);
    const first = await call(lock, 'Lock', { name: Buffer.from('L'), lease: l1 });
    let secondDone = false;
    const second = call(lock, 'Lock', { name: Buffer.from('L'), lease: l2 }).then((r) => {
      secondDone = true;
      return r;
    });
    await sleep(500);
    assert.equal(secondDone, false, 'the second waits');
    await call(lock, 'Unlock', { key: first['key'] });
    const got = await second;
    assert.notDeepEqual(got['key'], first['key']);
    lock.close();
  });

  it('Campaign, Leader, Proclaim and Resign', async () => {
    const el = client('v3electionpb', 'Election');
    const lease = BigInt(`0x${/lease ([0-9a-f]+) granted/.exec(c.etcdctl(['lease', 'grant', '30']).stdout)![1]}`).toString();
    await assert.rejects(call(el, 'Leader', { name: Buffer.from('E') }), /election: no leader/);
    const won = await call(el, 'Campaign', { name: Buffer.from('E'), lease, value: Buffer.from('v1') });
    assert.equal(((await call(el, 'Leader', { name: Buffer.from('E') }))['kv'] as Wire)['value'].toString(), 'v1');
    await call(el, 'Proclaim', { leader: won['leader'], value: Buffer.from('v2') });
    assert.equal(((await call(el, 'Leader', { name: Buffer.from('E') }))['kv'] as Wire)['value'].toString(), 'v2');
    await call(el, 'Resign', { leader: won['leader'] });
    await assert.rejects(call(el, 'Proclaim', { leader: won['leader'], value: Buffer.from('v3') }), /election: not leader/);
    el.close();
  });
});

describe('a watch stream the client half-closes (CloseSend) goes on delivering, as etcd does', { timeout: 60_000 }, () => {
  let c: StoreCluster | undefined;
  let etcd: EtcdMember | undefined;
  after(async () => {
    await etcd?.stop();
    await c?.shutdown();
  });

  /** Opens a watch, half-closes the stream, puts a key: what the client receives and how the stream ends. */
  async function halfClosed(endpoint: string, put: (key: string) => void): Promise<{ events: number; ended: string }> {
    const Watch = (loadProtos()['etcdserverpb'] as Record<string, grpc.ServiceClientConstructor>)['Watch'] as grpc.ServiceClientConstructor;
    const client = new Watch(endpoint, grpc.credentials.createInsecure());
    const stream = (client as unknown as { Watch(): grpc.ClientDuplexStream<Wire, Wire> }).Watch();
    const responses: Wire[] = [];
    let ended = 'open';
    stream.on('data', (r: Wire) => responses.push(r));
    stream.on('status', (s: grpc.StatusObject) => {
      ended = grpc.status[s.code] ?? String(s.code);
    });
    stream.on('error', () => undefined);
    stream.write({ create_request: { key: Buffer.from('half/'), range_end: Buffer.from('half0') } });
    while (!responses.some((r) => r['created'])) await sleep(20);
    stream.end();
    await sleep(300);
    put('half/a');
    for (let i = 0; i < 100 && eventsOf(responses).length === 0 && ended === 'open'; i++) await sleep(50);
    const events = eventsOf(responses).length;
    stream.cancel();
    client.close();
    return { events, ended };
  }

  it('the event after CloseSend arrives and the stream stays open until the client cancels, on etcd and on ballast', async () => {
    etcd = await EtcdMember.start();
    const anchor = await halfClosed(etcd.endpoint, (k) =>
      assert.equal(
        spawnSync('etcdctl', [`--endpoints=${etcd!.endpoint}`, 'put', k, 'v'], { env: { ...process.env, ETCDCTL_API: '3' } }).status,
        0,
      ),
    );
    assert.deepEqual(anchor, { events: 1, ended: 'open' }, `etcd ${EtcdMember.version}`);
    c = await StoreCluster.start(1);
    const ours = await halfClosed(c.endpoints(), (k) => assert.equal(c!.etcdctl(['put', k, 'v']).status, 0));
    assert.deepEqual(ours, anchor);
  });

  it('watches cancelled and half-closed on a connection where a Campaign is waiting: no call on it fails (fault: RST_STREAM and END_STREAM among live streams; promise: the connection and its other calls live on)', async () => {
    const ep = c!.endpoints();
    const P = loadProtos();
    const make = (pkg: string, svc: string) =>
      new ((P[pkg] as Record<string, grpc.ServiceClientConstructor>)[svc] as grpc.ServiceClientConstructor)(
        ep,
        grpc.credentials.createInsecure(),
      ) as unknown as Record<string, (...a: unknown[]) => unknown> & grpc.Client;
    const [el, lease, watch, kv] = [
      make('v3electionpb', 'Election'),
      make('etcdserverpb', 'Lease'),
      make('etcdserverpb', 'Watch'),
      make('etcdserverpb', 'KV'),
    ];
    const call = (cl: Record<string, (...a: unknown[]) => unknown>, m: string, r: Wire, ms = 10_000) =>
      new Promise<Wire>((res, rej) => cl[m]!(r, { deadline: Date.now() + ms }, (e: Error | null, o: Wire) => (e ? rej(e) : res(o))));
    const failures: string[] = [];
    const fail = (e: grpc.ServiceError) => void failures.push(`${grpc.status[e.code]} ${e.details}`);
    const holder = await call(lease, 'LeaseGrant', { TTL: 600 });
    await call(el, 'Campaign', { name: Buffer.from('E'), lease: holder['ID'], value: Buffer.from('a') });
    let ranges = 0;
    for (let round = 0; round < 8; round++) {
      const l = await call(lease, 'LeaseGrant', { TTL: 600 });
      const waiting = call(el, 'Campaign', { name: Buffer.from('E'), lease: l['ID'], value: Buffer.from('b') }, 1500).then(
        () => 'won',
        (e: grpc.ServiceError) => (e.code === grpc.status.DEADLINE_EXCEEDED ? 'waited' : (fail(e), 'failed')),
      );
      for (let j = 0; j < 8; j++) {
        const s = (watch as unknown as { Watch(): grpc.ClientDuplexStream<Wire, Wire> }).Watch();
        s.on('error', () => undefined);
        s.on('data', () => undefined);
        s.write({ create_request: { key: Buffer.from(`w${j}`) } });
        await sleep(10 + ((j * 7) % 30));
        if (j % 2) s.end();
        else s.cancel();
        await call(kv, 'Range', { key: Buffer.from('x') }).then(() => ranges++, fail);
      }
      assert.equal(await waiting, 'waited', 'the second campaigner waits while the first holds the election');
      await call(lease, 'LeaseRevoke', { ID: l['ID'] }).catch(fail);
    }
    for (const x of [el, lease, watch, kv]) x.close();
    assert.deepEqual(failures, []);
    assert.equal(ranges, 64);
  });
});
