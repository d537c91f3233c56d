/**
 * What serving the operational endpoints with fastify costs a process, next to node:http: the
 * sidecar's admin endpoint (five GET routes: /live, /ready, /metrics, /config, /endpoints) built
 * both ways, each in a fresh process, measured after 200 requests and a full GC: resident
 * memory, heap, and the time from the first import to the first answer. The sidecar runs once per
 * application pod, so its idle footprint is multiplied by every pod in the mesh; the store and
 * the operator run a few per cluster.
 *
 *   node bench/endpoints.ts [--runs=5]
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { machine, root, table, writeResult } from './lib.ts';

const runs = Number(process.argv.find((a) => a.startsWith('--runs='))?.slice(7) ?? 5);
const dir = mkdtempSync(join(tmpdir(), 'ballast-bench-endpoints-'));

const measure = `
globalThis.gc(); await new Promise((r) => setTimeout(r, 100)); globalThis.gc();
const m = process.memoryUsage();
console.log(JSON.stringify({ rssMiB: m.rss / 2 ** 20, heapMiB: m.heapUsed / 2 ** 20, firstAnswerMs: firstAnswer - start }));
process.exit(0);`;
const load = `
const paths = ['/live', '/ready', '/metrics', '/config', '/endpoints'];
let firstAnswer = 0;
for (let i = 0; i < 200; i++) {
  await (await fetch('http://127.0.0.1:' + port + paths[i % paths.length])).text();
  if (i === 0) firstAnswer = performance.now();
}`;
const programs = {
  'node:http': `
const start = performance.now();
const { createServer } = await import('node:http');
const json = (res, status, body) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body, null, 2) + '\\n');
const server = createServer((req, res) => {
  switch ((req.url ?? '/').split('?')[0]) {
    case '/live': return json(res, 200, { live: true });
    case '/ready': return json(res, 200, { ready: true, upstreamsWithoutEndpoints: [] });
    case '/metrics': return res.writeHead(200, { 'content-type': 'text/plain' }).end('ballast_up 1\\n');
    case '/config': return json(res, 200, { config: {} });
    case '/endpoints': return json(res, 200, []);
    default: return json(res, 404, { error: 'no such admin path' });
  }
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const port = server.address().port;
${load}
${measure}`,
  fastify: `
const start = performance.now();
const Fastify = (await import(${JSON.stringify(join(root, 'node_modules/fastify/fastify.js'))})).default;
const app = Fastify({ logger: false });
app.get('/live', { schema: { response: { 200: { type: 'object', properties: { live: { type: 'boolean' } } } } } }, async () => ({ live: true }));
app.get('/ready', { schema: { response: { 200: { type: 'object', properties: { ready: { type: 'boolean' }, upstreamsWithoutEndpoints: { type: 'array', items: { type: 'string' } } } } } } }, async () => ({ ready: true, upstreamsWithoutEndpoints: [] }));
app.get('/metrics', async (_q, reply) => reply.type('text/plain').send('ballast_up 1\\n'));
app.get('/config', async () => ({ config: {} }));
app.get('/endpoints', async () => []);
await app.listen({ port: 0, host: '127.0.0.1' });
const port = app.server.address().port;
${load}
${measure}`,
};

const results: Record<string, Array<{ rssMiB: number; heapMiB: number; firstAnswerMs: number }>> = {};
for (let i = 0; i < runs; i++) {
  for (const [name, code] of Object.entries(programs)) {
    const file = join(dir, `${name.replace(':', '-')}.mjs`);
    writeFileSync(file, code);
    const out = execFileSync(process.execPath, ['--expose-gc', file], { encoding: 'utf8' });
    (results[name] ??= []).push(JSON.parse(out.trim()) as { rssMiB: number; heapMiB: number; firstAnswerMs: number });
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const rows = Object.entries(results).map(([name, rs]) => ({
  server: name,
  'RSS MiB (median)': median(rs.map((r) => r.rssMiB)),
  'heap MiB (median)': median(rs.map((r) => r.heapMiB)),
  'start to first answer ms (median)': median(rs.map((r) => r.firstAnswerMs)),
}));
const [plain, fast] = rows as [(typeof rows)[0], (typeof rows)[0]];
rows.push({
  server: 'fastify − node:http',
  'RSS MiB (median)': fast['RSS MiB (median)'] - plain['RSS MiB (median)'],
  'heap MiB (median)': fast['heap MiB (median)'] - plain['heap MiB (median)'],
  'start to first answer ms (median)': fast['start to first answer ms (median)'] - plain['start to first answer ms (median)'],
});
console.log(table(rows, `The sidecar's admin endpoint, five GET routes, ${runs} fresh processes each`));
const fastifyVersion = (
  JSON.parse(
    execFileSync(process.execPath, ['-p', `JSON.stringify(require(${JSON.stringify(join(root, 'node_modules/fastify/package.json'))}))`], {
      encoding: 'utf8',
    }),
  ) as { version: string }
).version;
console.log(`\nwrote ${writeResult('endpoints', { machine: { ...machine(), fastify: fastifyVersion }, runs, rows, raw: results })}`);
