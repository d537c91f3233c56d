// The process kubelet under `ballast cluster`: pods as local processes in their own network
// namespaces. What Kubernetes promises a pod holds: its own IP, reachable from other pods;
// downward-API env; a killed container restarts; deletion sends SIGTERM and the Deployment
// replaces the pod; `down` leaves no process, namespace or link behind.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bin, freePort } from '../support/store-cluster.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

for (const store of ['etcd', 'ballast'] as const) describe(`process kubelet (objects in ${store})`, { timeout: 240_000 }, () => {
  const stateDir = mkdtempSync(join(tmpdir(), `ballast-kubelet-${store}-`));
  const cluster = (...args: string[]) => spawnSync(bin, ['cluster', ...args, `--state-dir=${stateDir}`, `--store=${store}`], { encoding: 'utf8', timeout: 150_000 });
  const kubectl = (args: string[], input?: string) => spawnSync('kubectl', [`--kubeconfig=${join(stateDir, 'admin.kubeconfig')}`, ...args], { encoding: 'utf8', input: input ?? '', timeout: 30_000 });
  const pods = () => (JSON.parse(kubectl(['get', 'pods', '-l', 'app=echo', '-o', 'json']).stdout) as { items: Array<{ metadata: { name: string; deletionTimestamp?: string }; status: { phase?: string; podIP?: string; containerStatuses?: Array<{ ready: boolean; restartCount: number }> } }> }).items;
  const readyPods = () => pods().filter((p) => !p.metadata.deletionTimestamp && p.status.containerStatuses?.[0]?.ready);
  async function until(cond: () => boolean, what: string, ms = 30_000): Promise<void> {
    for (let t = 0; t < ms && !cond(); t += 250) await sleep(250);
    assert.ok(cond(), what);
  }

  before(async () => {
    const up = spawnSync(bin, ['cluster', 'up', `--state-dir=${stateDir}`, `--store=${store}`, `--apiserver-port=${await freePort()}`], { encoding: 'utf8', timeout: 150_000 });
    assert.equal(up.status, 0, up.stderr + up.stdout);
  });
  after(() => cluster('down'));

  it('registers a Ready node that renews its Lease', async () => {
    await until(() => /\bReady\b/.test(kubectl(['get', 'node', 'local', '--no-headers']).stdout), 'node Ready');
    assert.match(kubectl(['get', 'lease', '-n', 'kube-node-lease', 'local', '-o', 'jsonpath={.spec.holderIdentity}']).stdout, /local/);
  });

  it('runs a Deployment: each pod Running and Ready with its own IP, reachable from another pod, with downward-API env', async () => {
    const r = kubectl(['apply', '-f', '-'], 'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: echo}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: echo}}\n  template:\n    metadata: {labels: {app: echo}}\n    spec:\n      terminationGracePeriodSeconds: 5\n      containers:\n      - name: echo\n        image: ballast-test/http-echo\n        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}\n        env: [{name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}]\n');
    assert.equal(r.status, 0, r.stderr);
    await until(() => readyPods().length === 2, 'two pods Ready');
    const [a, b] = readyPods();
    assert.notEqual(a!.status.podIP, b!.status.podIP);
    // From inside pod a's network namespace to pod b's IP.
    const nsOfA = readdirSync('/run/netns').find((ns) => execFileSync('ip', ['-n', ns, 'addr', 'show', 'eth0'], { encoding: 'utf8' }).includes(`${a!.status.podIP}/`));
    assert.ok(nsOfA, 'pod a has its own namespace');
    const reply = JSON.parse(execFileSync('ip', ['netns', 'exec', nsOfA, 'curl', '-s', '--max-time', '3', `http://${b!.status.podIP}:8080/`], { encoding: 'utf8' })) as { pod: string; podIP: string };
    assert.deepEqual(reply, { pod: b!.metadata.name, podIP: b!.status.podIP, path: '/' });
  });

  it('restarts a container whose process is killed (restartCount grows)', async () => {
    const victim = readyPods()[0]!;
    const pid = execFileSync('pgrep', ['-f', 'http-echo.mjs'], { encoding: 'utf8' }).trim().split('\n')
      .find((p) => execFileSync('ip', ['netns', 'identify', p], { encoding: 'utf8' }).trim() !== '' && readFileSync(`/proc/${p}/environ`, 'utf8').includes(`HOSTNAME=${victim.metadata.name}`));
    assert.ok(pid, 'found the container process');
    process.kill(Number(pid), 'SIGKILL');
    await until(() => pods().some((p) => p.metadata.name === victim.metadata.name && (p.status.containerStatuses?.[0]?.restartCount ?? 0) >= 1 && p.status.containerStatuses?.[0]?.ready === true), 'restarted and Ready again');
  });

  it('deleting a pod sends SIGTERM, and the Deployment replaces it', async () => {
    const victim = readyPods()[0]!.metadata.name;
    assert.equal(kubectl(['delete', 'pod', victim, '--wait=true']).status, 0);
    await until(() => readyPods().length === 2 && !readyPods().some((p) => p.metadata.name === victim), 'replaced');
    const logs = readdirSync(join(stateDir, 'pods')).filter((d) => d.includes(victim)).map((d) => readFileSync(join(stateDir, 'pods', d, 'echo.log'), 'utf8')).join('');
    assert.match(logs, /http-echo got SIGTERM/);
  });

  it('down leaves no process, namespace or link behind', () => {
    assert.equal(cluster('down').status, 0);
    assert.equal(spawnSync('pgrep', ['-f', 'http-echo.mjs']).status, 1, 'no container process left');
    assert.equal(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').filter((l) => l.startsWith('blst-')).length, 0);
    assert.notEqual(spawnSync('ip', ['link', 'show', 'blst0']).status, 0, 'the bridge is gone');
  });
});

describe('process kubelet: probes', { timeout: 240_000 }, () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'ballast-probes-'));
  const kubectl = (args: string[], input?: string) => spawnSync('kubectl', [`--kubeconfig=${join(stateDir, 'admin.kubeconfig')}`, ...args], { encoding: 'utf8', input: input ?? '', timeout: 30_000 });
  const pod = (name: string) => JSON.parse(kubectl(['get', 'pod', name, '-o', 'json']).stdout || '{}') as { status?: { containerStatuses?: Array<{ ready: boolean; started?: boolean; restartCount: number }> } };
  async function until(cond: () => boolean, what: string, ms = 60_000): Promise<void> {
    for (let t = 0; t < ms && !cond(); t += 250) await sleep(250);
    assert.ok(cond(), what);
  }
  const podYaml = (name: string, probes: string) => `apiVersion: v1\nkind: Pod\nmetadata: {name: ${name}}\nspec:\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: echo\n    image: ballast-test/http-echo\n    ports: [{name: http, containerPort: 8080}]\n${probes}`;

  before(async () => {
    const up = spawnSync(bin, ['cluster', 'up', `--state-dir=${stateDir}`, '--store=etcd', `--apiserver-port=${await freePort()}`], { encoding: 'utf8', timeout: 150_000 });
    assert.equal(up.status, 0, up.stderr + up.stdout);
  });
  after(() => spawnSync(bin, ['cluster', 'down', `--state-dir=${stateDir}`], { encoding: 'utf8', timeout: 60_000 }));

  it('readiness: an HTTP probe that passes makes the container ready; one that fails keeps it running but not ready', async () => {
    assert.equal(kubectl(['apply', '-f', '-'], podYaml('ready-yes', '    readinessProbe: {httpGet: {path: /status/200, port: http}, periodSeconds: 1}\n')).status, 0);
    assert.equal(kubectl(['apply', '-f', '-'], podYaml('ready-no', '    readinessProbe: {httpGet: {path: /status/503, port: 8080}, periodSeconds: 1, failureThreshold: 1}\n')).status, 0);
    await until(() => pod('ready-yes').status?.containerStatuses?.[0]?.ready === true, 'ready-yes becomes ready');
    await sleep(3000);
    const no = pod('ready-no').status?.containerStatuses?.[0];
    assert.equal(no?.ready, false, 'ready-no stays not ready');
    assert.equal(no?.restartCount, 0, 'a failing readiness probe does not restart');
  });

  it('liveness: a failing probe (TCP to a closed port, or exec exiting 1) restarts the container', async () => {
    assert.equal(kubectl(['apply', '-f', '-'], podYaml('live-tcp', '    livenessProbe: {tcpSocket: {port: 9999}, periodSeconds: 1, failureThreshold: 2}\n')).status, 0);
    assert.equal(kubectl(['apply', '-f', '-'], podYaml('live-exec', '    livenessProbe: {exec: {command: [sh, -c, "exit 1"]}, periodSeconds: 1, failureThreshold: 2}\n')).status, 0);
    await until(() => (pod('live-tcp').status?.containerStatuses?.[0]?.restartCount ?? 0) >= 1, 'live-tcp restarted');
    await until(() => (pod('live-exec').status?.containerStatuses?.[0]?.restartCount ?? 0) >= 1, 'live-exec restarted');
  });

  it('startup: the container is not started until its startup probe passes', async () => {
    assert.equal(kubectl(['apply', '-f', '-'], podYaml('startup', '    startupProbe: {tcpSocket: {port: http}, periodSeconds: 1}\n    readinessProbe: {tcpSocket: {port: http}, periodSeconds: 1}\n')).status, 0);
    await until(() => pod('startup').status?.containerStatuses?.[0]?.started === true && pod('startup').status?.containerStatuses?.[0]?.ready === true, 'started, then ready');
  });
});

