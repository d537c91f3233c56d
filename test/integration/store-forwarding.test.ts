// Followers forward leader-only work (lease keep-alive and time-to-live, membership changes) to
// the leader over the peer channel, as etcd does. Promises, for every combination of client
// and peer TLS (client TLS here has no --trusted-ca-file: a follower could not check the
// leader's client certificate, which is how leases were lost): a keep-alive or time-to-live sent
// to a follower answers with a TTL; a member added through a follower is added; and with the
// leader frozen, a keep-alive through a follower ends with an error within its deadline, never
// silence.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { makeCerts } from '../support/certs.ts';
import { StoreCluster } from '../support/store-cluster.ts';

const certs = makeCerts();
const clientTls = [`--cert-file=${certs.serverCert}`, `--key-file=${certs.serverKey}`];
const peerTls = [
  `--peer-cert-file=${certs.serverCert}`,
  `--peer-key-file=${certs.serverKey}`,
  `--peer-trusted-ca-file=${certs.ca}`,
  '--peer-client-cert-auth',
];

for (const [client, peer] of [
  ['http', 'http'],
  ['https', 'http'],
  ['http', 'https'],
  ['https', 'https'],
] as const) {
  describe(`forwarding to the leader: client ${client}, peer ${peer}`, { timeout: 120_000 }, () => {
    let c: StoreCluster | undefined;
    after(() => c?.shutdown());

    it('a lease kept alive and asked about through a follower; a member added through a follower; a frozen leader is an error, not silence', async () => {
      c = await StoreCluster.start(3, {
        scheme: client,
        peerScheme: peer,
        extraArgs: [...(client === 'https' ? clientTls : []), ...(peer === 'https' ? peerTls : [])],
        etcdctlArgs: client === 'https' ? [`--cacert=${certs.ca}`] : [],
      });
      const lead = await c.waitLeader();
      const follower = c.members.find((m) => m.name !== lead)!;
      const viaFollower = (args: string[], timeout = '8s') =>
        c!.etcdctl([`--command-timeout=${timeout}`, ...args], { endpoints: c!.addr(follower) });
      const grant = viaFollower(['lease', 'grant', '60']);
      assert.equal(grant.status, 0, grant.stderr);
      const id = /lease ([0-9a-f]+) granted/.exec(grant.stdout)![1]!;
      const keep = viaFollower(['lease', 'keep-alive', '--once', id]);
      assert.equal(keep.status, 0, keep.stderr);
      assert.match(keep.stdout, new RegExp(`lease ${id} keepalived with TTL\\(\\d+\\)`));
      const ttl = viaFollower(['lease', 'timetolive', id]);
      assert.equal(ttl.status, 0, ttl.stderr);
      assert.match(ttl.stdout, /granted with TTL\(60s\), remaining\(\d+s\)/);
      const add = viaFollower(['member', 'add', 'm4', '--learner', `--peer-urls=${peer}://127.0.0.1:1`]);
      assert.equal(add.status, 0, add.stderr);
      assert.match(add.stdout, /Member\s+[0-9a-f]+ added to cluster/); // etcdctl pads ids to 16 columns
      const learner = /Member\s+([0-9a-f]+) added/.exec(add.stdout)![1]!;
      assert.equal(viaFollower(['member', 'remove', learner]).status, 0, 'and removed through the follower');
      // The leader frozen (SIGSTOP): the follower's forward gets no answer from it, and says so
      // (or the others elect a new leader, which answers): a TTL or an error, never silence
      // until the client's own deadline.
      const leaderProc = c.procs.get(lead)!;
      leaderProc.kill('SIGSTOP');
      try {
        const frozen = viaFollower(['lease', 'keep-alive', '--once', id], '30s');
        if (frozen.status === 0) assert.match(frozen.stdout, /keepalived with TTL\(\d+\)/);
        else
          assert.doesNotMatch(
            frozen.stderr,
            /context deadline exceeded/,
            `the member answered before the client gave up: ${frozen.stderr}`,
          );
      } finally {
        leaderProc.kill('SIGCONT');
      }
    });
  });
}
