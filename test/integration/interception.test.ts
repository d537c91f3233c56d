// Transparent interception with the real pieces: `ballast mesh-init` writes iptables rules in a
// network namespace made here (a pod's), `ballast sidecar` runs there as its own uid and reads
// each redirected connection's original destination with SO_ORIGINAL_DST, and the "app" (plain
// clients with no proxy settings and no local ports) calls Service addresses as it would in a
// cluster. A second namespace, joined by a veth pair, is the rest of the network.
// Needs root (namespaces, iptables), as the real node does.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { sidecarUid } from '../../api/interception.ts';
import { Proc } from '../support/sidecar-procs.ts';
import { bin } from '../support/store-cluster.ts';

const peer = fileURLToPath(new URL('../support/netns-peer.ts', import.meta.url));
const id = process.pid % 100_000;
const POD = `bi-pod-${id}`;
const NET = `bi-net-${id}`;
const podIp = '10.77.0.2';
const netIp = '10.77.0.3';
const admin = 15000;
const procs: Proc[] = [];

const sh = (...args: string[]): string => execFileSync(args[0] as string, args.slice(1), { encoding: 'utf8', stdio: 'pipe' });
const inNs = (ns: string, ...args: string[]): string => sh('ip', 'netns', 'exec', ns, ...args);

async function serve(ns: string, kind: string, addr: string, name = ''): Promise<void> {
  const p = new Proc(
    spawn('ip', ['netns', 'exec', ns, process.execPath, peer, 'serve', kind, addr, name], { stdio: ['ignore', 'pipe', 'pipe'] }),
  );
  procs.push(p);
  await p.waitFor(/listening/);
}

/** Run the peer client in a namespace, as the application (root: intercepted). */
function client(ns: string, kind: string, addr: string, arg = ''): Record<string, unknown> {
  return JSON.parse(inNs(ns, process.execPath, peer, 'client', kind, addr, arg)) as Record<string, unknown>;
}

async function metric(name: string, labels: string): Promise<number> {
  const text = inNs(POD, process.execPath, peer, 'client', 'http', `http://127.0.0.1:${admin}/metrics`);
  const body = (JSON.parse(text) as { body: string }).body;
  const line = body.split('\n').find((l) => l.startsWith(`${name}{`) && labels.split(',').every((kv) => l.includes(kv)));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

before(async () => {
  sh('ip', 'netns', 'add', POD);
  sh('ip', 'netns', 'add', NET);
  sh('ip', 'link', 'add', `bip${id}`, 'type', 'veth', 'peer', 'name', `bin${id}`);
  sh('ip', 'link', 'set', `bip${id}`, 'netns', POD);
  sh('ip', 'link', 'set', `bin${id}`, 'netns', NET);
  for (const [ns, dev, ip] of [
    [POD, `bip${id}`, podIp],
    [NET, `bin${id}`, netIp],
  ] as const) {
    inNs(ns, 'ip', 'link', 'set', 'lo', 'up');
    inNs(ns, 'ip', 'addr', 'add', `${ip}/24`, 'dev', dev);
    inNs(ns, 'ip', 'link', 'set', dev, 'up');
  }
  // Service cluster IPs are routed out of the pod (kube-proxy would translate them on the node).
  inNs(POD, 'ip', 'route', 'add', '10.96.0.0/16', 'dev', `bip${id}`);
  // The rest of the network: an HTTP service, a gRPC service and a server-first TCP service.
  await serve(NET, 'http', `${netIp}:8080`, 'api');
  await serve(NET, 'grpc', `${netIp}:8081`);
  await serve(NET, 'tcp', `${netIp}:5000`);
  await serve(NET, 'tcp', `${netIp}:5001`);
  // The pod's application: an HTTP port behind an inbound listener, and one without.
  await serve(POD, 'http', `0.0.0.0:9080`, 'app-web');
  await serve(POD, 'http', `0.0.0.0:7070`, 'app-other');
  // The init container's step: the real command, as the injector writes it.
  const init = inNs(POD, bin, 'mesh-init', `--proxy-uid=${sidecarUid}`, `--admin-port=${admin}`, '--exclude-outbound-ports=5001');
  assert.match(init, /IPv4 interception installed/);
  const dir = mkdtempSync(join(tmpdir(), 'ballast-intercept-'));
  chmodSync(dir, 0o755);
  const file = join(dir, 'sidecar.yaml');
  writeFileSync(
    file,
    stringify({
      admin: `0.0.0.0:${admin}`,
      capture: { outbound: '127.0.0.1:15001', inbound: '0.0.0.0:15006' },
      upstreams: [
        {
          name: 'api.default',
          addresses: ['10.96.7.7:80'],
          endpoints: [`${netIp}:8080`],
          mtls: 'off',
          // A route-attached policy's upstream (reached only through the route) whose endpoint is the
          // TCP server below: a call straight to that address is not a call through the route.
          httpRoutes: [
            {
              name: 'default/r',
              created: '2026-12-01T00:00:00Z',
              rules: [
                {
                  matches: [{ path: { type: 'PathPrefix', value: '/via-route' } }],
                  backends: [{ upstream: 'banner.default.5000.route.default.r' }],
                },
                { matches: [{ path: { type: 'PathPrefix', value: '/' } }], backends: [{ upstream: 'api.default' }] },
              ],
            },
          ],
        },
        { name: 'banner.default.5000.route.default.r', endpoints: [`${netIp}:5000`], mtls: 'off' },
        { name: 'grpc.default', addresses: ['10.96.7.8:50051'], endpoints: [`${netIp}:8081`], mtls: 'off' },
      ],
      inbound: [{ name: 'web', listen: '0.0.0.0:8080', target: '127.0.0.1:9080', mtls: 'off' }],
    }),
  );
  chmodSync(file, 0o644);
  const sidecar = new Proc(
    spawn(
      'ip',
      [
        'netns',
        'exec',
        POD,
        'setpriv',
        `--reuid=${sidecarUid}`,
        `--regid=${sidecarUid}`,
        '--clear-groups',
        bin,
        'sidecar',
        `--config=${file}`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, BALLAST_LOG_LEVEL: 'info' } },
    ),
  );
  procs.push(sidecar);
  await sidecar.waitFor(/sidecar started/, 30_000);
});

