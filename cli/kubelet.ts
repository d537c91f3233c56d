/** `ballast kubelet`: the process kubelet (started by `ballast cluster up`). */
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { ProcessKubelet, loadImageMap } from '../cluster/kubelet/kubelet.ts';
import { realClock } from '../lib/clock.ts';
import { f, loadConfig, renderFlags } from '../lib/config.ts';
import { Lifecycle } from '../lib/lifecycle.ts';
import { createLogger } from '../lib/log.ts';
import type { Command } from './command.ts';

const flags = {
  kubeconfig: f.string('kubeconfig with the node\'s credentials (CN system:node:<name>, O system:nodes)', { required: true }),
  provisionerKubeconfig: f.string('kubeconfig for the local volume provisioner (creates PersistentVolumes); empty: no provisioner', { default: '' }),
  nodeName: f.string('the Node to register and run pods for', { default: 'local' }),
  stateDir: f.string('where pod logs and the image map live', { required: true }),
  imageMap: f.string('JSON file mapping images (or prefixes ending in *) to commands; default <state-dir>/images.json', { default: '' }),
  tlsCertFile: f.string('serving certificate of the kubelet API (container logs) on the node address; empty: no kubelet API', { default: '' }),
  tlsPrivateKeyFile: f.string('key of --tls-cert-file', { default: '' }),
  clientCaFile: f.string('CA whose client certificates may call the kubelet API (the apiserver\'s kubelet client)', { default: '' }),
  port: f.int('port of the kubelet API', { default: 10250, min: 1, max: 65535 }),
  podNetwork: f.oneOf(['auto', 'netns', 'loopback'], 'pod networking: a network namespace per pod on a bridge (netns), distinct 127.0.0.x addresses in the host network (loopback, for machines without the privilege to make namespaces), or auto: netns when possible', { default: 'auto' }),
  logLevel: f.oneOf(['trace', 'debug', 'info', 'warn', 'error'], 'log level', { default: 'info', env: 'BALLAST_LOG_LEVEL' }),
};

export const kubeletCommand: Command = {
  name: 'kubelet',
  summary: 'run the pods bound to a node as local processes, each pod in its own network namespace',
  async run(args, io) {
    const { values: v, help } = loadConfig(flags, { argv: args, env: io.env, envPrefix: 'BALLAST_KUBELET' });
    if (help) {
      io.out(`Usage: ballast kubelet [flags]\n\nFlags:\n${renderFlags(flags, 'BALLAST_KUBELET')}\n`);
      return 0;
    }
    const log = createLogger({ level: v.logLevel, env: io.env, base: { program: 'kubelet' } });
    const kc = new KubeConfig();
    kc.loadFromFile(v.kubeconfig);
    let pk: KubeConfig | undefined;
    if (v.provisionerKubeconfig) {
      pk = new KubeConfig();
      pk.loadFromFile(v.provisionerKubeconfig);
    }
    const kubelet = new ProcessKubelet({ kubeconfig: kc, provisionerKubeconfig: pk, nodeName: v.nodeName, stateDir: v.stateDir, imageMap: loadImageMap(v.imageMap || join(v.stateDir, 'images.json')), clock: realClock, log,
      port: v.port, podNetwork: v.podNetwork, tls: v.tlsCertFile ? { cert: v.tlsCertFile, key: v.tlsPrivateKeyFile, ca: v.clientCaFile } : undefined });
    const lc = new Lifecycle({ log }).add({ name: 'kubelet', start: () => kubelet.start(), stop: () => kubelet.stop() });
    const done = new Promise<number>((resolve) => lc.handleSignals(resolve));
    await lc.start();
    log.info({ node: v.nodeName }, 'kubelet started');
    return done;
  },
};
