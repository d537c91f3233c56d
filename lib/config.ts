/**
 * Typed configuration from flags, environment and an optional YAML file, validated once at
 * start-up. A program declares a schema of fields; {@link loadConfig} returns typed values or
 * throws one {@link ConfigError} listing every problem, each naming the field, the value it got
 * and what is allowed. Precedence: flag > environment > config file > default.
 */
import { readFileSync } from 'node:fs';
import { parseYaml } from './yaml.ts';
import { BallastError } from './errors.ts';

/** Where a value came from; part of every error message. */
export type Source = 'flag' | 'environment' | 'config file' | 'default';

/** One field: how to read it from text (flags, env) or YAML, and its help line. */
export interface Field<T> {
  readonly kind: string;
  readonly help: string;
  readonly default: T | undefined;
  readonly required: boolean;
  /** Environment variable name override; `false` to never read the environment. */
  readonly env?: string | false;
  /** For booleans: a bare `--flag` means true and takes no value. */
  readonly isSwitch?: boolean;
  /** Returns the value or a description of what is allowed. */
  parse(raw: unknown): { ok: true; value: T } | { ok: false; allowed: string };
}

export type Schema = Record<string, Field<unknown>>;
/** Typed values of a schema. A field with neither default nor `required` reads as undefined when unset: give such fields a default. */
export type Values<S extends Schema> = { [K in keyof S]: S[K] extends Field<infer T> ? T : never };

interface FieldOptions<T> {
  default?: T;
  required?: boolean;
  env?: string | false;
}

function field<T>(kind: string, help: string, o: FieldOptions<T>, parse: Field<T>['parse'], isSwitch = false): Field<T> {
  const f: Field<T> = { kind, help, default: o.default, required: o.required ?? false, isSwitch, parse };
  return o.env === undefined ? f : { ...f, env: o.env };
}

const ok = <T>(value: T) => ({ ok: true as const, value });
const bad = (allowed: string) => ({ ok: false as const, allowed });

function parseInteger(raw: unknown): number | undefined {
  if (typeof raw === 'number' && Number.isSafeInteger(raw)) return raw;
  if (typeof raw === 'string' && /^-?\d+$/.test(raw.trim())) {
    const n = Number(raw.trim());
    return Number.isSafeInteger(n) ? n : undefined;
  }
  return undefined;
}

const durationUnits: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const byteUnits: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  kib: 1024,
  m: 1e6,
  mb: 1e6,
  mib: 1024 ** 2,
  g: 1e9,
  gb: 1e9,
  gib: 1024 ** 3,
};

/** Field constructors. */
export const f = {
  string: (help: string, o: FieldOptions<string> & { pattern?: RegExp; patternHelp?: string } = {}) =>
    field<string>('string', help, o, (raw) => {
      if (typeof raw !== 'string' && typeof raw !== 'number') return bad('a string');
      const s = String(raw);
      if (o.pattern && !o.pattern.test(s)) return bad(o.patternHelp ?? `a string matching ${o.pattern}`);
      return ok(s);
    }),
  int: (help: string, o: FieldOptions<number> & { min?: number; max?: number } = {}) =>
    field<number>('int', help, o, (raw) => {
      const n = parseInteger(raw);
      const range = `an integer${o.min !== undefined ? ` >= ${o.min}` : ''}${o.max !== undefined ? ` and <= ${o.max}` : ''}`;
      if (n === undefined || (o.min !== undefined && n < o.min) || (o.max !== undefined && n > o.max)) return bad(range);
      return ok(n);
    }),
  bool: (help: string, o: FieldOptions<boolean> = {}) =>
    field<boolean>(
      'bool',
      help,
      { default: false, ...o },
      (raw) => {
        if (raw === true || raw === 'true' || raw === '1') return ok(true);
        if (raw === false || raw === 'false' || raw === '0') return ok(false);
        return bad('true or false');
      },
      true,
    ),
  /** Milliseconds; a bare number is milliseconds (as etcd's interval flags), or 250ms, 2s, 1m, 1h. */
  duration: (help: string, o: FieldOptions<number> & { min?: number } = {}) =>
    field<number>('duration', help, o, (raw) => {
      const m =
        typeof raw === 'number'
          ? [String(raw), String(raw), '']
          : typeof raw === 'string'
            ? /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(raw.trim())
            : null;
      const ms = m ? Number(m[1]) * (durationUnits[m[2] ?? 'ms'] ?? 1) : NaN;
      if (!Number.isFinite(ms) || (o.min !== undefined && ms < o.min))
        return bad(
          `a duration${o.min !== undefined ? ` of at least ${o.min}ms` : ''}: milliseconds (100) or with a unit (250ms, 2s, 1m, 1h)`,
        );
      return ok(Math.round(ms));
    }),
  /** Bytes; a bare number or with a unit (1.5MiB, 8GB). */
  bytes: (help: string, o: FieldOptions<number> & { min?: number } = {}) =>
    field<number>('bytes', help, o, (raw) => {
      const m =
        typeof raw === 'number'
          ? [String(raw), String(raw), '']
          : typeof raw === 'string'
            ? /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/.exec(raw.trim())
            : null;
      const unit = m ? byteUnits[(m[2] ?? '').toLowerCase()] : undefined;
      const n = m && unit !== undefined ? Math.round(Number(m[1]) * unit) : NaN;
      if (!Number.isFinite(n) || (o.min !== undefined && n < o.min))
        return bad(`a size in bytes${o.min !== undefined ? ` of at least ${o.min}` : ''}: 1048576, 1.5MiB, 8GB`);
      return ok(n);
    }),
  oneOf: <const V extends string>(values: readonly V[], help: string, o: FieldOptions<V> = {}) =>
    field<V>('enum', help, o, (raw) => ((values as readonly unknown[]).includes(raw) ? ok(raw as V) : bad(`one of ${values.join(', ')}`))),
  /** Comma-separated in flags and env, a YAML list or comma-separated string in the file. */
  list: (help: string, o: FieldOptions<string[]> = {}) =>
    field<string[]>('list', help, o, (raw) => {
      if (Array.isArray(raw) && raw.every((x) => typeof x === 'string')) return ok(raw as string[]);
      if (typeof raw === 'string')
        return ok(
          raw
            .split(',')
            .map((s) => s.trim())
            .filter((s) => s !== ''),
        );
      return bad('a comma-separated list');
    }),
  /** Comma-separated URLs with the given schemes. */
  urls: (help: string, o: FieldOptions<URL[]> & { schemes?: string[] } = {}) =>
    field<URL[]>('urls', help, o, (raw) => {
      const schemes = o.schemes ?? ['http', 'https'];
      const allowed = `comma-separated URLs with scheme ${schemes.join(' or ')}, like ${schemes[0]}://127.0.0.1:2379`;
      const items = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(',') : null;
      if (!items) return bad(allowed);
      const out: URL[] = [];
      for (const item of items) {
        if (typeof item !== 'string' || !URL.canParse(item.trim())) return bad(allowed);
        const u = new URL(item.trim());
        if (!schemes.includes(u.protocol.slice(0, -1)) || u.hostname === '') return bad(allowed);
        out.push(u);
      }
      return ok(out);
    }),
};

