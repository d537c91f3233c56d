/**
 * The mesh's issuer as the operator runs it: the trust anchor and the issuer live in Secrets of
 * the operator's namespace (kubernetes.io/tls: tls.crt, tls.key, ca.crt, the layout cert-manager
 * writes, so cert-manager users can provide either). On start and hourly, every replica reads
 * them and makes what is missing: a trust anchor (when none is provided), and an issuer signed by
 * the anchor, remade when a third of its life is left or when the anchor no longer signs it.
 * Replicas race safely: whoever creates or replaces a Secret first wins, the others read it.
 *
 * A sidecar's certificate request (`certify`) carries its pod's projected ServiceAccount token;
 * a TokenReview proves who it is (identity.ts), and the certificate names that identity.
 */
import { X509Certificate } from 'node:crypto';
import type { AuthenticationV1Api, CoreV1Api, KubeConfig, V1Secret } from '@kubernetes/client-node';
import { SharedInformer } from '../../lib/kube/informer.ts';
import { planRotation, rotatedAnnotation, rotationAnnotation } from './rotation.ts';
import type { Clock, TimerHandle } from '../../lib/clock.ts';
import type { BallastError } from '../../lib/errors.ts';
import type { Logger } from '../../lib/log.ts';
import type { Metrics } from '../../lib/metrics.ts';
import { unlessNotFound } from '../../lib/kube/read.ts';
import { type WorkloadId, meshTokenAudience, parseSpiffeId, spiffeId, uriSans } from '../../api/mesh.ts';
import { experimental, type ServerCredentials } from '@grpc/grpc-js';
import { MemoryCertificateProvider } from '../../lib/cert-provider.ts';
import { newKeyAndCsr } from '../../lib/csr.ts';
import { catalogue } from '../errors.ts';
import { CsrError, type KeyedCert, makeIssuer, makeTrustAnchor, notAfterOf, signLeaf, signWorkload, signedBy, splitPem } from './ca.ts';
import { type ProvenIdentity, identityFromReview } from './identity.ts';

export interface MeshIssuerOptions {
  core: CoreV1Api;
  authn: AuthenticationV1Api;
  namespace: string;
  trustDomain: string;
  /** The trust anchor's Secret (made when missing). */
  anchorSecret: string;
  /** The issuer's Secret (made, and remade before expiry, when the anchor's key is at hand). */
  issuerSecret: string;
  /** How long workload certificates live. */
  certificateTtlMs: number;
  /** A trust-anchor rotation's step (rotation.ts): time for a new bundle, then new certificates, to reach every sidecar. */
  rotationStepMs: number;
  /** To watch the Secrets (every replica follows a rotation at once); absent: hourly checks only. */
  kubeconfig?: KubeConfig;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
}

export interface Certified {
  chainPem: string;
  bundlePem: string;
  spiffeId: string;
  notAfter: Date;
}

interface State {
  issuer: KeyedCert;
  bundlePem: string;
}

const b64 = (s: string): string => Buffer.from(s).toString('base64');
const unb64 = (s: string | undefined): string => (s ? Buffer.from(s, 'base64').toString() : '');
const day = 86_400_000;

export class MeshIssuer {
  readonly #o: MeshIssuerOptions;
  #state: State | undefined;
  #timer: TimerHandle | undefined;
  #retry: TimerHandle | undefined;
  #stopped = false;
  #refreshing: Promise<void> | undefined;
  readonly #expiry;
  readonly #issued;
  readonly #refused;
  #onChange: (() => void) | undefined;
  #again = false;
  #recheck: TimerHandle | undefined;
  #rotationBlocked = '';
  readonly #rotations;
  #informers: Array<SharedInformer<V1Secret>> = [];
  /** The discovery service's serving certificate (DNS names), renewed half-way and on a new issuer. */
  #serving: { provider: MemoryCertificateProvider; dnsNames: string[]; notAfter: number; issuerPem: string } | undefined;
  #servingTimer: TimerHandle | undefined;

