/** `ballast version [--json]`. */
import { buildInfo } from './build-info.ts';
import { type Command, UsageError } from './command.ts';

export const versionCommand: Command = {
  name: 'version',
  summary: 'print the version, commit and Node version',
  async run(args, io) {
    if (args.includes('--help') || args.includes('-h')) {
      io.out('Usage: ballast version [--json]\n\nPrints the version, commit and Node version; --json prints one JSON object.\n');
      return 0;
    }
    const unknown = args.filter((a) => a !== '--json');
    if (unknown.length > 0) throw new UsageError(`unknown argument ${unknown[0]}; 'ballast version' takes only --json`, 'version');
    const info = buildInfo();
    if (args.includes('--json')) io.out(`${JSON.stringify(info)}\n`);
    else
      io.out(
        `ballast ${info.version}\ncommit: ${info.commit}${info.dirty ? ' (modified)' : ''}\nnode: ${info.node}\nplatform: ${info.platform}\n`,
      );
    return 0;
  },
};
