// A test "image": an HTTP server answering with the pod's name and IP (from its environment).
import { createServer } from 'node:http';
const port = Number(process.env.PORT ?? 8080);
createServer((req, res) => {
  // /status/NNN answers with that status (for probe tests).
  const m = /^\/status\/(\d{3})/.exec(req.url ?? '');
  if (m) res.statusCode = Number(m[1]);
  res.end(JSON.stringify({ pod: process.env.HOSTNAME, podIP: process.env.POD_IP, path: req.url }) + '\n');
}).listen(port, '0.0.0.0', () => console.log(`http-echo listening on ${port}`));
process.on('SIGTERM', () => { console.log('http-echo got SIGTERM'); process.exit(0); });
