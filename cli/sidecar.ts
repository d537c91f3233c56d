/** `ballast sidecar`: the resilience proxy beside an application container. */
import { realClock } from '../lib/clock.ts';
import { f, loadConfig, renderFlags } from '../lib/config.ts';
import { Lifecycle } from '../lib/lifecycle.ts';
import { startTelemetry, telemetryComponent } from '../lib/otel.ts';
import { createLogger } from '../lib/log.ts';
import { processMetrics } from '../lib/metrics.ts';
import { systemRandom } from '../lib/random.ts';
import { loadConfigFile, resolveConfig } from '../sidecar/config.ts';
import { Sidecar } from '../sidecar/sidecar.ts';
import type { Command } from './command.ts';

const flags = {
  config: f.string(
    'path to the sidecar configuration (YAML), watched and reloaded when it changes; empty: none (flags and discovery only, as when injected)',
    { default: '/etc/ballast/sidecar.yaml' },
  ),
  discoveryAddress: f.string("host:port of the operator's discovery service (overrides the file's discovery.address)", { default: '' }),
  proxy: f.string("host:port of the HTTP proxy listener (overrides the file's proxy.listen)", { default: '' }),
  admin: f.string("host:port of the admin endpoint (overrides the file's admin)", { default: '' }),
  captureOutbound: f.string(
    "host:port where interception redirects the pod's outbound TCP (overrides the file's capture.outbound; the injector sets 127.0.0.1:15001)",
    { default: '' },
  ),
  captureInbound: f.string(
    "host:port where interception redirects the pod's inbound TCP (overrides the file's capture.inbound; the injector sets 0.0.0.0:15006)",
    { default: '' },
  ),
  identityTokenFile: f.string(
    "the pod's projected ServiceAccount token (audience ballast.dev/mesh) that proves its identity to the operator for a mesh certificate (overrides the file's identity.tokenFile); empty: none",
    { default: '' },
  ),
  discoveryTrustBundle: f.string(
    "PEM of the mesh's trust anchors: the discovery stream is TLS, the operator's certificate checked against them (the injector sets BALLAST_SIDECAR_DISCOVERY_TRUST_BUNDLE); empty: plaintext",
    { default: '' },
  ),
  discoveryServerName: f.string("the name the operator's certificate must carry (empty: the discovery address' host)", { default: '' }),
  watch: f.bool('reload the configuration file when it changes', { default: true }),
  logLevel: f.oneOf(['trace', 'debug', 'info', 'warn', 'error'], 'log level', { default: 'info', env: 'BALLAST_LOG_LEVEL' }),
};

export const sidecarCommand: Command = {
  name: 'sidecar',
  summary:
    'run the resilience proxy: timeouts, retries with budgets, breakers, bulkheads, shedding, rate limits, balancing, ejection, hedging',
  async run(args, io) {
    const { values: v, help } = loadConfig(flags, { argv: args, env: io.env, envPrefix: 'BALLAST_SIDECAR' });
    if (help) {
      io.out(
        `Usage: ballast sidecar [flags]\n\nThe configuration file format is in docs/sidecar.md.\n\nFlags:\n${renderFlags(flags, 'BALLAST_SIDECAR')}\n`,
      );
      return 0;
    }
    const log = createLogger({ level: v.logLevel, env: io.env, base: { program: 'sidecar' } });
    // Flags win over the file, on every reload too.
    const adjust = (doc: Record<string, unknown>): Record<string, unknown> => ({
      ...doc,
      ...(v.admin ? { admin: v.admin } : {}),
      ...(v.proxy ? { proxy: { ...(doc['proxy'] as object | undefined), listen: v.proxy } } : {}),
      ...(v.captureOutbound || v.captureInbound
        ? {
            capture: {
              ...(doc['capture'] as object | undefined),
              ...(v.captureOutbound ? { outbound: v.captureOutbound } : {}),
              ...(v.captureInbound ? { inbound: v.captureInbound } : {}),
            },
          }
        : {}),
      ...(v.discoveryAddress || v.discoveryTrustBundle || v.discoveryServerName
        ? {
            discovery: {
              ...(doc['discovery'] as object | undefined),
              ...(v.discoveryAddress ? { address: v.discoveryAddress } : {}),
              ...(v.discoveryTrustBundle ? { trustBundle: v.discoveryTrustBundle } : {}),
              ...(v.discoveryServerName ? { serverName: v.discoveryServerName } : {}),
            },
          }
        : {}),
      ...(v.identityTokenFile ? { identity: { ...(doc['identity'] as object | undefined), tokenFile: v.identityTokenFile } } : {}),
    });
    const config = v.config ? loadConfigFile(v.config, adjust) : resolveConfig(adjust({}), 'flags');
    const telemetry = await startTelemetry('sidecar', io.env);
    const sidecar = new Sidecar(config, {
      clock: realClock,
      random: systemRandom,
      log,
      metrics: processMetrics(),
      ...(telemetry ? { telemetry } : {}),
    });
    const lc = new Lifecycle({ log }).add(telemetryComponent(telemetry)).add({
      name: 'sidecar',
      start: async () => {
        await sidecar.start();
        if (v.watch && v.config) sidecar.watchFile(v.config, adjust);
        sidecar.startDiscovery(
          config.discovery.node || `${io.env['POD_NAMESPACE'] ?? 'default'}/${io.env['POD_NAME'] ?? io.env['HOSTNAME'] ?? 'sidecar'}`,
        );
      },
      stop: () => sidecar.stop(),
    });
    const done = new Promise<number>((resolve) => lc.handleSignals(resolve));
    await lc.start();
    return done;
  },
};
