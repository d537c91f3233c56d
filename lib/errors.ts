/**
 * Errors that users read. Every failure Ballast reports carries a stable `code` (clients and
 * runbooks match on it), a message that says what was wrong and what to do, and its `cause`.
 * Each program keeps one catalogue of its codes ({@link defineCatalogue}); a test checks that
 * every code is unique across programs and documented in docs/errors.md.
 */

const brand = Symbol.for('ballast.error');

/** The base class of every error Ballast raises on purpose. */
export class BallastError extends Error {
  readonly code: string;
  readonly [brand] = true;

  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = 'BallastError';
  }

  /** What logs and API error bodies carry. */
  toJSON(): { code: string; message: string; cause?: string } {
    const cause = this.cause instanceof Error ? this.cause.message : this.cause === undefined ? undefined : String(this.cause);
    return cause === undefined ? { code: this.code, message: this.message } : { code: this.code, message: this.message, cause };
  }
}

/** True for a BallastError (from any copy of this module), optionally with the given code. */
export function isBallastError(e: unknown, code?: string): e is BallastError {
  return (
    typeof e === 'object' &&
    e !== null &&
    (e as Record<symbol, unknown>)[brand] === true &&
    (code === undefined || (e as BallastError).code === code)
  );
}

/** One program's error codes, each with the one-line summary docs/errors.md must carry. */
export interface ErrorCatalogue<C extends string = string> {
  readonly program: string;
  readonly entries: Readonly<Record<C, string>>;
  /** Make an error of a catalogued code. */
  error(code: C, message: string, options?: ErrorOptions): BallastError;
}

/**
 * Declare a program's catalogue. Codes are `PREFIX_ERR_WHAT`, upper snake case; the prefix
 * names the program so that codes never collide across programs.
 */
export function defineCatalogue<const C extends string>(program: string, prefix: string, entries: Record<C, string>): ErrorCatalogue<C> {
  for (const code of Object.keys(entries)) {
    if (!new RegExp(`^${prefix}_ERR_[A-Z0-9_]+$`).test(code)) {
      throw new Error(`error code ${code} in the ${program} catalogue must look like ${prefix}_ERR_SOMETHING`);
    }
  }
  return {
    program,
    entries,
    error: (code, message, options) => new BallastError(code, message, options),
  };
}

/** Codes shared by every program (configuration and process lifecycle). */
export const libErrors = defineCatalogue('lib', 'BALLAST', {
  BALLAST_ERR_CONFIG_INVALID:
    'A flag, environment variable or config-file value is missing, malformed or out of range; the message names each field, the value and what is allowed.',
  BALLAST_ERR_CONFIG_FILE: 'The --config-file could not be read or is not a YAML mapping.',
  BALLAST_ERR_USAGE: 'The command line could not be understood: unknown command, unknown flag or missing argument.',
  BALLAST_ERR_START_FAILED: 'A component failed to start; components already started were stopped again.',
  BALLAST_ERR_DRAIN_TIMEOUT: 'Graceful shutdown did not finish before the drain deadline; the process exited anyway.',
});

export const catalogue = libErrors;