/** One problem with one field. */
export interface ConfigProblem {
  field: string;
  value: unknown;
  allowed: string;
  source: Source | 'command line';
}

/** Everything wrong with a configuration, listed at once so a user fixes it in one go. */
export class ConfigError extends BallastError {
  readonly problems: readonly ConfigProblem[];
  constructor(problems: ConfigProblem[], code = 'BALLAST_ERR_CONFIG_INVALID') {
    super(code, problems.map(formatProblem).join('\n'));
    this.problems = problems;
  }
}

function formatProblem(p: ConfigProblem): string {
  const shown = p.value === undefined ? 'nothing' : JSON.stringify(p.value instanceof Array ? p.value.map(String) : p.value);
  return `${p.field}: got ${shown} (from ${p.source}); expected ${p.allowed}`;
}

/** `heartbeatInterval` → `heartbeat-interval`. */
export function flagName(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

function envName(prefix: string, key: string): string {
  return `${prefix}_${flagName(key).replace(/-/g, '_').toUpperCase()}`;
}

export interface LoadOptions {
  argv: readonly string[];
  env?: Readonly<Record<string, string | undefined>>;
  /** Environment variable prefix, e.g. `ETCD` reads `ETCD_HEARTBEAT_INTERVAL`. */
  envPrefix: string;
  /** Accept `--config-file PATH` (YAML with flag names as keys). */
  configFile?: boolean;
  /** Cross-field rules; each returns problems. */
  rules?: ReadonlyArray<(values: Record<string, unknown>) => ConfigProblem[]>;
  /** Accept positional arguments (otherwise they are an error). */
  positionals?: boolean;
}

export interface Loaded<S extends Schema> {
  values: Values<S>;
  sources: Record<keyof S, Source>;
  positionals: string[];
  help: boolean;
}

/** Parse and validate; throws ConfigError naming every bad field. */
export function loadConfig<S extends Schema>(schema: S, o: LoadOptions): Loaded<S> {
  const byFlag = new Map(Object.keys(schema).map((k) => [flagName(k), k]));
  const problems: ConfigProblem[] = [];
  const fromFlags = new Map<string, string | true>();
  const positionals: string[] = [];
  let configPath: string | undefined;
  let help = false;
  const argv = [...o.argv];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (arg === '-h' || arg === '--help') {
      help = true;
      continue;
    }
    if (!arg.startsWith('--')) {
      if (o.positionals) positionals.push(arg);
      else
        problems.push({
          field: arg,
          value: arg,
          allowed: 'flags only (--name=value); positional arguments are not taken here',
          source: 'command line',
        });
      continue;
    }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    let value: string | true | undefined = eq < 0 ? undefined : arg.slice(eq + 1);
    if (name === 'config-file' && o.configFile) {
      configPath = value === undefined ? argv[++i] : value;
      continue;
    }
    const key = byFlag.get(name);
    if (key === undefined) {
      const near = closest(name, [...byFlag.keys()]);
      problems.push({
        field: `--${name}`,
        value: arg,
        allowed: `a known flag${near ? ` (did you mean --${near}?)` : ''}; see --help`,
        source: 'command line',
      });
      continue;
    }
    const spec = schema[key] as Field<unknown>;
    if (value === undefined) {
      const next = argv[i + 1];
      if (spec.isSwitch && (next === undefined || !/^(true|false)$/.test(next))) value = true;
      else if (next === undefined || next.startsWith('--')) {
        problems.push({ field: `--${name}`, value: undefined, allowed: `a value (--${name}=VALUE): ${spec.help}`, source: 'flag' });
        continue;
      } else value = argv[++i] as string;
    }
    if (fromFlags.has(key)) {
      problems.push({ field: `--${name}`, value, allowed: 'the flag given once', source: 'flag' });
      continue;
    }
    fromFlags.set(key, value);
  }

  const commandLineProblems = problems.length;
  const fileValues = configPath === undefined ? {} : readConfigFile(configPath, byFlag);
  const env = o.env ?? {};
  const values: Record<string, unknown> = {};
  const sources: Record<string, Source> = {};
  for (const [key, spec] of Object.entries(schema)) {
    const envKey = spec.env === false ? undefined : (spec.env ?? envName(o.envPrefix, key));
    let raw: unknown;
    let source: Source;
    if (fromFlags.has(key)) [raw, source] = [fromFlags.get(key), 'flag'];
    else if (envKey !== undefined && env[envKey] !== undefined) [raw, source] = [env[envKey], 'environment'];
    else if (key in fileValues) [raw, source] = [fileValues[key], 'config file'];
    else [raw, source] = [undefined, 'default'];
    const label = source === 'environment' ? `${envKey}` : `--${flagName(key)}`;
    if (raw === undefined) {
      if (spec.required && !help) problems.push({ field: label, value: undefined, allowed: `a value: ${spec.help}`, source });
      values[key] = spec.default;
    } else {
      const r = spec.parse(raw);
      if (r.ok) values[key] = r.value;
      else problems.push({ field: label, value: raw, allowed: r.allowed, source });
    }
    sources[key] = source;
  }
  // Cross-field rules need every value parsed; an unknown flag elsewhere does not stop them.
  if (problems.length === commandLineProblems) for (const rule of o.rules ?? []) problems.push(...rule(values));
  if (problems.length > 0 && !help) throw new ConfigError(problems);
  return { values: values as Values<S>, sources: sources as Record<keyof S, Source>, positionals, help };
}

