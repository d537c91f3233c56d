// Members that must not rejoin as they were. A member removed while it was down, restarted on its old data. Fault: it is a learner, so it
// never campaigns and never sends a message that would be answered "you were removed".
// Promise: it still learns that it was removed (it probes its peers while it has no leader) and
// exits, instead of sitting forever without a leader and answering member-table queries with a
// stale table (which made joining members believe they had not been added).
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ExitCode } from '../../lib/lifecycle.ts';
import { StoreCluster } from '../support/store-cluster.ts';

describe('members that must not come back as they were', { timeout: 120_000 }, () => {
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
    const code = await Promise.race([
      new Promise<number | null>((r) => p.once('exit', (code) => r(code))),
      new Promise<string>((r) => setTimeout(() => r('still running after 20 s'), 20_000)),
    ]);
    assert.notEqual(code, 'still running after 20 s');
    assert.match(readFileSync(join(c.dir, 'm4.log'), 'utf8'), /removed from the cluster/);
  });

  // Fault: a voter's volume is wiped while its pod still says --initial-cluster-state=new (the
  // template it was created from). Promise: it does not bootstrap a fresh log and fresh votes
  // beside the running cluster; it stops with STORE_ERR_DATA_LOST (exit code 4, which the operator
  // repairs), and the cluster's data is untouched.
  it('a wiped voter restarted with --initial-cluster-state=new stops: its data is lost', async () => {
    assert.ok(c);
    await c.kill9('m3');
    rmSync(c.member('m3').dataDir, { recursive: true, force: true });
    const p = c.spawn(
      c.member('m3'),
      'new',
      c.members.filter((m) => m.name !== 'm4'),
    );
    const code = await Promise.race([
      new Promise<number | null>((r) => p.once('exit', (code) => r(code))),
      new Promise<string>((r) => setTimeout(() => r('still running after 30 s'), 30_000)),
    ]);
    assert.equal(code, ExitCode.dataLost, readFileSync(join(c.dir, 'm3.log'), 'utf8').slice(-2000));
    assert.match(readFileSync(join(c.dir, 'm3.log'), 'utf8'), /STORE_ERR_DATA_LOST[^]*has run in this cluster before/);
    assert.equal(
      c
        .etcdctl(['get', 'k', '--print-value-only'], {
          endpoints: c.endpoints(c.members.filter((m) => m.name !== 'm3' && m.name !== 'm4')),
        })
        .stdout.trim(),
      'v',
    );
  });
});
