// A short chaos run in `make test`; `make chaos DURATION=30m` runs the same for longer.
// Faults: kill -9 (a random member, the leader, a majority), SIGSTOP pauses of the leader and a
// follower, leadership transfers and member replacement. Promise kept: the history is
// linearizable, watchers on every member agree and miss no acknowledged write, and every
// member ends with the same HashKV.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { runChaos } from './harness.ts';
import { StoreCluster } from '../support/store-cluster.ts';

/** CHAOS_DURATION: 20s by default in make test; `make chaos DURATION=30m` sets it (ms, s, m, h). */
function parseDuration(s: string | undefined): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec((s ?? '').trim());
  if (!m) return 20_000;
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
}
const durationMs = parseDuration(process.env['CHAOS_DURATION']);

describe('chaos', { timeout: durationMs + 240_000 }, () => {
  let c: StoreCluster | undefined;
  after(() => c?.shutdown());

  it(`${Math.round(durationMs / 1000)} s of kills, pauses, transfers and member replacement: linearizable, watches complete, members converge`, async () => {
    c = await StoreCluster.start(3);
    const report = await runChaos({
      cluster: c, durationMs, seed: Number(process.env['CHAOS_SEED'] ?? Date.now() % 100_000), dir: c.dir,
      faults: ['kill-random', 'kill-leader', 'kill-majority', 'pause-leader', 'pause-follower', 'transfer-leader', 'replace-member'],
    });
    console.log(`# chaos: ${JSON.stringify({ operations: report.operations, faults: report.faults.map((f) => `${f.kind}(${f.target})@${f.at}ms`), lincheck: report.lincheck })}`);
    assert.ok(report.faults.length >= 3, `faults injected: ${report.faults.length}`);
    assert.ok(report.linearizable, `not linearizable: ${report.lincheck}; see ${c.dir}/chaos.html`);
    assert.ok(report.watch.ok, `watch checker: ${report.watch.problems.join('; ')}`);
    assert.ok(report.hashKV.ok, `HashKV differs: ${JSON.stringify(report.hashKV.hashes)}`);
  });
});