function readConfigFile(path: string, byFlag: Map<string, string>): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new BallastError(
      'BALLAST_ERR_CONFIG_FILE',
      `--config-file ${path}: cannot read it (${(cause as Error).message}); give a readable YAML file`,
      { cause },
    );
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (cause) {
    throw new BallastError(
      'BALLAST_ERR_CONFIG_FILE',
      `--config-file ${path}: not valid YAML (${(cause as Error).message.split('\n')[0]})`,
      { cause },
    );
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc))
    throw new BallastError(
      'BALLAST_ERR_CONFIG_FILE',
      `--config-file ${path}: expected a mapping of flag names to values (heartbeat-interval: 100)`,
    );
  const out: Record<string, unknown> = {};
  const problems: ConfigProblem[] = [];
  for (const [name, value] of Object.entries(doc)) {
    const key = byFlag.get(name) ?? (byFlag.has(flagName(name)) ? byFlag.get(flagName(name)) : undefined);
    if (key === undefined) problems.push({ field: name, value, allowed: `a known setting (${path}); see --help`, source: 'config file' });
    else out[key] = value;
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return out;
}

function closest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestDist = 3;
  for (const c of candidates) {
    const d = editDistance(word, c);
    if (d < bestDist) [best, bestDist] = [c, d];
  }
  return best;
}

/** Levenshtein distance (for did-you-mean suggestions). */
export function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j] as number;
      row[j] = Math.min(cur + 1, (row[j - 1] as number) + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length] as number;
}

/** Render `--flag` help lines for a schema, defaults shown. */
export function renderFlags(schema: Schema, envPrefix: string): string {
  const lines = Object.entries(schema).map(([key, spec]) => {
    const def =
      spec.default === undefined ? '' : ` (default ${Array.isArray(spec.default) ? spec.default.join(',') || '""' : String(spec.default)})`;
    const env = spec.env === false ? '' : ` [$${spec.env ?? envName(envPrefix, key)}]`;
    return `  --${flagName(key).padEnd(30)} ${spec.help}${def}${spec.required ? ' (required)' : ''}${env}`;
  });
  return lines.join('\n');
}