  constructor(o: MeshIssuerOptions) {
    this.#o = o;
    this.#expiry = o.metrics.gauge(
      'ballast_operator_mesh_certificate_expiry_timestamp_seconds',
      "When the mesh's trust anchors and issuer expire (Unix seconds).",
      ['which', 'subject'],
    );
    this.#issued = o.metrics.counter('ballast_operator_mesh_certificates_issued_total', 'Workload certificates issued to sidecars.');
    this.#refused = o.metrics.counter('ballast_operator_mesh_certificate_refusals_total', 'Certificate requests refused, by error code.', [
      'code',
    ]);
    this.#issued.inc(0);
    this.#rotations = o.metrics.counter(
      'ballast_operator_mesh_anchor_rotation_steps_total',
      'Trust-anchor rotation steps taken by this replica (begin, activate, finish).',
      ['step'],
    );
  }

  /** The trust anchors sidecars must trust (PEM), once known. */
  get bundlePem(): string {
    return this.#state?.bundlePem ?? '';
  }

  /** Told when the trust bundle or the issuer changes (the discovery service tells every sidecar). */
  onChange(fn: () => void): void {
    this.#onChange = fn;
  }

  get trustDomain(): string {
    return this.#o.trustDomain;
  }

  /**
   * Load (or make) the anchor and issuer, then re-check hourly. A failure does not stop the
   * operator: it is logged and retried every 30 s until the issuer is loaded (certificate
   * requests meanwhile are refused as OPERATOR_ERR_MESH_ISSUER_UNAVAILABLE).
   */
  async start(): Promise<void> {
    const check = async (): Promise<void> => {
      try {
        await this.refresh();
      } catch (err) {
        this.#o.log.warn({ err: (err as Error).message }, 'the mesh issuer check failed; retrying');
        if (!this.#state && !this.#stopped) this.#retry = this.#o.clock.setTimeout(() => void check(), 30_000, { unref: true });
      }
    };
    await check();
    this.#timer = this.#o.clock.setInterval(() => void check(), 3_600_000, { unref: true });
    // Every replica follows the Secrets at once: a rotation's bundle and issuer reach its sidecars too.
    const kc = this.#o.kubeconfig;
    if (kc)
      for (const name of [this.#o.anchorSecret, this.#o.issuerSecret]) {
        const inf = new SharedInformer<V1Secret>({
          kubeconfig: kc,
          path: `/api/v1/namespaces/${this.#o.namespace}/secrets`,
          fieldSelector: `metadata.name=${name}`,
          list: () => this.#o.core.listNamespacedSecret({ namespace: this.#o.namespace, fieldSelector: `metadata.name=${name}` }),
          clock: this.#o.clock,
          log: this.#o.log,
        });
        let first = true;
        inf.onChange(() => {
          if (first) return void (first = false); // the initial list: already read
          void check();
        });
        this.#informers.push(inf);
        await inf.start();
      }
  }

  stop(): void {
    this.#stopped = true;
    this.#timer?.cancel();
    this.#retry?.cancel();
    this.#servingTimer?.cancel();
    this.#recheck?.cancel();
    for (const i of this.#informers) i.stop();
  }

  /**
   * gRPC server credentials for the discovery service: a certificate for `dnsNames` from the issuer
   * (renewed half-way through its life and whenever the issuer changes, without restarting the
   * server), client certificates asked for but optional (a sidecar without one yet sends its token).
   */
  async serverCredentials(dnsNames: string[]): Promise<ServerCredentials> {
    const provider = new MemoryCertificateProvider();
    this.#serving = { provider, dnsNames, notAfter: 0, issuerPem: '' };
    await this.#renewServing();
    return experimental.createCertificateProviderServerCredentials(provider, provider, false);
  }

  async #renewServing(): Promise<void> {
    const sv = this.#serving;
    const state = this.#state;
    if (!sv || !state || this.#stopped) return;
    const now = this.#o.clock.wallNow();
    const due = sv.issuerPem !== state.issuer.certPem || now >= sv.notAfter - this.#o.certificateTtlMs / 2;
    if (due) {
      const { keyPem, csrPem } = await newKeyAndCsr();
      const issued = await signLeaf(state.issuer, csrPem, { dns: sv.dnsNames }, new Date(now), this.#o.certificateTtlMs);
      sv.provider.setIdentity(issued.chainPem, keyPem);
      sv.notAfter = issued.notAfter.getTime();
      sv.issuerPem = state.issuer.certPem;
      this.#o.log.info({ dnsNames: sv.dnsNames, notAfter: issued.notAfter.toISOString() }, 'discovery serving certificate issued');
    }
    sv.provider.setCa(state.bundlePem);
    this.#servingTimer?.cancel();
    this.#servingTimer = this.#o.clock.setTimeout(
      () => void this.#renewServing().catch((err: unknown) => this.#o.log.warn({ err }, 'discovery serving certificate renewal failed')),
      Math.max(1000, sv.notAfter - this.#o.certificateTtlMs / 2 - this.#o.clock.wallNow()),
      { unref: true },
    );
  }

  /**
   * The workload a client certificate (DER) proves: signed by this operator's issuer, valid now,
   * with a SPIFFE ID of the trust domain. Undefined when it proves nothing.
   */
  verifyPeer(raw: Buffer | undefined): WorkloadId | undefined {
    const state = this.#state;
    if (!raw || !state) return undefined;
    try {
      const leaf = new X509Certificate(raw);
      const issuer = new X509Certificate(splitPem(state.issuer.certPem)[0] ?? state.issuer.certPem);
      const now = this.#o.clock.wallNow();
      if (!leaf.checkIssued(issuer) || !leaf.verify(issuer.publicKey)) return undefined;
      if (Date.parse(leaf.validFrom) > now || Date.parse(leaf.validTo) <= now) return undefined;
      const id = uriSans(leaf.subjectAltName)
        .map(parseSpiffeId)
        .find((x) => x?.trustDomain === this.#o.trustDomain);
      return id;
    } catch {
      return undefined;
    }
  }

  /** Who the sidecar with this token is (a TokenReview), claiming to run in `node`; throws a BallastError with the refusal's code. */
  async authenticate(token: string, node: string): Promise<ProvenIdentity> {
    if (!token)
      throw catalogue.error(
        'OPERATOR_ERR_MESH_TOKEN_MISSING',
        `no ServiceAccount token: send the pod's projected token (audience ${meshTokenAudience}) as "authorization: Bearer <token>"`,
      );
    const review = await this.#o.authn.createTokenReview({ body: { spec: { token, audiences: [meshTokenAudience] } } });
    const who = identityFromReview(review.status, node);
    if ('code' in who) throw catalogue.error(who.code, who.message);
    return who;
  }

  /** Read the Secrets, making or renewing what is needed (a call while one runs runs again after it). */
  refresh(): Promise<void> {
    if (this.#refreshing) {
      this.#again = true;
      return this.#refreshing;
    }
    const run = async (): Promise<void> => {
      do {
        this.#again = false;
        await this.#refresh();
      } while (this.#again && !this.#stopped);
    };
    this.#refreshing = run().finally(() => (this.#refreshing = undefined));
    return this.#refreshing;
  }

  /** Take the rotation's next step when one is due; resolves to the anchor Secret as it now is. */
  async #rotate(secret: V1Secret, now: number): Promise<V1Secret> {
    const o = this.#o;
    const a = secret.data ?? {};
    const active = unb64(a['tls.crt']) || unb64(a['ca.crt']);
    const trusted = splitPem(unb64(a['ca.crt']));
    const activeCert = new X509Certificate(splitPem(active)[0] ?? active);
    const annotations = secret.metadata?.annotations ?? {};
    const step = planRotation(
      {
        activePem: active,
        activeKeyPem: Boolean(a['tls.key']),
        trusted,
        nextPem: unb64(a['next.crt']),
        annotations,
        activeFrom: Date.parse(activeCert.validFrom),
        activeTo: Date.parse(activeCert.validTo),
        managed: secret.metadata?.labels?.['app.kubernetes.io/component'] === 'mesh',
      },
      now,
      o.rotationStepMs,
    );
    this.#recheck?.cancel();
    if (step.kind === 'none') {
      if (step.why && step.why !== this.#rotationBlocked) o.log.warn({ secret: o.anchorSecret }, step.why);
      this.#rotationBlocked = step.why ?? '';
      if (step.recheckAt !== undefined)
        this.#recheck = o.clock.setTimeout(() => void this.refresh().catch(() => undefined), Math.max(0, step.recheckAt - now) + 50, {
          unref: true,
        });
      return secret;
    }
    const data: Record<string, string> = Object.fromEntries(Object.entries(a).map(([k, v]) => [k, unb64(v)]));
    const notes: Record<string, string | undefined> = {};
    if (step.kind === 'begin') {
      const next = await makeTrustAnchor(o.trustDomain, new Date(now));
      data['next.crt'] = next.certPem;
      data['next.key'] = next.keyPem;
      data['ca.crt'] = [...new Set([...trusted, ...splitPem(active), next.certPem])].join('');
      notes[rotationAnnotation] = JSON.stringify({ phase: 'trusting', since: now, request: step.request });
    } else if (step.kind === 'activate') {
      data['tls.crt'] = data['next.crt'] ?? '';
      data['tls.key'] = data['next.key'] ?? '';
      data['next.crt'] = '';
      data['next.key'] = '';
      notes[rotationAnnotation] = JSON.stringify({ phase: 'issuing', since: now, request: step.rotation.request });
    } else {
      data['ca.crt'] = data['tls.crt'] ?? '';
      data['next.crt'] = '';
      data['next.key'] = '';
      notes[rotationAnnotation] = undefined;
      notes[rotatedAnnotation] = step.rotation.request;
    }
    const merged = Object.entries({ ...annotations, ...notes }).filter((e): e is [string, string] => e[1] !== undefined);
    const meta = { ...secret.metadata, annotations: Object.fromEntries(merged) };
    // Emptied keys (the next anchor, once active) go.
    const kept = Object.entries(data).filter(([, v]) => v !== '');
    const body: V1Secret = { ...secret, metadata: meta, data: Object.fromEntries(kept.map(([k, v]) => [k, b64(v)])) };
    try {
      const written = await o.core.replaceNamespacedSecret({ name: o.anchorSecret, namespace: o.namespace, body });
      const what = {
        begin: 'began: the new trust anchor is trusted next to the old',
        activate: 'the new trust anchor now signs the issuer',
        finish: 'done: only the new trust anchor is trusted',
      }[step.kind];
      o.log.info({ secret: o.anchorSecret, step: step.kind }, `mesh trust anchor rotation ${what}`);
      this.#rotations.inc({ step: step.kind });
      // The next step, a step from now.
      if (step.kind !== 'finish')
        this.#recheck = o.clock.setTimeout(() => void this.refresh().catch(() => undefined), o.rotationStepMs + 50, { unref: true });
      return written;
    } catch (err) {
      if ((err as { code?: number }).code !== 409) throw err;
      return (await this.#read(o.anchorSecret)) ?? secret; // another replica took the step
    }
  }

  async #refresh(): Promise<void> {
    const o = this.#o;
    const now = new Date(o.clock.wallNow());
    let anchorSecret = await this.#read(o.anchorSecret);
    if (!anchorSecret) {
      const anchor = await makeTrustAnchor(o.trustDomain, now);
      anchorSecret = await this.#create(o.anchorSecret, { 'tls.crt': anchor.certPem, 'tls.key': anchor.keyPem, 'ca.crt': anchor.certPem });
      o.log.info({ secret: o.anchorSecret, trustDomain: o.trustDomain }, 'made the mesh trust anchor');
    }
    if (anchorSecret.data?.['tls.crt'] || anchorSecret.data?.['ca.crt']) anchorSecret = await this.#rotate(anchorSecret, now.getTime());
    const a = anchorSecret.data ?? {};
    const anchorCert = unb64(a['tls.crt']) || unb64(a['ca.crt']);
    const anchorKey = unb64(a['tls.key']);
    // Trust every certificate the anchor Secret holds (ca.crt carries several during a rotation).
    const bundle = [...new Set([...splitPem(unb64(a['ca.crt'])), ...splitPem(anchorCert), ...splitPem(unb64(a['next.crt']))])];
    if (bundle.length === 0)
      throw catalogue.error(
        'OPERATOR_ERR_MESH_ISSUER_UNAVAILABLE',
        `the Secret ${o.namespace}/${o.anchorSecret} holds no certificate (tls.crt or ca.crt)`,
      );
    const bundlePem = bundle.join('');
    let issuerSecret = await this.#read(o.issuerSecret);
    const current = issuerSecret
      ? { certPem: unb64(issuerSecret.data?.['tls.crt']), keyPem: unb64(issuerSecret.data?.['tls.key']) }
      : undefined;
    const leafCert = current ? splitPem(current.certPem)[0] : undefined;
    // With the anchor's key at hand the issuer must be the active anchor's (a rotation moves it on);
    // a user's issuer need only chain to a trusted anchor.
    const signers = anchorKey ? splitPem(anchorCert).slice(0, 1) : bundle;
    const usable =
      current &&
      leafCert &&
      current.keyPem &&
      signers.some((anchor) => signedBy(leafCert, anchor)) &&
      (notAfterOf(leafCert)?.getTime() ?? 0) > now.getTime();
    const renewDue = usable && this.#renewDue(leafCert, now);
    if ((!usable || renewDue) && anchorKey) {
      const made = await makeIssuer({ certPem: splitPem(anchorCert)[0] ?? anchorCert, keyPem: anchorKey }, o.trustDomain, now);
      const data = { 'tls.crt': made.certPem, 'tls.key': made.keyPem, 'ca.crt': anchorCert };
      issuerSecret = issuerSecret ? await this.#replace(o.issuerSecret, issuerSecret, data) : await this.#create(o.issuerSecret, data);
      o.log.info(
        { secret: o.issuerSecret, notAfter: notAfterOf(made.certPem)?.toISOString(), renewal: Boolean(current) },
        'made the mesh issuer',
      );
    } else if (!usable) {
      throw catalogue.error(
        'OPERATOR_ERR_MESH_ISSUER_UNAVAILABLE',
        `the issuer Secret ${o.namespace}/${o.issuerSecret} is ${current ? 'expired or not signed by the trust anchor' : 'missing'}, and the trust anchor Secret ${o.anchorSecret} has no tls.key to make one; provide an issuer (tls.crt, tls.key) signed by the anchor`,
      );
    }
    const issuer = { certPem: unb64(issuerSecret?.data?.['tls.crt']), keyPem: unb64(issuerSecret?.data?.['tls.key']) };
    const changed = this.#state?.bundlePem !== bundlePem || this.#state?.issuer.certPem !== issuer.certPem;
    this.#state = { issuer, bundlePem };
    this.#expiry.reset();
    for (const pem of bundle) this.#setExpiry('trust-anchor', pem);
    this.#setExpiry('issuer', splitPem(issuer.certPem)[0] ?? issuer.certPem);
    if (changed) this.#onChange?.();
    if (this.#serving) await this.#renewServing();
  }

  /** The SHA-256 fingerprint of the issuer now signing (sidecars holding another's certificate renew). */
  get issuerFingerprint(): string {
    const pem = this.#state?.issuer.certPem;
    if (!pem) return '';
    return new X509Certificate(splitPem(pem)[0] ?? pem).fingerprint256;
  }

  #setExpiry(which: string, pem: string): void {
    const t = notAfterOf(pem);
    if (!t) return;
    const subject = new X509Certificate(pem).subject.replace(/\n/g, ', ');
    this.#expiry.set({ which, subject }, t.getTime() / 1000);
  }

  /** A third of the issuer's life left (at most 30 days before its end). */
  #renewDue(certPem: string, now: Date): boolean {
    const c = new X509Certificate(certPem);
    const from = new Date(c.validFrom).getTime();
    const to = new Date(c.validTo).getTime();
    return to - now.getTime() < Math.min((to - from) / 3, 30 * day);
  }

  async #read(name: string): Promise<V1Secret | undefined> {
    return unlessNotFound(this.#o.core.readNamespacedSecret({ name, namespace: this.#o.namespace }));
  }

  async #create(name: string, data: Record<string, string>): Promise<V1Secret> {
    const body: V1Secret = {
      metadata: {
        name,
        namespace: this.#o.namespace,
        labels: { 'app.kubernetes.io/part-of': 'ballast', 'app.kubernetes.io/component': 'mesh' },
      },
      type: 'kubernetes.io/tls',
      data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, b64(v)])),
    };
    try {
      return await this.#o.core.createNamespacedSecret({ namespace: this.#o.namespace, body });
    } catch (err) {
      if ((err as { code?: number }).code !== 409) throw err;
      const theirs = await this.#read(name); // another replica made it first
      if (!theirs) throw err;
      return theirs;
    }
  }

  async #replace(name: string, old: V1Secret, data: Record<string, string>): Promise<V1Secret> {
    const body: V1Secret = { ...old, data: { ...old.data, ...Object.fromEntries(Object.entries(data).map(([k, v]) => [k, b64(v)])) } };
    try {
      return await this.#o.core.replaceNamespacedSecret({ name, namespace: this.#o.namespace, body });
    } catch (err) {
      if ((err as { code?: number }).code !== 409) throw err;
      return (await this.#read(name)) ?? old; // another replica renewed it first
    }
  }

  /**
   * A certificate for the sidecar whose pod's projected token is `token` (it says it runs in `node`,
   * namespace/pod), for the key its `csrPem` proves. Throws a BallastError with the refusal's code.
   */
  async certify(token: string, node: string, csrPem: string): Promise<Certified> {
    try {
      return await this.#certify(token, node, csrPem);
    } catch (err) {
      const code = (err as BallastError).code ?? 'OPERATOR_ERR_MESH_ISSUER_UNAVAILABLE';
      this.#refused.inc({ code });
      this.#o.log.warn({ node, code, err: (err as Error).message }, 'refused a mesh certificate request');
      throw err;
    }
  }

  async #certify(token: string, node: string, csrPem: string): Promise<Certified> {
    const o = this.#o;
    const who = await this.authenticate(token, node);
    if (!this.#state) await this.refresh();
    const state = this.#state;
    if (!state) throw catalogue.error('OPERATOR_ERR_MESH_ISSUER_UNAVAILABLE', 'the mesh issuer is not loaded yet');
    const id = spiffeId({ trustDomain: o.trustDomain, namespace: who.namespace, serviceAccount: who.serviceAccount });
    let issued;
    try {
      issued = await signWorkload(state.issuer, csrPem, id, new Date(o.clock.wallNow()), o.certificateTtlMs);
    } catch (err) {
      if (err instanceof CsrError) throw catalogue.error('OPERATOR_ERR_MESH_CSR_INVALID', err.message);
      throw err;
    }
    this.#issued.inc();
    o.log.debug({ node, spiffeId: id, notAfter: issued.notAfter.toISOString() }, 'issued a mesh certificate');
    return { chainPem: issued.chainPem, bundlePem: state.bundlePem, spiffeId: id, notAfter: issued.notAfter };
  }
}
