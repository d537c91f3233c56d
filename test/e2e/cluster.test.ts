// `ballast cluster` with its real node: containerd 2.3, runc, the CNI bridge, the kubelet and
// kube-proxy v1.36.3 and CoreDNS, running the images built from the Dockerfile. Promises: every
// component is healthy and the node Ready on containerd; pods run the image as its Dockerfile
// says (non-root, read-only root) and restart when killed; Services and cluster DNS resolve
// from pods, and the apiserver answers a pod's service-account token; `kubectl logs` and `exec`
// work through the apiserver; a claim of the default class is writable by a non-root pod
// (fsGroup) and outlives the pod; deletion runs the preStop hook and SIGTERMs PID 1; a memory
// limit is enforced (OOMKilled, restarted); an image that is not there is named in the pod's
// status; `down` ends every process and leaves the host exactly as it was; on a host lacking a
// piece, `up` stops at once, names it and changes nothing.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { diffHostState, readHostState } from '../../cluster/host.ts';
import { isRunning } from '../../cluster/processes.ts';
import { LocalCluster, containerPid } from '../support/cluster.ts';
import { bin } from '../support/store-cluster.ts';

const echo = 'ballast-test/http-echo:dev';
type Pod = {
  metadata: { name: string; deletionTimestamp?: string };
  status: {
    podIP?: string;
    containerStatuses?: Array<{
      ready: boolean;
      restartCount: number;
      state?: { waiting?: { reason?: string; message?: string } };
      lastState?: { terminated?: { reason?: string } };
    }>;
  };
};

