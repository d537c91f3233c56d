// Installing Ballast as users do: `helm install` of charts/ballast on the local control plane.
// Promises: the chart lints strictly and its rendered manifests (and the kustomize overlays') pass
// the apiserver's strict schema validation in a server-side dry run; the
// operator comes up Ready in its pod (in-cluster credentials, least-privilege RBAC) and runs a
// StoreCluster to Ready; `helm upgrade` with unchanged values changes nothing; `helm uninstall`
// leaves nothing behind but the CRDs (Helm keeps those by policy).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { manifestDrift } from '../support/drift.ts';
import { LocalCluster, crdsEstablished, gatewayApiCrds } from '../support/cluster.ts';
import { clientPod, echoService } from '../support/demo.ts';

const root = join(import.meta.dirname, '..', '..');
const helmBin = process.env['BALLAST_HELM'] ?? join(root, '.tools', 'helm-v3.22.0', 'helm');
const chart = join(root, 'charts', 'ballast');
// A trust-anchor rotation's steps, short enough for the mesh test to rotate under traffic.
const values = ['--set', 'mesh.rotationStep=3s'];

describe('helm install charts/ballast', { timeout: 300_000 }, () => {
  const cluster = new LocalCluster('helm');
  const { kubeconfig } = cluster;
  const kubectl = (args: string[], input?: string) => cluster.kubectl(args, input);
  const helm = (args: string[]) => spawnSync(helmBin, [`--kubeconfig=${kubeconfig}`, ...args], { encoding: 'utf8', timeout: 200_000 });
  const uids = () =>
    kubectl([
      'get',
      'deployment,replicaset,pods,serviceaccount,service,pdb',
      '-n',
      'ballast-system',
      '-l',
      'app.kubernetes.io/instance=ballast',
      '-o',
      'jsonpath={range .items[*]}{.kind}/{.metadata.name}@{.metadata.resourceVersion} {end}',
    ])
      .stdout.trim()
      .split(' ')
      .sort();

  before(async () => {
    await cluster.up();
  });
  after(() => cluster.down());

  it("lints strictly, and every object of its renderings and of both kustomize overlays passes the apiserver's strict schema validation", async (t) => {
    const lint = helm(['lint', '--strict', chart]);
    assert.equal(lint.status, 0, lint.stdout + lint.stderr);
    assert.equal(kubectl(['apply', '--server-side', '-f', join(chart, 'crds')]).status, 0);
    // The Gateway API's CRDs, a prerequisite the chart documents (the mesh reads HTTPRoutes and GRPCRoutes).
    assert.equal(kubectl(['apply', '--server-side', '-f', gatewayApiCrds()]).status, 0);
    await crdsEstablished(kubectl, [
      'storeclusters.ballast.dev',
      'resiliencepolicies.ballast.dev',
      'httproutes.gateway.networking.k8s.io',
      'grpcroutes.gateway.networking.k8s.io',
      'referencegrants.gateway.networking.k8s.io',
    ]);
    assert.equal(kubectl(['create', 'namespace', 'ballast-system']).status, 0);
    // Every object the chart renders (defaults, and everything optional off) and both kustomize
    // overlays build is checked by this apiserver against Kubernetes v1.36's OpenAPI schemas and
    // the CRDs' own: a server-side dry run with strict field validation (an unknown or misspelt
    // field, a wrong type or a missing required field is an error, not a warning).
    const minimal = [
      'operator.replicas=1',
      'operator.podDisruptionBudget.enabled=false',
      'operator.topologySpread=false',
      'operator.leaderElection.enabled=false',
      'validation.enabled=false',
      'injection.enabled=false',
      'dashboards.enabled=false',
    ];
    const renderings: Array<[string, string[]]> = [
      ['the chart with its defaults', ['template', 'ballast', chart, '-n', 'ballast-system', '--kube-version', '1.36.3']],
      [
        'the chart with everything optional off',
        ['template', 'ballast', chart, '-n', 'ballast-system', '--kube-version', '1.36.3', ...minimal.flatMap((v) => ['--set', v])],
      ],
    ];
    let objects = 0;
    for (const [name, args] of renderings) {
      const rendered = helm(args);
      assert.equal(rendered.status, 0, `${name}: ${rendered.stderr}`);
      const dry = kubectl(['apply', '--dry-run=server', '--validate=strict', '-n', 'ballast-system', '-f', '-'], rendered.stdout);
      assert.equal(dry.status, 0, `${name}: ${dry.stderr}`);
      objects += dry.stdout.trim().split('\n').length;
    }
    for (const overlay of ['dev', 'production']) {
      const dir = join(root, 'kustomize', 'overlays', overlay);
      const dry = kubectl(['apply', '--dry-run=server', '--validate=strict', '-k', dir]);
      assert.equal(dry.status, 0, `kustomize overlay ${overlay}: ${dry.stderr}`);
      objects += dry.stdout.trim().split('\n').length;
    }
    t.diagnostic(`${objects} objects passed the apiserver's strict schema validation`);
  });

  it('installs: the operator is Ready in its pods, one leads, and it runs a StoreCluster to Ready', async (t) => {
    const start = Date.now();
    const r = helm(['upgrade', '--install', 'ballast', chart, '-n', 'ballast-system', '--wait', '--timeout', '3m', ...values]);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    t.diagnostic(`helm install --wait: ${Date.now() - start} ms`);
    assert.equal(
      kubectl(['get', 'deployment', 'ballast-operator', '-n', 'ballast-system', '-o', 'jsonpath={.status.readyReplicas}']).stdout,
      '2',
    );
    // Ready pods are not yet a routed Service: kube-proxy programs the webhook Service's new
    // endpoints a moment after (as on any cluster), and until then the apiserver's call to the
    // validating webhook is refused. Users and Argo CD retry; so does this test, and says how long.
    const routed = Date.now();
    let dry = kubectl(['apply', '--dry-run=server', '-f', join(root, 'examples', 'storecluster.yaml')]);
    for (let i = 0; i < 120 && dry.status !== 0 && /connection refused|no endpoints/.test(dry.stderr); i++) {
      await new Promise((res) => setTimeout(res, 250));
      dry = kubectl(['apply', '--dry-run=server', '-f', join(root, 'examples', 'storecluster.yaml')]);
    }
    assert.equal(dry.status, 0, dry.stderr);
    t.diagnostic(`webhook reachable through its Service ${Date.now() - routed} ms after helm --wait returned`);
    const start2 = Date.now();
    assert.equal(kubectl(['apply', '-f', join(root, 'examples', 'storecluster.yaml')]).status, 0);
    const wait = kubectl(['wait', 'storecluster/example', '--for=condition=Ready', '--timeout=120s']);
    assert.equal(wait.status, 0, wait.stderr);
    t.diagnostic(`StoreCluster Ready ${Date.now() - start2} ms after apply (operator in-cluster)`);
    const holder = kubectl(['get', 'lease', 'ballast-operator', '-n', 'ballast-system', '-o', 'jsonpath={.spec.holderIdentity}']).stdout;
    assert.match(holder, /^ballast-operator-/, 'the leader is one of the operator pods (by pod name)');
  });

  it('the validating webhook refuses what the schema and CEL cannot judge, saying what to change', () => {
    const cluster = (name: string, storage: Record<string, unknown>) =>
      JSON.stringify({
        apiVersion: 'ballast.dev/v1alpha1',
        kind: 'StoreCluster',
        metadata: { name, namespace: 'default' },
        spec: { replicas: 1, version: '0.2.0', storage },
      });
    const missing = kubectl(['apply', '-f', '-'], cluster('fast', { size: '1Gi', storageClassName: 'fast-ssd' }));
    assert.notEqual(missing.status, 0, 'a StorageClass that does not exist');
    assert.match(
      missing.stderr,
      /denied the request: StoreCluster default\/fast: spec\.storage\.storageClassName: StorageClass "fast-ssd" does not exist; use one of "[^"]+"/,
    );
    const set = {
      apiVersion: 'apps/v1',
      kind: 'StatefulSet',
      metadata: { name: 'taken', namespace: 'default' },
      spec: {
        replicas: 0,
        serviceName: 'taken',
        selector: { matchLabels: { app: 'taken' } },
        template: { metadata: { labels: { app: 'taken' } }, spec: { containers: [{ name: 'c', image: 'ballast-test/http-echo:dev' }] } },
      },
    };
    assert.equal(kubectl(['apply', '-f', '-'], JSON.stringify(set)).status, 0);
    const taken = kubectl(['apply', '-f', '-'], cluster('taken', { size: '1Gi' }));
    assert.notEqual(taken.status, 0, 'a name another StatefulSet has');
    assert.match(
      taken.stderr,
      /metadata\.name: a StatefulSet named "taken" already exists in namespace "default" and is not this StoreCluster's; choose another name/,
    );
    assert.equal(kubectl(['delete', 'statefulset', 'taken']).status, 0);
    // The example (no class: the default) was admitted above; an unchanged apply still is.
    assert.equal(kubectl(['apply', '-f', join(root, 'examples', 'storecluster.yaml')]).status, 0);
  });

  it("injects the sidecar into pods of labelled namespaces; the app's calls go through it with the ResiliencePolicy streamed by the operator", async (t) => {
    const start = Date.now();
    assert.equal(kubectl(['create', 'namespace', 'shop']).status, 0);
    assert.equal(kubectl(['label', 'namespace', 'shop', 'ballast.dev/injection=enabled']).status, 0);
    const manifests = [
      ...echoService('shop'),
      {
        apiVersion: 'ballast.dev/v1alpha1',
        kind: 'ResiliencePolicy',
        metadata: { name: 'echo', namespace: 'shop' },
        spec: { service: { name: 'echo', port: 80 }, policy: { retries: { maxAttempts: 3 }, timeouts: { requestMs: 5000 } } },
      },
      clientPod('shop'),
    ];
    const applied = kubectl(['apply', '-f', '-'], manifests.map((m) => JSON.stringify(m)).join('\n'));
    assert.equal(applied.status, 0, applied.stderr);
    const wait = kubectl(['wait', '-n', 'shop', 'pod/client', '--for=condition=Ready', '--timeout=120s']);
    assert.equal(wait.status, 0, wait.stderr);
    assert.equal(
      kubectl([
        'get',
        'pod',
        'client',
        '-n',
        'shop',
        '-o',
        'jsonpath={.spec.initContainers[0].name}/{.spec.initContainers[0].restartPolicy}',
      ]).stdout,
      'ballast-sidecar/Always',
    );
    assert.equal(
      kubectl(['get', 'pods', '-n', 'shop', '-l', 'app=echo', '-o', 'jsonpath={range .items[*]}{.spec.initContainers}{end}']).stdout,
      '',
      'opted-out pods are left alone',
    );
    assert.equal(kubectl(['wait', '-n', 'shop', 'deployment/echo', '--for=condition=Available', '--timeout=120s']).status, 0);
    const ip = kubectl(['get', 'pod', 'client', '-n', 'shop', '-o', 'jsonpath={.status.podIP}']).stdout;
    // The app calls http://echo.shop.svc.cluster.local/ through HTTP_PROXY, i.e. its sidecar.
    let answer = '';
    for (let i = 0; i < 120; i++) {
      try {
        const r = await fetch(`http://${ip}:8080/fetch?url=${encodeURIComponent('http://echo.shop.svc.cluster.local/')}`);
        answer = await r.text();
        if (r.status === 200) break;
      } catch (err) {
        answer = String(err);
      }
      await new Promise((res) => setTimeout(res, 500));
    }
    assert.match(answer, /echo-/, `the answer comes from an echo pod: ${answer}`);
    const metrics = await (await fetch(`http://${ip}:15000/metrics`)).text();
    assert.match(
      metrics,
      /ballast_sidecar_requests_total\{upstream="echo\.shop",route="default",outcome="2xx"\} [1-9]/,
      'counted by the sidecar, under the discovered upstream',
    );
    // Endpoints reach the sidecar as they become ready (EndpointSlice → operator → discovery
    // stream): the first answer can come while the second echo pod is still on its way.
    type SidecarConfig = {
      discovery: { connected: boolean };
      config: { upstreams: Array<{ name: string; policy: { retries: { maxAttempts: number } }; endpoints: unknown[] }> };
    };
    let config = (await (await fetch(`http://${ip}:15000/config`)).json()) as SidecarConfig;
    for (let i = 0; i < 120 && config.config.upstreams.find((u) => u.name === 'echo.shop')?.endpoints.length !== 2; i++) {
      await new Promise((res) => setTimeout(res, 250));
      config = (await (await fetch(`http://${ip}:15000/config`)).json()) as SidecarConfig;
    }
    assert.equal(config.discovery.connected, true);
    const up = config.config.upstreams.find((u) => u.name === 'echo.shop')!;
    assert.equal(up.policy.retries.maxAttempts, 3, 'the ResiliencePolicy from the operator');
    assert.equal(up.endpoints.length, 2, 'both echo pods');
    t.diagnostic(`namespace labelled → client Ready with its sidecar and calling through it: ${Date.now() - start} ms`);
    // The leader reports on the policy: its Service and the endpoints sidecars are sent.
    let st = '';
    for (let i = 0; i < 60 && st !== '2/True'; i++) {
      st = kubectl([
        'get',
        'resiliencepolicy',
        'echo',
        '-n',
        'shop',
        '-o',
        'jsonpath={.status.endpoints}/{.status.conditions[?(@.type=="Ready")].status}',
      ]).stdout;
      if (st !== '2/True') await new Promise((res) => setTimeout(res, 250));
    }
    assert.equal(st, '2/True');
    // The policy's status: the namespace's sidecar runs the current configuration.
    const until = async (cond: () => boolean, what: string, ms = 30_000) => {
      const end = Date.now() + ms;
      while (Date.now() < end && !cond()) await new Promise((res) => setTimeout(res, 250));
      assert.ok(cond(), what);
    };
    const rpStatus = () =>
      JSON.parse(kubectl(['get', 'resiliencepolicy', 'echo', '-n', 'shop', '-o', 'jsonpath={.status}']).stdout || '{}') as {
        selectedPods?: number;
        acceptedPods?: number;
        rejections?: Array<{ pod: string; reason: string }>;
        conditions?: Array<{ type: string; status: string; reason: string; message: string }>;
      };
    const accepted = () => rpStatus().conditions?.find((c) => c.type === 'Accepted');
    await until(
      () => rpStatus().selectedPods === 1 && rpStatus().acceptedPods === 1 && accepted()?.status === 'True',
      `the client's sidecar accepted the configuration: ${JSON.stringify(rpStatus())}`,
    );
    const appliedVersion = () =>
      kubectl(['get', 'pod', 'client', '-n', 'shop', '-o', 'jsonpath={.metadata.annotations.ballast\\.dev/discovery-version}']).stdout;
    const firstVersion = appliedVersion();
    assert.match(firstVersion, /^[0-9a-f]{16}$/, "the sidecar's acknowledgement is recorded on its pod");
    // A change to the policy reaches the sidecar without a restart.
    const sidecarConfig = async () =>
      ((await (await fetch(`http://${ip}:15000/config`)).json()) as typeof config).config.upstreams.find((u) => u.name === 'echo.shop')!;
    const changedAt = Date.now();
    assert.equal(
      kubectl([
        'patch',
        'resiliencepolicy',
        'echo',
        '-n',
        'shop',
        '--type=merge',
        '-p',
        '{"spec":{"policy":{"retries":{"maxAttempts":4}}}}',
      ]).status,
      0,
    );
    let attempts = 0;
    for (let i = 0; i < 120 && attempts !== 4; i++) {
      attempts = (await sidecarConfig()).policy.retries.maxAttempts;
      if (attempts !== 4) await new Promise((res) => setTimeout(res, 100));
    }
    assert.equal(attempts, 4, 'the new policy is in force in the running sidecar');
    t.diagnostic(`policy change → in force in the sidecar: ${Date.now() - changedAt} ms`);
    assert.equal(
      kubectl(['get', 'pod', 'client', '-n', 'shop', '-o', 'jsonpath={.status.initContainerStatuses[0].restartCount}']).stdout,
      '0',
      'no restart',
    );
    await until(
      () => appliedVersion() !== firstVersion && rpStatus().acceptedPods === 1 && accepted()?.status === 'True',
      'the new version is accepted',
    );
    // One the sidecar cannot apply (a local port its admin endpoint holds) is refused; it keeps
    // serving its last good configuration, and the refusal, with the sidecar's reason, is in status.
    assert.equal(
      kubectl(['patch', 'resiliencepolicy', 'echo', '-n', 'shop', '--type=merge', '-p', '{"spec":{"localPort":15000}}']).status,
      0,
    );
    await until(() => accepted()?.reason === 'Rejected', `the refusal shows in status: ${JSON.stringify(rpStatus())}`);
    const refused = rpStatus();
    assert.equal(refused.rejections?.[0]?.pod, 'client');
    assert.match(refused.rejections?.[0]?.reason ?? '', /15000/, "the sidecar's own reason");
    assert.equal(refused.acceptedPods, 0);
    assert.equal((await sidecarConfig()).policy.retries.maxAttempts, 4, 'the last good configuration stays');
    const still = await fetch(`http://${ip}:8080/fetch?url=${encodeURIComponent('http://echo.shop.svc.cluster.local/')}`);
    assert.equal(still.status, 200, 'and keeps serving');
    await still.text();
    assert.equal(kubectl(['patch', 'resiliencepolicy', 'echo', '-n', 'shop', '--type=merge', '-p', '{"spec":{"localPort":0}}']).status, 0);
    await until(() => accepted()?.status === 'True' && (rpStatus().rejections ?? []).length === 0, 'accepted again once fixed');
    // Selection by label, and inbound listeners: a policy for pods labelled app=client opens a
    // listener in front of the client's own port; one for app=other does not reach this sidecar.
    const more = [
      {
        apiVersion: 'ballast.dev/v1alpha1',
        kind: 'ResiliencePolicy',
        metadata: { name: 'client-inbound', namespace: 'shop' },
        spec: {
          selector: { matchLabels: { app: 'client' } },
          inbound: [{ name: 'http', port: 18080, targetPort: 8080, policy: { rateLimit: { perSecond: 1000 } } }],
        },
      },
      {
        apiVersion: 'ballast.dev/v1alpha1',
        kind: 'ResiliencePolicy',
        metadata: { name: 'others', namespace: 'shop' },
        spec: {
          selector: { matchLabels: { app: 'other' } },
          upstreams: [{ service: { name: 'echo', port: 80 }, policy: { retries: { maxAttempts: 1 } } }],
        },
      },
    ];
    const appliedMore = kubectl(['apply', '-f', '-'], more.map((m) => JSON.stringify(m)).join('\n'));
    assert.equal(appliedMore.status, 0, appliedMore.stderr);
    assert.equal(kubectl(['label', 'pod', 'client', '-n', 'shop', 'app=client']).status, 0);
    const inboundNames = async () =>
      ((await (await fetch(`http://${ip}:15000/config`)).json()) as { config: { inbound: Array<{ name: string }> } }).config.inbound.map(
        (i) => i.name,
      );
    let names: string[] = [];
    for (let i = 0; i < 120 && !names.includes('client-inbound-http'); i++) {
      names = await inboundNames();
      if (!names.includes('client-inbound-http')) await new Promise((res) => setTimeout(res, 100));
    }
    assert.deepEqual(names, ['client-inbound-http'], "the selected policy's inbound listener, once the pod has the label");
    const inbound = await fetch(`http://${ip}:18080/`);
    assert.equal(inbound.status, 200);
    assert.match(await inbound.text(), /"pod":"client"/, "through the sidecar's inbound listener to the app");
    assert.equal((await sidecarConfig()).policy.retries.maxAttempts, 4, 'a policy selecting other pods does not touch this sidecar');
    const selected = (name: string) =>
      kubectl(['get', 'resiliencepolicy', name, '-n', 'shop', '-o', 'jsonpath={.status.selectedPods}']).stdout;
    await until(() => selected('client-inbound') === '1' && selected('others') === '0', 'status counts the pods each policy selects');
    // Outside labelled namespaces, a pod can ask for itself; kube-system never gets one.
    const solo = kubectl([
      'run',
      'solo',
      '-n',
      'default',
      '--image=ballast-test/http-echo:dev',
      '--labels=ballast.dev/inject=enabled',
      '--restart=Never',
    ]);
    assert.equal(solo.status, 0, solo.stderr);
    assert.equal(
      kubectl(['get', 'pod', 'solo', '-n', 'default', '-o', 'jsonpath={.spec.initContainers[0].name}']).stdout,
      'ballast-sidecar',
    );
    const sys = kubectl([
      'run',
      'sys',
      '-n',
      'kube-system',
      '--image=ballast-test/http-echo:dev',
      '--labels=ballast.dev/inject=enabled',
      '--restart=Never',
    ]);
    assert.equal(sys.status, 0, sys.stderr);
    assert.equal(
      kubectl(['get', 'pod', 'sys', '-n', 'kube-system', '-o', 'jsonpath={.spec.initContainers}']).stdout,
      '',
      'kube-system is never injected',
    );
    kubectl(['delete', 'pod', 'solo', '-n', 'default', '--wait=false']);
    kubectl(['delete', 'pod', 'sys', '-n', 'kube-system', '--wait=false']);
    assert.equal(kubectl(['delete', 'namespace', 'shop', '--wait=false']).status, 0);
  });

  it("the mesh: injected pods get SPIFFE certificates from the operator; a client calls a strict meshed Service over mTLS and the app sees the client's identity; a plaintext caller is refused", async (t) => {
    const start = Date.now();
    assert.equal(kubectl(['create', 'namespace', 'mesh']).status, 0);
    assert.equal(kubectl(['label', 'namespace', 'mesh', 'ballast.dev/injection=enabled']).status, 0);
    const echo = { name: 'app', image: 'ballast-test/http-echo:dev', env: [{ name: 'PORT', value: '8080' }] };
    const manifests = [
      { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'api', namespace: 'mesh' } },
      { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'client', namespace: 'mesh' } },
      {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'api', namespace: 'mesh' },
        // Callers reach the api pods' sidecar (its inbound listener), which forwards to the app.
        spec: { selector: { app: 'api' }, ports: [{ name: 'http', port: 80, targetPort: 18080 }] },
      },
      {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'api', namespace: 'mesh' },
        spec: {
          replicas: 1,
          selector: { matchLabels: { app: 'api' } },
          template: {
            // Intercepted: callers' connections to the pod's port 18080 reach the inbound listener through iptables.
            metadata: { labels: { app: 'api' }, annotations: { 'ballast.dev/interception': 'true' } },
            spec: {
              serviceAccountName: 'api',
              containers: [{ ...echo, readinessProbe: { httpGet: { path: '/', port: 8080 }, periodSeconds: 1 } }],
            },
          },
        },
      },
      {
        apiVersion: 'ballast.dev/v1alpha1',
        kind: 'ResiliencePolicy',
        metadata: { name: 'api-inbound', namespace: 'mesh' },
        spec: {
          selector: { matchLabels: { app: 'api' } },
          inbound: [
            {
              name: 'http',
              port: 18080,
              targetPort: 8080,
              mtls: 'strict',
              // Only the client's ServiceAccount may call.
              authorization: { default: 'deny', rules: [{ from: { serviceAccounts: ['client'] } }] },
            },
          ],
        },
      },
      {
        apiVersion: 'ballast.dev/v1alpha1',
        kind: 'ResiliencePolicy',
        metadata: { name: 'client', namespace: 'mesh' },
        spec: {
          selector: { matchExpressions: [{ key: 'app', operator: 'In', values: ['client', 'intruder', 'tclient'] }] },
          service: { name: 'api', port: 80 },
          policy: { retries: { maxAttempts: 3 } },
        },
      },
      { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'intruder', namespace: 'mesh' } },
      {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'intruder', namespace: 'mesh', labels: { app: 'intruder' } },
        spec: { serviceAccountName: 'intruder', containers: [echo] },
      },
      {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'client', namespace: 'mesh', labels: { app: 'client' } },
        spec: { serviceAccountName: 'client', containers: [echo] },
      }, // The same client with transparent interception: no HTTP_PROXY, its calls to the Service's
      // cluster IP are taken by iptables to its sidecar.
      {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'tclient', namespace: 'mesh', labels: { app: 'tclient' }, annotations: { 'ballast.dev/interception': 'true' } },
        spec: { serviceAccountName: 'client', containers: [echo] },
      },
    ];
    const applied = kubectl(['apply', '-f', '-'], manifests.map((m) => JSON.stringify(m)).join('\n'));
    assert.equal(applied.status, 0, applied.stderr);
    assert.equal(
      kubectl(['wait', '-n', 'mesh', 'pod/client', 'pod/intruder', 'pod/tclient', '--for=condition=Ready', '--timeout=120s']).status,
      0,
    );
    assert.equal(kubectl(['wait', '-n', 'mesh', 'deployment/api', '--for=condition=Available', '--timeout=120s']).status, 0);
    const ip = (sel: string[]) => kubectl(['get', 'pods', '-n', 'mesh', ...sel, '-o', 'jsonpath={.items[0].status.podIP}']).stdout;
    const [clientIp, apiIp, tclientIp] = [ip(['-l', 'app=client']), ip(['-l', 'app=api']), ip(['-l', 'app=tclient'])];
    type Ready = { mesh?: { state: string; spiffeId?: string; reason?: string } };
    for (const [podIp, sa] of [
      [clientIp, 'client'],
      [apiIp, 'api'],
      [tclientIp, 'client'],
    ] as const) {
      let ready: Ready = {};
      for (let i = 0; i < 120 && ready.mesh?.state !== 'certified'; i++) {
        ready = (await (await fetch(`http://${podIp}:15000/ready`)).json()) as Ready;
        if (ready.mesh?.state !== 'certified') await new Promise((res) => setTimeout(res, 250));
      }
      assert.equal(ready.mesh?.spiffeId, `spiffe://cluster.local/ns/mesh/sa/${sa}`, JSON.stringify(ready));
    }
    t.diagnostic(`namespace labelled → both sidecars certified: ${Date.now() - start} ms`);
    // The client app calls the Service by name through its sidecar (HTTP_PROXY); the sidecars talk mTLS.
    let answer = '';
    for (let i = 0; i < 120; i++) {
      const r = await fetch(`http://${clientIp}:8080/fetch?url=${encodeURIComponent('http://api.mesh.svc.cluster.local/')}`);
      answer = await r.text();
      if (r.status === 200 && answer.includes('spiffe')) break;
      await new Promise((res) => setTimeout(res, 250));
    }
    assert.equal((JSON.parse(answer) as { xfcc: string }).xfcc, 'URI=spiffe://cluster.local/ns/mesh/sa/client', answer);
    t.diagnostic(`first mTLS answer: ${Date.now() - start} ms after the namespace was labelled`);
    const apiMetrics = await (await fetch(`http://${apiIp}:15000/metrics`)).text();
    assert.match(
      apiMetrics,
      /ballast_sidecar_inbound_connections_total\{listener="api-inbound-http",security="mtls",result="accepted"\} [1-9]/,
    );
    await interception(t, kubectl, tclientIp, apiIp);
    await gatewayRoutes(t, kubectl, tclientIp);
    // From outside the mesh (this host, plaintext) the strict listener refuses, saying why.
    const plain = await fetch(`http://${apiIp}:18080/`);
    assert.equal(plain.status, 403);
    assert.equal(plain.headers.get('x-ballast-error'), 'SIDECAR_ERR_MTLS_REQUIRED');
    await plain.text();
    // Another meshed workload, not named by the api's authorization policy: refused, its identity named.
    const intruderIp = ip(['-l', 'app=intruder']);
    let refused = '';
    for (let i = 0; i < 120 && !refused.includes('SIDECAR_ERR_FORBIDDEN'); i++) {
      refused = await (
        await fetch(`http://${intruderIp}:8080/fetch?url=${encodeURIComponent('http://api.mesh.svc.cluster.local/')}`)
      ).text();
      if (!refused.includes('SIDECAR_ERR_FORBIDDEN')) await new Promise((res) => setTimeout(res, 250));
    }
    assert.match(refused, /spiffe:\/\/cluster\.local\/ns\/mesh\/sa\/intruder may not GET \/ on inbound listener api-inbound-http/);
    // Rotating the trust anchor under steady traffic (the operator's three steps, 3 s apart here):
    // the sidecars' 24-hour certificates are renewed because the issuer changed; no call fails.
    const anchorNote = (k: string) =>
      kubectl([
        'get',
        'secret',
        'ballast-operator-mesh-trust-anchor',
        '-n',
        'ballast-system',
        '-o',
        `jsonpath={.metadata.annotations.${k}}`,
      ]).stdout;
    assert.equal(
      kubectl(['annotate', 'secret', 'ballast-operator-mesh-trust-anchor', '-n', 'ballast-system', 'mesh.ballast.dev/rotate=e2e']).status,
      0,
    );
    const anchors = async (podIp: string) =>
      ((await (await fetch(`http://${podIp}:15000/ready`)).json()) as { mesh: { trustAnchors: number } }).mesh.trustAnchors;
    let calls = 0;
    const failed: string[] = [];
    const seen = new Set<number>();
    const rotationStart = Date.now();
    // Both clients: through HTTP_PROXY and intercepted.
    const call = async () => {
      for (const from of [clientIp, tclientIp]) {
        const r = await fetch(`http://${from}:8080/fetch?url=${encodeURIComponent('http://api.mesh.svc.cluster.local/')}`);
        const body = await r.text();
        calls++;
        if (r.status !== 200 || !body.includes('sa/client')) failed.push(`${from}: ${r.status} ${body}`);
      }
    };
    while (Date.now() - rotationStart < 120_000) {
      await call();
      const counts = [await anchors(clientIp), await anchors(apiIp)];
      for (const c of counts) seen.add(c);
      if (anchorNote('mesh\\.ballast\\.dev/rotated') === 'e2e' && counts.every((c) => c === 1)) break;
    }
    for (let i = 0; i < 20; i++) await call();
    assert.equal(anchorNote('mesh\\.ballast\\.dev/rotated'), 'e2e', 'the rotation finished');
    assert.ok(seen.has(2), 'both anchors were trusted at once on the way');
    assert.deepEqual(failed, [], `${calls} calls`);
    t.diagnostic(`trust anchor rotated under traffic: ${calls} calls, 0 failed, ${Date.now() - rotationStart} ms`);
    // The operator made the trust anchor and the issuer (kept across upgrades and reinstalls).
    assert.deepEqual(
      kubectl([
        'get',
        'secret',
        '-n',
        'ballast-system',
        '-l',
        'app.kubernetes.io/component=mesh',
        '-o',
        'jsonpath={.items[*].metadata.name}',
      ])
        .stdout.split(' ')
        .sort(),
      ['ballast-operator-mesh-issuer', 'ballast-operator-mesh-trust-anchor'],
    );
    assert.equal(kubectl(['delete', 'namespace', 'mesh', '--wait=false']).status, 0);
  });

  it('upgrade with unchanged values changes nothing, and every field the chart sets reads back unchanged (no perpetual diff in Argo CD)', () => {
    const before = uids();
    const r = helm(['upgrade', 'ballast', chart, '-n', 'ballast-system', '--wait', ...values]);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(uids(), before);
    const manifest = helm(['get', 'manifest', 'ballast', '-n', 'ballast-system']);
    assert.equal(manifest.status, 0, manifest.stderr);
    assert.deepEqual(manifestDrift(manifest.stdout, [`--kubeconfig=${kubeconfig}`], 'ballast-system'), []);
  });

  it('uninstall leaves nothing behind but the CRDs', async () => {
    assert.equal(kubectl(['delete', 'storecluster', 'example', '--wait=true']).status, 0);
    const r = helm(['uninstall', 'ballast', '-n', 'ballast-system', '--wait']);
    assert.equal(r.status, 0, r.stderr);
    // The leader-election Lease is the operator's own record, not a chart resource: it goes with the namespace.
    const left = () =>
      kubectl(['get', 'all,serviceaccount,role,rolebinding,pdb', '-n', 'ballast-system', '-o', 'name'])
        .stdout.split('\n')
        .filter((l) => l && l !== 'serviceaccount/default');
    // Pods go by garbage collection after their Deployment: give them their grace period.
    for (let i = 0; i < 120 && left().length > 0; i++) await new Promise((res) => setTimeout(res, 250));
    assert.deepEqual(left(), []);
    assert.equal(
      kubectl(['get', 'clusterrole,clusterrolebinding', '-l', 'app.kubernetes.io/instance=ballast', '-o', 'name']).stdout.trim(),
      '',
    );
    assert.equal(
      kubectl([
        'get',
        'configmap,secret,mutatingwebhookconfiguration,validatingwebhookconfiguration',
        '-A',
        '-l',
        'app.kubernetes.io/instance=ballast',
        '-o',
        'name',
      ]).stdout.trim(),
      '',
      'dashboards and the webhook configuration go too',
    );
    assert.equal(
      kubectl(['get', 'crd', 'storeclusters.ballast.dev', '-o', 'name']).stdout.trim(),
      'customresourcedefinition.apiextensions.k8s.io/storeclusters.ballast.dev',
    );
  });
});

