/**
 * The discovery protocol (api/proto/discovery.proto), loaded once for the operator's
 * server and the sidecar's client, and the shape of what it carries.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';

// `make build` copies the .proto files next to the compiled code, so this works from dist/ too.
const protoDir = fileURLToPath(new URL('./proto/', import.meta.url));

export interface Hello {
  node: string;
  version: string;
}
export interface Ack {
  version: string;
  error: string;
}
export interface ClientMessage {
  hello?: Hello;
  ack?: Ack;
  kind?: 'hello' | 'ack';
}
export interface Snapshot {
  version: string;
  upstreams_json: string;
  inbound_json?: string;
  trust_bundle_pem?: string;
  issuer_fingerprint?: string;
}
export interface CertificateRequest {
  csr_pem: string;
  node: string;
}
export interface Certificate {
  cert_chain_pem: string;
  trust_bundle_pem: string;
  spiffe_id: string;
  /** Unix ms (a decimal string: int64 is loaded as a string). */
  not_after_ms: string;
}

/** An upstream as discovery sends it (the sidecar file's upstream schema). */
export interface DiscoveredUpstream {
  name: string;
  listen?: string;
  hosts?: string[];
  /** The Service's cluster IPs with its port: intercepted connections to them select this upstream. */
  addresses?: string[];
  protocol?: 'auto' | 'http1' | 'http2';
  /** identity: the endpoint's mesh identity (its sidecar accepts mTLS presenting it); absent: not meshed. */
  endpoints: Array<{ address: string; weight?: number; identity?: string }>;
  mtls?: 'strict' | 'permissive' | 'off';
  policy?: unknown;
  routes?: unknown[];
  /** Gateway API routes attached to this Service port (the sidecar's `httpRoutes`). */
  httpRoutes?: unknown[];
}

let loaded: grpc.ServiceClientConstructor | undefined;

/** The Discovery service definition (client constructor; `.service` for servers). */
export function discoveryService(): grpc.ServiceClientConstructor {
  if (!loaded) {
    const def = protoLoader.loadSync(['discovery.proto'], {
      includeDirs: [protoDir],
      keepCase: true,
      longs: String,
      enums: Number,
      defaults: true,
      oneofs: true,
    });
    const pkg = grpc.loadPackageDefinition(def) as unknown as {
      ballast: { discovery: { v1: { Discovery: grpc.ServiceClientConstructor } } };
    };
    loaded = pkg.ballast.discovery.v1.Discovery;
  }
  return loaded;
}