describe('ballast cluster: the real node (objects in etcd)', { timeout: 600_000 }, () => {
  const c = new LocalCluster('node');
  const before0 = readHostState();
  const pods = (selector: string) => (JSON.parse(c.ok(['get', 'pods', '-l', selector, '-o', 'json'])) as { items: Pod[] }).items;
  const readyPods = (selector: string) =>
    pods(selector).filter((p) => !p.metadata.deletionTimestamp && p.status.containerStatuses?.every((s) => s.ready));
  const inPod = (pod: string, script: string) => c.kubectl(['exec', pod, '--', 'node', '-e', script]);
  let pids: number[] = [];

  before(async (t) => {
    const ms = await c.up();
    (t as unknown as { diagnostic?: (m: string) => void }).diagnostic?.(`cluster up: ${ms} ms`);
  });
  after(() => {
    if (c.port !== 0 && pids.some(isRunning)) c.down();
  });

  it('up: every component healthy, the node Ready on containerd 2.3 with the kubelet v1.36.3, up again a no-op', () => {
    const st = c.cluster('status');
    assert.equal(st.status, 0, st.stdout);
    for (const name of [
      'etcd',
      'kube-apiserver',
      'kube-controller-manager',
      'kube-scheduler',
      'containerd',
      'kubelet',
      'kube-proxy',
      'local-provisioner',
    ]) {
      assert.match(st.stdout, new RegExp(`${name}\\s+pid \\d+\\s+healthy`), name);
    }
    assert.equal(c.jsonpath(['node', 'local'], '{.status.nodeInfo.containerRuntimeVersion}'), 'containerd://2.3.7');
    assert.equal(c.jsonpath(['node', 'local'], '{.status.nodeInfo.kubeletVersion}'), 'v1.36.3');
    assert.equal(c.jsonpath(['node', 'local'], '{.status.conditions[?(@.type=="Ready")].status}'), 'True');
    assert.match(c.cluster('up').stdout, /already running/);
    pids = (JSON.parse(readFileSync(join(c.stateDir, 'state.json'), 'utf8')) as { components: Array<{ pid: number }> }).components.map(
      (x) => x.pid,
    );
  });

  it('pods run the image as built: as 65532 on a read-only root, each with its own IP; a killed container restarts', async () => {
    c.apply(
      `apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: echo}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: echo}}\n  template:\n    metadata: {labels: {app: echo}}\n    spec:\n      terminationGracePeriodSeconds: 5\n      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}\n      containers:\n      - name: echo\n        image: ${echo}\n        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}\n        securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}\n        env: [{name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: echo}\nspec:\n  selector: {app: echo}\n  ports: [{port: 80, targetPort: 8080}]\n`,
    );
    await c.until(() => readyPods('app=echo').length === 2, 'two echo pods Ready');
    const [a, b] = readyPods('app=echo');
    assert.notEqual(a!.status.podIP, b!.status.podIP);
    assert.equal(c.ok(['exec', a!.metadata.name, '--', 'id', '-u']).trim(), '65532');
    const write = c.kubectl(['exec', a!.metadata.name, '--', 'touch', '/app/x']);
    assert.notEqual(write.status, 0);
    assert.match(write.stderr, /Read-only file system/);
    // Pod to pod, by IP.
    const reply = JSON.parse(
      c.ok([
        'exec',
        a!.metadata.name,
        '--',
        'node',
        '-e',
        `fetch("http://${b!.status.podIP}:8080/").then((r) => r.text()).then((t) => process.stdout.write(t))`,
      ]),
    ) as { pod: string };
    assert.equal(reply.pod, b!.metadata.name);
    const pid = containerPid(a!.metadata.name, 'echo');
    assert.ok(pid, "the container's process, through the CRI");
    process.kill(pid, 'SIGKILL');
    await c.until(
      () =>
        pods('app=echo').some(
          (p) =>
            p.metadata.name === a!.metadata.name &&
            (p.status.containerStatuses?.[0]?.restartCount ?? 0) >= 1 &&
            p.status.containerStatuses?.[0]?.ready === true,
        ),
      'restarted and Ready again',
    );
  });

  it("Services and cluster DNS from a pod, and the apiserver with the pod's service-account token", async () => {
    const pod = readyPods('app=echo')[0]!.metadata.name;
    const get = (url: string) =>
      inPod(
        pod,
        `fetch(${JSON.stringify(url)}).then((r) => r.text()).then((t) => process.stdout.write(t), (e) => { console.error(e.cause?.code ?? e.message); process.exit(1); })`,
      );
    // kube-proxy programs a new Service within its sync: a first call may come too early.
    await c.until(() => get('http://echo.default.svc.cluster.local/dns').status === 0, 'the Service answers by its DNS name');
    assert.match(get('http://echo/short').stdout, /"path":"\/short"/, 'the search path resolves the short name');
    const ip = c.jsonpath(['service', 'echo'], '{.spec.clusterIP}');
    assert.match(get(`http://${ip}/by-ip`).stdout, /"path":"\/by-ip"/);
    // http-echo's /kube calls kubernetes.default.svc with its token and CA, as in-cluster clients do.
    assert.match(get('http://127.0.0.1:8080/kube?path=/version').stdout, /"gitVersion":\s*"v1\.36\.3"/);
    // The host reaches the Service too (kube-proxy's rules cover locally originated traffic).
    assert.match(spawnSync('curl', ['-s', '--max-time', '5', `http://${ip}/from-host`], { encoding: 'utf8' }).stdout, /from-host/);
  });

  it('kubectl logs and exec go through the apiserver to the kubelet (its serving certificate checked)', () => {
    const pod = readyPods('app=echo')[0]!.metadata.name;
    assert.match(c.ok(['logs', pod]), /http-echo listening on 8080/);
    assert.match(c.ok(['exec', pod, '--', 'node', '-e', 'console.log(process.env.HOSTNAME)']), new RegExp(pod));
  });

  it('a claim of the default class: a non-root pod writes with fsGroup, and the data outlives the pod', async () => {
    c.apply(
      `apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec:\n  serviceName: db\n  replicas: 1\n  selector: {matchLabels: {app: db}}\n  template:\n    metadata: {labels: {app: db}}\n    spec:\n      terminationGracePeriodSeconds: 5\n      securityContext: {runAsNonRoot: true, runAsUser: 65532, fsGroup: 65532}\n      containers:\n      - name: echo\n        image: ${echo}\n        env: [{name: WRITE_FILE, value: /data/boot.log}]\n        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}\n        volumeMounts: [{name: data, mountPath: /data}]\n  volumeClaimTemplates:\n  - metadata: {name: data}\n    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n`,
    );
    await c.until(() => readyPods('app=db').length === 1, 'db-0 Ready');
    assert.equal(
      c.jsonpath(['pv', c.jsonpath(['pvc', 'data-db-0'], '{.spec.volumeName}')], '{.spec.local.path}').startsWith(c.stateDir),
      true,
      'a local volume under the state directory',
    );
    const uid = c.ok(['get', 'pod', 'db-0', '-o', 'jsonpath={.metadata.uid}']);
    c.ok(['delete', 'pod', 'db-0', '--wait=true']);
    await c.until(
      () => readyPods('app=db').length === 1 && c.jsonpath(['pod', 'db-0'], '{.metadata.uid}') !== uid,
      'db-0 back (a new pod)',
    );
    const log = c.ok(['exec', 'db-0', '--', 'node', '-e', 'process.stdout.write(require("fs").readFileSync("/data/boot.log", "utf8"))']);
    assert.equal(log.split('\n').filter((l) => l.startsWith('started')).length, 2, `both pods wrote to the volume: ${log}`);
    assert.match(log, /stopped db-0/, 'the first pod got SIGTERM as PID 1 and wrote on its way out');
  });

  it('deleting a pod runs its preStop hook, then SIGTERMs PID 1', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ballast-prestop-'));
    chmodSync(dir, 0o777);
    c.apply(
      `apiVersion: v1\nkind: Pod\nmetadata: {name: hooked}\nspec:\n  terminationGracePeriodSeconds: 10\n  containers:\n  - name: echo\n    image: ${echo}\n    env: [{name: WRITE_FILE, value: /out/log}]\n    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}\n    lifecycle: {preStop: {exec: {command: [sh, -c, "echo prestop >> /out/log"]}}}\n    volumeMounts: [{name: out, mountPath: /out}]\n  volumes: [{name: out, hostPath: {path: ${dir}}}]\n`,
    );
    await c.until(() => c.jsonpath(['pod', 'hooked'], '{.status.containerStatuses[0].ready}') === 'true', 'hooked Ready');
    c.ok(['delete', 'pod', 'hooked', '--wait=true']);
    assert.deepEqual(readFileSync(join(dir, 'log'), 'utf8').trim().split('\n'), ['started hooked', 'prestop', 'stopped hooked']);
    rmSync(dir, { recursive: true, force: true });
  });

  it('a memory limit is enforced: over it the container is OOMKilled and restarted', async () => {
    // Touches 8 MiB every 20 ms until the kernel stops it at the pod's 48 MiB.
    c.apply(
      `apiVersion: v1\nkind: Pod\nmetadata: {name: hog}\nspec:\n  containers:\n  - name: hog\n    image: ${echo}\n    command: [node, -e, "const a = []; setInterval(() => a.push(Buffer.alloc(8 << 20, 1)), 20)"]\n    resources: {requests: {memory: 48Mi}, limits: {memory: 48Mi}}\n`,
    );
    await c.until(
      () => c.jsonpath(['pod', 'hog'], '{.status.containerStatuses[0].lastState.terminated.reason}') === 'OOMKilled',
      'OOMKilled',
      120_000,
    );
    assert.ok(Number(c.jsonpath(['pod', 'hog'], '{.status.containerStatuses[0].restartCount}')) >= 1, 'restarted by the kubelet');
    c.ok(['delete', 'pod', 'hog', '--wait=false']);
  });

  it("an image that is not in containerd: the pod's status names it (ErrImagePull / ImagePullBackOff), and nothing leaves the machine", async () => {
    c.apply(
      'apiVersion: v1\nkind: Pod\nmetadata: {name: nowhere}\nspec:\n  containers:\n  - {name: app, image: "ballast-test/not-built:1"}\n',
    );
    const waiting = () => (JSON.parse(c.ok(['get', 'pod', 'nowhere', '-o', 'json'])) as Pod).status.containerStatuses?.[0]?.state?.waiting;
    await c.until(() => ['ErrImagePull', 'ImagePullBackOff'].includes(waiting()?.reason ?? ''), 'the pull fails');
    assert.match(waiting()?.message ?? '', /ballast-test\/not-built:1/);
    assert.match(waiting()?.message ?? '', /127\.0\.0\.1:9/, 'the pull went to the closed loopback port, not to a registry');
    c.ok(['delete', 'pod', 'nowhere', '--wait=false']);
  });

  it('down ends every process it started and leaves the host as it was (namespaces, links, chains, tables, mounts, cgroups, sysctls, paths)', () => {
    const down = c.down();
    assert.equal(down.status, 0, down.stderr + down.stdout);
    assert.doesNotMatch(down.stdout, /could not undo/);
    assert.deepEqual(pids.filter(isRunning), [], 'no component is left running');
    assert.deepEqual(diffHostState(before0, readHostState()), [], 'the host is as it was before up');
  });
});

