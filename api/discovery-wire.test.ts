// The sidecar's hand-written discovery codec against protobufjs (through @grpc/proto-loader, as the
// operator's server loads api/proto/discovery.proto): the same bytes mean the same messages both ways.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type * as grpc from '@grpc/grpc-js';
import { discoveryService } from './discovery.ts';
import { decodeCertificate, decodeSnapshot, discoveryPaths, encodeCertificateRequest, encodeClientMessage } from './discovery-wire.ts';

const methods = discoveryService().service as unknown as Record<'Stream' | 'Certify', grpc.MethodDefinition<unknown, unknown>>;

it('the paths are the service’s', () => {
  assert.equal(methods.Stream.path, discoveryPaths.stream);
  assert.equal(methods.Certify.path, discoveryPaths.certify);
});

it('client messages (hello, ack) read back as protobufjs reads them, non-ASCII included', () => {
  const hello = methods.Stream.requestDeserialize(encodeClientMessage({ hello: { node: 'shop/web-0', version: 'v7' } }));
  assert.deepEqual(hello, { hello: { node: 'shop/web-0', version: 'v7' }, kind: 'hello' });
  const ack = methods.Stream.requestDeserialize(encodeClientMessage({ ack: { version: 'v8', error: 'policy.retries: größer als 10 ✗' } }));
  assert.deepEqual(ack, { ack: { version: 'v8', error: 'policy.retries: größer als 10 ✗' }, kind: 'ack' });
  // An ack of an applied version: empty strings are left out, as proto3 does, and read back as ''.
  assert.deepEqual(methods.Stream.requestDeserialize(encodeClientMessage({ ack: { version: '', error: '' } })), {
    ack: { version: '', error: '' },
    kind: 'ack',
  });
});

it('snapshots written by protobufjs are read whole, however long (multi-byte lengths), with absent fields as empty', () => {
  const upstreams = JSON.stringify(
    Array.from({ length: 2000 }, (_, i) => ({ name: `svc-${i}.shop`, endpoints: [{ address: `10.0.${i % 250}.1:80` }] })),
  );
  const full = {
    version: 'sha256:abc',
    upstreams_json: upstreams,
    inbound_json: '[{"name":"in","listen":"0.0.0.0:15006"}]',
    trust_bundle_pem: '-----BEGIN CERTIFICATE-----\nMIIB…\n-----END CERTIFICATE-----\n',
    issuer_fingerprint: 'AA:BB:CC',
  };
  assert.deepEqual(decodeSnapshot(methods.Stream.responseSerialize(full)), full);
  assert.deepEqual(decodeSnapshot(methods.Stream.responseSerialize({ version: 'v1', upstreams_json: '[]' })), {
    version: 'v1',
    upstreams_json: '[]',
    inbound_json: '',
    trust_bundle_pem: '',
    issuer_fingerprint: '',
  });
});

it('a field a newer operator adds is skipped, not an error', () => {
  const known = methods.Stream.responseSerialize({ version: 'v2', upstreams_json: '[]' });
  // field 15, varint 300; field 16, a length-delimited "new"; field 17, fixed64
  const unknown = Buffer.from([0x78, 0xac, 0x02, 0x82, 0x01, 0x03, 0x6e, 0x65, 0x77, 0x89, 0x01, 1, 2, 3, 4, 5, 6, 7, 8]);
  assert.equal(decodeSnapshot(Buffer.concat([unknown, known])).version, 'v2');
});

it('a snapshot cut inside a field is an error, not a half-read configuration', () => {
  const bytes = methods.Stream.responseSerialize({ version: 'v3', upstreams_json: '[{"name":"a"}]' });
  // Bytes 0–3 are the version field; a cut right after it is a valid shorter message (protobuf has
  // no end marker: gRPC's length prefix is what says a message is whole, lib/grpc-client.ts checks it).
  for (let cut = 1; cut < bytes.length; cut++)
    if (cut !== 4) assert.throws(() => decodeSnapshot(bytes.subarray(0, cut)), /protobuf: /, `cut at ${cut}`);
});

it('a certificate request and answer, the int64 expiry included', () => {
  const req = { csr_pem: '-----BEGIN CERTIFICATE REQUEST-----\n…\n', node: 'shop/api-0' };
  assert.deepEqual(methods.Certify.requestDeserialize(encodeCertificateRequest(req)), req);
  const cert = {
    cert_chain_pem: 'chain',
    trust_bundle_pem: 'bundle',
    spiffe_id: 'spiffe://cluster.local/ns/shop/sa/api',
    not_after_ms: '1796000000123',
  };
  assert.deepEqual(decodeCertificate(methods.Certify.responseSerialize(cert)), cert);
});
