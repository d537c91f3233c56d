/** `ballast cluster up|down|status|kubeconfig`: the local Kubernetes control plane. */
import { join } from 'node:path';
import { ControlPlane } from '../cluster/control-plane.ts';
import { f, loadConfig, renderFlags } from '../lib/config.ts';
import { homeDir } from '../lib/paths.ts';
import { type Command, UsageError } from './command.ts';

const flags = {
  stateDir: f.string('where the cluster keeps its certificates, data, logs and kubeconfig', {
    default: join(process.env['XDG_STATE_HOME'] ?? join(homeDir(), '.local', 'state'), 'ballast', 'cluster'),
  }),
  store: f.oneOf(['etcd', 'ballast'], 'what kube-apiserver stores its objects in: etcd 3.5, or a 3-member ballast store', {
    default: 'etcd',
  }),
  apiserverPort: f.int('kube-apiserver HTTPS port', { default: 6443, min: 1, max: 65535 }),
  objectStore: f.bool("also run object storage for backups: SeaweedFS's S3 gateway on the node's address, with a bucket named backups"),
};

const subcommands = ['up', 'down', 'status', 'kubeconfig'] as const;

export const clusterCommand: Command = {
  name: 'cluster',
  summary: 'a local Kubernetes cluster (up, down, status, kubeconfig): control plane and a real node, built from their Go modules',
  async run(args, io) {
    const [sub, ...rest] = args;
    const { values: v, help } = loadConfig(flags, { argv: rest, env: io.env, envPrefix: 'BALLAST_CLUSTER' });
    if (help || sub === '--help' || sub === '-h' || sub === undefined) {
      io.out(`Usage: ballast cluster <${subcommands.join('|')}> [flags]\n\nFlags:\n${renderFlags(flags, 'BALLAST_CLUSTER')}\n`);
      return sub === undefined ? 2 : 0;
    }
    if (!(subcommands as readonly string[]).includes(sub))
      throw new UsageError(`unknown subcommand "${sub}"; use one of ${subcommands.join(', ')}`, 'cluster');
    const cp = new ControlPlane({
      stateDir: v.stateDir,
      store: v.store,
      apiserverPort: v.apiserverPort,
      objectStore: v.objectStore,
      log: (l) => io.out(`${l}\n`),
    });
    switch (sub) {
      case 'up':
        await cp.up();
        return 0;
      case 'down':
        await cp.down();
        return 0;
      case 'kubeconfig':
        io.out(`${cp.kubeconfigPath}\n`);
        return 0;
      default: {
        const st = await cp.status();
        if (st.rows.length === 0) {
          io.out('not running\n');
          return 1;
        }
        for (const r of st.rows)
          io.out(
            `${r.name.padEnd(26)} pid ${String(r.pid).padEnd(8)} ${r.healthy ? 'healthy' : r.running ? 'running, not healthy' : 'not running'}\n`,
          );
        if (st.objectStore)
          io.out(`object store: ${st.objectStore.endpoint}, bucket ${st.objectStore.bucket}, keys in ${st.objectStore.credentialsFile}\n`);
        return st.ok ? 0 : 1;
      }
    }
  },
};
