/** The build's identity for `ballast version`: package version, commit, Node version. */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface BuildInfo {
  version: string;
  commit: string;
  dirty: boolean;
  builtAt: string | null;
  node: string;
  platform: string;
}

/** The package root: the nearest folder upward holding ballast's package.json. */
export function packageRoot(from: string = dirname(fileURLToPath(import.meta.url))): string {
  for (let dir = from; ; dir = dirname(dir)) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'ballast') return dir;
    if (dirname(dir) === dir) throw new Error(`cannot find ballast's package.json above ${from}`);
  }
}

export function buildInfo(): BuildInfo {
  const root = packageRoot();
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
  const infoPath = join(root, 'dist', 'build-info.json');
  const built = existsSync(infoPath) ? (JSON.parse(readFileSync(infoPath, 'utf8')) as { commit: string; dirty: boolean; builtAt: string }) : undefined;
  return {
    version: pkg.version,
    commit: built?.commit ?? 'unknown',
    dirty: built?.dirty ?? false,
    builtAt: built?.builtAt ?? null,
    node: process.version,
    platform: `${process.platform}/${process.arch}`,
  };
}
