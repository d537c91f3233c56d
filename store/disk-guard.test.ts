import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pino from 'pino';
import { VirtualClock } from '../lib/clock.ts';
import { DiskSpaceGuard } from './disk-guard.ts';

describe('DiskSpaceGuard', () => {
  const setup = () => {
    const calls: string[] = [];
    let free = 1000;
    let failRaise = false;
    const g = new DiskSpaceGuard(100, {
      clock: new VirtualClock(),
      log: pino({ level: 'silent' }),
      freeBytes: async () => free,
      raise: async () => {
        if (failRaise) throw new Error('no leader');
        calls.push('raise');
      },
      clear: async () => void calls.push('clear'),
    });
    return { g, calls, setFree: (n: number) => (free = n), setFailRaise: (b: boolean) => (failRaise = b) };
  };

  it('raises the alarm once when free space falls below the reserve, and clears it only above twice the reserve', async () => {
    const { g, calls, setFree } = setup();
    await g.check();
    assert.deepEqual(calls, []);
    setFree(99);
    await g.check();
    await g.check();
    assert.deepEqual(calls, ['raise']);
    setFree(150); // above the reserve but below twice it: hysteresis, no flapping
    await g.check();
    assert.deepEqual(calls, ['raise']);
    setFree(200);
    await g.check();
    assert.deepEqual(calls, ['raise', 'clear']);
    assert.equal(g.raised, false);
  });

  it('retries a raise that failed (no leader) on the next look', async () => {
    const { g, calls, setFree, setFailRaise } = setup();
    setFree(10);
    setFailRaise(true);
    await g.check();
    assert.equal(g.raised, false);
    setFailRaise(false);
    await g.check();
    assert.deepEqual(calls, ['raise']);
    assert.equal(g.raised, true);
  });
});
