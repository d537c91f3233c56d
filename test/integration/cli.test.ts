// bin/ballast as a user runs it: the compiled CLI on Node 24.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const bin = fileURLToPath(new URL('../../bin/ballast', import.meta.url));
const run = (...args: string[]) => spawnSync(bin, args, { encoding: 'utf8' });

describe('ballast CLI', () => {
  it('--help lists the commands and exits 0', () => {
    const r = run('--help');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /Usage: ballast <command>/);
    assert.match(r.stdout, /version\s+print the version/);
  });

  it('version prints the version, the commit and Node 24', () => {
    const r = run('version');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^ballast \d+\.\d+\.\d+/);
    assert.match(r.stdout, /commit: \S+/);
    assert.match(r.stdout, /node: v2[4-9]\./);
    const j = JSON.parse(run('version', '--json').stdout) as { version: string; node: string };
    assert.match(j.node, /^v2[4-9]\./);
  });

  it('an unknown command names it, prints usage and exits 2', () => {
    const r = run('frobnicate');
    assert.equal(r.status, 2);
    assert.match(r.stderr, /unknown command "frobnicate"/);
    assert.match(r.stderr, /Usage: ballast/);
  });

  it('a bad flag names it and exits 2', () => {
    const r = run('version', '--yaml');
    assert.equal(r.status, 2);
    assert.match(r.stderr, /unknown argument --yaml/);
    assert.equal(run('--frob').status, 2);
  });

  it('no command is a usage error', () => {
    const r = run();
    assert.equal(r.status, 2);
    assert.match(r.stderr, /Usage: ballast/);
  });
});
