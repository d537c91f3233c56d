/* global Buffer */
// A test "image": an HTTP server answering with the pod's name and IP (from its environment).
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { createServer, get } from 'node:http';
import { createServer as createHttps, request as httpsRequest } from 'node:https';
// WRITE_FILE: append a line at every start (a test of data surviving the pod).
const me = process.env.CONTAINER_NAME ?? process.env.HOSTNAME;
if (process.env.WRITE_FILE) appendFileSync(process.env.WRITE_FILE, `started ${me}\n`);
const port = Number(process.env.PORT ?? 8080);
const sa = '/var/run/secrets/kubernetes.io/serviceaccount';
const handler = (req, res) => {
  const url = new URL(req.url ?? '/', 'http://x');
  // /status/NNN answers with that status (for probe tests).
  const m = /^\/status\/(\d{3})/.exec(url.pathname);
  if (m) res.statusCode = Number(m[1]);
  // /read?path=F answers with the file's contents, as this container sees them.
  const read = url.searchParams.get('path');
  if (url.pathname !== '/kube' && read) {
    try {
      return res.end(readFileSync(read));
    } catch (e) {
      res.statusCode = 404;
      return res.end(String(e.message));
    }
  }
  // /fetch?url=U: an HTTP GET from inside the pod (names resolve as the pod resolves them).
  const fetchUrl = url.searchParams.get('url');
  if (fetchUrl) {
    return void get(fetchUrl, { timeout: 3000 }, (r) => r.pipe(res)).on('error', (e) => {
      res.statusCode = 502;
      res.end(`fetch failed: ${e.message}`);
    });
  }
  // /kube?path=P: a request to the apiserver as in-cluster clients make it (service host and
  // port from the environment, the projected token and CA).
  if (url.pathname === '/kube') {
    const r = httpsRequest(
      {
        host: 'kubernetes.default.svc',
        port: Number(process.env.KUBERNETES_SERVICE_PORT),
        path: read ?? '/version',
        ca: readFileSync(`${sa}/ca.crt`),
        headers: { authorization: `Bearer ${readFileSync(`${sa}/token`, 'utf8')}` },
      },
      (up) => {
        res.statusCode = up.statusCode ?? 500;
        up.pipe(res);
      },
    );
    r.on('error', (e) => {
      res.statusCode = 502;
      res.end(`apiserver request failed: ${e.message}`);
    });
    return void r.end();
  }
  // /mutate: an admission webhook that labels what it sees (AdmissionReview v1, JSONPatch).
  if (url.pathname === '/mutate') {
    let body = '';
    req.on('data', (c) => (body += c));
    return void req.on('end', () => {
      const review = JSON.parse(body);
      const patch = [{ op: 'add', path: '/metadata/labels/mutated-by', value: String(process.env.HOSTNAME) }];
      res.setHeader('content-type', 'application/json');
      res.end(
        JSON.stringify({
          apiVersion: 'admission.k8s.io/v1',
          kind: 'AdmissionReview',
          response: {
            uid: review.request.uid,
            allowed: true,
            patchType: 'JSONPatch',
            patch: Buffer.from(JSON.stringify(patch)).toString('base64'),
          },
        }),
      );
    });
  }
  // /grpc-put?target=H:P&key=K: an etcd Put over gRPC as an instrumented app makes it, under a
  // span of its own (its W3C traceparent sent, and returned, for trace tests).
  if (url.pathname === '/grpc-put') {
    return void (async () => {
      const grpc = await import('@grpc/grpc-js');
      // From a checkout the sources; in the test image (test/images/http-echo) the compiled code.
      const protos = new URL('../../store/api/protos.ts', import.meta.url);
      const { loadProtos } = await import(
        existsSync(protos) ? protos.href : new URL('../../dist/store/api/protos.js', import.meta.url).href
      );
      const { randomBytes } = await import('node:crypto');
      const traceparent = `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-01`;
      const KV = loadProtos().etcdserverpb.KV;
      const kv = new KV(url.searchParams.get('target'), grpc.credentials.createInsecure());
      const md = new grpc.Metadata();
      md.set('traceparent', traceparent);
      kv.Put(
        { key: Buffer.from(url.searchParams.get('key') ?? 'k'), value: Buffer.from('v') },
        md,
        { deadline: Date.now() + 10_000 },
        (err) => {
          kv.close();
          res.statusCode = err ? 502 : 200;
          res.end(JSON.stringify({ traceparent, error: err ? err.message : '' }));
        },
      );
    })().catch((e) => {
      res.statusCode = 500;
      res.end(String(e));
    });
  }
  // xfcc: who the pod's Ballast sidecar says called (mesh mTLS), when it does.
  const xfcc = req.headers['x-forwarded-client-cert'] ?? null;
  res.end(JSON.stringify({ pod: process.env.HOSTNAME, podIP: process.env.POD_IP, path: req.url, xfcc }) + '\n');
};
// TLS_CERT/TLS_KEY: serve HTTPS instead (a webhook).
const server = process.env.TLS_CERT
  ? createHttps({ cert: readFileSync(process.env.TLS_CERT), key: readFileSync(process.env.TLS_KEY) }, handler)
  : createServer(handler);
server.listen(port, '0.0.0.0', () => console.log(`http-echo listening on ${port}`));
process.on('SIGTERM', () => {
  console.log('http-echo got SIGTERM');
  if (process.env.WRITE_FILE) appendFileSync(process.env.WRITE_FILE, `stopped ${me}\n`);
  process.exit(0);
});
