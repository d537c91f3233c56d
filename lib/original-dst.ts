/**
 * The destination a connection was sent to before iptables REDIRECTed it to this process
 * (`getsockopt(SO_ORIGINAL_DST)`, what Envoy and linkerd2-proxy read): how transparent
 * interception learns which Service an application called. Node has no binding for it, so libc's
 * getsockopt is called through koffi (a maintained FFI with prebuilt binaries: no compiler in the
 * image). Linux only; loaded on first use, so programs that never intercept never load it.
 */
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';

const SOL_IP = 0;
const SOL_IPV6 = 41;
/** linux/netfilter_ipv4.h SO_ORIGINAL_DST and linux/netfilter_ipv6/ip6_tables.h IP6T_SO_ORIGINAL_DST. */
const SO_ORIGINAL_DST = 80;

type GetSockOpt = (fd: number, level: number, name: number, value: Buffer, len: number[]) => number;
let getsockopt: GetSockOpt | undefined;
let errno: () => number = () => 0;

function load(): GetSockOpt {
  if (getsockopt) return getsockopt;
  if (process.platform !== 'linux') throw new Error('the original destination of a connection (SO_ORIGINAL_DST) exists only on Linux');
  const koffi = createRequire(import.meta.url)('koffi') as {
    load(lib: string): { func(decl: string): GetSockOpt };
    errno(): number;
  };
  getsockopt = koffi.load('libc.so.6').func('int getsockopt(int fd, int level, int name, _Out_ uint8_t *value, _Inout_ uint32_t *len)');
  errno = () => koffi.errno();
  return getsockopt;
}

/** The socket's file descriptor (the libuv handle's), or undefined for a socket that has none. */
function fdOf(socket: Socket): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/**
 * `{host, port}` the connection was addressed to, or undefined when it was not redirected (the
 * kernel then has no record of another destination: a direct connection to the capture port).
 */
export function originalDestination(socket: Socket): { host: string; port: number } | undefined {
  const fd = fdOf(socket);
  if (fd === undefined) return undefined;
  const call = load();
  const v6 = socket.localFamily === 'IPv6' && !(socket.localAddress ?? '').startsWith('::ffff:');
  const buf = Buffer.alloc(28);
  const len = [buf.length];
  if (call(fd, v6 ? SOL_IPV6 : SOL_IP, SO_ORIGINAL_DST, buf, len) !== 0) {
    const e = errno();
    if (e === 2 /* ENOENT: no conntrack entry, not redirected */) return undefined;
    throw new Error(`getsockopt(SO_ORIGINAL_DST) failed with errno ${e}`);
  }
  const port = buf.readUInt16BE(2);
  if (!v6) return { host: `${buf[4]}.${buf[5]}.${buf[6]}.${buf[7]}`, port };
  const groups: string[] = [];
  for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(8 + 2 * i).toString(16));
  // The URL parser writes an IPv6 address in its canonical (compressed) form, as Node reports peers.
  return { host: new URL(`http://[${groups.join(':')}]`).hostname.slice(1, -1), port };
}
