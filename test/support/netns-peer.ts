/**
 * A process for tests that run in network namespaces of their own (the interception test):
 *   node netns-peer.ts serve http <host:port> <name>   HTTP/1.1: answers JSON {name, path, peer, xfcc}
 *   node netns-peer.ts serve grpc <host:port>          h2c gRPC: echoes every unary message
 *   node netns-peer.ts serve tcp <host:port>           TCP: says "hello <peerPort>\n" first, then echoes
 *   node netns-peer.ts http <url>                      prints {status, body}
 *   node netns-peer.ts grpc <host:port> <text>         prints {reply} (grpc-js, no proxy, no local port)
 *   node netns-peer.ts tcp <host:port> <text>          prints {banner, echo, localPort}
 * Servers print "listening" once they listen.
 */
import * as grpc from '@grpc/grpc-js';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';

const [mode, kind, addr = '', extra = ''] = process.argv.slice(2);
const split = (a: string): { host: string; port: number } => {
  const i = a.lastIndexOf(':');
  return { host: a.slice(0, i), port: Number(a.slice(i + 1)) };
};
const out = (v: unknown): void => {
  process.stdout.write(`${JSON.stringify(v)}\n`);
};

if (mode === 'serve') {
  const { host, port } = split(addr);
  const ready = (): void => out({ listening: `${host}:${port}` });
  if (kind === 'http')
    http
      .createServer((req, res) => {
        res.setHeader('content-type', 'application/json');
        res.end(
          JSON.stringify({
            name: extra,
            path: req.url,
            peer: `${req.socket.remoteAddress}:${req.socket.remotePort}`,
            xfcc: req.headers['x-forwarded-client-cert'] ?? '',
          }),
        );
      })
      .listen(port, host, ready);
  else if (kind === 'grpc')
    http2
      .createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const body = Buffer.concat(chunks);
          res.writeHead(200, { 'content-type': 'application/grpc' });
          res.addTrailers({ 'grpc-status': '0' });
          res.end(body); // the request's own length-prefixed message, echoed
        });
      })
      .listen(port, host, ready);
  else if (kind === 'tcp')
    net
      .createServer((s) => {
        s.on('error', () => undefined);
        s.write(`hello ${s.remotePort}\n`);
        s.pipe(s);
      })
      .listen(port, host, ready);
} else if (mode === 'client') {
  if (kind === 'http') {
    const r = await fetch(addr);
    out({ status: r.status, body: await r.text() });
  } else if (kind === 'grpc') {
    const Client = grpc.makeGenericClientConstructor({}, 'Echo');
    const c = new Client(addr, grpc.credentials.createInsecure());
    const reply = await new Promise<Buffer>((resolve, reject) =>
      c.makeUnaryRequest(
        '/test.Echo/Say',
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.from(extra),
        (err: Error | null, v?: Buffer) => (err ? reject(err) : resolve(v as Buffer)),
      ),
    );
    c.close();
    out({ reply: reply.toString() });
  } else if (kind === 'tcp') {
    const { host, port } = split(addr);
    const s = net.connect(port, host);
    let got = '';
    let sent = false;
    s.on('data', (c: Buffer) => {
      got += c.toString();
      const nl = got.indexOf('\n');
      if (nl < 0) return;
      // A server-first protocol: the banner comes before the client has sent anything.
      if (!sent) {
        sent = true;
        s.write(extra);
      }
      if (got.length - nl - 1 < extra.length) return;
      out({ banner: got.slice(0, nl), echo: got.slice(nl + 1), localPort: s.localPort });
      s.end();
    });
  }
} else {
  process.stderr.write('usage: netns-peer.ts serve|client <kind> <address> [arg]\n');
  process.exit(2);
}