for (const store of ['etcd', 'ballast'] as const) describe(`process kubelet: volumes (objects in ${store})`, { timeout: 240_000 }, () => {
  const stateDir = mkdtempSync(join(tmpdir(), `ballast-volumes-${store}-`));
  const kubectl = (args: string[], input?: string) => spawnSync('kubectl', [`--kubeconfig=${join(stateDir, 'admin.kubeconfig')}`, ...args], { encoding: 'utf8', input: input ?? '', timeout: 30_000 });
  const podIP = (name: string) => kubectl(['get', 'pod', name, '-o', 'jsonpath={.status.podIP}']).stdout.trim();
  const isReady = (name: string) => kubectl(['get', 'pod', name, '-o', 'jsonpath={.status.containerStatuses[0].ready}']).stdout.trim() === 'true';
  const read = (name: string, path: string) => spawnSync('curl', ['-s', '--max-time', '3', `http://${podIP(name)}:8080/read?path=${encodeURIComponent(path)}`], { encoding: 'utf8' }).stdout;
  async function until(cond: () => boolean, what: string, ms = 60_000): Promise<void> {
    for (let t = 0; t < ms && !cond(); t += 250) await sleep(250);
    assert.ok(cond(), what);
  }
  const apply = (yaml: string) => assert.equal(kubectl(['apply', '-f', '-'], yaml).status, 0);

  before(async () => {
    const up = spawnSync(bin, ['cluster', 'up', `--state-dir=${stateDir}`, `--store=${store}`, `--apiserver-port=${await freePort()}`], { encoding: 'utf8', timeout: 150_000 });
    assert.equal(up.status, 0, up.stderr + up.stdout);
  });
  after(() => spawnSync(bin, ['cluster', 'down', `--state-dir=${stateDir}`], { encoding: 'utf8', timeout: 60_000 }));

  it('configMap, secret and emptyDir volumes appear at their mount paths, in the container only', async () => {
    assert.equal(kubectl(['create', 'configmap', 'app-config', '--from-literal=greeting=hello']).status, 0);
    assert.equal(kubectl(['create', 'secret', 'generic', 'app-secret', '--from-literal=token=s3cr3t']).status, 0);
    apply(`apiVersion: v1\nkind: Pod\nmetadata: {name: vols}\nspec:\n  containers:\n  - name: echo\n    image: ballast-test/http-echo\n    env: [{name: WRITE_FILE, value: /ballast-e2e/scratch/boot.log}]\n    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}\n    volumeMounts:\n    - {name: scratch, mountPath: /ballast-e2e/scratch}\n    - {name: config, mountPath: /ballast-e2e/config, readOnly: true}\n    - {name: secret, mountPath: /ballast-e2e/secret, readOnly: true}\n  volumes:\n  - {name: scratch, emptyDir: {}}\n  - {name: config, configMap: {name: app-config}}\n  - {name: secret, secret: {secretName: app-secret}}\n`);
    await until(() => isReady('vols'), 'pod ready');
    assert.equal(read('vols', '/ballast-e2e/config/greeting'), 'hello');
    assert.equal(read('vols', '/ballast-e2e/secret/token'), 's3cr3t');
    assert.match(read('vols', '/ballast-e2e/scratch/boot.log'), /^started vols\n/);
    assert.equal(existsSync('/ballast-e2e/config/greeting'), false, 'the host does not see the container\'s mounts');
  });

  it('a StatefulSet pod gets a provisioned volume; its data survives deleting the pod', async () => {
    apply(`apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec:\n  serviceName: db\n  replicas: 1\n  selector: {matchLabels: {app: db}}\n  template:\n    metadata: {labels: {app: db}}\n    spec:\n      terminationGracePeriodSeconds: 2\n      containers:\n      - name: echo\n        image: ballast-test/http-echo\n        env: [{name: WRITE_FILE, value: /ballast-e2e/data/boot.log}]\n        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}\n        volumeMounts: [{name: data, mountPath: /ballast-e2e/data}]\n  volumeClaimTemplates:\n  - metadata: {name: data}\n    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n`);
    await until(() => kubectl(['get', 'pvc', 'data-db-0', '-o', 'jsonpath={.status.phase}']).stdout === 'Bound', 'claim bound');
    await until(() => isReady('db-0'), 'db-0 ready');
    assert.equal(read('db-0', '/ballast-e2e/data/boot.log'), 'started db-0\n');
    const uid = kubectl(['get', 'pod', 'db-0', '-o', 'jsonpath={.metadata.uid}']).stdout;
    assert.equal(kubectl(['delete', 'pod', 'db-0', '--wait=true']).status, 0);
    await until(() => kubectl(['get', 'pod', 'db-0', '-o', 'jsonpath={.metadata.uid}']).stdout !== uid && isReady('db-0'), 'db-0 recreated and ready');
    // The first pod stopped gracefully (SIGTERM) and the second read what it wrote.
    assert.equal(read('db-0', '/ballast-e2e/data/boot.log'), 'started db-0\nstopped db-0\nstarted db-0\n', 'the second pod read what the first wrote');
  });
});

