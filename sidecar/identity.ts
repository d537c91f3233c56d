/**
 * The sidecar's mesh identity: a private key that never leaves the process, and a certificate
 * for `spiffe://<trust-domain>/ns/<namespace>/sa/<serviceaccount>` the operator issues against
 * the pod's projected ServiceAccount token (read afresh for every request: the kubelet rotates
 * it). Renewed with a new key when half its life is gone (jittered, so a fleet started together
 * does not renew together), retried with back-off on failure; connections already open keep the
 * certificate they were made with, new ones get the new one. The trust bundle comes with each
 * certificate and with every discovery snapshot (a rotation's new anchor arrives that way).
 */
import { readFileSync } from 'node:fs';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import type { Clock, TimerHandle } from '../lib/clock.ts';
import type { Logger } from '../lib/log.ts';
import type { Random } from '../lib/random.ts';
import { parseSpiffeId, uriSans } from '../api/mesh.ts';
import type { SidecarMetrics } from './metrics.ts';

export interface IdentityMaterial {
  spiffeId: string;
  trustDomain: string;
  chainPem: string;
  keyPem: string;
  bundlePem: string;
  notAfter: number;
}

export interface IdentityOptions {
  /** The pod's projected token (audience ballast.dev/mesh). */
  tokenFile: string;
  /** Ask the operator: resolves to the chain, bundle and id, or rejects with its refusal. */
  certify(csrPem: string, token: string): Promise<{ chainPem: string; bundlePem: string; spiffeId: string; notAfter: number }>;
  clock: Clock;
  random: Random;
  log: Logger;
  metrics: SidecarMetrics;
}

/** What the sidecar needs of a mesh identity, from the operator or from files. */
export interface MeshIdentity {
  readonly material: IdentityMaterial | undefined;
  readonly lastError: string;
  onChange(fn: (m: IdentityMaterial) => void): void;
  setBundle(pem: string): void;
  noteIssuer(fingerprint: string): void;
  stop(): void;
}

/**
 * A mesh identity from files another agent keeps (SPIRE's agent, cert-manager's csi-driver, or a
 * benchmark): the certificate chain, its key and the trust bundle, PEM, read at start and again
 * whenever one of them changes (checked every 10 s).
 */
export class FileIdentity implements MeshIdentity {
  readonly #files: { certFile: string; keyFile: string; bundleFile: string };
  readonly #log: Logger;
  readonly #metrics: SidecarMetrics;
  readonly #timer: TimerHandle;
  readonly #clock: Clock;
  #material: IdentityMaterial | undefined;
  #stamp = '';
  #lastError = '';
  readonly #listeners: Array<(m: IdentityMaterial) => void> = [];

  constructor(files: { certFile: string; keyFile: string; bundleFile: string }, clock: Clock, log: Logger, metrics: SidecarMetrics) {
    this.#files = files;
    this.#clock = clock;
    this.#log = log;
    this.#metrics = metrics;
    this.#load();
    this.#timer = clock.setInterval(() => this.#load(), 10_000, { unref: true });
  }

  get material(): IdentityMaterial | undefined {
    const m = this.#material;
    return m && m.notAfter > this.#clock.wallNow() ? m : undefined;
  }
  get lastError(): string {
    return this.#lastError;
  }
  onChange(fn: (m: IdentityMaterial) => void): void {
    this.#listeners.push(fn);
  }
  setBundle(): void {}
  noteIssuer(): void {}
  stop(): void {
    this.#timer.cancel();
  }

  #load(): void {
    const f = this.#files;
    try {
      const [chainPem, keyPem, bundlePem] = [f.certFile, f.keyFile, f.bundleFile].map((x) => readFileSync(x, 'utf8')) as [
        string,
        string,
        string,
      ];
      const stamp = `${chainPem}\u0000${keyPem}\u0000${bundlePem}`;
      if (stamp === this.#stamp) return;
      const leaf = new X509Certificate(chainPem);
      const spiffeId = uriSans(leaf.subjectAltName).find((u) => parseSpiffeId(u));
      if (!spiffeId) throw new Error(`${f.certFile} names no SPIFFE ID (a URI SAN spiffe://<trust-domain>/ns/<ns>/sa/<sa>)`);
      if (!leaf.checkPrivateKey(createPrivateKey(keyPem))) throw new Error(`${f.keyFile} is not the key of ${f.certFile}`);
      this.#stamp = stamp;
      const notAfter = Date.parse(leaf.validTo);
      this.#material = { spiffeId, trustDomain: parseSpiffeId(spiffeId)?.trustDomain ?? '', chainPem, keyPem, bundlePem, notAfter };
      this.#lastError = '';
      this.#metrics.certificateExpiry.set(notAfter / 1000);
      this.#log.info({ spiffeId, notAfter: new Date(notAfter).toISOString(), from: f.certFile }, 'mesh certificate loaded from files');
      for (const fn of this.#listeners) fn(this.#material);
    } catch (err) {
      this.#lastError = (err as Error).message;
      this.#log.error({ err: this.#lastError }, 'cannot load the mesh certificate files; keeping the last good one');
    }
  }
}

export class WorkloadIdentity implements MeshIdentity {
  readonly #o: IdentityOptions;
  #material: IdentityMaterial | undefined;
  #timer: TimerHandle | undefined;
  #failures = 0;
  #lastError = '';
  #stopped = false;
  /** The issuer a renewal was scheduled for (once per issuer change). */
  #renewingFor = '';
  readonly #listeners: Array<(m: IdentityMaterial) => void> = [];

