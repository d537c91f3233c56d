import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import { VirtualClock } from './clock.ts';
import { isBallastError } from './errors.ts';
import { type Component, ExitCode, Lifecycle } from './lifecycle.ts';

function component(name: string, log: string[], o: { failStart?: boolean; stop?: (signal: AbortSignal) => Promise<void> } = {}): Component {
  return {
    name,
    start() {
      if (o.failStart) throw new Error(`${name} cannot bind`);
      log.push(`start ${name}`);
    },
    async stop(signal) {
      log.push(`stop ${name}`);
      await o.stop?.(signal);
    },
  };
}

describe('Lifecycle', () => {
  it('starts in order and stops in reverse', async () => {
    const log: string[] = [];
    const lc = new Lifecycle({ clock: new VirtualClock() })
      .add(component('wal', log))
      .add(component('raft', log))
      .add(component('grpc', log));
    await lc.start();
    assert.equal(await lc.stop(), ExitCode.ok);
    assert.deepEqual(log, ['start wal', 'start raft', 'start grpc', 'stop grpc', 'stop raft', 'stop wal']);
  });

  it('when a component fails to start, stops the ones already started and names the failure', async () => {
    const log: string[] = [];
    const lc = new Lifecycle({ clock: new VirtualClock() })
      .add(component('wal', log))
      .add(component('grpc', log, { failStart: true }))
      .add(component('never', log));
    await assert.rejects(
      lc.start(),
      (e: unknown) => isBallastError(e, 'BALLAST_ERR_START_FAILED') && /grpc failed to start: grpc cannot bind/.test((e as Error).message),
    );
    assert.deepEqual(log, ['start wal', 'stop wal']);
  });

  it('SIGTERM drains; a stop that hangs past the drain deadline exits 3 on virtual time', async () => {
    const clock = new VirtualClock();
    const log: string[] = [];
    let aborted = false;
    const hang = (signal: AbortSignal) =>
      new Promise<void>((resolve) =>
        signal.addEventListener('abort', () => {
          aborted = true;
          resolve();
        }),
      );
    const lc = new Lifecycle({ clock, drainTimeoutMs: 30_000 }).add(component('stuck', log, { stop: hang }));
    await lc.start();
    const signals = new EventEmitter();
    const exits: number[] = [];
    lc.handleSignals((c) => exits.push(c), signals);
    signals.emit('SIGTERM');
    await clock.advanceAsync(29_999);
    assert.deepEqual(exits, [], 'still draining before the deadline');
    await clock.advanceAsync(1);
    assert.deepEqual(exits, [ExitCode.drainTimeout]);
    assert.ok(aborted, 'the component saw its abort signal at the deadline');
  });

  it('a clean drain exits 0 and a second signal forces exit 130', async () => {
    const clock = new VirtualClock();
    const slow = (_: AbortSignal) => clock.sleep(5_000);
    const lc = new Lifecycle({ clock }).add(component('slow', [], { stop: slow }));
    await lc.start();
    const signals = new EventEmitter();
    const exits: number[] = [];
    const remove = lc.handleSignals((c) => exits.push(c), signals);
    signals.emit('SIGINT');
    signals.emit('SIGTERM');
    assert.deepEqual(exits, [ExitCode.forced]);
    await clock.advanceAsync(5_000);
    assert.deepEqual(exits, [ExitCode.forced, ExitCode.ok]);
    remove();
    assert.equal(signals.listenerCount('SIGTERM'), 0);
  });
});