describe('process kubelet: init containers and native sidecars', { timeout: 240_000 }, () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'ballast-init-'));
  const orderDir = mkdtempSync(join(tmpdir(), 'ballast-order-'));
  const kubectl = (args: string[], input?: string) => spawnSync('kubectl', [`--kubeconfig=${join(stateDir, 'admin.kubeconfig')}`, ...args], { encoding: 'utf8', input: input ?? '', timeout: 30_000 });
  const order = () => (existsSync(join(orderDir, 'log')) ? readFileSync(join(orderDir, 'log'), 'utf8') : '');
  async function until(cond: () => boolean, what: string, ms = 60_000): Promise<void> {
    for (let t = 0; t < ms && !cond(); t += 250) await sleep(250);
    assert.ok(cond(), what);
  }

  before(async () => {
    const up = spawnSync(bin, ['cluster', 'up', `--state-dir=${stateDir}`, '--store=etcd', `--apiserver-port=${await freePort()}`], { encoding: 'utf8', timeout: 150_000 });
    assert.equal(up.status, 0, up.stderr + up.stdout);
  });
  after(() => spawnSync(bin, ['cluster', 'down', `--state-dir=${stateDir}`], { encoding: 'utf8', timeout: 60_000 }));

  it('init runs to completion first, the native sidecar starts before and stops after the main container; env comes from a ConfigMap key', async () => {
    assert.equal(kubectl(['create', 'configmap', 'settings', '--from-literal=mode=fast']).status, 0);
    const yaml = `apiVersion: v1\nkind: Pod\nmetadata: {name: ordered}\nspec:\n  terminationGracePeriodSeconds: 5\n  volumes: [{name: order, hostPath: {path: ${orderDir}}}]\n  initContainers:\n  - name: setup\n    image: ballast-test/http-echo\n    command: [sh, -c, "echo init >> /ballast-e2e/order/log"]\n    volumeMounts: [{name: order, mountPath: /ballast-e2e/order}]\n  - name: proxy\n    image: ballast-test/http-echo\n    restartPolicy: Always\n    env: [{name: PORT, value: "9090"}, {name: CONTAINER_NAME, value: sidecar}, {name: WRITE_FILE, value: /ballast-e2e/order/log}]\n    startupProbe: {tcpSocket: {port: 9090}, periodSeconds: 1}\n    volumeMounts: [{name: order, mountPath: /ballast-e2e/order}]\n  containers:\n  - name: app\n    image: ballast-test/http-echo\n    env:\n    - {name: CONTAINER_NAME, value: main}\n    - {name: WRITE_FILE, value: /ballast-e2e/order/log}\n    - {name: MODE, valueFrom: {configMapKeyRef: {name: settings, key: mode}}}\n    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}\n    volumeMounts: [{name: order, mountPath: /ballast-e2e/order}]\n`;
    assert.equal(kubectl(['apply', '-f', '-'], yaml).status, 0);
    await until(() => kubectl(['get', 'pod', 'ordered', '-o', 'jsonpath={.status.containerStatuses[0].ready}']).stdout === 'true', 'main container ready');
    assert.equal(order(), 'init\nstarted sidecar\nstarted main\n');
    assert.equal(kubectl(['get', 'pod', 'ordered', '-o', 'jsonpath={.status.initContainerStatuses[0].state.terminated.reason}']).stdout, 'Completed');
    const ip = kubectl(['get', 'pod', 'ordered', '-o', 'jsonpath={.status.podIP}']).stdout;
    const environ = spawnSync('curl', ['-s', `http://${ip}:9090/read?path=/proc/self/environ`], { encoding: 'utf8' }).stdout;
    assert.match(environ, /CONTAINER_NAME=sidecar/, 'the sidecar answers on its own port in the same pod');
    const mainPid = execFileSync('pgrep', ['-f', 'http-echo.mjs'], { encoding: 'utf8' }).trim().split('\n').find((p) => readFileSync(`/proc/${p}/environ`, 'utf8').includes('CONTAINER_NAME=main'));
    assert.match(readFileSync(`/proc/${mainPid}/environ`, 'utf8'), /MODE=fast/);
    assert.equal(kubectl(['delete', 'pod', 'ordered', '--wait=true']).status, 0);
    assert.match(order(), /started main\nstopped main\nstopped sidecar\n$/, 'main stops before the sidecar');
  });
});