describe('ballast cluster on a ballast store: pods on the node, every object in a 3-member ballast store', { timeout: 300_000 }, () => {
  const c = new LocalCluster('node-ballast', 'ballast');
  const before0 = readHostState();
  before(async () => {
    await c.up();
  });
  after(() => {
    if (c.cluster('status').stdout.includes('pid')) c.down();
  });

  it("a Deployment runs to Ready; kill -9 of the store's leader: the node and the controllers carry on (scaled to 4 on the two members left); down restores the host", async () => {
    c.ok(['create', 'deployment', 'web', `--image=${echo}`, '--replicas=2']);
    await c.until(() => c.jsonpath(['deployment', 'web'], '{.status.readyReplicas}') === '2', 'two replicas Ready');
    assert.match(c.ok(['get', '--raw', '/readyz?verbose']), /\[\+\]etcd ok/);
    // The store's members listen on 13379, 23379, 33379 (cluster/control-plane.ts).
    // IDs are 64-bit: compare them as the digits etcdctl printed, not as JSON numbers (doubles).
    const isLeader = (port: number) => {
      const out = spawnSync('etcdctl', [`--endpoints=127.0.0.1:${port}`, 'endpoint', 'status', '-w', 'json'], {
        encoding: 'utf8',
        env: { ...process.env, ETCDCTL_API: '3' },
      }).stdout;
      const id = /"member_id":(\d+)/.exec(out)?.[1];
      return id !== undefined && id === /"leader":(\d+)/.exec(out)?.[1];
    };
    const ports = [13379, 23379, 33379];
    const leaderPort = ports.find(isLeader);
    assert.ok(leaderPort, 'the store has a leader');
    const components = (
      JSON.parse(readFileSync(join(c.stateDir, 'state.json'), 'utf8')) as { components: Array<{ name: string; pid: number }> }
    ).components;
    const victim = components.find((x) => x.name === `store-s${String(leaderPort).slice(0, 1)}`)!;
    process.kill(victim.pid, 'SIGKILL');
    c.ok(['scale', 'deployment', 'web', '--replicas=4']);
    await c.until(
      () => c.jsonpath(['deployment', 'web'], '{.status.readyReplicas}') === '4',
      "four replicas Ready after the store's leader was killed",
    );
    const down = c.down();
    assert.equal(down.status, 0, down.stderr);
    assert.deepEqual(diffHostState(before0, readHostState()), []);
  });
});

describe('ballast cluster up on a host that lacks a piece', () => {
  it('stops at once, names what is missing and how to get it, and changes nothing on the host', () => {
    const before0 = readHostState();
    const dir = mkdtempSync(join(tmpdir(), 'ballast-preflight-'));
    // No /usr/sbin or /sbin on PATH: iptables, ip6tables, conntrack and nft are not found.
    const r = spawnSync(bin, ['cluster', 'up', `--state-dir=${dir}`], {
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, PATH: `${dirname(process.execPath)}:/usr/bin:/bin` },
    });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /CLUSTER_ERR_HOST/);
    assert.match(r.stderr, /iptables is missing: install the Debian package iptables/);
    assert.match(r.stderr, /conntrack is missing/);
    assert.deepEqual(diffHostState(before0, readHostState()), []);
    rmSync(dir, { recursive: true, force: true });
  });
});
