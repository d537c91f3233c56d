import assert from 'node:assert/strict';
import { it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { eventLoopBusy } from './event-loop.ts';

it('eventLoopBusy: a loop kept running callbacks is busy; one waiting for I/O is not', async () => {
  const busy = eventLoopBusy(0.9, 50);
  // Callbacks back to back for a period and more: utilization near 1 however slow the machine
  // (it counts loop time, not CPU).
  const until = Date.now() + 150;
  while (Date.now() < until) {
    const end = Date.now() + 10;
    while (Date.now() < end) {
      /* a callback holding the loop */
    }
    await new Promise((r) => setImmediate(r));
  }
  assert.equal(busy(), true);
  await sleep(150); // the loop waits in epoll: utilization near 0
  assert.equal(busy(), false);
});
