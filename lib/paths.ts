/** Where Ballast's own files are, whether running from source or from dist/. */
import { existsSync, readFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root: the nearest folder upward holding ballast's package.json. */
export function packageRoot(from: string = dirname(fileURLToPath(import.meta.url))): string {
  for (let dir = from; ; dir = dirname(dir)) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'ballast') return dir;
    if (dirname(dir) === dir) throw new Error(`cannot find ballast's package.json above ${from}`);
  }
}

/**
 * The user's home directory, or the system's temporary directory when there is none: in a
 * container running as an arbitrary uid with no passwd entry and no $HOME, `os.homedir()` throws,
 * and a default computed from it must not stop every command from starting.
 */
export function homeDir(): string {
  if (process.env['HOME']) return process.env['HOME'];
  try {
    return homedir();
  } catch {
    return tmpdir();
  }
}