describe('process kubelet: the loopback fallback when network namespaces cannot be made', { timeout: 180_000 }, () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'ballast-loopback-'));
  const kubectl = (args: string[], input?: string) => spawnSync('kubectl', [`--kubeconfig=${join(stateDir, 'admin.kubeconfig')}`, ...args], { encoding: 'utf8', input: input ?? '', timeout: 30_000 });
  before(async () => {
    // --pod-network=loopback is what `auto` settles on when `ip netns add` is refused.
    const up = spawnSync(bin, ['cluster', 'up', `--state-dir=${stateDir}`, '--store=etcd', '--pod-network=loopback', `--apiserver-port=${await freePort()}`], { encoding: 'utf8', timeout: 150_000 });
    assert.equal(up.status, 0, up.stderr + up.stdout);
  });
  after(() => spawnSync(bin, ['cluster', 'down', `--state-dir=${stateDir}`], { encoding: 'utf8', timeout: 60_000 }));

  it('pods get distinct 127.0.0.x addresses, run and answer there; the node says why in its conditions', async () => {
    const pod = (name: string, port: number) => `apiVersion: v1\nkind: Pod\nmetadata: {name: ${name}}\nspec:\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: echo\n    image: ballast-test/http-echo\n    env: [{name: PORT, value: "${port}"}, {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}]\n    readinessProbe: {tcpSocket: {port: ${port}}, periodSeconds: 1}\n`;
    assert.equal(kubectl(['apply', '-f', '-'], pod('lo-a', 18081) + '---\n' + pod('lo-b', 18082)).status, 0);
    const ready = (n: string) => kubectl(['get', 'pod', n, '-o', 'jsonpath={.status.containerStatuses[0].ready}']).stdout === 'true';
    for (let t = 0; t < 120 && !(ready('lo-a') && ready('lo-b')); t++) await sleep(250);
    const ipA = kubectl(['get', 'pod', 'lo-a', '-o', 'jsonpath={.status.podIP}']).stdout;
    const ipB = kubectl(['get', 'pod', 'lo-b', '-o', 'jsonpath={.status.podIP}']).stdout;
    assert.match(ipA, /^127\.0\.0\.\d+$/);
    assert.match(ipB, /^127\.0\.0\.\d+$/);
    assert.notEqual(ipA, ipB);
    assert.match(spawnSync('curl', ['-s', '--max-time', '3', `http://${ipB}:18082/`], { encoding: 'utf8' }).stdout, /"pod":"lo-b"/);
    const cond = JSON.parse(kubectl(['get', 'node', 'local', '-o', 'jsonpath={.status.conditions[?(@.type=="BallastPodNetwork")]}']).stdout) as { status: string; reason: string; message: string };
    assert.equal(cond.status, 'False');
    assert.equal(cond.reason, 'LoopbackFallback');
    assert.match(cond.message, /127\.0\.0\.x/);
  });
});