/**
 * Transparent interception on the real node: the intercepted client's pod has no proxy settings,
 * its mesh-init container installed the rules and exited, and its plain call to the Service's name
 * (resolved by CoreDNS to the cluster IP) reached the api over mTLS as its own identity. A
 * destination no upstream names is passed through; a caller from outside reaches the app's own
 * port through the inbound capture; the intercepted api's inbound listener took the mTLS.
 */
async function interception(
  t: { diagnostic(s: string): void },
  kubectl: (args: string[]) => { stdout: string },
  tclientIp: string,
  apiIp: string,
): Promise<void> {
  const pod = JSON.parse(kubectl(['get', 'pod', 'tclient', '-n', 'mesh', '-o', 'json']).stdout) as {
    spec: { initContainers: Array<{ name: string }>; containers: Array<{ env?: Array<{ name: string }> }> };
    status: { initContainerStatuses: Array<{ name: string; state: { terminated?: { exitCode: number } } }> };
  };
  assert.deepEqual(
    pod.spec.initContainers.map((c) => c.name),
    ['ballast-mesh-init', 'ballast-sidecar'],
  );
  assert.equal(pod.status.initContainerStatuses.find((c) => c.name === 'ballast-mesh-init')?.state.terminated?.exitCode, 0);
  assert.ok(!(pod.spec.containers[0]?.env ?? []).some((e) => e.name === 'HTTP_PROXY'), 'no HTTP_PROXY in an intercepted pod');
  let answer = '';
  for (let i = 0; i < 120; i++) {
    const r = await fetch(`http://${tclientIp}:8080/fetch?url=${encodeURIComponent('http://api.mesh.svc.cluster.local/')}`);
    answer = await r.text();
    if (r.status === 200 && answer.includes('spiffe')) break;
    await new Promise((res) => setTimeout(res, 250));
  }
  assert.equal((JSON.parse(answer) as { xfcc: string }).xfcc, 'URI=spiffe://cluster.local/ns/mesh/sa/client', answer);
  // Not an upstream (the intruder pod's app port, by IP): passed through as TCP.
  const intruderIp = kubectl(['get', 'pod', 'intruder', '-n', 'mesh', '-o', 'jsonpath={.status.podIP}']).stdout;
  const direct = await fetch(`http://${tclientIp}:8080/fetch?url=${encodeURIComponent(`http://${intruderIp}:8080/`)}`);
  assert.equal(direct.status, 200, await direct.text());
  // From this host to the intercepted pod's app port (no inbound listener there): the app answers.
  const inbound = await fetch(`http://${tclientIp}:8080/`);
  assert.equal(inbound.status, 200);
  await inbound.text();
  const m = await (await fetch(`http://${tclientIp}:15000/metrics`)).text();
  for (const [direction, result] of [
    ['outbound', 'matched'],
    ['outbound', 'passthrough'],
    ['inbound', 'passthrough'],
  ])
    assert.match(m, new RegExp(`ballast_sidecar_intercepted_connections_total\\{direction="${direction}",result="${result}"\\} [1-9]`));
  const apiM = await (await fetch(`http://${apiIp}:15000/metrics`)).text();
  assert.match(apiM, /ballast_sidecar_intercepted_connections_total\{direction="inbound",result="matched"\} [1-9]/);
  t.diagnostic('interception: Service call matched and sent over mTLS, other destinations passed through, inbound captured');
}

/**
 * GAMMA on the real node: an HTTPRoute attached to the api Service is in force in the callers'
 * sidecars (a path rewritten on the way, the rest passed as before), and its status says so under
 * the mesh's controller; a route naming a Service that does not exist says that too.
 */
async function gatewayRoutes(
  t: { diagnostic(s: string): void },
  kubectl: (args: string[], input?: string) => { status: number | null; stdout: string; stderr: string },
  tclientIp: string,
): Promise<void> {
  const route = (name: string, rules: unknown[]) => ({
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name, namespace: 'mesh' },
    spec: { parentRefs: [{ group: '', kind: 'Service', name: 'api', port: 80 }], rules },
  });
  const applied = Date.now();
  const r = kubectl(
    ['apply', '-f', '-'],
    [
      route('api-v2', [
        {
          matches: [{ path: { type: 'PathPrefix', value: '/v2' } }],
          filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/api' } } }],
          backendRefs: [{ name: 'api', port: 80 }],
        },
        // The catch-all rule sets a request timeout: the client's ResiliencePolicy for api says the route overrides it.
        { backendRefs: [{ name: 'api', port: 80 }], timeouts: { request: '10s' } },
      ]),
      route('api-broken', [
        { matches: [{ path: { type: 'PathPrefix', value: '/broken' } }], backendRefs: [{ name: 'no-such-service', port: 80 }] },
      ]),
    ]
      .map((m) => JSON.stringify(m))
      .join('\n'),
  );
  assert.equal(r.status, 0, r.stderr);
  const via = async (path: string) => {
    const res = await fetch(`http://${tclientIp}:8080/fetch?url=${encodeURIComponent(`http://api.mesh.svc.cluster.local${path}`)}`);
    return { status: res.status, body: await res.text() };
  };
  let seen = '';
  for (let i = 0; i < 240; i++) {
    seen = (await via('/v2/orders')).body;
    if (seen.includes('"path":"/api/orders"')) break;
    await new Promise((res) => setTimeout(res, 250));
  }
  assert.match(seen, /"path":"\/api\/orders"/, 'the rewrite of the route is in force');
  t.diagnostic(`HTTPRoute applied → in force in the caller's sidecar: ${Date.now() - applied} ms`);
  assert.match((await via('/other')).body, /"path":"\/other"/, 'the catch-all rule passes the rest unchanged');
  const broken = await via('/broken/x');
  assert.match(broken.body, /SIDECAR_ERR_BACKEND_INVALID/, 'the broken rule answers 500 for its share');
  const conditions = (name: string) =>
    kubectl([
      'get',
      'httproute',
      name,
      '-n',
      'mesh',
      '-o',
      'jsonpath={range .status.parents[*].conditions[*]}{.type}={.status}/{.reason} {end}',
    ]).stdout;
  let ok = '';
  let bad = '';
  for (let i = 0; i < 120 && !(ok.includes('Accepted=True') && bad.includes('ResolvedRefs=False')); i++) {
    ok = conditions('api-v2');
    bad = conditions('api-broken');
    await new Promise((res) => setTimeout(res, 250));
  }
  assert.match(ok, /Accepted=True\/Accepted ResolvedRefs=True\/ResolvedRefs/);
  assert.match(bad, /ResolvedRefs=False\/BackendNotFound/);
  assert.equal(
    kubectl(['get', 'httproute', 'api-v2', '-n', 'mesh', '-o', 'jsonpath={.status.parents[0].controllerName}']).stdout,
    'ballast.dev/mesh',
  );
  // The client's ResiliencePolicy: its sidecars run what they are sent (routes included), and it
  // names the route whose timeout wins over its own.
  let policy = '';
  for (let i = 0; i < 120 && !(policy.includes('Accepted=True/AllAccepted') && policy.includes('RouteOverrides=True')); i++) {
    policy = kubectl([
      'get',
      'resiliencepolicy',
      'client',
      '-n',
      'mesh',
      '-o',
      'jsonpath={range .status.conditions[*]}{.type}={.status}/{.reason} {end}',
    ]).stdout;
    await new Promise((res) => setTimeout(res, 250));
  }
  assert.match(policy, /Accepted=True\/AllAccepted/);
  assert.match(policy, /RouteOverrides=True\/RouteTimeouts/);
  assert.equal(kubectl(['delete', 'httproute', 'api-v2', 'api-broken', '-n', 'mesh']).status, 0);
}
