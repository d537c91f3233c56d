/** `ballast sidecar`: the resilience proxy beside an application container. */
import { realClock } from '../lib/clock.ts';
import { f, loadConfig, renderFlags } from '../lib/config.ts';
import { Lifecycle } from '../lib/lifecycle.ts';
import { createLogger } from '../lib/log.ts';
import { processMetrics } from '../lib/metrics.ts';
import { systemRandom } from '../lib/random.ts';
import { loadConfigFile } from '../sidecar/config.ts';
import { Sidecar } from '../sidecar/sidecar.ts';
import type { Command } from './command.ts';

const flags = {
  config: f.string('path to the sidecar configuration (YAML); watched and reloaded when it changes', { default: '/etc/ballast/sidecar.yaml' }),
  watch: f.bool('reload the configuration file when it changes', { default: true }),
  logLevel: f.oneOf(['trace', 'debug', 'info', 'warn', 'error'], 'log level', { default: 'info', env: 'BALLAST_LOG_LEVEL' }),
};

export const sidecarCommand: Command = {
  name: 'sidecar',
  summary: 'run the resilience proxy: timeouts, retries with budgets, breakers, bulkheads, shedding, rate limits, balancing, ejection, hedging',
  async run(args, io) {
    const { values: v, help } = loadConfig(flags, { argv: args, env: io.env, envPrefix: 'BALLAST_SIDECAR' });
    if (help) {
      io.out(`Usage: ballast sidecar [flags]\n\nThe configuration file format is in docs/sidecar.md.\n\nFlags:\n${renderFlags(flags, 'BALLAST_SIDECAR')}\n`);
      return 0;
    }
    const log = createLogger({ level: v.logLevel, env: io.env, base: { program: 'sidecar' } });
    const config = loadConfigFile(v.config);
    const sidecar = new Sidecar(config, { clock: realClock, random: systemRandom, log, metrics: processMetrics(), env: io.env });
    const lc = new Lifecycle({ log }).add({
      name: 'sidecar',
      start: async () => {
        await sidecar.start();
        if (v.watch) sidecar.watchFile(v.config);
        sidecar.startDiscovery(config.discovery.node || `${io.env['POD_NAMESPACE'] ?? 'default'}/${io.env['POD_NAME'] ?? io.env['HOSTNAME'] ?? 'sidecar'}`);
      },
      stop: () => sidecar.stop(),
    });
    const done = new Promise<number>((resolve) => lc.handleSignals(resolve));
    await lc.start();
    return done;
  },
};
