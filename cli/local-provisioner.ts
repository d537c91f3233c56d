/** `ballast local-provisioner`: the local cluster's volume provisioner (started by `ballast cluster up`). */
import { KubeConfig } from '@kubernetes/client-node';
import { LocalProvisioner } from '../cluster/provisioner.ts';
import { realClock } from '../lib/clock.ts';
import { f, loadConfig, renderFlags } from '../lib/config.ts';
import { Lifecycle } from '../lib/lifecycle.ts';
import { createLogger } from '../lib/log.ts';
import type { Command } from './command.ts';

const flags = {
  kubeconfig: f.string("kubeconfig with the provisioner's credentials (it creates PersistentVolumes)", { required: true }),
  root: f.string('the directory volumes are made in', { required: true }),
  logLevel: f.oneOf(['trace', 'debug', 'info', 'warn', 'error'], 'log level', { default: 'info', env: 'BALLAST_LOG_LEVEL' }),
};

export const localProvisionerCommand: Command = {
  name: 'local-provisioner',
  summary:
    "the local cluster's volume provisioner: local PersistentVolumes for claims of the default class (started by `ballast cluster up`)",
  async run(args, io) {
    const { values: v, help } = loadConfig(flags, { argv: args, env: io.env, envPrefix: 'BALLAST_PROVISIONER' });
    if (help) {
      io.out(`Usage: ballast local-provisioner [flags]\n\nFlags:\n${renderFlags(flags, 'BALLAST_PROVISIONER')}\n`);
      return 0;
    }
    const log = createLogger({ level: v.logLevel, env: io.env, base: { program: 'local-provisioner' } });
    const kc = new KubeConfig();
    kc.loadFromFile(v.kubeconfig);
    const provisioner = new LocalProvisioner({ kubeconfig: kc, root: v.root, clock: realClock, log });
    const lc = new Lifecycle({ log }).add({ name: 'provisioner', start: () => provisioner.start(), stop: () => provisioner.stop() });
    const done = new Promise<number>((resolve) => lc.handleSignals(resolve));
    await lc.start();
    log.info({ root: v.root }, 'provisioner started');
    return done;
  },
};
