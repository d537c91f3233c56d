// `ballast operator` on the local control plane: what a user sees after `kubectl apply` of a
// StoreCluster. Promises: a 3-member cluster becomes Ready and serves etcdctl through its client
// Service; scaling 3→5→3 under continuous writes loses no acknowledged write and leaves the
// member list matching the pods; deleting the leader pod elects a new leader and the pod
// rejoins; a rolling update under a client writing through its sidecar fails no request; losing
// quorum is reported (QuorumLost, with the recovery steps) and acted on by nothing until a person
// approves the recovery plan, which brings the cluster back with every acknowledged write; invalid
// resources are refused with messages that say what to change; the paused annotation stops
// changes; with two operator replicas, killing the leader hands over within
// the lease duration and a graceful stop hands over in under 3 s.
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { loadProtos } from '../../store/api/server.ts';
import { crdsEstablished, ctr } from '../support/cluster.ts';
import { RetryingKv } from '../support/retrying-kv.ts';
import { startSidecar } from '../support/sidecar-procs.ts';
import { startSeaweed } from '../support/seaweedfs.ts';
import { StoreCluster, bin, freePort } from '../support/store-cluster.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// The suite's timeout only catches a hung run (each wait has its own deadline): the file took
// 495 s on a quiet machine when it was 600 s, and a busy one went past it.
describe('ballast operator: StoreCluster', { timeout: 1_500_000 }, () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'ballast-operator-'));
  const kubeconfig = join(stateDir, 'admin.kubeconfig');
  const kubectl = (args: string[], input?: string) =>
    spawnSync('kubectl', [`--kubeconfig=${kubeconfig}`, ...args], { encoding: 'utf8', input: input ?? '', timeout: 30_000 });
  const jsonpath = (what: string[], path: string) => kubectl(['get', ...what, '-o', `jsonpath=${path}`]).stdout.trim();
  const operators: ChildProcess[] = [];
  const operatorLog: string[] = [];
  const discoveryPorts: number[] = [];
  const startOperator = async () => {
    const discoveryPort = await freePort();
    discoveryPorts.push(discoveryPort);
    const p = spawn(
      bin,
      [
        'operator',
        `--kubeconfig=${kubeconfig}`,
        `--metrics-addr=127.0.0.1:${await freePort()}`,
        `--discovery-addr=127.0.0.1:${discoveryPort}`,
        '--webhook-addr=',
        '--namespace=ballast-system',
        // This suite's sidecar runs on the host, not in a pod: it has no pod token, so no mesh
        // (test/integration/mesh.test.ts and the helm e2e cover the mesh and TLS discovery).
        '--mesh-trust-domain=',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    // The last lines the operators wrote, to say where things stood when a wait runs out.
    for (const s of [p.stdout, p.stderr]) {
      s?.setEncoding('utf8');
      s?.on('data', (d: string) => {
        operatorLog.push(
          ...d
            .split('\n')
            .filter(Boolean)
            .map((l) => `[${p.pid}] ${l}`),
        );
        operatorLog.splice(0, Math.max(0, operatorLog.length - 60));
      });
    }
    operators.push(p);
    return p;
  };
  async function until(cond: () => boolean, what: string, ms = 90_000): Promise<void> {
    const end = Date.now() + ms;
    // The condition is read once per round: a second read could see a status that moved on.
    let ok = cond();
    while (!ok && Date.now() < end) {
      await sleep(250);
      ok = cond();
    }
    if (ok) return;
    const where = [
      kubectl([
        'get',
        'storecluster',
        '-A',
        '-o',
        'jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.status.readyReplicas} {.status.conditions}{"\\n"}{end}',
      ]).stdout,
      kubectl(['get', 'pods', '-A', '-o', 'wide']).stdout,
      operatorLog.join('\n'),
    ].join('\n');
    assert.fail(`${what}: not within ${ms / 1000} s\n${where}`);
  }
  const phase = (cluster = 'orders') =>
    `${jsonpath(['storecluster', cluster], '{.status.readyReplicas}')}/${jsonpath(['storecluster', cluster], '{.status.phase}')}`;
  const memberPods = (cluster = 'orders') =>
    kubectl([
      'get',
      'pods',
      '-l',
      `app.kubernetes.io/instance=${cluster}`,
      '-o',
      'jsonpath={range .items[*]}{.metadata.name}={.status.podIP}{"\\n"}{end}',
    ])
      .stdout.trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split('=') as [string, string])
      .filter(([, ip]) => ip !== '');
  // Writes keys `<prefix><n>` one after another, each retried until acknowledged, on endpoints
  // refreshed every 500 ms as pods move (as a client behind a retrying proxy would).
  const startWriter = (prefix: string, cluster = 'orders') => {
    const kv = new RetryingKv();
    const refresh = () => kv.setEndpoints(memberPods(cluster).map(([, ip]) => `${ip}:2379`));
    refresh();
    const refresher = setInterval(refresh, 500);
    const acked: string[] = [];
    let writing = true;
    const done = (async () => {
      for (let i = 0; writing; i++) {
        await kv.put(`${prefix}${String(i).padStart(6, '0')}`, String(i));
        acked.push(`${prefix}${String(i).padStart(6, '0')}`);
      }
    })();
    return {
      kv,
      acked,
      refresh,
      stop: async () => {
        writing = false;
        await done;
        clearInterval(refresher);
      },
    };
  };
  /** One field (a jsonpath below the pod) of every member pod of `cluster`. */
  const podField = (cluster: string, path: string) =>
    kubectl(['get', 'pods', '-l', `app.kubernetes.io/instance=${cluster}`, '-o', `jsonpath={.items[*]${path}}`])
      .stdout.split(' ')
      .filter(Boolean);
  const podVersions = (cluster: string) => podField(cluster, '.metadata.annotations.ballast\\.dev/version');
  const memberNames = () => jsonpath(['storecluster', 'orders'], '{.status.members[*].name}').split(' ').filter(Boolean).sort();

  before(async () => {
    const up = spawnSync(bin, ['cluster', 'up', `--state-dir=${stateDir}`, '--store=etcd', `--apiserver-port=${await freePort()}`], {
      encoding: 'utf8',
      timeout: 150_000,
    });
    assert.equal(up.status, 0, up.stderr + up.stdout);
    // Server-side apply is idempotent: tried up to three times (once, right after a cold
    // start, it failed with the CRDs created; what kubectl said is printed when it happens).
    for (let i = 1; ; i++) {
      const r = kubectl(['apply', '--server-side', '-f', join(import.meta.dirname, '..', '..', 'crds')]);
      if (r.status === 0) break;
      console.error(`# kubectl apply of the CRDs, attempt ${i}: ${r.stderr}${r.stdout}`);
      assert.ok(i < 3, `kubectl apply of the CRDs failed 3 times: ${r.stderr}${r.stdout}`);
      await sleep(2000);
    }
    await crdsEstablished(kubectl);
    const ns = kubectl(['create', 'namespace', 'ballast-system']);
    assert.equal(ns.status, 0, `kubectl create namespace ballast-system: ${ns.stderr}${ns.stdout}`);
    await startOperator();
  });
  after(() => {
    for (const p of operators) if (p.exitCode === null) p.kill('SIGKILL');
    spawnSync(bin, ['cluster', 'down', `--state-dir=${stateDir}`], { encoding: 'utf8', timeout: 60_000 });
  });

  it('refuses invalid StoreClusters with messages that say what to change', () => {
    const tryApply = (spec: string) =>
      kubectl(['apply', '-f', '-'], `apiVersion: ballast.dev/v1alpha1\nkind: StoreCluster\nmetadata: {name: bad}\nspec:\n${spec}`).stderr;
    assert.match(tryApply('  replicas: 4\n'), /replicas must be odd/);
    assert.match(tryApply('  storage: {size: -1Gi}\n'), /storage.size must be greater than zero/);
    assert.match(tryApply('  replicas: 3\n  replica: 5\n'), /unknown field "spec.replica"/);
    assert.match(tryApply('  timing: {heartbeatMs: 500, electionMs: 1000}\n'), /at least 5 × timing.heartbeatMs/);
    assert.equal(
      kubectl(
        ['apply', '-f', '-'],
        'apiVersion: ballast.dev/v1alpha1\nkind: StoreCluster\nmetadata: {name: skip}\nspec: {replicas: 1, version: 0.2.0}\n',
      ).status,
      0,
    );
    assert.match(
      kubectl(['patch', 'storecluster', 'skip', '--type=merge', '-p', '{"spec":{"version":"0.4.0"}}']).stderr,
      /at most one minor version at a time/,
    );
    assert.equal(kubectl(['delete', 'storecluster', 'skip', '--wait=true']).status, 0);
  });

  it('applies a 3-member StoreCluster: Ready, printer columns, and etcdctl through the client Service', async (t) => {
    const start = Date.now();
    assert.equal(
      kubectl(['apply', '-f', '-'], 'apiVersion: ballast.dev/v1alpha1\nkind: StoreCluster\nmetadata: {name: orders}\nspec: {replicas: 3}\n')
        .status,
      0,
    );
    await until(
      () => jsonpath(['storecluster', 'orders'], '{.status.conditions[?(@.type=="Ready")].status}') === 'True',
      'StoreCluster Ready',
    );
    t.diagnostic(`apply-to-Ready: ${Date.now() - start} ms`);
    const table = kubectl(['get', 'storecluster', 'orders']).stdout;
    assert.match(table, /NAME\s+READY\s+MEMBERS\s+DESIRED\s+LEADER\s+VERSION\s+AGE/);
    assert.match(table, /orders\s+True\s+3\s+3\s+orders-\d\s+0\.2\.0/);
    assert.match(kubectl(['explain', 'storecluster.spec.storage.retainOnScaleDown']).stdout, /Keep a removed member's volume/);
    // A client pod reaches the store by the client Service's name.
    assert.equal(
      kubectl(
        ['apply', '-f', '-'],
        'apiVersion: v1\nkind: Pod\nmetadata: {name: client}\nspec:\n  containers:\n  - name: echo\n    image: ballast-test/http-echo:dev\n    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}\n',
      ).status,
      0,
    );
    await until(() => jsonpath(['pod', 'client'], '{.status.containerStatuses[0].ready}') === 'true', 'client pod Ready');
    // etcdctl (Debian's, the host's) copied into the client pod, run there: names resolve as
    // the pod resolves them (cluster DNS).
    const cp = kubectl(['cp', '/usr/bin/etcdctl', 'client:/tmp/etcdctl']);
    assert.equal(cp.status, 0, cp.stderr);
    const etcdctl = (...args: string[]) =>
      kubectl(['exec', 'client', '--', '/tmp/etcdctl', '--endpoints=http://orders-client:2379', ...args]);
    await until(() => etcdctl('put', 'greeting', 'hello').stdout.trim() === 'OK', 'etcdctl put through the client Service', 30_000);
    assert.equal(etcdctl('get', 'greeting', '--print-value-only').stdout.trim(), 'hello');
    assert.equal(etcdctl('member', 'list').stdout.trim().split('\n').length, 3);
  });

  it('scales 3→5→3→5→3 under continuous writes: no acknowledged write lost; the member list matches the pods', async (t) => {
    const { kv, acked, refresh, stop } = startWriter('load/');
    t.after(() => kv.close());
    try {
      let start = Date.now();
      assert.equal(kubectl(['scale', 'storecluster', 'orders', '--replicas=5']).status, 0);
      await until(() => phase() === '5/Ready', 'five members ready', 120_000);
      t.diagnostic(`scale 3→5: ${Date.now() - start} ms (${((Date.now() - start) / 2).toFixed(0)} ms per member)`);
      assert.deepEqual(memberNames(), ['orders-0', 'orders-1', 'orders-2', 'orders-3', 'orders-4']);
      start = Date.now();
      assert.equal(kubectl(['scale', 'storecluster', 'orders', '--replicas=3']).status, 0);
      await until(() => phase() === '3/Ready' && memberPods().length === 3, 'back to three members', 120_000);
      t.diagnostic(`scale 5→3: ${Date.now() - start} ms`);
      // Up again: the removed members come back under new ids, on fresh volumes.
      assert.equal(kubectl(['scale', 'storecluster', 'orders', '--replicas=5']).status, 0);
      await until(() => phase() === '5/Ready', 'five members ready again', 120_000);
      assert.equal(kubectl(['scale', 'storecluster', 'orders', '--replicas=3']).status, 0);
      await until(() => phase() === '3/Ready' && memberPods().length === 3, 'back to three members again', 120_000);
      await sleep(1000);
    } finally {
      await stop();
    }
    assert.deepEqual(
      memberNames(),
      memberPods()
        .map(([n]) => n)
        .sort(),
      'the Raft configuration matches the pods',
    );
    refresh();
    const stored = await kv.keys('load/');
    const lost = acked.filter((k) => !stored.has(k));
    t.diagnostic(`${acked.length} writes during scaling, every one acknowledged (${kv.retries} retries), ${lost.length} lost`);
    assert.deepEqual(lost, [], 'every acknowledged write survives');
  });

  it('deleting the leader pod: a new leader is elected and the pod rejoins', async (t) => {
    const leader = jsonpath(['storecluster', 'orders'], '{.status.leader}');
    const uid = () => jsonpath(['pod', leader], '{.metadata.uid}');
    const deleted = uid();
    const start = Date.now();
    assert.equal(kubectl(['delete', 'pod', leader, '--wait=false']).status, 0);
    // The member (among the others) that says it leads; `-w simple` prints IS LEADER as the 5th field.
    // (No http:// in the endpoint: etcdctl 3.4's endpoint status then sends it as the HTTP/2
    // :authority, which Node's HTTP/2 server refuses; docs/store.md, "Known differences".)
    const leaderOf = () =>
      memberPods().find(
        ([name, ip]) =>
          name !== leader &&
          spawnSync('etcdctl', [`--endpoints=${ip}:2379`, 'endpoint', 'status', '-w', 'simple', '--command-timeout=1s'], {
            encoding: 'utf8',
            env: { ...process.env, ETCDCTL_API: '3' },
          })
            .stdout.split(',')
            .map((f) => f.trim())[4] === 'true',
      )?.[0];
    await until(() => leaderOf() !== undefined, 'a new leader among the other members', 30_000);
    t.diagnostic(`new leader after ${Date.now() - start} ms (election timeout 1000 ms)`);
    // Ready again with the replacement pod (the status read before the deletion said Ready too).
    const podReady = () => jsonpath(['pod', leader], '{.status.conditions[?(@.type=="Ready")].status}') === 'True';
    await until(
      () => {
        const now = uid();
        return now !== '' && now !== deleted && podReady() && phase() === '3/Ready';
      },
      'the deleted member is back and ready',
      120_000,
    );
    assert.deepEqual(memberNames(), ['orders-0', 'orders-1', 'orders-2']);
  });

  it('a version update replaces members one at a time, leader last: every write of a client going through its sidecar succeeds (the sidecar retries), leadership moves exactly once', async (t) => {
    const term = () =>
      Math.max(
        ...memberPods().map(([, ip]) =>
          Number(
            spawnSync('etcdctl', [`--endpoints=${ip}:2379`, 'endpoint', 'status', '-w', 'simple', '--command-timeout=1s'], {
              encoding: 'utf8',
              env: { ...process.env, ETCDCTL_API: '3' },
            })
              .stdout.split(',')
              .map((f) => f.trim())[6] ?? 0,
          ),
        ),
      );
    // The client's sidecar, as the webhook would inject it: its policy and the client Service's
    // endpoints streamed by the operator's discovery service; the app (a raw gRPC client, no
    // retries of its own) calls 127.0.0.1:<localPort>.
    const localPort = await freePort();
    const policy = {
      apiVersion: 'ballast.dev/v1alpha1',
      kind: 'ResiliencePolicy',
      metadata: { name: 'orders-client', namespace: 'default' },
      spec: {
        service: { name: 'orders-client', port: 2379 },
        protocol: 'http2',
        localPort,
        policy: {
          timeouts: { attemptMs: 3000, requestMs: 20_000 },
          retries: {
            maxAttempts: 10,
            idempotentPaths: ['/etcdserverpb.KV/'],
            backoffMaxMs: 500,
            budget: { ratioPercent: 100, minPerSecond: 50 },
          },
        },
      },
    };
    assert.equal(kubectl(['apply', '-f', '-'], JSON.stringify(policy)).status, 0);
    const adminPort = await freePort();
    const sidecar = await startSidecar({ discovery: { address: `127.0.0.1:${discoveryPorts[0]}`, node: 'default/writer' } }, adminPort);
    const KV = (loadProtos()['etcdserverpb'] as Record<string, grpc.ServiceClientConstructor>)['KV'] as grpc.ServiceClientConstructor;
    const kv = new KV(`127.0.0.1:${localPort}`, grpc.credentials.createInsecure()) as unknown as {
      Put(r: object, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null) => void): void;
      close(): void;
    };
    t.after(async () => {
      kv.close();
      await sidecar.proc.stop();
      kubectl(['delete', 'resiliencepolicy', 'orders-client']);
    });
    const put = (key: string) =>
      new Promise<grpc.ServiceError | null>((res) =>
        kv.Put({ key: Buffer.from(key), value: Buffer.from('v') }, { deadline: Date.now() + 20_000 }, res),
      );
    for (let i = 0; i < 200 && (await put('update/probe')) !== null; i++) await sleep(100);
    assert.equal(await put('update/probe'), null, 'the sidecar has its configuration and endpoints');
    const before = term();
    const acked: string[] = [];
    const failed: string[] = [];
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing; i++) {
        const key = `update/${String(i).padStart(6, '0')}`;
        const err = await put(key);
        if (err) failed.push(`${key}: ${err.code} ${err.details}`);
        else acked.push(key);
      }
    })();
    const start = Date.now();
    // The release to update to: this build under the next version's tag, in the node's
    // containerd as a registry would serve it (nothing is pulled here).
    const tag = ctr(['images', 'tag', '--force', 'docker.io/library/ballast:0.2.0', 'docker.io/library/ballast:0.3.0']);
    assert.equal(tag.status, 0, tag.stderr);
    try {
      assert.equal(kubectl(['patch', 'storecluster', 'orders', '--type=merge', '-p', '{"spec":{"version":"0.3.0"}}']).status, 0);
      const versions = () => podVersions('orders');
      await until(
        () => versions().length === 3 && versions().every((v) => v === '0.3.0') && phase() === '3/Ready',
        'every member runs 0.3.0 and is ready',
        300_000,
      );
      t.diagnostic(`rolling update of 3 members: ${Date.now() - start} ms`);
    } finally {
      writing = false;
      await writer;
    }
    assert.equal(jsonpath(['storecluster', 'orders'], '{.status.currentVersion}'), '0.3.0');
    const moved = term() - before;
    const retries = (await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text())
      .split('\n')
      .filter((l) => l.startsWith('ballast_sidecar_retries_total{'))
      .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
    t.diagnostic(
      `${acked.length} writes through the sidecar, ${failed.length} failed, ${retries} retried by the sidecar; Raft term +${moved}`,
    );
    assert.deepEqual(failed, [], 'every request through the sidecar succeeded');
    const ip = memberPods()[0]![1];
    const stored = new Set(
      spawnSync('etcdctl', [`--endpoints=${ip}:2379`, 'get', 'update/', '--prefix', '--keys-only'], {
        encoding: 'utf8',
        env: { ...process.env, ETCDCTL_API: '3' },
        maxBuffer: 64 * 1024 * 1024,
      })
        .stdout.split('\n')
        .filter(Boolean),
    );
    assert.deepEqual(
      acked.filter((k) => !stored.has(k)),
      [],
      'every acknowledged write survives',
    );
    assert.equal(moved, 1, 'leadership moved exactly once (one term)');
  });

  it('mixed versions: the 0.1.0 release (built from its commit) upgraded to this build under writes, rolled back half-way, upgraded again; going back after the upgrade is refused; no acknowledged write lost', async (t) => {
    const legacy = {
      apiVersion: 'ballast.dev/v1alpha1',
      kind: 'StoreCluster',
      metadata: { name: 'legacy', namespace: 'default' },
      spec: { replicas: 3, version: '0.1.0', storage: { size: '1Gi' } },
    };
    assert.equal(kubectl(['apply', '-f', '-'], JSON.stringify(legacy)).status, 0);
    t.after(() => kubectl(['delete', 'storecluster', 'legacy', '--wait=false']));
    await until(() => phase('legacy') === '3/Ready', 'three 0.1.0 members ready', 120_000);
    const setVersion = (v: string) =>
      assert.equal(kubectl(['patch', 'storecluster', 'legacy', '--type=merge', '-p', JSON.stringify({ spec: { version: v } })]).status, 0);
    const versions = () => podVersions('legacy').sort();
    const images = () => podField('legacy', '.spec.containers[0].image');
    assert.deepEqual(images(), ['ballast:0.1.0', 'ballast:0.1.0', 'ballast:0.1.0']);
    const { kv, acked, refresh, stop } = startWriter('mixed/', 'legacy');
    t.after(() => kv.close());
    const steps: string[] = [];
    try {
      let start = Date.now();
      setVersion('0.2.0');
      // A first member runs 0.2.0 and is ready (it joined, published the formats it reads and
      // wrote to its data directory beside 0.1.0 members: in format 1, which they read).
      const readyOn = (v: string) =>
        kubectl([
          'get',
          'pods',
          '-l',
          'app.kubernetes.io/instance=legacy',
          '-o',
          `jsonpath={range .items[?(@.metadata.annotations.ballast\\.dev/version=="${v}")]}{.status.conditions[?(@.type=="Ready")].status}{" "}{end}`,
        ]).stdout.includes('True');
      await until(() => readyOn('0.2.0'), 'a first member replaced by 0.2.0 and ready', 120_000);
      // Half-way (a 0.2.0 member beside 0.1.0 ones, the cluster writing format 1): back to 0.1.0.
      setVersion('0.1.0');
      await until(
        () => versions().join() === '0.1.0,0.1.0,0.1.0' && phase('legacy') === '3/Ready',
        'rolled back: three 0.1.0 members ready',
        300_000,
      );
      steps.push(`rollback half-way ${Date.now() - start} ms`);
      start = Date.now();
      setVersion('0.2.0');
      await until(
        () => versions().join() === '0.2.0,0.2.0,0.2.0' && phase('legacy') === '3/Ready',
        'upgraded: three 0.2.0 members ready',
        300_000,
      );
      steps.push(`upgrade ${Date.now() - start} ms`);
      // Every member now writes format 2, which 0.1.0 cannot read: going back is refused, nothing replaced.
      const uids = podField('legacy', '.metadata.uid');
      setVersion('0.1.0');
      await until(
        () => jsonpath(['storecluster', 'legacy'], '{.status.conditions[?(@.type=="Progressing")].reason}') === 'DowngradeRefused',
        'the rollback after the upgrade is refused',
        60_000,
      );
      assert.match(
        jsonpath(['storecluster', 'legacy'], '{.status.conditions[?(@.type=="Progressing")].message}'),
        /writes its data in format 2; 0\.1\.0 reads only format 1/,
      );
      await sleep(3000);
      assert.deepEqual(podField('legacy', '.metadata.uid'), uids, 'no member replaced');
      assert.equal(
        jsonpath(['statefulset', 'legacy'], '{.spec.template.spec.containers[0].image}'),
        'ballast:0.2.0',
        'the StatefulSet still runs 0.2.0',
      );
      setVersion('0.2.0');
      await until(() => phase('legacy') === '3/Ready', 'Ready again at 0.2.0', 60_000);
    } finally {
      await stop();
    }
    refresh();
    const stored = await kv.keys('mixed/');
    const lost = acked.filter((k) => !stored.has(k));
    t.diagnostic(`${steps.join(', ')}; ${acked.length} writes acknowledged, ${lost.length} lost`);
    assert.ok(acked.length > 0);
    assert.deepEqual(lost, []);
    const hashes = () =>
      spawnSync(
        'etcdctl',
        [
          '--endpoints',
          memberPods('legacy')
            .map(([, ip]) => `${ip}:2379`)
            .join(','),
          'endpoint',
          'hashkv',
          '-w',
          'json',
        ],
        { encoding: 'utf8', env: { ...process.env, ETCDCTL_API: '3' } },
      ).stdout;
    await until(
      () => new Set((JSON.parse(hashes() || '[]') as Array<{ HashKV: { hash: number } }>).map((h) => h.HashKV.hash)).size === 1,
      "the three members' key spaces hash the same",
      60_000,
    );
  });

  it("wiping a member's data directory: the member stops instead of voting, and is repaired (removed, re-added empty as a learner) with no quorum lost", async (t) => {
    const victim = memberNames().find((n) => n !== jsonpath(['storecluster', 'orders'], '{.status.leader}'))!;
    const oldId = jsonpath(['storecluster', 'orders'], `{.status.members[?(@.name=="${victim}")].id}`);
    const kv = new RetryingKv();
    kv.setEndpoints(
      memberPods()
        .filter(([n]) => n !== victim)
        .map(([, ip]) => `${ip}:2379`),
    );
    t.after(() => kv.close());
    await kv.put('repair/before', 'kept');
    const pv = jsonpath(['pvc', `data-${victim}`], '{.spec.volumeName}');
    const path = jsonpath(['pv', pv], '{.spec.local.path}');
    rmSync(join(path, 'data'), { recursive: true, force: true });
    assert.equal(kubectl(['delete', 'pod', victim, '--wait=false']).status, 0);
    let writes = 0;
    let writing = true;
    const writer = (async () => {
      for (; writing; writes++) await kv.put(`repair/${writes}`, 'x');
    })();
    try {
      await until(
        () =>
          kubectl(['get', 'events', '--field-selector', 'involvedObject.name=orders,reason=MemberReAdded', '-o', 'name']).stdout.trim() !==
          '',
        'the member is added back',
        120_000,
      );
      await until(
        () =>
          phase() === '3/Ready' && jsonpath(['storecluster', 'orders'], `{.status.members[?(@.name=="${victim}")].role}`) === 'follower',
        'repaired: three voting members, all ready',
        120_000,
      );
    } finally {
      writing = false;
      await writer;
    }
    const newId = jsonpath(['storecluster', 'orders'], `{.status.members[?(@.name=="${victim}")].id}`);
    assert.notEqual(newId, oldId, 'it came back as a new member (a removed id never returns)');
    const ip = memberPods().find(([n]) => n === victim)![1];
    assert.equal(
      spawnSync('etcdctl', [`--endpoints=${ip}:2379`, 'get', 'repair/before', '--print-value-only'], {
        encoding: 'utf8',
        env: { ...process.env, ETCDCTL_API: '3' },
      }).stdout.trim(),
      'kept',
      'the repaired member has the data',
    );
    assert.ok(writes > 0, 'writes went on during the repair (quorum kept)');
  });

  it('a member at its memory limit (a burst of large reads) is OOM-killed, restarted by the kubelet and rejoins with its data; status and an event say what happened', async (t) => {
    // 30 MB of values; each member idles near 150 MiB with them, under its 192 MiB limit. A burst
    // of full-range reads makes one member build several 30 MB answers at once.
    const bulky = {
      apiVersion: 'ballast.dev/v1alpha1',
      kind: 'StoreCluster',
      metadata: { name: 'bulky', namespace: 'default' },
      spec: { replicas: 3, version: '0.2.0', resources: { requests: { memory: '128Mi' }, limits: { memory: '192Mi' } } },
    };
    assert.equal(kubectl(['apply', '-f', '-'], JSON.stringify(bulky)).status, 0);
    t.after(() => kubectl(['delete', 'storecluster', 'bulky', '--wait=false']));
    const status = () =>
      JSON.parse(kubectl(['get', 'storecluster', 'bulky', '-o', 'json']).stdout || '{}') as {
        status?: {
          phase?: string;
          leader?: string;
          members?: Array<{ name: string; restarts?: number; lastTermination?: { reason: string; exitCode: number } }>;
        };
      };
    await until(() => status().status?.phase === 'Ready', 'bulky Ready', 120_000);
    const ipOf = (name: string) => jsonpath(['pod', name], '{.status.podIP}');
    const KV = (loadProtos()['etcdserverpb'] as Record<string, grpc.ServiceClientConstructor>)['KV'] as grpc.ServiceClientConstructor;
    type Kv = {
      Put(r: object, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null) => void): void;
      Range(r: object, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: { count: string }) => void): void;
      close(): void;
    };
    const client = (name: string) =>
      new KV(`${ipOf(name)}:2379`, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': -1 }) as unknown as Kv;
    const leader = client(status().status!.leader!);
    const value = Buffer.alloc(100_000, 'v');
    for (let i = 0; i < 300; i++) {
      const err = await new Promise<grpc.ServiceError | null>((res) =>
        leader.Put({ key: Buffer.from(`big/${String(i).padStart(4, '0')}`), value }, { deadline: Date.now() + 30_000 }, res),
      );
      assert.equal(err, null, `put ${i}`);
    }
    leader.close();
    const victim = ['bulky-0', 'bulky-1', 'bulky-2'].find((n) => n !== status().status?.leader)!;
    const lastReason = () => jsonpath(['pod', victim], '{.status.containerStatuses[?(@.name=="store")].lastState.terminated.reason}');
    let bursts = 0;
    for (; bursts < 20 && lastReason() !== 'OOMKilled'; bursts++) {
      const kv = client(victim);
      await Promise.all(
        Array.from(
          { length: 4 },
          () =>
            new Promise((res) =>
              kv.Range({ key: Buffer.from('big/'), range_end: Buffer.from('big0') }, { deadline: Date.now() + 30_000 }, res),
            ),
        ),
      );
      kv.close();
      await sleep(1000);
    }
    assert.equal(lastReason(), 'OOMKilled', `the kernel stopped ${victim} at its limit`);
    t.diagnostic(`${victim} OOMKilled after ${bursts} burst(s) of 4 full-range reads of 30 MB`);
    await until(
      () => {
        const m = status().status?.members?.find((x) => x.name === victim);
        return (
          status().status?.phase === 'Ready' &&
          (m?.restarts ?? 0) >= 1 &&
          m?.lastTermination?.reason === 'OOMKilled' &&
          m.lastTermination.exitCode === 137
        );
      },
      'status: the member restarted after OOMKilled, and the cluster is Ready again',
      120_000,
    );
    assert.match(
      kubectl([
        'get',
        'events',
        '--field-selector',
        'involvedObject.name=bulky,reason=MemberOOMKilled',
        '-o',
        'jsonpath={.items[*].message}',
      ]).stdout,
      new RegExp(`${victim} stopped \\(OOMKilled, exit code 137\\) at its memory limit of 192Mi`),
    );
    // It rejoined with its data: every key, and the same key-space hash as the others.
    const hashes = () =>
      spawnSync(
        'etcdctl',
        ['--endpoints', ['bulky-0', 'bulky-1', 'bulky-2'].map((n) => `${ipOf(n)}:2379`).join(','), 'endpoint', 'hashkv', '-w', 'json'],
        { encoding: 'utf8', env: { ...process.env, ETCDCTL_API: '3' } },
      ).stdout;
    await until(
      () => new Set((JSON.parse(hashes() || '[]') as Array<{ HashKV: { hash: number } }>).map((h) => h.HashKV.hash)).size === 1,
      "the three members' key spaces hash the same",
      60_000,
    );
    const kv = client(victim);
    const count = await new Promise<string>((res) =>
      kv.Range({ key: Buffer.from('big/'), range_end: Buffer.from('big0'), count_only: true }, { deadline: Date.now() + 30_000 }, (_e, r) =>
        res(r?.count ?? ''),
      ),
    );
    kv.close();
    assert.equal(Number(count), 300);
  });

  it('the paused annotation stops changes and says so in status', async () => {
    assert.equal(kubectl(['annotate', 'storecluster', 'orders', 'ballast.dev/reconcile=paused']).status, 0);
    try {
      assert.equal(kubectl(['scale', 'storecluster', 'orders', '--replicas=5']).status, 0);
      await until(() => jsonpath(['storecluster', 'orders'], '{.status.phase}') === 'Paused', 'status says Paused', 60_000);
      await sleep(3000);
      assert.equal(jsonpath(['statefulset', 'orders'], '{.spec.replicas}'), '3', 'nothing changed while paused');
      assert.match(jsonpath(['storecluster', 'orders'], '{.status.conditions[?(@.type=="Progressing")].message}'), /paused/);
    } finally {
      // Undone whatever happened, so the tests after this one start from a 3-member cluster.
      kubectl(['scale', 'storecluster', 'orders', '--replicas=3']);
      kubectl(['annotate', 'storecluster', 'orders', 'ballast.dev/reconcile-']);
    }
    await until(() => phase() === '3/Ready', 'resumes', 90_000);
  });

  it('losing quorum (2 of 3 members frozen): QuorumLost with the recovery steps, and nothing removed, replaced or deleted; Ready again when they return', async (t) => {
    await until(() => phase() === '3/Ready', 'Ready to begin with', 120_000);
    const snapshot = () => ({
      set: jsonpath(['statefulset', 'orders'], '{.spec.replicas}/{.metadata.generation}'),
      pods: jsonpath(['pods', '-l', 'app.kubernetes.io/instance=orders'], '{.items[*].metadata.uid}').split(' ').sort(),
      claims: jsonpath(['pvc', '-l', 'app.kubernetes.io/instance=orders'], '{.items[*].metadata.uid}').split(' ').sort(),
    });
    const before = snapshot();
    // The member processes of two pods (the kubelet runs them in the pods' namespaces; found by
    // the pod name in their environment), frozen with SIGSTOP: alive, silent.
    const pidsOf = (pod: string) =>
      readdirSync('/proc')
        .filter((p) => /^\d+$/.test(p))
        .filter((p) => {
          try {
            return (
              readFileSync(`/proc/${p}/environ`, 'utf8').split('\0').includes(`HOSTNAME=${pod}`) &&
              readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').includes('store')
            );
          } catch {
            return false;
          }
        })
        .map(Number);
    const frozen = memberPods()
      .map(([name]) => name)
      .sort()
      .slice(0, 2)
      .flatMap(pidsOf);
    assert.equal(frozen.length, 2, 'one member process per frozen pod');
    const start = Date.now();
    for (const pid of frozen) process.kill(pid, 'SIGSTOP');
    try {
      const available = (f: string) => jsonpath(['storecluster', 'orders'], `{.status.conditions[?(@.type=="Available")].${f}}`);
      await until(() => available('reason') === 'QuorumLost', 'QuorumLost reported', 90_000);
      t.diagnostic(`QuorumLost reported ${Date.now() - start} ms after 2 of 3 members froze`);
      assert.equal(jsonpath(['storecluster', 'orders'], '{.status.phase}'), 'QuorumLost');
      assert.match(
        available('message'),
        /Bring the members' pods back.*approve the recovery plan in status\.recovery/s,
        'the message says how to recover',
      );
      assert.match(
        kubectl(['get', 'events', '--field-selector', 'involvedObject.name=orders,reason=QuorumLost', '-o', 'jsonpath={.items[*].message}'])
          .stdout,
        /nothing will be removed or replaced/,
      );
      // The operator keeps reconciling, and must not act: no member removed, nothing replaced.
      await sleep(10_000);
      assert.deepEqual(snapshot(), before, 'the StatefulSet, the pods and their volumes are untouched');
    } finally {
      for (const pid of frozen) {
        try {
          process.kill(pid, 'SIGCONT');
        } catch {
          /* gone */
        }
      }
    }
    await until(() => phase() === '3/Ready', 'Ready again once the members are back', 120_000);
    t.diagnostic(`Ready again ${Date.now() - start} ms after the freeze began`);
    assert.equal(memberNames().length, 3);
  });

  it('guided recovery: 2 of 3 members lose their volumes under writes; a plan names the survivor, a wrong plan id is refused, the approved plan brings back a 3-member cluster with every acknowledged write', async (t) => {
    await until(() => phase() === '3/Ready', 'Ready to begin with', 120_000);
    const survivor = jsonpath(['storecluster', 'orders'], '{.status.leader}');
    const lost = memberNames().filter((n) => n !== survivor);
    const writer = startWriter('recover/');
    while (writer.acked.length < 200) await sleep(50);
    // Both followers' volumes are emptied and their pods replaced: they come back with no data.
    for (const name of lost)
      rmSync(join(jsonpath(['pv', jsonpath(['pvc', `data-${name}`], '{.spec.volumeName}')], '{.spec.local.path}'), 'data'), {
        recursive: true,
        force: true,
      });
    assert.equal(kubectl(['delete', 'pod', ...lost, '--wait=false']).status, 0);
    const recovery = (f: string) => jsonpath(['storecluster', 'orders'], `{.status.recovery.${f}}`);
    const survivorUid = () => jsonpath(['pod', survivor], '{.metadata.uid}');
    try {
      await until(
        () => recovery('state') === 'AwaitingApproval' && recovery('survivor') === survivor,
        'a recovery plan naming the survivor',
        120_000,
      );
      const planId = recovery('planId');
      assert.deepEqual(
        recovery('recreate')
          .replace(/[[\]"]/g, '')
          .split(',')
          .sort(),
        lost,
        'the others are re-created',
      );
      assert.match(recovery('loses'), /did not answer/);
      t.diagnostic(
        `plan ${planId}: ${survivor} at term ${recovery('term')}, index ${recovery('index')}; ${writer.acked.length} writes acknowledged`,
      );
      // A wrong id: refused, said so, nothing done.
      const uid = survivorUid();
      assert.equal(kubectl(['annotate', 'storecluster', 'orders', `ballast.dev/approve-recovery=0000000000`]).status, 0);
      await until(() => /approval names plan 0000000000/.test(recovery('refused')), 'the wrong plan id refused in status', 60_000);
      assert.match(
        kubectl([
          'get',
          'events',
          '--field-selector',
          'involvedObject.name=orders,reason=RecoveryRefused',
          '-o',
          'jsonpath={.items[*].message}',
        ]).stdout,
        /no such plan was proposed/,
      );
      await sleep(3000);
      assert.equal(survivorUid(), uid, 'nothing replaced on a refused approval');
      assert.equal(jsonpath(['storecluster', 'orders'], '{.status.phase}'), 'QuorumLost');
      // Through the kubectl plugin, found on PATH as kubectl finds plugins: it shows the plan,
      // refuses an id that is not the plan status shows, and approves the right one.
      const plugin = (...args: string[]) =>
        spawnSync('kubectl', ['ballast', ...args, `--kubeconfig=${kubeconfig}`], {
          encoding: 'utf8',
          timeout: 30_000,
          env: { ...process.env, PATH: `${dirname(bin)}:${process.env['PATH'] ?? ''}` },
        });
      const shown = plugin('recover', 'orders');
      assert.equal(shown.status, 0, shown.stderr);
      assert.match(shown.stdout, new RegExp(`Recovery plan ${planId}: AwaitingApproval\\n  survivor: +${survivor} `));
      const wrong = plugin('recover', 'orders', '--approve', '1111111111');
      assert.equal(wrong.status, 1);
      assert.match(wrong.stderr, new RegExp(`1111111111 is not the plan orders's status shows now \\(${planId}`));
      assert.match(plugin('status').stdout, new RegExp(`orders +QuorumLost +\\d/3 +.* ${planId} AwaitingApproval`));
      // The right id: the survivor restarts as a one-member cluster, the others rejoin.
      const approvedAt = Date.now();
      const approve = plugin('recover', 'orders', '--approve', planId);
      assert.equal(approve.status, 0, approve.stderr);
      await until(() => recovery('state') === 'Completed' && phase() === '3/Ready', 'recovered: three voting members, all ready', 300_000);
      t.diagnostic(`from the approval to a Ready 3-member cluster: ${Math.round((Date.now() - approvedAt) / 1000)} s`);
      for (const reason of ['RecoveryPlanned', 'RecoveryApproved', 'MembersRecreated', 'RecoveryCompleted']) {
        assert.notEqual(
          kubectl(['get', 'events', '--field-selector', `involvedObject.name=orders,reason=${reason}`, '-o', 'name']).stdout.trim(),
          '',
          `Event ${reason}`,
        );
      }
    } finally {
      kubectl(['annotate', 'storecluster', 'orders', 'ballast.dev/approve-recovery-']);
    }
    writer.refresh();
    await writer.stop();
    const stored = new Set(
      spawnSync(
        'etcdctl',
        [
          `--endpoints=${memberPods()
            .map(([, ip]) => `${ip}:2379`)
            .join(',')}`,
          'get',
          'recover/',
          '--prefix',
          '--keys-only',
        ],
        { encoding: 'utf8', env: { ...process.env, ETCDCTL_API: '3' }, maxBuffer: 64 * 1024 * 1024 },
      )
        .stdout.split('\n')
        .filter(Boolean),
    );
    assert.deepEqual(
      writer.acked.filter((k) => !stored.has(k)),
      [],
      'every acknowledged write is there',
    );
    const hashes = () =>
      spawnSync(
        'etcdctl',
        [
          '--endpoints',
          memberPods()
            .map(([, ip]) => `${ip}:2379`)
            .join(','),
          'endpoint',
          'hashkv',
          '-w',
          'json',
        ],
        { encoding: 'utf8', env: { ...process.env, ETCDCTL_API: '3' } },
      ).stdout;
    await until(
      () => {
        const h = JSON.parse(hashes() || '[]') as Array<{ HashKV: { hash: number } }>;
        return h.length === 3 && new Set(h.map((x) => x.HashKV.hash)).size === 1;
      },
      "the three members' key spaces hash the same",
      60_000,
    );
  });

  it("StoreBackup: a Job streams a follower's snapshot to object storage (SeaweedFS on the node's address); status has its revision, size and sha256, and it restores (by hand, and as a new StoreCluster with spec.restore) to the same HashKV; wrong credentials end Failed with the fix named after retries, with nothing listed", async (t) => {
    await until(() => phase() === '3/Ready', 'Ready to begin with', 120_000);
    // The node's address (the pods' bridge; the apiserver binds it): pods reach object storage there.
    const node = new URL(kubectl(['config', 'view', '--raw', '-o', 'jsonpath={.clusters[0].cluster.server}']).stdout.trim()).hostname;
    const weed = await startSeaweed(join(stateDir, 'weed'), node);
    t.after(() => weed.stop());
    await weed.createBucket('backups');
    const secret = (name: string, key: string, secretKey: string) => ({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name, namespace: 'default' },
      stringData: { accessKeyId: key, secretAccessKey: secretKey },
    });
    const backup = (name: string, credentialsSecret: string) => ({
      apiVersion: 'ballast.dev/v1alpha1',
      kind: 'StoreBackup',
      metadata: { name, namespace: 'default' },
      spec: { cluster: 'orders', storage: { endpoint: weed.endpoint, bucket: 'backups', credentialsSecret } },
    });
    assert.equal(
      kubectl(
        ['apply', '-f', '-'],
        JSON.stringify({
          apiVersion: 'v1',
          kind: 'List',
          items: [secret('s3-good', weed.accessKeyId, weed.secretAccessKey), secret('s3-wrong', weed.accessKeyId, 'not-the-secret')],
        }),
      ).status,
      0,
    );
    const kv = new RetryingKv();
    kv.setEndpoints(memberPods().map(([, ip]) => `${ip}:2379`));
    for (let i = 0; i < 100; i++) await kv.put(`backup/${i}`, `v${i}`);
    kv.close();
    const start = Date.now();
    assert.equal(kubectl(['apply', '-f', '-'], JSON.stringify(backup('orders-b1', 's3-good'))).status, 0);
    const field = (name: string, f: string) => jsonpath(['storebackup', name], `{.status.${f}}`);
    await until(() => field('orders-b1', 'phase') === 'Succeeded', 'the backup Succeeded', 180_000);
    t.diagnostic(
      `StoreBackup Succeeded ${Date.now() - start} ms after it was applied: revision ${field('orders-b1', 'revision')}, ${field('orders-b1', 'sizeBytes')} bytes in ${field('orders-b1', 'durationSeconds')} s`,
    );
    assert.equal(field('orders-b1', 'objectKey'), 'default/orders/orders-b1.snap');
    assert.match(field('orders-b1', 'sha256'), /^[0-9a-f]{64}$/);
    assert.notEqual(
      kubectl(['get', 'events', '--field-selector', 'involvedObject.name=orders-b1,reason=BackupSucceeded', '-o', 'name']).stdout.trim(),
      '',
    );
    // The object is the backup status names, and restores to the same key space at its revision.
    const s3env = { ...process.env, AWS_ACCESS_KEY_ID: weed.accessKeyId, AWS_SECRET_ACCESS_KEY: weed.secretAccessKey };
    const restored = new StoreCluster();
    t.after(() => restored.shutdown());
    const m = await restored.addSpec('r1');
    const r = spawnSync(
      bin,
      [
        'backup',
        'restore',
        'orders-b1',
        `--s3-endpoint=${weed.endpoint}`,
        '--s3-bucket=backups',
        '--s3-prefix=default/orders/',
        `--name=r1`,
        `--data-dir=${m.dataDir}`,
        `--initial-cluster=${restored.initialCluster()}`,
        `--initial-cluster-token=${restored.token}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${m.peerPort}`,
      ],
      { encoding: 'utf8', env: s3env },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`sha256 ${field('orders-b1', 'sha256').slice(0, 16)}`));
    restored.spawn(m, 'existing');
    await restored.waitHealthy(30_000);
    const rev = field('orders-b1', 'revision');
    const hashOf = (endpoints: string) =>
      (
        JSON.parse(
          spawnSync('etcdctl', [`--endpoints=${endpoints}`, 'endpoint', 'hashkv', `--rev=${rev}`, '-w', 'json'], {
            encoding: 'utf8',
            env: { ...process.env, ETCDCTL_API: '3' },
          }).stdout || '[]',
        ) as Array<{ HashKV: { hash: number } }>
      ).map((h) => h.HashKV.hash);
    const live = hashOf(
      memberPods()
        .map(([, ip]) => `${ip}:2379`)
        .join(','),
    );
    assert.equal(new Set(live).size, 1);
    assert.deepEqual(hashOf(restored.endpoints()), [live[0]], "the restored key space hashes as the cluster's at the backup's revision");
    // A new StoreCluster created from the backup: every member restored before it starts.
    const fromBackup = {
      apiVersion: 'ballast.dev/v1alpha1',
      kind: 'StoreCluster',
      metadata: { name: 'reborn', namespace: 'default' },
      spec: { replicas: 3, restore: { backup: 'orders-b1' } },
    };
    assert.equal(kubectl(['apply', '-f', '-'], JSON.stringify(fromBackup)).status, 0);
    t.after(() => kubectl(['delete', 'storecluster', 'reborn', '--wait=false']));
    const restoreStart = Date.now();
    await until(() => phase('reborn') === '3/Ready', 'the StoreCluster restored from the backup is Ready', 180_000);
    t.diagnostic(`StoreCluster from backup orders-b1 Ready in ${Date.now() - restoreStart} ms`);
    const reborn = hashOf(
      memberPods('reborn')
        .map(([, ip]) => `${ip}:2379`)
        .join(','),
    );
    assert.deepEqual(reborn, [live[0], live[0], live[0]], "its three members hash as the source at the backup's revision");
    assert.match(
      kubectl([
        'get',
        'events',
        '--field-selector',
        'involvedObject.name=reborn,reason=Bootstrapping',
        '-o',
        'jsonpath={.items[*].message}',
      ]).stdout,
      /each restored from backup orders-b1/,
    );
    const changed = kubectl(['patch', 'storecluster', 'reborn', '--type=merge', '-p', '{"spec":{"restore":{"backup":"other"}}}']);
    assert.notEqual(changed.status, 0);
    assert.match(changed.stderr, /spec\.restore can be set only when the cluster is created/);
    // Wrong credentials: each attempt fails naming the fix, the Job retries with back-off, then Failed.
    assert.equal(kubectl(['apply', '-f', '-'], JSON.stringify(backup('orders-bad', 's3-wrong'))).status, 0);
    await until(() => field('orders-bad', 'phase') === 'Failed', 'the backup with wrong credentials Failed', 240_000);
    assert.equal(field('orders-bad', 'reason'), 'BackupStorageCredentials');
    assert.match(field('orders-bad', 'message'), /refused the credentials .*check the access key id and secret key .*\(after 3 attempts\)/);
    assert.equal(field('orders-bad', 'attempts'), '3');
    assert.notEqual(
      kubectl(['get', 'events', '--field-selector', 'involvedObject.name=orders-bad,reason=BackupRetrying', '-o', 'name']).stdout.trim(),
      '',
    );
    const list = spawnSync(
      bin,
      ['backup', 'list', `--s3-endpoint=${weed.endpoint}`, '--s3-bucket=backups', '--s3-prefix=default/orders/', '--output=json'],
      { encoding: 'utf8', env: s3env },
    );
    assert.deepEqual(
      (JSON.parse(list.stdout) as Array<{ name: string }>).map((b) => b.name),
      ['orders-b1'],
      'only the good backup is listed',
    );
    // A schedule every 20 s that keeps 2 and verifies each: backups are made at its times, each
    // is restored into a throw-away member and hashes as the cluster did, and once a third
    // succeeds the oldest goes, its StoreBackup and its objects both; other backups stay.
    const schedule = {
      apiVersion: 'ballast.dev/v1alpha1',
      kind: 'StoreBackupSchedule',
      metadata: { name: 'orders-often', namespace: 'default' },
      spec: {
        cluster: 'orders',
        schedule: '*/20 * * * * *',
        storage: { endpoint: weed.endpoint, bucket: 'backups', credentialsSecret: 's3-good' },
        retention: { keep: 2 },
        verify: true,
      },
    };
    assert.equal(kubectl(['apply', '-f', '-'], JSON.stringify(schedule)).status, 0);
    t.after(() => kubectl(['delete', 'storebackupschedule', 'orders-often', '--wait=false']));
    const scheduled = () =>
      (
        JSON.parse(
          kubectl(['get', 'storebackups', '-l', 'ballast.dev/storebackupschedule=orders-often', '-o', 'json']).stdout || '{"items":[]}',
        ) as {
          items: Array<{ metadata: { name: string }; status?: { phase?: string; verification?: { phase?: string; message?: string } } }>;
        }
      ).items;
    const pruned = () =>
      kubectl([
        'get',
        'events',
        '--field-selector',
        'involvedObject.name=orders-often,reason=BackupsPruned',
        '-o',
        'jsonpath={.items[*].message}',
      ]).stdout;
    const scheduleStart = Date.now();
    await until(() => pruned() !== '', 'the schedule made three good backups and let the oldest go', 240_000);
    t.diagnostic(`schedule: first backup pruned ${Date.now() - scheduleStart} ms after the schedule was applied (${pruned()})`);
    // Suspended, and once nothing runs: the StoreBackups and the bucket hold the same two.
    assert.equal(kubectl(['patch', 'storebackupschedule', 'orders-often', '--type=merge', '-p', '{"spec":{"suspend":true}}']).status, 0);
    await until(
      () =>
        scheduled().every(
          (b) =>
            (b.status?.phase === 'Succeeded' && b.status.verification?.phase !== undefined && b.status.verification.phase !== 'Running') ||
            b.status?.phase === 'Failed',
        ),
      'no scheduled backup or verification runs',
      120_000,
    );
    await until(() => scheduled().filter((b) => b.status?.phase === 'Succeeded').length === 2, 'retention keeps two StoreBackups', 60_000);
    const kept = scheduled()
      .filter((b) => b.status?.phase === 'Succeeded')
      .map((b) => b.metadata.name)
      .sort();
    const listed = (
      JSON.parse(
        spawnSync(
          bin,
          ['backup', 'list', `--s3-endpoint=${weed.endpoint}`, '--s3-bucket=backups', '--s3-prefix=default/orders/', '--output=json'],
          { encoding: 'utf8', env: s3env },
        ).stdout,
      ) as Array<{ name: string }>
    ).map((b) => b.name);
    assert.deepEqual(
      listed.filter((n) => n.startsWith('orders-often-')).sort(),
      kept,
      'the bucket holds the backups the StoreBackups list',
    );
    assert.ok(listed.includes('orders-b1'), 'a backup outside the schedule stays');
    assert.equal(jsonpath(['storebackupschedule', 'orders-often'], '{.status.lastSuccessfulBackup}'), kept[kept.length - 1]);
    for (const b of scheduled().filter((x) => x.status?.phase === 'Succeeded'))
      assert.equal(b.status?.verification?.phase, 'Verified', `${b.metadata.name}: ${b.status?.verification?.message}`);
    t.diagnostic(`verified: ${scheduled()[0]?.status?.verification?.message}`);
    assert.equal(jsonpath(['storebackupschedule', 'orders-often'], '{.status.conditions[?(@.type=="Ready")].reason}'), 'Suspended');
    // kubectl ballast: the backups with their verification; a backup now, with the storage of the
    // cluster's schedule; a new cluster from it (printed, not made).
    const plugin = (...args: string[]) =>
      spawnSync('kubectl', ['ballast', ...args, `--kubeconfig=${kubeconfig}`], {
        encoding: 'utf8',
        timeout: 30_000,
        env: { ...process.env, PATH: `${dirname(bin)}:${process.env['PATH'] ?? ''}` },
      });
    const byPlugin = plugin('backups', 'orders');
    assert.equal(byPlugin.status, 0, byPlugin.stderr);
    for (const name of kept)
      assert.match(byPlugin.stdout, new RegExp(`^${name} +orders +Succeeded +\\d+ +\\d+ +Verified +orders-often `, 'm'), byPlugin.stdout);
    const now = plugin('backup', 'orders', '--backup-name=orders-byhand');
    assert.equal(now.status, 0, now.stderr);
    assert.match(now.stdout, /storebackup\.ballast\.dev\/orders-byhand created/);
    await until(() => field('orders-byhand', 'phase') === 'Succeeded', 'the backup made with kubectl ballast Succeeded', 120_000);
    assert.match(plugin('status', 'orders').stdout, /^Backups: \d+; newest good orders-byhand \(revision \d+, /m);
    const dry = plugin('restore', 'orders-again', '--from=orders-byhand', '--dry-run', '-o', 'json');
    assert.equal(dry.status, 0, dry.stderr);
    assert.deepEqual((JSON.parse(dry.stdout) as { spec: { restore: unknown } }).spec.restore, { backup: 'orders-byhand' });
    assert.notEqual(kubectl(['get', 'storecluster', 'orders-again']).status, 0, '--dry-run made nothing');
  });

  it('point in time: a schedule with pointInTime runs its archiver; a StoreCluster restored from a backup with spec.restore.toRevision holds what was written after the backup up to that revision, hashing as the source there, and nothing after it', async (t) => {
    await until(() => phase() === '3/Ready', 'Ready to begin with', 120_000);
    const node = new URL(kubectl(['config', 'view', '--raw', '-o', 'jsonpath={.clusters[0].cluster.server}']).stdout.trim()).hostname;
    const weed = await startSeaweed(join(stateDir, 'weed-pit'), node);
    t.after(() => weed.stop());
    await weed.createBucket('pitr');
    const storage = { endpoint: weed.endpoint, bucket: 'pitr', credentialsSecret: 's3-pitr' };
    const schedule = {
      apiVersion: 'ballast.dev/v1alpha1',
      kind: 'StoreBackupSchedule',
      metadata: { name: 'orders-pit', namespace: 'default' },
      spec: { cluster: 'orders', schedule: '0 0 1 1 *', suspend: true, storage, pointInTime: { enabled: true, segmentSeconds: 1 } },
    };
    const base = {
      apiVersion: 'ballast.dev/v1alpha1',
      kind: 'StoreBackup',
      metadata: { name: 'orders-pit-base', namespace: 'default' },
      spec: { cluster: 'orders', storage },
    };
    const secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 's3-pitr', namespace: 'default' },
      stringData: { accessKeyId: weed.accessKeyId, secretAccessKey: weed.secretAccessKey },
    };
    assert.equal(kubectl(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [secret, schedule] })).status, 0);
    t.after(() => kubectl(['delete', 'storebackupschedule', 'orders-pit', '--wait=false']));
    await until(
      () => jsonpath(['storebackupschedule', 'orders-pit'], '{.status.conditions[?(@.type=="Archiving")].status}') === 'True',
      'the archiver runs',
      180_000,
    );
    assert.equal(jsonpath(['deployment', 'orders-pit-archiver'], '{.metadata.ownerReferences[0].name}'), 'orders-pit');
    assert.equal(kubectl(['apply', '-f', '-'], JSON.stringify(base)).status, 0);
    await until(
      () => jsonpath(['storebackup', 'orders-pit-base'], '{.status.phase}') === 'Succeeded',
      'the base backup Succeeded',
      180_000,
    );
    const baseRev = Number(jsonpath(['storebackup', 'orders-pit-base'], '{.status.revision}'));
    // Writes after the backup: the target is the revision after the first 150; 50 more follow.
    const kv = new RetryingKv();
    kv.setEndpoints(memberPods().map(([, ip]) => `${ip}:2379`));
    for (let i = 0; i < 150; i++) await kv.put(`pit/${String(i).padStart(3, '0')}`, `v${i}`);
    const endpoints = memberPods()
      .map(([, ip]) => `${ip}:2379`)
      .join(',');
    const etcd = (...args: string[]) =>
      spawnSync('etcdctl', [`--endpoints=${endpoints}`, ...args], { encoding: 'utf8', env: { ...process.env, ETCDCTL_API: '3' } });
    const target = Number(
      (JSON.parse(etcd('get', 'pit/149', '-w', 'json').stdout) as { kvs: Array<{ mod_revision: number }> }).kvs[0]!.mod_revision,
    );
    for (let i = 150; i < 200; i++) await kv.put(`pit/${String(i).padStart(3, '0')}`, `v${i}`);
    kv.close();
    assert.ok(target > baseRev, `the target ${target} is after the backup's revision ${baseRev}`);
    const s3env = { ...process.env, AWS_ACCESS_KEY_ID: weed.accessKeyId, AWS_SECRET_ACCESS_KEY: weed.secretAccessKey };
    const archive = () =>
      (
        JSON.parse(
          spawnSync(
            bin,
            ['backup', 'list', `--s3-endpoint=${weed.endpoint}`, '--s3-bucket=pitr', '--s3-prefix=default/orders/', '--output=json'],
            { encoding: 'utf8', env: s3env },
          ).stdout || '{}',
        ) as { archive?: { progress?: { revision: number } } }
      ).archive;
    const archiveStart = Date.now();
    await until(() => (archive()?.progress?.revision ?? 0) >= target, 'the archive reaches the target revision', 60_000);
    t.diagnostic(`archive reached revision ${target} ${Date.now() - archiveStart} ms after the write was acknowledged`);
    const restored = {
      apiVersion: 'ballast.dev/v1alpha1',
      kind: 'StoreCluster',
      metadata: { name: 'then', namespace: 'default' },
      spec: { replicas: 3, restore: { backup: 'orders-pit-base', toRevision: target } },
    };
    assert.equal(kubectl(['apply', '-f', '-'], JSON.stringify(restored)).status, 0);
    t.after(() => kubectl(['delete', 'storecluster', 'then', '--wait=false']));
    await until(() => phase('then') === '3/Ready', 'the StoreCluster restored to a revision is Ready', 240_000);
    const hashOf = (eps: string) =>
      (
        JSON.parse(
          spawnSync('etcdctl', [`--endpoints=${eps}`, 'endpoint', 'hashkv', `--rev=${target}`, '-w', 'json'], {
            encoding: 'utf8',
            env: { ...process.env, ETCDCTL_API: '3' },
          }).stdout || '[]',
        ) as Array<{ HashKV: { hash: number } }>
      ).map((h) => h.HashKV.hash);
    const live = hashOf(endpoints);
    assert.equal(new Set(live).size, 1);
    const thenEndpoints = memberPods('then')
      .map(([, ip]) => `${ip}:2379`)
      .join(',');
    assert.deepEqual(hashOf(thenEndpoints), [live[0], live[0], live[0]], 'every member hashes as the source at the target revision');
    const keys = spawnSync('etcdctl', [`--endpoints=${thenEndpoints}`, 'get', 'pit/', '--prefix', '--keys-only'], {
      encoding: 'utf8',
      env: { ...process.env, ETCDCTL_API: '3' },
    })
      .stdout.split('\n')
      .filter(Boolean);
    assert.equal(keys.length, 150, 'the keys written up to the target, none after');
    assert.match(
      kubectl(['get', 'events', '--field-selector', 'involvedObject.name=then,reason=Bootstrapping', '-o', 'jsonpath={.items[*].message}'])
        .stdout,
      new RegExp(`each restored from backup orders-pit-base .* and the archive to revision ${target}`),
    );
  });

  it('spec.tls: members serve clients and each other over TLS with certificates required both ways; the operator manages them through it', async (t) => {
    // A CA, one certificate for the members (both uses, the names the CRD documents) and one for a client.
    const dir = mkdtempSync(join(tmpdir(), 'ballast-sc-tls-'));
    const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    openssl(
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      'ca.key',
      '-out',
      'ca.crt',
      '-days',
      '2',
      '-subj',
      '/CN=secure-ca',
    );
    writeFileSync(
      join(dir, 'member.ext'),
      'subjectAltName=DNS:*.secure-peer.default.svc.cluster.local,DNS:secure-client.default.svc,DNS:secure-client.default.svc.cluster.local\nextendedKeyUsage=serverAuth,clientAuth\n',
    );
    writeFileSync(join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\n');
    for (const name of ['member', 'client']) {
      openssl(
        'req',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        `${name}.key`,
        '-out',
        `${name}.csr`,
        '-subj',
        `/CN=${name}`,
      );
      openssl(
        'x509',
        '-req',
        '-in',
        `${name}.csr`,
        '-CA',
        'ca.crt',
        '-CAkey',
        'ca.key',
        '-CAcreateserial',
        '-out',
        `${name}.crt`,
        '-days',
        '2',
        '-extfile',
        `${name}.ext`,
      );
    }
    const b64 = (f: string) => readFileSync(join(dir, f)).toString('base64');
    const secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'kubernetes.io/tls',
      metadata: { name: 'secure-tls', namespace: 'default' },
      data: { 'tls.crt': b64('member.crt'), 'tls.key': b64('member.key'), 'ca.crt': b64('ca.crt') },
    };
    assert.equal(kubectl(['apply', '-f', '-'], JSON.stringify(secret)).status, 0);
    const cluster = {
      apiVersion: 'ballast.dev/v1alpha1',
      kind: 'StoreCluster',
      metadata: { name: 'secure', namespace: 'default' },
      spec: {
        replicas: 3,
        version: '0.2.0',
        storage: { size: '1Gi' },
        tls: { clientSecretName: 'secure-tls', peerSecretName: 'secure-tls' },
      },
    };
    const start = Date.now();
    const applied = kubectl(['apply', '-f', '-'], JSON.stringify(cluster));
    assert.equal(applied.status, 0, applied.stderr);
    const securePhase = () =>
      `${jsonpath(['storecluster', 'secure'], '{.status.readyReplicas}')}/${jsonpath(['storecluster', 'secure'], '{.status.phase}')}`;
    await until(() => securePhase() === '3/Ready', "Ready over TLS (the operator reads members' status through it)", 120_000);
    t.diagnostic(`3-member StoreCluster with client and peer TLS Ready in ${Date.now() - start} ms`);
    const ip = kubectl(['get', 'pods', '-l', 'app.kubernetes.io/instance=secure', '-o', 'jsonpath={.items[0].status.podIP}']).stdout;
    const etcdctl = (...args: string[]) =>
      spawnSync('etcdctl', [`--endpoints=https://${ip}:2379`, '--dial-timeout=3s', '--command-timeout=5s', ...args], {
        encoding: 'utf8',
        env: { ...process.env, ETCDCTL_API: '3' },
      });
    // The member certificate names Service and peer DNS names, not pod IPs: etcdctl on this machine dials the IP.
    const withCert = [
      '--cacert',
      join(dir, 'ca.crt'),
      '--cert',
      join(dir, 'client.crt'),
      '--key',
      join(dir, 'client.key'),
      '--insecure-skip-tls-verify',
    ];
    const put = etcdctl(...withCert, 'put', 'secure/k', 'v');
    assert.equal(put.status, 0, put.stderr);
    assert.equal(etcdctl(...withCert, 'get', 'secure/k', '--print-value-only').stdout.trim(), 'v');
    assert.equal(
      etcdctl(...withCert, 'member', 'list')
        .stdout.split('\n')
        .filter((l) => l.includes('https://secure-')).length,
      3,
      'peers advertise https URLs',
    );
    assert.notEqual(
      etcdctl('--cacert', join(dir, 'ca.crt'), '--insecure-skip-tls-verify', 'get', 'secure/k').status,
      0,
      'no client certificate: refused',
    );
    assert.notEqual(
      spawnSync('etcdctl', [`--endpoints=http://${ip}:2379`, '--dial-timeout=2s', '--command-timeout=3s', 'get', 'secure/k'], {
        encoding: 'utf8',
        env: { ...process.env, ETCDCTL_API: '3' },
      }).status,
      0,
      'no plaintext',
    );
    const change = kubectl(['patch', 'storecluster', 'secure', '--type=merge', '-p', '{"spec":{"tls":null}}']);
    assert.notEqual(change.status, 0, 'TLS cannot be switched off on a live cluster');
    assert.match(change.stderr, /spec\.tls can be set only when the cluster is created/);
    assert.equal(kubectl(['delete', 'storecluster', 'secure', '--wait=true']).status, 0);
  });

  it('spec.auth: the operator makes the root user (password in a basic-auth Secret), turns auth on, manages the members as root (scaling 1→3), and turns auth off again', async (t) => {
    const cluster = {
      apiVersion: 'ballast.dev/v1alpha1',
      kind: 'StoreCluster',
      metadata: { name: 'guarded', namespace: 'default' },
      spec: { replicas: 1, version: '0.2.0', storage: { size: '1Gi' }, auth: { enabled: true } },
    };
    const start = Date.now();
    assert.equal(kubectl(['apply', '-f', '-'], JSON.stringify(cluster)).status, 0);
    const state = () =>
      `${jsonpath(['storecluster', 'guarded'], '{.status.readyReplicas}')}/${jsonpath(['storecluster', 'guarded'], '{.status.phase}')}/${jsonpath(['storecluster', 'guarded'], '{.status.authEnabled}')}`;
    await until(() => state() === '1/Ready/true', 'Ready with auth on', 120_000);
    t.diagnostic(`StoreCluster with spec.auth Ready, auth on, in ${Date.now() - start} ms`);
    assert.equal(jsonpath(['secret', 'guarded-root'], '{.type}'), 'kubernetes.io/basic-auth');
    const password = Buffer.from(jsonpath(['secret', 'guarded-root'], '{.data.password}'), 'base64').toString();
    assert.ok(password.length >= 24, 'a random password');
    const ips = () =>
      kubectl(['get', 'pods', '-l', 'app.kubernetes.io/instance=guarded', '-o', 'jsonpath={.items[*].status.podIP}'])
        .stdout.split(' ')
        .filter(Boolean);
    const etcdctl = (...args: string[]) =>
      spawnSync(
        'etcdctl',
        [
          `--endpoints=${ips()
            .map((ip) => `${ip}:2379`)
            .join(',')}`,
          '--dial-timeout=3s',
          '--command-timeout=5s',
          ...args,
        ],
        { encoding: 'utf8', env: { ...process.env, ETCDCTL_API: '3' } },
      );
    assert.match(etcdctl('put', 'guarded/k', 'v').stderr, /user name is empty/, 'no user: refused');
    const asRoot = `--user=root:${password}`;
    const put = etcdctl(asRoot, 'put', 'guarded/k', 'v');
    assert.equal(put.status, 0, put.stderr);
    // Membership changes need the root role: the operator authenticates its own calls.
    assert.equal(kubectl(['patch', 'storecluster', 'guarded', '--type=merge', '-p', '{"spec":{"replicas":3}}']).status, 0);
    await until(() => state() === '3/Ready/true', 'scaled to 3 with auth on', 180_000);
    assert.equal(etcdctl(asRoot, 'member', 'list').stdout.trim().split('\n').length, 3);
    assert.equal(etcdctl(asRoot, 'get', 'guarded/k', '--print-value-only').stdout.trim(), 'v');
    assert.equal(kubectl(['patch', 'storecluster', 'guarded', '--type=merge', '-p', '{"spec":{"auth":{"enabled":false}}}']).status, 0);
    await until(() => state() === '3/Ready/false', 'auth off again', 60_000);
    assert.equal(etcdctl('get', 'guarded/k', '--print-value-only').stdout.trim(), 'v', 'no user needed');
    assert.equal(kubectl(['delete', 'storecluster', 'guarded', '--wait=true']).status, 0);
  });

  it('two operator replicas: kill -9 of the leader hands over within the lease duration; a graceful stop in under 3 s', async (t) => {
    const second = await startOperator();
    const holder = () => jsonpath(['lease', '-n', 'ballast-system', 'ballast-operator'], '{.spec.holderIdentity}');
    const first = operators[0]!;
    await until(() => holder().endsWith(`_${first.pid}`), 'the first operator leads', 30_000);
    let start = Date.now();
    first.kill('SIGKILL');
    await until(() => holder().endsWith(`_${second.pid}`), 'the second operator takes over', 30_000);
    const killTakeover = Date.now() - start;
    t.diagnostic(`takeover after kill -9: ${killTakeover} ms (lease 15000 ms)`);
    assert.ok(killTakeover <= 15_000 + 2_000 * 1.2 + 1_000, `within the lease duration plus one retry (${killTakeover} ms)`);
    // It reconciles: a change made now is acted on.
    assert.equal(kubectl(['annotate', 'storecluster', 'orders', '--overwrite', 'e2e/touched=1']).status, 0);
    const third = await startOperator();
    await sleep(3000);
    start = Date.now();
    second.kill('SIGTERM');
    await until(() => holder().endsWith(`_${third.pid}`), 'the third operator takes over after a graceful stop', 10_000);
    const graceful = Date.now() - start;
    t.diagnostic(`takeover after a graceful stop: ${graceful} ms`);
    assert.ok(graceful < 3_000, `under 3 s (${graceful} ms)`);
  });
});
