/**
 * A stand-alone upstream for the sidecar's fault suite and benchmark (a process of its own, so
 * it can be killed and restarted, and does not share an event loop with the load generator).
 *   node test/support/upstream-server.ts HOST:PORT MODE
 * MODE: ok                 200 "ok" at once
 *       fail:P             P percent of requests get 503, the rest 200
 *       slow:MS            every answer after MS milliseconds
 *       capacity:N:MS      N requests served at once, each taking MS; the rest wait in FIFO
 *                          order (a saturated server: latency grows with the queue)
 * Prints "listening HOST:PORT" when ready; GET /health always answers at once (active checks).
 */
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';

const [addr = '127.0.0.1:0', mode = 'ok'] = process.argv.slice(2);
const [kind, a, b] = mode.split(':');
const body = Buffer.from('ok');

function answer(res: ServerResponse, status = 200): void {
  res.writeHead(status, { 'content-type': 'text/plain', 'content-length': '2' });
  res.end(body);
}

let running = 0;
const waiting: Array<() => void> = [];
const capacity = Number(a);
const serviceMs = Number(b);
function serve(res: ServerResponse): void {
  running++;
  setTimeout(() => {
    answer(res);
    running--;
    const next = waiting.shift();
    if (next) next();
  }, serviceMs);
}

const handle: (req: IncomingMessage, res: ServerResponse) => void =
  kind === 'fail'
    ? (_req, res) => answer(res, Math.random() * 100 < Number(a) ? 503 : 200)
    : kind === 'slow'
      ? (_req, res) => {
          setTimeout(() => answer(res), Number(a));
        }
      : kind === 'capacity'
        ? (_req, res) => {
            if (running < capacity) serve(res);
            else waiting.push(() => serve(res));
          }
        : (_req, res) => answer(res);

const server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  if (req.url === '/health') return answer(res);
  if (req.method === 'GET' || req.method === 'HEAD') return handle(req, res);
  req.resume();
  req.on('end', () => handle(req, res));
});
const i = addr.lastIndexOf(':');
server.listen(Number(addr.slice(i + 1)), addr.slice(0, i), () => {
  const p = server.address() as { port: number };
  process.stdout.write(`listening ${addr.slice(0, i)}:${p.port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
