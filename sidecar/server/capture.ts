/**
 * The interception listeners: where iptables (api/interception.ts) redirects a pod's TCP. Each
 * connection's original destination (SO_ORIGINAL_DST) picks what serves it: outbound, the
 * upstream whose Service address or endpoint it was sent to (the app's request then takes the
 * upstream's whole policy, mTLS included), anything else passed through as TCP; inbound, the
 * inbound listener of that port (mesh mTLS, authorization, policy), any other port passed to the
 * application on loopback. TLS the application originates itself is passed through untouched.
 */
import net, { type Socket } from 'node:net';
import { originalDestination } from '../../lib/original-dst.ts';
import type { Logger } from '../../lib/log.ts';
import { type Listener, type Served, bind, replaying } from './listener.ts';

export type CaptureResult = 'matched' | 'passthrough' | 'passthrough-tls' | 'not-redirected' | 'failed';

export interface CaptureRoutes {
  /** What serves a connection sent to `dst` (undefined: pass it through). */
  route(dst: { host: string; port: number }): Served | undefined;
  /** Where a passed-through connection goes (outbound: the destination; inbound: the app on loopback). */
  passTo(dst: { host: string; port: number }): { host: string; port: number };
  count(result: CaptureResult): void;
}

/** `host:port`, IPv6 in brackets (the form of upstream addresses in the configuration). */
export function addressKey(host: string, port: number): string {
  return net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

/** TCP both ways between two sockets, each side's end and errors carried to the other. */
function splice(a: Socket | ReturnType<typeof replaying>, b: Socket): void {
  a.pipe(b);
  b.pipe(a);
  a.on('error', () => b.destroy());
  b.on('error', () => a.destroy());
  a.on('close', () => b.destroy());
  b.on('close', () => a.destroy());
}

export async function captureListener(
  addr: string,
  direction: 'outbound' | 'inbound',
  routes: CaptureRoutes,
  log: Logger,
  lookup: (socket: Socket) => { host: string; port: number } | undefined = originalDestination,
): Promise<Listener> {
  const sockets = new Set<Socket>();
  const passThrough = (socket: Socket, dst: { host: string; port: number }, first: Buffer | undefined, result: CaptureResult): void => {
    const to = routes.passTo(dst);
    const out = net.connect({ host: to.host, port: to.port, noDelay: true });
    out.once('error', (err) => {
      routes.count('failed');
      log.debug({ direction, destination: addressKey(to.host, to.port), err: err.message }, 'intercepted connection: destination refused');
    });
    out.once('connect', () => routes.count(result));
    splice(first ? replaying(socket, first) : socket, out);
  };
  const server = net.createServer({ noDelay: true }, (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let dst: { host: string; port: number } | undefined;
    try {
      dst = lookup(socket);
    } catch (err) {
      log.warn({ direction, err: (err as Error).message }, 'cannot read the original destination of an intercepted connection');
    }
    // Not redirected (the kernel reports the capture port itself): a direct connection, which
    // would otherwise be proxied to this very listener.
    if (!dst || (dst.port === socket.localPort && (dst.host === socket.localAddress || direction === 'outbound'))) {
      routes.count('not-redirected');
      return void socket.destroy();
    }
    const served = routes.route(dst);
    if (!served) return passThrough(socket, dst, undefined, 'passthrough');
    if (direction === 'inbound') {
      routes.count('matched');
      return served.accept(socket);
    }
    // Outbound to an upstream: HTTP is served by the upstream; TLS the application speaks itself
    // (https:// to the Service) cannot be, and goes through as it is.
    socket.once('data', (first: Buffer) => {
      socket.pause();
      if (first[0] === 0x16) return passThrough(socket, dst, first, 'passthrough-tls');
      routes.count('matched');
      socket.unshift(first);
      served.accept(socket);
      socket.resume();
    });
  });
  // Served connections drain with their upstream's or listener's service; passed-through ones get drainMs.
  return bind(server, addr, async (drainMs) => {
    const deadline = setTimeout(() => {
      for (const s of sockets) s.destroy();
    }, drainMs);
    deadline.unref();
    await Promise.all([...sockets].map((s) => (s.destroyed ? undefined : new Promise((resolve) => s.once('close', resolve)))));
    clearTimeout(deadline);
  });
}
