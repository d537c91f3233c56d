/**
 * A gRPC certificate provider (grpc-js' experimental CertificateProvider) fed from memory: the
 * mesh's certificates and trust bundle change while channels and servers stay up, and new
 * connections take what was set last. Identity and CA are separate providers' jobs in grpc-js;
 * one object can be both.
 */
import type { experimental } from '@grpc/grpc-js';

type CaListener = experimental.CaCertificateUpdateListener;
type IdListener = experimental.IdentityCertificateUpdateListener;

export class MemoryCertificateProvider implements experimental.CertificateProvider {
  #ca: experimental.CaCertificateUpdate | undefined;
  #identity: experimental.IdentityCertificateUpdate | undefined;
  readonly #caListeners = new Set<CaListener>();
  readonly #idListeners = new Set<IdListener>();

  setCa(pem: string): void {
    if (this.#ca?.caCertificate.toString() === pem) return;
    this.#ca = { caCertificate: Buffer.from(pem) };
    for (const l of this.#caListeners) l(this.#ca);
  }

  setIdentity(chainPem: string, keyPem: string): void {
    this.#identity = { certificate: Buffer.from(chainPem), privateKey: Buffer.from(keyPem) };
    for (const l of this.#idListeners) l(this.#identity);
  }

  get hasIdentity(): boolean {
    return this.#identity !== undefined;
  }

  addCaCertificateListener(l: CaListener): void {
    this.#caListeners.add(l);
    if (this.#ca) process.nextTick(l, this.#ca);
  }
  removeCaCertificateListener(l: CaListener): void {
    this.#caListeners.delete(l);
  }
  addIdentityCertificateListener(l: IdListener): void {
    this.#idListeners.add(l);
    if (this.#identity) process.nextTick(l, this.#identity);
  }
  removeIdentityCertificateListener(l: IdListener): void {
    this.#idListeners.delete(l);
  }
}
