import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, f, loadConfig, renderFlags } from './config.ts';
import { isBallastError } from './errors.ts';

const schema = {
  name: f.string('member name', { default: 'default' }),
  heartbeatInterval: f.duration('heartbeat period', { default: 100, min: 1 }),
  snapshotCount: f.int('entries between snapshots', { default: 100_000, min: 1 }),
  strict: f.bool('refuse unsafe settings'),
  state: f.oneOf(['new', 'existing'], 'initial cluster state', { default: 'new' }),
  listenClientUrls: f.urls('client URLs', { default: [new URL('http://127.0.0.1:2379')] }),
  quota: f.bytes('backend quota', { default: 2 * 1024 ** 3 }),
};

function load(argv: string[], env: Record<string, string> = {}, extra = {}) {
  return loadConfig(schema, { argv, env, envPrefix: 'ETCD', configFile: true, ...extra });
}

function problems(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    return err.message;
  }
  assert.fail('expected a ConfigError');
}

describe('loadConfig', () => {
  it('gives defaults, typed', () => {
    const { values, sources } = load([]);
    assert.equal(values.heartbeatInterval, 100);
    assert.equal(values.strict, false);
    assert.equal(values.listenClientUrls[0]?.port, '2379');
    assert.equal(sources.name, 'default');
  });

  it('reads --flag=value, --flag value and bare switches', () => {
    const { values } = load(['--name=m1', '--snapshot-count', '5', '--strict', '--heartbeat-interval=2s', '--quota=1.5MiB']);
    assert.deepEqual(
      [values.name, values.snapshotCount, values.strict, values.heartbeatInterval, values.quota],
      ['m1', 5, true, 2000, 1572864],
    );
  });

  it('takes flag over environment over file over default', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
    const file = join(dir, 'c.yaml');
    writeFileSync(file, 'name: from-file\nsnapshot-count: 7\nheartbeat-interval: 50\n');
    const r = load(['--config-file', file, '--name=from-flag'], { ETCD_SNAPSHOT_COUNT: '9' });
    assert.equal(r.values.name, 'from-flag');
    assert.equal(r.values.snapshotCount, 9);
    assert.equal(r.values.heartbeatInterval, 50);
    assert.deepEqual([r.sources.name, r.sources.snapshotCount, r.sources.heartbeatInterval], ['flag', 'environment', 'config file']);
  });

  it('names the field, the value and what is allowed, for every bad field at once', () => {
    const msg = problems(() => load(['--snapshot-count=0', '--state=old', '--heartbeat-interval=soon']));
    assert.match(msg, /--snapshot-count: got "0" \(from flag\); expected an integer >= 1/);
    assert.match(msg, /--state: got "old" \(from flag\); expected one of new, existing/);
    assert.match(msg, /--heartbeat-interval: got "soon".*expected a duration/);
  });

  it('names the environment variable when the bad value came from there', () => {
    assert.match(
      problems(() => load([], { ETCD_SNAPSHOT_COUNT: 'lots' })),
      /ETCD_SNAPSHOT_COUNT: got "lots" \(from environment\)/,
    );
  });

  it('refuses unknown flags and suggests the near one', () => {
    const msg = problems(() => load(['--snapshot-cuont=5']));
    assert.match(msg, /--snapshot-cuont.*did you mean --snapshot-count\?/);
  });

  it('refuses a flag given twice, a missing value and stray positionals', () => {
    assert.match(
      problems(() => load(['--name=a', '--name=b'])),
      /--name.*given once/,
    );
    assert.match(
      problems(() => load(['--name'])),
      /--name: got nothing.*expected a value/,
    );
    assert.match(
      problems(() => load(['stray'])),
      /positional/,
    );
  });

  it('rejects URLs of the wrong scheme', () => {
    assert.match(
      problems(() => load(['--listen-client-urls=ftp://x:1'])),
      /expected comma-separated URLs with scheme http or https/,
    );
  });

  it('runs cross-field rules only when each field is valid', () => {
    const rules = [
      (v: Record<string, unknown>) =>
        v['strict'] === true && v['state'] === 'existing'
          ? [{ field: '--state', value: 'existing', allowed: 'new when --strict', source: 'flag' as const }]
          : [],
    ];
    assert.match(
      problems(() => load(['--strict', '--state=existing'], {}, { rules })),
      /new when --strict/,
    );
  });

  it('reports an unreadable or malformed config file with its own code', () => {
    for (const [content, re] of [
      [null, /cannot read/],
      [': : :\n  - [', /not valid YAML/],
      ['- a\n- b\n', /expected a mapping/],
    ] as const) {
      const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
      const file = join(dir, 'c.yaml');
      if (content !== null) writeFileSync(file, content);
      assert.throws(
        () => load(['--config-file', file]),
        (e: unknown) => isBallastError(e, 'BALLAST_ERR_CONFIG_FILE') && re.test((e as Error).message),
      );
    }
    const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
    writeFileSync(join(dir, 'c.yaml'), 'nmae: x\n');
    assert.match(
      problems(() => load(['--config-file', join(dir, 'c.yaml')])),
      /nmae.*known setting/,
    );
  });

  it('returns help instead of failing when --help is given', () => {
    assert.equal(load(['--help', '--bogus']).help, true);
  });

  it('renders flag help with defaults and env names', () => {
    const text = renderFlags(schema, 'ETCD');
    assert.match(text, /--heartbeat-interval\s+heartbeat period \(default 100\) \[\$ETCD_HEARTBEAT_INTERVAL\]/);
  });
});
