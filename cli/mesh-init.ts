/**
 * `ballast mesh-init`: the injected init container of an intercepting pod. It installs the
 * iptables rules of api/interception.ts in the pod's network namespace (it needs NET_ADMIN and
 * NET_RAW, and runs as root; nothing else of the pod does) and exits. iptables-restore applies
 * the rules in one transaction: a pod is either fully intercepted or not started. IPv4 only.
 */
import { spawnSync } from 'node:child_process';
import { f, loadConfig, renderFlags } from '../lib/config.ts';
import {
  type InterceptionSpec,
  inboundCapturePort,
  interceptionProblems,
  interceptionRules,
  outboundCapturePort,
  parseCidrs,
  parsePorts,
  sidecarUid,
} from '../api/interception.ts';
import { type Command, UsageError } from './command.ts';

const flags = {
  proxyUid: f.int("the sidecar's uid: its own connections are not intercepted", { default: sidecarUid, min: 1 }),
  outboundPort: f.int('where outbound TCP is redirected (the sidecar listens on 127.0.0.1 there)', {
    default: outboundCapturePort,
    min: 1,
    max: 65535,
  }),
  inboundPort: f.int('where inbound TCP is redirected', { default: inboundCapturePort, min: 1, max: 65535 }),
  adminPort: f.int("the sidecar's admin port (probes and scrapes reach it directly)", { default: 15020, min: 1, max: 65535 }),
  excludeOutboundPorts: f.string('comma-separated ports whose outbound connections are not intercepted', { default: '' }),
  excludeOutboundCidrs: f.string('comma-separated CIDRs whose outbound connections are not intercepted', { default: '' }),
  excludeInboundPorts: f.string('comma-separated ports whose inbound connections are not intercepted', { default: '' }),
  iptables: f.string('directory of iptables-restore', { default: '/usr/sbin' }),
  dryRun: f.bool('print the rules instead of applying them', { default: false }),
};

export const meshInitCommand: Command = {
  name: 'mesh-init',
  summary: "install a pod's transparent-interception rules (iptables, in the pod's network namespace): the injected init container",
  async run(args, io) {
    const { values: v, help } = loadConfig(flags, { argv: args, env: io.env, envPrefix: 'BALLAST_MESH_INIT' });
    if (help) {
      io.out(
        `Usage: ballast mesh-init [flags]\n\nThe rules are described in docs/sidecar.md (Transparent interception).\n\nFlags:\n${renderFlags(flags, 'BALLAST_MESH_INIT')}\n`,
      );
      return 0;
    }
    const outPorts = parsePorts(v.excludeOutboundPorts, '--exclude-outbound-ports');
    const inPorts = parsePorts(v.excludeInboundPorts, '--exclude-inbound-ports');
    const cidrs = parseCidrs(v.excludeOutboundCidrs, '--exclude-outbound-cidrs');
    const problem = outPorts.problem ?? inPorts.problem ?? cidrs.problem;
    if (problem) throw new UsageError(problem, 'mesh-init');
    const spec: InterceptionSpec = {
      proxyUid: v.proxyUid,
      outboundPort: v.outboundPort,
      inboundPort: v.inboundPort,
      adminPort: v.adminPort,
      excludeOutboundPorts: outPorts.ports,
      excludeOutboundCidrs: cidrs.cidrs,
      excludeInboundPorts: inPorts.ports,
    };
    const problems = interceptionProblems(spec);
    if (problems.length > 0) throw new UsageError(problems.join('; '), 'mesh-init');
    // IPv4 only: the sidecar's capture listeners are IPv4 (127.0.0.1:15001, 0.0.0.0:15006), so
    // IPv6 rules would send a dual-stack pod's IPv6 connections where nothing listens. IPv6
    // traffic goes out and comes in directly, as without interception.
    const rules = interceptionRules(spec, 4);
    if (v.dryRun) {
      io.out(`# IPv4\n${rules}`);
      return 0;
    }
    const bin = `${v.iptables}/iptables-restore`;
    const r = spawnSync(bin, [], { input: rules, encoding: 'utf8' });
    if (r.status !== 0) {
      const why = (r.error?.message ?? r.stderr ?? '').trim();
      io.err(
        `mesh-init: ${bin} failed: ${why}\n` +
          'mesh-init needs NET_ADMIN and NET_RAW in the pod (and runs as root). Where the cluster does not allow them, ' +
          'turn interception off (ballast.dev/interception: "false", or the chart\'s injection.interception.enabled=false): apps then reach the sidecar through HTTP_PROXY.\n',
      );
      return 1;
    }
    io.out(
      `mesh-init: IPv4 interception installed (outbound -> :${spec.outboundPort}, inbound -> :${spec.inboundPort}, uid ${spec.proxyUid} excluded)\n`,
    );
    return 0;
  },
};
