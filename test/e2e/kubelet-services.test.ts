// The process kubelet, the parts an operator and its users lean on: Services and StatefulSet
// peers resolve by name inside pods; `kubectl logs` (and --previous, --tail); pods reach the
// apiserver as in-cluster clients with their projected service-account token; preStop hooks
// run inside the grace period before SIGTERM; gRPC probes (a ballast store member in a pod);
// the apiserver calls a MutatingWebhookConfiguration whose Service is backed by a pod here.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bin, freePort } from '../support/store-cluster.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('process kubelet: DNS, logs, in-cluster API, hooks, gRPC probes, webhooks', { timeout: 300_000 }, () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'ballast-services-'));
  const kubectl = (args: string[], input?: string) => spawnSync('kubectl', [`--kubeconfig=${join(stateDir, 'admin.kubeconfig')}`, ...args], { encoding: 'utf8', input: input ?? '', timeout: 30_000 });
  const apply = (yaml: string) => {
    const r = kubectl(['apply', '-f', '-'], yaml);
    assert.equal(r.status, 0, r.stderr);
  };
  const jsonpath = (what: string[], path: string) => kubectl(['get', ...what, '-o', `jsonpath=${path}`]).stdout.trim();
  const isReady = (pod: string) => jsonpath(['pod', pod], '{.status.conditions[?(@.type=="Ready")].status}') === 'True';
  const podIP = (pod: string) => jsonpath(['pod', pod], '{.status.podIP}');
  // An HTTP GET made from inside `pod` (through the test image's /fetch and /kube endpoints).
  const fromPod = (pod: string, path: string) => spawnSync('curl', ['-s', '--max-time', '5', `http://${podIP(pod)}:8080${path}`], { encoding: 'utf8' }).stdout;
  async function until(cond: () => boolean, what: string, ms = 60_000): Promise<void> {
    const end = Date.now() + ms;
    while (Date.now() < end && !cond()) await sleep(250);
    assert.ok(cond(), what);
  }
  const echoPod = (name: string, extra = '') => `apiVersion: v1\nkind: Pod\nmetadata: {name: ${name}, labels: {role: ${name}}}\nspec:\n  terminationGracePeriodSeconds: 5\n  containers:\n  - name: echo\n    image: ballast-test/http-echo\n    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}\n${extra}`;

  before(async () => {
    const up = spawnSync(bin, ['cluster', 'up', `--state-dir=${stateDir}`, '--store=etcd', `--apiserver-port=${await freePort()}`], { encoding: 'utf8', timeout: 150_000 });
    assert.equal(up.status, 0, up.stderr + up.stdout);
    apply(echoPod('client'));
  });
  after(() => spawnSync(bin, ['cluster', 'down', `--state-dir=${stateDir}`], { encoding: 'utf8', timeout: 60_000 }));

  it('a Service resolves by name to its ready pods, and a StatefulSet pod by its stable name under a headless Service', async () => {
    apply(`apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: echo}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: echo}}\n  template:\n    metadata: {labels: {app: echo}}\n    spec:\n      terminationGracePeriodSeconds: 2\n      containers:\n      - name: echo\n        image: ballast-test/http-echo\n        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: echo}\nspec:\n  selector: {app: echo}\n  ports: [{port: 8080}]\n`);
    apply(`apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  clusterIP: None\n  selector: {app: web}\n  ports: [{port: 8080}]\n---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: web}\nspec:\n  serviceName: web\n  replicas: 1\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      terminationGracePeriodSeconds: 2\n      containers:\n      - name: echo\n        image: ballast-test/http-echo\n        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}\n`);
    await until(() => isReady('client'), 'client ready');
    const echoPods = () => kubectl(['get', 'pods', '-l', 'app=echo', '-o', 'jsonpath={.items[*].metadata.name}']).stdout.split(' ').filter(Boolean);
    for (const name of ['echo', 'echo.default', 'echo.default.svc.cluster.local']) {
      await until(() => /"pod"/.test(fromPod('client', `/fetch?url=${encodeURIComponent(`http://${name}:8080/`)}`)), `${name} resolves inside the pod`);
      const reply = JSON.parse(fromPod('client', `/fetch?url=${encodeURIComponent(`http://${name}:8080/`)}`)) as { pod: string };
      assert.ok(echoPods().includes(reply.pod), `${name} reached an echo pod (got ${reply.pod})`);
    }
    await until(() => /"pod":"web-0"/.test(fromPod('client', `/fetch?url=${encodeURIComponent('http://web-0.web.default.svc.cluster.local:8080/')}`)), 'web-0.web resolves to the StatefulSet pod');
    // A Service with no ready endpoint does not resolve (the name goes when its pods do).
    assert.equal(kubectl(['scale', 'deployment', 'echo', '--replicas=0']).status, 0);
    await until(() => /fetch failed: getaddrinfo/.test(fromPod('client', `/fetch?url=${encodeURIComponent('http://echo:8080/')}`)), 'echo no longer resolves once it has no pods');
  });

  it('kubectl logs shows a container\'s output; --tail limits it; --previous shows the run before a restart', async () => {
    await until(() => /http-echo listening on 8080/.test(kubectl(['logs', 'client']).stdout), 'kubectl logs shows the output');
    assert.equal(kubectl(['logs', 'client', '--tail=1']).stdout, 'http-echo listening on 8080\n');
    const pid = execFileSync('pgrep', ['-f', 'http-echo.mjs'], { encoding: 'utf8' }).trim().split('\n').find((p) => readFileSync(`/proc/${p}/environ`, 'utf8').includes('HOSTNAME=client\0'));
    process.kill(Number(pid), 'SIGKILL');
    await until(() => jsonpath(['pod', 'client'], '{.status.containerStatuses[0].restartCount}') === '1' && isReady('client'), 'client restarted');
    assert.match(kubectl(['logs', 'client', '--previous']).stdout, /http-echo listening on 8080/);
    const missing = kubectl(['logs', 'client', '-c', 'nope']);
    assert.notEqual(missing.status, 0);
    assert.match(missing.stderr, /nope/, 'an unknown container is named in the error');
  });

  it('a pod reaches the apiserver as an in-cluster client: kubernetes.default.svc, the projected token and CA', async () => {
    await until(() => isReady('client'), 'client ready');
    assert.equal(fromPod('client', `/read?path=${encodeURIComponent('/var/run/secrets/kubernetes.io/serviceaccount/namespace')}`), 'default');
    const version = JSON.parse(fromPod('client', '/kube?path=/version')) as { gitVersion: string };
    assert.equal(version.gitVersion, 'v1.36.3');
    // Authenticated as the pod's service account (which may not list pods: RBAC says so by name).
    assert.match(fromPod('client', `/kube?path=${encodeURIComponent('/api/v1/namespaces/default/pods')}`), /system:serviceaccount:default:default/);
  });

  it('deleting a pod runs its preStop hook inside the grace period, then SIGTERM', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ballast-prestop-'));
    apply(echoPod('hooked', `    env: [{name: WRITE_FILE, value: /ballast-e2e/out/log}]\n    lifecycle: {preStop: {exec: {command: [sh, -c, "sleep 1; echo prestop >> /ballast-e2e/out/log"]}}}\n    volumeMounts: [{name: out, mountPath: /ballast-e2e/out}]\n  volumes: [{name: out, hostPath: {path: ${dir}}}]\n`));
    await until(() => isReady('hooked'), 'hooked ready');
    assert.equal(kubectl(['delete', 'pod', 'hooked', '--wait=true']).status, 0);
    assert.equal(readFileSync(join(dir, 'log'), 'utf8'), 'started hooked\nprestop\nstopped hooked\n');
  });

  it('a gRPC readiness probe: a ballast store member in a pod is ready when its health service says SERVING', async () => {
    apply(`apiVersion: v1\nkind: Pod\nmetadata: {name: member}\nspec:\n  terminationGracePeriodSeconds: 5\n  containers:\n  - name: store\n    image: ballast:dev\n    args: [store, --name=m0, --data-dir=/ballast-data/m0, "--listen-client-urls=http://0.0.0.0:2379", "--advertise-client-urls=http://$(POD_IP):2379", "--listen-peer-urls=http://0.0.0.0:2380", "--initial-advertise-peer-urls=http://$(POD_IP):2380", "--initial-cluster=m0=http://$(POD_IP):2380"]\n    env: [{name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}]\n    readinessProbe: {grpc: {port: 2379}, periodSeconds: 1}\n    volumeMounts: [{name: data, mountPath: /ballast-data}]\n  volumes: [{name: data, emptyDir: {}}]\n`);
    await until(() => isReady('member'), 'the member is ready by its gRPC health', 90_000);
    const ep = `--endpoints=http://${podIP('member')}:2379`;
    assert.equal(spawnSync('etcdctl', [ep, 'put', 'k', 'v'], { encoding: 'utf8', env: { ...process.env, ETCDCTL_API: '3' } }).stdout.trim(), 'OK');
    assert.equal(spawnSync('etcdctl', [ep, 'get', 'k', '--print-value-only'], { encoding: 'utf8', env: { ...process.env, ETCDCTL_API: '3' } }).stdout.trim(), 'v');
  });

  it('the apiserver calls a MutatingWebhookConfiguration whose Service is backed by a pod in this cluster', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ballast-hook-'));
    const ssl = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
    ssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=hook-ca']);
    writeFileSync(join(dir, 'ext'), 'subjectAltName=DNS:hook.default.svc\nextendedKeyUsage=serverAuth\n');
    ssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'tls.key', '-out', 'tls.csr', '-subj', '/CN=hook.default.svc']);
    ssl(['x509', '-req', '-in', 'tls.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'tls.crt', '-days', '1', '-extfile', 'ext']);
    assert.equal(kubectl(['create', 'secret', 'tls', 'hook-tls', `--cert=${join(dir, 'tls.crt')}`, `--key=${join(dir, 'tls.key')}`]).status, 0);
    apply(`apiVersion: v1\nkind: Pod\nmetadata: {name: hook, labels: {app: hook}}\nspec:\n  containers:\n  - name: hook\n    image: ballast-test/http-echo\n    env: [{name: PORT, value: "8443"}, {name: TLS_CERT, value: /tls/tls.crt}, {name: TLS_KEY, value: /tls/tls.key}]\n    readinessProbe: {tcpSocket: {port: 8443}, periodSeconds: 1}\n    volumeMounts: [{name: tls, mountPath: /tls, readOnly: true}]\n  volumes: [{name: tls, secret: {secretName: hook-tls}}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: hook}\nspec:\n  selector: {app: hook}\n  ports: [{port: 443, targetPort: 8443}]\n`);
    await until(() => isReady('hook'), 'webhook pod ready');
    const caBundle = readFileSync(join(dir, 'ca.crt')).toString('base64');
    apply(`apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata: {name: label-configmaps}\nwebhooks:\n- name: label.e2e.ballast.dev\n  admissionReviewVersions: [v1]\n  sideEffects: None\n  failurePolicy: Fail\n  objectSelector: {matchLabels: {hook-test: "yes"}}\n  rules: [{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [configmaps]}]\n  clientConfig:\n    service: {namespace: default, name: hook, path: /mutate}\n    caBundle: ${caBundle}\n`);
    // Until the EndpointSlice lists the pod, the apiserver cannot reach the webhook and refuses (Fail).
    await until(() => {
      kubectl(['delete', 'configmap', 'hooked-cm', '--ignore-not-found']);
      return kubectl(['apply', '-f', '-'], 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: hooked-cm, labels: {hook-test: "yes"}}\ndata: {a: b}\n').status === 0;
    }, 'a labelled ConfigMap is admitted');
    assert.equal(jsonpath(['configmap', 'hooked-cm'], '{.metadata.labels.mutated-by}'), 'hook', 'the webhook pod mutated it');
  });

  it('ten pods from create to Ready (numbers for the record)', async (t) => {
    const start = Date.now();
    const yaml = Array.from({ length: 10 }, (_, i) => echoPod(`burst-${i}`)).join('---\n');
    apply(yaml);
    const readyAt = new Map<string, number>();
    await until(() => {
      for (let i = 0; i < 10; i++) if (!readyAt.has(`burst-${i}`) && isReady(`burst-${i}`)) readyAt.set(`burst-${i}`, Date.now() - start);
      return readyAt.size === 10;
    }, 'ten pods ready', 120_000);
    const ms = [...readyAt.values()].sort((a, b) => a - b);
    t.diagnostic(`create-to-Ready for 10 pods: median ${ms[4]} ms, worst ${ms[9]} ms (polled every pod in turn)`);
  });
});
