// A member removed while it was down, restarted on its old data. Fault: it is a learner, so it
// never campaigns and never sends a message that would be answered "you were removed".
// Promise: it still learns that it was removed (it probes its peers while it has no leader) and
// exits, instead of sitting forever without a leader and answering member-table queries with a
// stale table (which made joining members believe they had not been added).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { StoreCluster } from '../support/store-cluster.ts';

describe('a removed learner restarted on its data', { timeout: 120_000 }, () => {
  let c: StoreCluster | undefined;
  after(() => c?.shutdown());

  it('learns it was removed and exits', async () => {
    c = await StoreCluster.start(3);
    const m4 = await c.addSpec('m4');
    const added = c.etcdctl(['member', 'add', 'm4', '--learner', `--peer-urls=http://127.0.0.1:${m4.peerPort}`]);
    const id = /Member +([0-9a-f]+) added/.exec(added.stdout)?.[1];
    assert.ok(id, added.stdout + added.stderr);
    c.spawn(m4, 'existing');
    assert.equal(c.etcdctl(['put', 'k', 'v']).status, 0);
    await new Promise((r) => setTimeout(r, 2000));
    await c.kill9('m4');
    assert.equal(c.etcdctl(['member', 'remove', id]).status, 0);
    const p = c.restart('m4');
    const code = await Promise.race([new Promise<number | null>((r) => p.once('exit', (code) => r(code))), new Promise<string>((r) => setTimeout(() => r('still running after 20 s'), 20_000))]);
    assert.notEqual(code, 'still running after 20 s');
    assert.match(readFileSync(join(c.dir, 'm4.log'), 'utf8'), /removed from the cluster/);
  });
});
