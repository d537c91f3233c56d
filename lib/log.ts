/**
 * Structured logs with pino. JSON lines by default (what log pipelines want), pretty when
 * standard output is a terminal (what people want). Messages are constant phrases and values
 * are fields; child loggers carry fixed keys. Secret-looking fields never reach the output.
 */
import { pino, type Logger, type DestinationStream, type LevelWithSilent } from 'pino';
import { createRequire } from 'node:module';
import type * as PrettyModule from 'pino-pretty';
import { ConfigError } from './config.ts';

export type { Logger } from 'pino';

/** pino-pretty, loaded only for a terminal: a program logging JSON (every pod) never pays for it. */
function prettyStream(): DestinationStream {
  const { PinoPretty } = createRequire(import.meta.url)('pino-pretty') as typeof PrettyModule;
  return PinoPretty({ colorize: true, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname', sync: true });
}

export const logLevels = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof logLevels)[number];

/**
 * Field paths censored in every log line. pino matches exact paths (`*` is one level), so the
 * common places a secret sits are listed: top level, one level down, and request headers.
 */
export const redactPaths: readonly string[] = (() => {
  const names = [
    'password',
    'passwd',
    'token',
    'secret',
    'authorization',
    'apiKey',
    'api_key',
    'privateKey',
    'private_key',
    'clientKey',
    'cookie',
    'credentials',
    'bearerToken',
  ];
  return names.flatMap((n) => [n, `*.${n}`, `headers.${n}`, `*.headers.${n}`, `req.headers.${n}`]);
})();

/** The keys a child logger may fix, so the same thing is always called the same. */
export interface LogContext {
  component?: string;
  cluster?: string;
  member?: string;
  term?: number;
  upstream?: string;
  controller?: string;
  namespace?: string;
  name?: string;
  peer?: string;
  listener?: string;
}

export interface LogOptions {
  /** Level from a flag; falls back to BALLAST_LOG_LEVEL, then `info`. */
  level?: string | undefined;
  env?: Readonly<Record<string, string | undefined>>;
  /** Force pretty output on or off; default: pretty when stdout is a terminal. */
  pretty?: boolean;
  /** Where lines go (tests pass a stream); default standard output. */
  destination?: DestinationStream;
  /** Fixed fields on every line. */
  base?: LogContext & { program?: string };
}

/** Resolve the level from a flag value or BALLAST_LOG_LEVEL; a bad value is a ConfigError. */
export function resolveLevel(flag: string | undefined, env: Readonly<Record<string, string | undefined>> = process.env): LogLevel {
  const [raw, field] = flag !== undefined ? [flag, '--log-level'] : [env['BALLAST_LOG_LEVEL'], 'BALLAST_LOG_LEVEL'];
  if (raw === undefined || raw === '') return 'info';
  const level = raw.toLowerCase();
  if ((logLevels as readonly string[]).includes(level)) return level as LogLevel;
  throw new ConfigError([
    { field, value: raw, allowed: `one of ${logLevels.join(', ')}`, source: flag !== undefined ? 'flag' : 'environment' },
  ]);
}

/** Make the process's root logger. */
export function createLogger(o: LogOptions = {}): Logger {
  const level: LevelWithSilent = resolveLevel(o.level, o.env ?? process.env);
  const pretty = o.pretty ?? (o.destination === undefined && process.stdout.isTTY === true);
  const destination = o.destination ?? (pretty ? prettyStream() : pino.destination({ sync: false }));
  return pino(
    {
      level,
      base: { ...(o.base ?? {}) },
      redact: { paths: [...redactPaths], censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      serializers: { err: pino.stdSerializers.err },
    },
    destination,
  );
}

/** A child logger whose fixed keys come from {@link LogContext}. */
export function childLogger(parent: Logger, ctx: LogContext): Logger {
  return parent.child(ctx);
}

/** A logger that drops everything: the default in tests and pure code's callers. */
export const silentLogger: Logger = pino({ level: 'silent' });
