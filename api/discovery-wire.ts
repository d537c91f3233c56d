/**
 * The sidecar's side of the discovery protocol (api/proto/discovery.proto) in protobuf's wire
 * format, written by hand with lib/wire.ts: its messages are a few strings and one int64, and the
 * sidecar then needs neither protobufjs nor @grpc/proto-loader (with grpc-js, ~13 MiB of an idle
 * sidecar's memory). The operator's server keeps the .proto loaded by proto-loader; the unit test
 * checks these bytes against that encoder both ways.
 */
import type { Certificate, CertificateRequest, ClientMessage, Snapshot } from './discovery.ts';
import { WireReader, WireWriter } from '../lib/wire.ts';

export function encodeClientMessage(m: ClientMessage): Buffer {
  const w = new WireWriter(256);
  const { hello, ack } = m;
  if (hello)
    w.message(1, (h) => {
      h.utf8(1, hello.node);
      h.utf8(2, hello.version);
    });
  else if (ack)
    w.message(2, (a) => {
      a.utf8(1, ack.version);
      a.utf8(2, ack.error);
    });
  return Buffer.from(w.done());
}

export function encodeCertificateRequest(m: CertificateRequest): Buffer {
  const w = new WireWriter(Buffer.byteLength(m.csr_pem) + 256);
  w.utf8(1, m.csr_pem);
  w.utf8(2, m.node);
  return Buffer.from(w.done());
}

/** Each string field of a message by number, read from `buf` (unknown fields skipped, as protobuf does). */
function strings(buf: Buffer, fields: Record<number, (v: string) => void>, varints: Record<number, (v: number) => void> = {}): void {
  const r = new WireReader(buf);
  while (r.more) {
    const { field, type } = r.tag();
    const s = fields[field];
    const n = varints[field];
    if (s && type === 2) s(r.utf8());
    else if (n && type === 0) n(r.varint());
    else r.skip(type);
  }
}

export function decodeSnapshot(buf: Buffer): Snapshot {
  const s: Snapshot = { version: '', upstreams_json: '', inbound_json: '', trust_bundle_pem: '', issuer_fingerprint: '' };
  strings(buf, {
    1: (v) => (s.version = v),
    2: (v) => (s.upstreams_json = v),
    3: (v) => (s.inbound_json = v),
    4: (v) => (s.trust_bundle_pem = v),
    5: (v) => (s.issuer_fingerprint = v),
  });
  return s;
}

export function decodeCertificate(buf: Buffer): Certificate {
  const c: Certificate = { cert_chain_pem: '', trust_bundle_pem: '', spiffe_id: '', not_after_ms: '0' };
  strings(
    buf,
    { 1: (v) => (c.cert_chain_pem = v), 2: (v) => (c.trust_bundle_pem = v), 3: (v) => (c.spiffe_id = v) },
    // Unix milliseconds fit a double exactly until the year 287,396.
    { 4: (v) => (c.not_after_ms = String(v)) },
  );
  return c;
}

/** The Discovery service's methods, as gRPC paths. */
export const discoveryPaths = {
  stream: '/ballast.discovery.v1.Discovery/Stream',
  certify: '/ballast.discovery.v1.Discovery/Certify',
} as const;
