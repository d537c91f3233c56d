/**
 * The bare Node pass-through proxy: node:http in, undici's dispatch API out, round robin over
 * the endpoints, no policies at all. The ceiling for any Node proxy on this machine, which
 * bench/sidecar-vs-haproxy measures `ballast sidecar` against.
 *   node bench/passthrough.ts LISTEN_PORT HOST:PORT [HOST:PORT ...]
 */
import { createServer } from 'node:http';
import { Pool } from 'undici';

const [port, ...endpoints] = process.argv.slice(2);
const pools = endpoints.map((e) => new Pool(`http://${e}`, { connections: 256, pipelining: 1 }));
const hop = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'host']);
let next = 0;

createServer((req, res) => {
  const headers: Record<string, string | string[] | undefined> = {};
  for (const k in req.headers) if (!hop.has(k)) headers[k] = req.headers[k];
  const hasBody =
    (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0') ||
    req.headers['transfer-encoding'] !== undefined;
  const pool = pools[next++ % pools.length] as Pool;
  pool.dispatch(
    { path: req.url ?? '/', method: req.method ?? 'GET', headers: headers as Record<string, string>, body: hasBody ? req : null },
    {
      onRequestStart() {},
      onResponseStart(_c, status, h) {
        const out: Record<string, string | string[]> = {};
        for (const k in h) if (!hop.has(k) && h[k] !== undefined) out[k] = h[k] as string | string[];
        res.writeHead(status, out);
      },
      onResponseData(c, chunk) {
        if (!res.write(chunk)) {
          c.pause();
          res.once('drain', () => c.resume());
        }
      },
      onResponseEnd() {
        res.end();
      },
      onResponseError() {
        if (!res.headersSent) res.writeHead(502);
        res.end();
      },
    },
  );
}).listen(Number(port), '127.0.0.1', () => process.stdout.write(`listening 127.0.0.1:${port}\n`));
