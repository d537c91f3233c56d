/**
 * How busy this process' event loop is (an edge: it reads Node's counters). A proxy whose own
 * loop is saturated adds its own delay to every latency it measures; shedding for that delay
 * would refuse work because the proxy is slow, not because the dependency is queueing.
 */
import { performance } from 'node:perf_hooks';

/**
 * A sampler of event-loop utilization (the share of time the loop was running callbacks rather
 * than waiting for I/O), refreshed at most every `periodMs` when asked: `busy()` is whether it was
 * at least `threshold` over the last period. Lazy, so an idle process pays nothing.
 */
export function eventLoopBusy(threshold = 0.9, periodMs = 200): () => boolean {
  let last = performance.eventLoopUtilization();
  let at = performance.now();
  let busy = false;
  return () => {
    const now = performance.now();
    if (now - at >= periodMs) {
      const cur = performance.eventLoopUtilization();
      busy = performance.eventLoopUtilization(cur, last).utilization >= threshold;
      last = cur;
      at = now;
    }
    return busy;
  };
}
