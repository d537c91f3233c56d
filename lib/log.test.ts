import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { ConfigError } from './config.ts';
import { childLogger, createLogger, resolveLevel } from './log.ts';

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { lines, stream };
}

describe('log', () => {
  it('writes JSON lines with a level label, time and fixed child keys', () => {
    const { lines, stream } = capture();
    const log = childLogger(createLogger({ destination: stream, env: {} }), { component: 'raft', member: 'm1' });
    log.info({ term: 3 }, 'became leader');
    assert.equal(lines.length, 1);
    const l = lines[0]!;
    assert.deepEqual([l['level'], l['msg'], l['component'], l['member'], l['term']], ['info', 'became leader', 'raft', 'm1', 3]);
    assert.equal(typeof l['time'], 'string');
  });

  it('redacts secret-looking fields at the top level, one level down and in headers', () => {
    const { lines, stream } = capture();
    const log = createLogger({ destination: stream, env: {} });
    log.info(
      { password: 'hunter2', peer: { token: 'abc' }, req: { headers: { authorization: 'Bearer x' } }, key: '/registry/pods' },
      'request',
    );
    const text = JSON.stringify(lines[0]);
    assert.ok(!text.includes('hunter2') && !text.includes('abc') && !text.includes('Bearer x'), text);
    assert.match(text, /\[redacted\]/);
    assert.match(text, /registry\/pods/, 'a KV key is data, not a secret');
  });

  it('takes the level from the flag first, then BALLAST_LOG_LEVEL', () => {
    assert.equal(resolveLevel(undefined, { BALLAST_LOG_LEVEL: 'debug' }), 'debug');
    assert.equal(resolveLevel('warn', { BALLAST_LOG_LEVEL: 'debug' }), 'warn');
    assert.equal(resolveLevel(undefined, {}), 'info');
    const { lines, stream } = capture();
    const log = createLogger({ destination: stream, env: { BALLAST_LOG_LEVEL: 'warn' } });
    log.info('hidden');
    log.warn('shown');
    assert.deepEqual(
      lines.map((l) => l['msg']),
      ['shown'],
    );
  });

  it('refuses an unknown level, naming where it came from', () => {
    assert.throws(
      () => resolveLevel(undefined, { BALLAST_LOG_LEVEL: 'loud' }),
      (e: unknown) => e instanceof ConfigError && /BALLAST_LOG_LEVEL: got "loud".*one of trace, debug/.test(e.message),
    );
  });
});