  constructor(o: IdentityOptions) {
    this.#o = o;
  }

  /** The current certificate, key and trust bundle (undefined until the first is issued, or once it expired). */
  get material(): IdentityMaterial | undefined {
    const m = this.#material;
    return m && m.notAfter > this.#o.clock.wallNow() ? m : undefined;
  }

  /** Why the last request failed ('' when it did not). */
  get lastError(): string {
    return this.#lastError;
  }

  /** Told whenever the certificate or the trust bundle changes. */
  onChange(fn: (m: IdentityMaterial) => void): void {
    this.#listeners.push(fn);
  }

  start(): void {
    void this.#renew();
  }

  stop(): void {
    this.#stopped = true;
    this.#timer?.cancel();
  }

  /** A new trust bundle from discovery (kept with the current certificate). */
  setBundle(pem: string): void {
    const m = this.#material;
    if (!pem || !m || m.bundlePem === pem) return;
    this.#material = { ...m, bundlePem: pem };
    this.#o.log.info({ anchors: pem.match(/BEGIN CERTIFICATE/g)?.length ?? 0 }, 'mesh trust bundle updated');
    this.#emit();
  }

  /**
   * The operator's issuer now (from a snapshot): a certificate another issuer signed (a rotation
   * moved on) is renewed within a few seconds (jittered, so a fleet does not ask at once).
   */
  noteIssuer(fingerprint: string): void {
    const m = this.#material;
    if (!m || this.#stopped) return;
    const issuerPem = m.chainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)?.[1];
    if (!issuerPem || new X509Certificate(issuerPem).fingerprint256 === fingerprint) return;
    if (this.#renewingFor === fingerprint) return;
    this.#renewingFor = fingerprint;
    const delay = this.#o.random.next() * 5000;
    this.#o.log.info({ renewInMs: Math.round(delay) }, 'the mesh issuer changed; renewing the certificate');
    this.#schedule(delay);
  }

  #emit(): void {
    const m = this.#material;
    if (m) for (const fn of this.#listeners) fn(m);
  }

  async #renew(): Promise<void> {
    if (this.#stopped) return;
    const o = this.#o;
    try {
      let token: string;
      try {
        token = readFileSync(o.tokenFile, 'utf8').trim();
      } catch (err) {
        throw new Error(`cannot read the ServiceAccount token ${o.tokenFile}: ${(err as Error).message}`, { cause: err });
      }
      // Loaded only by meshed sidecars: the CSR library is not small.
      const { newKeyAndCsr } = await import('../lib/csr.ts');
      const { keyPem, csrPem } = await newKeyAndCsr();
      const got = await o.certify(csrPem, token);
      const leaf = new X509Certificate(got.chainPem);
      const id = parseSpiffeId(got.spiffeId);
      if (!id || !uriSans(leaf.subjectAltName).includes(got.spiffeId))
        throw new Error(`the operator's certificate does not name ${got.spiffeId || 'an identity'}`);
      const had = this.#material;
      this.#material = {
        spiffeId: got.spiffeId,
        trustDomain: id.trustDomain,
        chainPem: got.chainPem,
        keyPem,
        bundlePem: got.bundlePem,
        notAfter: got.notAfter,
      };
      this.#failures = 0;
      this.#lastError = '';
      o.metrics.certificateRenewals.inc({ result: 'issued' });
      o.metrics.certificateExpiry.set(got.notAfter / 1000);
      // Half-way through the life it has from now, ±10 %: a fleet started together spreads its renewals.
      const delay = Math.max(1000, (got.notAfter - o.clock.wallNow()) * (0.4 + 0.2 * o.random.next()));
      o.log.info(
        {
          spiffeId: got.spiffeId,
          notAfter: new Date(got.notAfter).toISOString(),
          renewInS: Math.round(delay / 1000),
          renewal: Boolean(had),
        },
        'mesh certificate issued',
      );
      this.#emit();
      this.#schedule(delay);
    } catch (err) {
      const message = (err as { details?: string }).details ?? (err as Error).message;
      const code = /^(OPERATOR_ERR_[A-Z_]+)/.exec(message)?.[1] ?? 'error';
      this.#lastError = message;
      o.metrics.certificateRenewals.inc({ result: code });
      const cap = Math.min(60_000, 1000 * 2 ** this.#failures++);
      const delay = cap / 2 + o.random.next() * (cap / 2);
      const left = this.#material ? Math.round((this.#material.notAfter - o.clock.wallNow()) / 1000) : 0;
      o.log.warn({ err: message, retryInMs: Math.round(delay), certificateLeftS: left }, 'mesh certificate request failed');
      this.#schedule(delay);
    }
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    this.#timer?.cancel();
    this.#timer = this.#o.clock.setTimeout(() => void this.#renew(), ms, { unref: true });
  }
}