after(async () => {
  await Promise.all(procs.map((p) => p.stop('SIGKILL')));
  for (const ns of [POD, NET])
    try {
      sh('ip', 'netns', 'delete', ns);
    } catch {
      // already gone
    }
});

test('an app with no proxy settings calls a Service address and the sidecar serves it as that upstream', async () => {
  const before = await metric('ballast_sidecar_requests_total', 'upstream="api.default"');
  const r = client(POD, 'http', 'http://10.96.7.7/orders?id=7');
  assert.equal(r['status'], 200);
  const body = JSON.parse(r['body'] as string) as { name: string; path: string; peer: string };
  assert.equal(body.name, 'api');
  assert.equal(body.path, '/orders?id=7');
  assert.ok((await metric('ballast_sidecar_requests_total', 'upstream="api.default"')) > before, 'the request went through the upstream');
  assert.ok((await metric('ballast_sidecar_intercepted_connections_total', 'direction="outbound",result="matched"')) >= 1);
});

test('a gRPC client reaches its Service without a local port (h2c through the upstream)', () => {
  const r = client(POD, 'grpc', '10.96.7.8:50051', 'ping');
  assert.ok(String(r['reply']).endsWith('ping'), `the echoed message came back: ${JSON.stringify(r)}`);
});

test('a destination no upstream claims is passed through as TCP, server-first protocols included', async () => {
  const r = client(POD, 'tcp', `${netIp}:5000`, 'payload');
  assert.match(String(r['banner']), /^hello \d+$/);
  assert.equal(r['echo'], 'payload');
  // The server saw the sidecar's connection, not the app's: another source port.
  assert.notEqual(String(r['banner']).split(' ')[1], String(r['localPort']));
  assert.ok((await metric('ballast_sidecar_intercepted_connections_total', 'direction="outbound",result="passthrough"')) >= 1);
});

test('an excluded outbound port goes out directly, not through the sidecar', () => {
  const r = client(POD, 'tcp', `${netIp}:5001`, 'x');
  assert.equal(String(r['banner']).split(' ')[1], String(r['localPort']), "the server saw the app's own connection");
});

test("inbound: a caller reaching the pod's port meets the inbound listener; other ports reach the app; the admin port is not intercepted", async () => {
  const web = client(NET, 'http', `http://${podIp}:8080/hi`);
  assert.equal(JSON.parse(web['body'] as string).name, 'app-web', 'port 8080 went through the inbound listener to the app on 9080');
  const other = client(NET, 'http', `http://${podIp}:7070/`);
  assert.equal(JSON.parse(other['body'] as string).name, 'app-other', 'a port without an inbound listener is passed to the app');
  assert.ok((await metric('ballast_sidecar_intercepted_connections_total', 'direction="inbound",result="matched"')) >= 1);
  assert.ok((await metric('ballast_sidecar_intercepted_connections_total', 'direction="inbound",result="passthrough"')) >= 1);
  const ready = client(NET, 'http', `http://${podIp}:${admin}/ready`);
  assert.equal(ready['status'], 200);
});

test('mesh-init again (a restarted init container) leaves one set of rules, and refuses a bad exclusion with what to write', () => {
  inNs(POD, bin, 'mesh-init', `--proxy-uid=${sidecarUid}`, `--admin-port=${admin}`, '--exclude-outbound-ports=5001');
  const rules = inNs(POD, 'iptables-save', '-t', 'nat');
  assert.equal(rules.split('\n').filter((l) => l === '-A OUTPUT -p tcp -j BALLAST_OUTPUT').length, 1, rules);
  assert.throws(
    () => inNs(POD, bin, 'mesh-init', '--exclude-outbound-ports=postgres'),
    (err: Error & { stderr?: string }) => /"postgres" is not a port/.test(String(err.stderr)),
  );
});
