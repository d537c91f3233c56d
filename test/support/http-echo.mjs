// A test "image": an HTTP server answering with the pod's name and IP (from its environment).
import { appendFileSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
// WRITE_FILE: append a line at every start (a test of data surviving the pod).
const me = process.env.CONTAINER_NAME ?? process.env.HOSTNAME;
if (process.env.WRITE_FILE) appendFileSync(process.env.WRITE_FILE, `started ${me}\n`);
const port = Number(process.env.PORT ?? 8080);
createServer((req, res) => {
  // /status/NNN answers with that status (for probe tests).
  const m = /^\/status\/(\d{3})/.exec(req.url ?? '');
  if (m) res.statusCode = Number(m[1]);
  // /read?path=F answers with the file's contents, as this container sees them.
  const read = new URL(req.url ?? '/', 'http://x').searchParams.get('path');
  if (read) {
    try { return res.end(readFileSync(read)); } catch (e) { res.statusCode = 404; return res.end(String(e.message)); }
  }
  res.end(JSON.stringify({ pod: process.env.HOSTNAME, podIP: process.env.POD_IP, path: req.url }) + '\n');
}).listen(port, '0.0.0.0', () => console.log(`http-echo listening on ${port}`));
process.on('SIGTERM', () => {
  console.log('http-echo got SIGTERM');
  if (process.env.WRITE_FILE) appendFileSync(process.env.WRITE_FILE, `stopped ${me}\n`);
  process.exit(0);
});
