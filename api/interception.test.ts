import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type InterceptionSpec, interceptionProblems, interceptionRules, parseCidrs, parsePorts } from './interception.ts';

const spec: InterceptionSpec = {
  proxyUid: 15532,
  outboundPort: 15001,
  inboundPort: 15006,
  adminPort: 15020,
  excludeOutboundPorts: [5432],
  excludeOutboundCidrs: ['10.0.0.0/8', 'fd00::/8'],
  excludeInboundPorts: [9090],
};

test('the rules redirect outbound and inbound TCP and leave out the sidecar, loopback, the admin port and the exclusions', () => {
  const v4 = interceptionRules(spec, 4);
  const lines = v4.split('\n');
  assert.equal(lines[0], '*nat');
  assert.ok(lines.includes('-A BALLAST_OUTPUT -m owner --uid-owner 15532 -j RETURN'));
  assert.ok(lines.includes('-A BALLAST_OUTPUT -d 127.0.0.1/32 -j RETURN'));
  assert.ok(lines.includes('-A BALLAST_OUTPUT -p tcp --dport 5432 -j RETURN'));
  assert.ok(lines.includes('-A BALLAST_OUTPUT -d 10.0.0.0/8 -j RETURN'));
  assert.ok(!v4.includes('fd00::/8'), 'an IPv6 CIDR is not in the IPv4 rules');
  assert.ok(lines.includes('-A BALLAST_INBOUND -p tcp --dport 15020 -j RETURN'));
  assert.ok(lines.includes('-A BALLAST_INBOUND -p tcp --dport 9090 -j RETURN'));
  assert.ok(lines.includes('-A BALLAST_REDIRECT -p tcp -j REDIRECT --to-ports 15001'));
  assert.ok(lines.includes('-A BALLAST_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006'));
  // The exclusions come before the redirect (first match wins).
  assert.ok(
    lines.indexOf('-A BALLAST_OUTPUT -m owner --uid-owner 15532 -j RETURN') < lines.indexOf('-A BALLAST_OUTPUT -p tcp -j BALLAST_REDIRECT'),
  );
  assert.ok(
    lines.indexOf('-A BALLAST_INBOUND -p tcp --dport 15020 -j RETURN') < lines.indexOf('-A BALLAST_INBOUND -p tcp -j BALLAST_IN_REDIRECT'),
  );
  assert.equal(lines.filter((l) => l.startsWith('-A OUTPUT')).length, 1);
  assert.equal(lines.at(-2), 'COMMIT');
  const v6 = interceptionRules(spec, 6);
  assert.ok(v6.includes('-A BALLAST_OUTPUT -d ::1/128 -j RETURN'));
  assert.ok(v6.includes('-A BALLAST_OUTPUT -d fd00::/8 -j RETURN'));
  assert.ok(!v6.includes('10.0.0.0/8'));
});

test('bad ports and CIDRs are refused with what to write instead', () => {
  assert.deepEqual(parsePorts('80, 443,80', 'x'), { ports: [80, 443] });
  assert.match(parsePorts('80,http', 'ballast.dev/exclude-outbound-ports').problem ?? '', /"http" is not a port .*e\.g\. 5432,6379/);
  assert.match(parsePorts('70000', 'x').problem ?? '', /not a port/);
  assert.deepEqual(parseCidrs('10.0.0.0/8,192.168.1.7, ::1', 'x'), { cidrs: ['10.0.0.0/8', '192.168.1.7/32', '::1/128'] });
  assert.match(parseCidrs('10.0.0.0/33', 'x').problem ?? '', /not an address or CIDR/);
  assert.match(parseCidrs('example.com', 'x').problem ?? '', /not an address or CIDR/);
  assert.deepEqual(interceptionProblems(spec), []);
  assert.match(interceptionProblems({ ...spec, inboundPort: 15001 }).join(';'), /must differ/);
  assert.match(interceptionProblems({ ...spec, proxyUid: 0 }).join(';'), /not a non-root uid/);
});
