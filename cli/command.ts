/** The shape every `ballast` subcommand has. Subcommands register in cli/commands.ts. */

/** Where a command writes; tests capture it. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
  readonly env: Readonly<Record<string, string | undefined>>;
}

export interface Command {
  readonly name: string;
  /** One line for `ballast --help`. */
  readonly summary: string;
  /** Runs the command; resolves to the process exit code. Long-running commands resolve when stopped. */
  run(args: string[], io: Io): Promise<number>;
}

/** A usage problem: the CLI prints it with the usage hint and exits 2. */
export class UsageError extends Error {
  readonly code = 'BALLAST_ERR_USAGE';
  readonly command: string | undefined;
  constructor(message: string, command?: string) {
    super(message);
    this.name = 'UsageError';
    this.command = command;
  }
}
