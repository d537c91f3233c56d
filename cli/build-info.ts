/** The build's identity for `ballast version`: package version, commit, Node version. */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../lib/paths.ts';

export interface BuildInfo {
  version: string;
  commit: string;
  dirty: boolean;
  builtAt: string | null;
  node: string;
  platform: string;
}

export function buildInfo(): BuildInfo {
  const root = packageRoot();
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
  const infoPath = join(root, 'dist', 'build-info.json');
  const built = existsSync(infoPath)
    ? (JSON.parse(readFileSync(infoPath, 'utf8')) as { commit: string; dirty: boolean; builtAt: string })
    : undefined;
  return {
    version: pkg.version,
    commit: built?.commit ?? 'unknown',
    dirty: built?.dirty ?? false,
    builtAt: built?.builtAt ?? null,
    node: process.version,
    platform: `${process.platform}/${process.arch}`,
  };
}
