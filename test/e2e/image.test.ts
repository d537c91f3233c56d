// The image users build from the Dockerfile (`make image`: buildah bud, the same file `docker
// build` takes). Promises: OCI labels with the package's version; a non-root user and
// ENTRYPOINT ["ballast"]; no dev dependency shipped; the chart's default image is this image at
// its appVersion. That it runs as that user on a read-only root is proven where it runs, on the
// node (test/e2e/cluster.test.ts and every suite that starts a store, operator or sidecar pod).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { cacheDir } from '../../cluster/toolchain.ts';

const root = join(import.meta.dirname, '..', '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string; devDependencies: Record<string, string> };
const ref = `docker.io/library/ballast:${pkg.version}`;
const cache = cacheDir();
const buildah = (...args: string[]) =>
  spawnSync(
    'buildah',
    ['--root', join(cache, 'buildah', 'root'), '--runroot', join(cache, 'buildah', 'run'), '--storage-driver', 'overlay', ...args],
    { encoding: 'utf8', timeout: 120_000 },
  );

describe(`the ballast image (${ref})`, () => {
  const inspect = buildah('inspect', '--type', 'image', ref);
  const image = JSON.parse(inspect.stdout || '{}') as {
    OCIv1?: { config?: { User?: string; Entrypoint?: string[]; Labels?: Record<string, string>; Env?: string[] } };
  };
  const config = image.OCIv1?.config ?? {};
  let container = '';
  after(() => {
    if (container) buildah('rm', container);
  });

  it('is built (make image) and in the index the node imports', () => {
    assert.equal(inspect.status, 0, `buildah inspect ${ref}: ${inspect.stderr} (run make image)`);
    const index = readFileSync(join(cache, 'images', 'images.tsv'), 'utf8');
    assert.match(index, new RegExp(`^${ref.replace(/[.]/g, '\\.')}\\t`, 'm'));
  });

  it('carries the OCI labels, with the package version', () => {
    for (const k of [
      'org.opencontainers.image.title',
      'org.opencontainers.image.version',
      'org.opencontainers.image.source',
      'org.opencontainers.image.licenses',
    ])
      assert.ok(config.Labels?.[k], `label ${k}`);
    assert.equal(config.Labels?.['org.opencontainers.image.version'], pkg.version);
  });

  it('runs `ballast` as a non-root user', () => {
    assert.deepEqual(config.Entrypoint, ['ballast']);
    assert.match(config.User ?? '', /^[1-9]\d*(:[1-9]\d*)?$/, `a numeric non-root user (got ${config.User})`);
    assert.ok(config.Env?.includes('NODE_ENV=production'));
  });

  it('ships the production dependencies only', () => {
    const from = buildah('from', '--pull=never', ref);
    assert.equal(from.status, 0, from.stderr);
    container = from.stdout.trim();
    const mnt = buildah('mount', container).stdout.trim();
    const modules = join(mnt, 'app', 'node_modules');
    assert.ok(existsSync(join(modules, '@grpc', 'grpc-js')), 'a production dependency is there');
    const leaked = Object.keys(pkg.devDependencies).filter((d) => !d.startsWith('@types/') && existsSync(join(modules, d)));
    assert.deepEqual(leaked, [], 'no dev dependency in the runtime image');
    assert.ok(existsSync(join(mnt, 'app', 'dist', 'cli', 'bin.js')), 'the compiled CLI');
    // Transparent interception: `ballast mesh-init` runs iptables-restore; the sidecar reads
    // SO_ORIGINAL_DST through koffi's prebuilt binary for this platform.
    assert.ok(existsSync(join(mnt, 'usr', 'sbin', 'iptables-restore')), 'iptables for mesh-init');
    assert.ok(existsSync(join(modules, '@koromix', 'koffi-linux-x64')), "koffi's linux-x64 binary");
    buildah('umount', container);
  });

  it("is the chart's default image: repository ballast at the chart's appVersion", () => {
    assert.match(readFileSync(join(root, 'charts', 'ballast', 'Chart.yaml'), 'utf8'), new RegExp(`appVersion: "${pkg.version}"`));
    assert.match(readFileSync(join(root, 'charts', 'ballast', 'values.yaml'), 'utf8'), /image:\n {2}repository: ballast\n/);
  });
});
