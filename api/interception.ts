/**
 * Transparent interception (pure): the iptables rules `ballast mesh-init` installs in a pod's
 * network namespace so the application needs no HTTP_PROXY and no local ports. Outbound TCP from
 * the pod goes to the sidecar's outbound capture port, inbound TCP to the pod's ports to its
 * inbound capture port; the sidecar reads where each connection was going (SO_ORIGINAL_DST).
 * Excluded: the sidecar's own traffic (by its uid), loopback, the admin port, and the ports and
 * CIDRs the pod names. Shared by the injector (which writes the flags), the init command (which
 * applies the rules) and the sidecar (which listens on the capture ports).
 *
 * The rules are one `iptables-restore` input for the pod's nat table: applied atomically, and
 * replacing the table (nothing else writes the nat table of a pod's own namespace; the CNI's
 * port mappings live in the node's), so a second run (a restarted init container) leaves the
 * same rules, not duplicates.
 */
import { isIP } from 'node:net';

/** The uid the sidecar runs as when it intercepts: its own connections are not captured again. */
export const sidecarUid = 15532;
/** Where redirected outbound connections arrive (loopback: REDIRECT of local traffic goes to 127.0.0.1). */
export const outboundCapturePort = 15001;
/** Where redirected inbound connections arrive. */
export const inboundCapturePort = 15006;

/** Pod annotations that change interception for one pod. */
export const interceptionAnnotations = {
  /** "true" / "false": intercept this pod's traffic (default: the operator's --interception). */
  enabled: 'ballast.dev/interception',
  /** Comma-separated ports whose outbound connections go out directly. */
  excludeOutboundPorts: 'ballast.dev/exclude-outbound-ports',
  /** Comma-separated CIDRs whose outbound connections go out directly. */
  excludeOutboundCidrs: 'ballast.dev/exclude-outbound-cidrs',
  /** Comma-separated ports whose inbound connections reach the application directly. */
  excludeInboundPorts: 'ballast.dev/exclude-inbound-ports',
} as const;

export interface InterceptionSpec {
  proxyUid: number;
  outboundPort: number;
  inboundPort: number;
  /** The sidecar's admin port (probes and scrapes reach it directly). */
  adminPort: number;
  excludeOutboundPorts: number[];
  excludeOutboundCidrs: string[];
  excludeInboundPorts: number[];
}

/** Ports from a comma-separated list, or the problem with it. */
export function parsePorts(text: string, what: string): { ports: number[]; problem?: string } {
  const ports: number[] = [];
  for (const raw of text.split(',').map((s) => s.trim())) {
    if (raw === '') continue;
    const n = Number(raw);
    if (!/^\d+$/.test(raw) || n < 1 || n > 65535)
      return { ports, problem: `${what}: "${raw}" is not a port (1-65535); write ports separated by commas, e.g. 5432,6379` };
    if (!ports.includes(n)) ports.push(n);
  }
  return { ports };
}

/** CIDRs from a comma-separated list (a bare address is a /32 or /128), or the problem with it. */
export function parseCidrs(text: string, what: string): { cidrs: string[]; problem?: string } {
  const cidrs: string[] = [];
  for (const raw of text.split(',').map((s) => s.trim())) {
    if (raw === '') continue;
    const [addr = '', bits, extra] = raw.split('/');
    const family = isIP(addr);
    const max = family === 6 ? 128 : 32;
    const n = bits === undefined ? max : Number(bits);
    if (family === 0 || extra !== undefined || (bits !== undefined && !/^\d+$/.test(bits)) || n > max)
      return { cidrs, problem: `${what}: "${raw}" is not an address or CIDR; write e.g. 10.0.0.0/8,192.168.1.7` };
    cidrs.push(`${addr}/${n}`);
  }
  return { cidrs };
}

/** The problems with a spec (empty: fine). */
export function interceptionProblems(s: InterceptionSpec): string[] {
  const out: string[] = [];
  const port = (n: number, what: string): void => {
    if (!Number.isInteger(n) || n < 1 || n > 65535) out.push(`${what} ${n} is not a port (1-65535)`);
  };
  port(s.outboundPort, 'the outbound capture port');
  port(s.inboundPort, 'the inbound capture port');
  port(s.adminPort, 'the admin port');
  if (s.outboundPort === s.inboundPort) out.push(`the outbound and inbound capture ports are both ${s.outboundPort}; they must differ`);
  if (!Number.isInteger(s.proxyUid) || s.proxyUid < 1 || s.proxyUid > 2 ** 31 - 1)
    out.push(
      `the sidecar's uid ${s.proxyUid} is not a non-root uid (1-2147483647): its own traffic must be told apart from the application's`,
    );
  for (const p of [...s.excludeInboundPorts, ...s.excludeOutboundPorts]) port(p, 'excluded port');
  for (const c of s.excludeOutboundCidrs) if (parseCidrs(c, 'excluded CIDR').problem) out.push(`excluded CIDR ${c} is not a CIDR`);
  return out;
}

/**
 * The `iptables-restore` input for one address family (4 or 6). CIDRs of the other family are
 * left out. The chains are Ballast's own; the built-in chains jump to them once.
 */
export function interceptionRules(s: InterceptionSpec, family: 4 | 6): string {
  const loopback = family === 4 ? '127.0.0.1/32' : '::1/128';
  const cidrs = s.excludeOutboundCidrs.filter((c) => (isIP(c.split('/')[0] ?? '') === 6) === (family === 6));
  const lines = [
    '*nat',
    ':BALLAST_INBOUND - [0:0]',
    ':BALLAST_IN_REDIRECT - [0:0]',
    ':BALLAST_OUTPUT - [0:0]',
    ':BALLAST_REDIRECT - [0:0]',
    `-A BALLAST_IN_REDIRECT -p tcp -j REDIRECT --to-ports ${s.inboundPort}`,
    `-A BALLAST_REDIRECT -p tcp -j REDIRECT --to-ports ${s.outboundPort}`,
    // Inbound: every TCP port of the pod but the sidecar's own and the excluded ones.
    ...[s.adminPort, s.inboundPort, s.outboundPort, ...s.excludeInboundPorts].map(
      (p) => `-A BALLAST_INBOUND -p tcp --dport ${p} -j RETURN`,
    ),
    '-A BALLAST_INBOUND -p tcp -j BALLAST_IN_REDIRECT',
    // Outbound: the sidecar's own connections (to endpoints, to the app, to the operator) go out as they are.
    `-A BALLAST_OUTPUT -m owner --uid-owner ${s.proxyUid} -j RETURN`,
    // The application calling its own pod over loopback.
    `-A BALLAST_OUTPUT -d ${loopback} -j RETURN`,
    ...s.excludeOutboundPorts.map((p) => `-A BALLAST_OUTPUT -p tcp --dport ${p} -j RETURN`),
    ...cidrs.map((c) => `-A BALLAST_OUTPUT -d ${c} -j RETURN`),
    '-A BALLAST_OUTPUT -p tcp -j BALLAST_REDIRECT',
    '-A PREROUTING -p tcp -j BALLAST_INBOUND',
    '-A OUTPUT -p tcp -j BALLAST_OUTPUT',
    'COMMIT',
    '',
  ];
  return lines.join('\n');
}
