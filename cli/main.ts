/**
 * `ballast`: dispatch to a subcommand. Unknown subcommands and bad flags print a usage message
 * naming the problem and exit 2; `--help` lists only commands that work.
 */
import { isBallastError } from '../lib/errors.ts';
import { type Command, type Io, UsageError } from './command.ts';
import { commands as defaultCommands } from './commands.ts';

export const ExitUsage = 2;

export function usage(commands: readonly Command[]): string {
  const width = Math.max(...commands.map((c) => c.name.length), 4) + 2;
  return [
    'ballast: replicated stores on Kubernetes',
    '',
    'Usage: ballast <command> [flags]',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}${c.summary}`),
    `  ${'help'.padEnd(width)}show this help, or a command's: ballast help <command>`,
    '',
    "Run 'ballast <command> --help' for a command's flags.",
    '',
  ].join('\n');
}

/** Run the CLI; resolves to the exit code. */
export async function main(argv: readonly string[], io: Io, commands: readonly Command[] = defaultCommands): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined || first === '--help' || first === '-h' || (first === 'help' && rest.length === 0)) {
    // No command at all is a usage error: the help goes to stderr and the exit code is 2.
    (first === undefined ? io.err : io.out)(usage(commands));
    return first === undefined ? ExitUsage : 0;
  }
  if (first === '--version')
    return run(
      commands.find((c) => c.name === 'version'),
      [],
      io,
    );
  if (first === 'help')
    return run(
      commands.find((c) => c.name === rest[0]),
      ['--help'],
      io,
      rest[0],
    );
  if (first.startsWith('-')) {
    io.err(`ballast: unknown flag ${first} before the command\n\n${usage(commands)}`);
    return ExitUsage;
  }
  return run(
    commands.find((c) => c.name === first),
    rest,
    io,
    first,
  );
}

async function run(cmd: Command | undefined, args: string[], io: Io, name?: string): Promise<number> {
  if (cmd === undefined) {
    io.err(`ballast: unknown command "${name ?? ''}"\n\n${usage(defaultCommands)}`);
    return ExitUsage;
  }
  try {
    return await cmd.run(args, io);
  } catch (err) {
    if (
      err instanceof UsageError ||
      isBallastError(err, 'BALLAST_ERR_USAGE') ||
      isBallastError(err, 'BALLAST_ERR_CONFIG_INVALID') ||
      isBallastError(err, 'BALLAST_ERR_CONFIG_FILE') ||
      isBallastError(err, 'SIDECAR_ERR_CONFIG_INVALID')
    ) {
      io.err(`ballast ${cmd.name}: ${(err as Error).message}\nRun 'ballast ${cmd.name} --help' for usage.\n`);
      return ExitUsage;
    }
    throw err;
  }
}
