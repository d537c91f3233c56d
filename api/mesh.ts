/**
 * The mesh's identities, shared by the operator (which issues them) and the sidecar (which
 * presents and checks them): SPIFFE IDs of the form `spiffe://<trust-domain>/ns/<namespace>/sa/<serviceaccount>`,
 * the audience of the projected ServiceAccount token a sidecar proves itself with, and the mTLS
 * modes of upstreams and inbound listeners.
 */

/** The audience of the projected token a sidecar sends the operator (checked with a TokenReview). */
export const meshTokenAudience = 'ballast.dev/mesh';

/** Where the injector mounts that token in the sidecar. */
export const meshTokenPath = '/var/run/secrets/ballast.dev/mesh/token';

/**
 * - `strict`: mTLS only (an inbound listener answers plaintext requests 403; an upstream refuses endpoints without an identity)
 * - `permissive`: mTLS with meshed peers, plaintext with the rest (the default)
 * - `off`: plaintext only
 */
export type MtlsMode = 'strict' | 'permissive' | 'off';
export const mtlsModes: readonly MtlsMode[] = ['strict', 'permissive', 'off'];

export interface WorkloadId {
  trustDomain: string;
  namespace: string;
  serviceAccount: string;
}

/** What is wrong with a trust domain, or undefined (SPIFFE: lowercase letters, digits, dots, dashes, underscores). */
export function trustDomainProblem(td: string): string | undefined {
  if (td.length === 0) return 'is empty';
  if (td.length > 255) return 'is longer than 255 characters';
  if (!/^[a-z0-9._-]+$/.test(td)) return `"${td}" may hold only lowercase letters, digits, '.', '-' and '_'`;
  return undefined;
}

export function spiffeId(id: WorkloadId): string {
  return `spiffe://${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
}

/** A Ballast workload SPIFFE ID's parts, or undefined when it is not one. */
export function parseSpiffeId(uri: string): WorkloadId | undefined {
  const m = /^spiffe:\/\/([a-z0-9._-]+)\/ns\/([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/sa\/([a-z0-9]([-a-z0-9.]*[a-z0-9])?)$/.exec(uri);
  if (!m) return undefined;
  return { trustDomain: m[1] as string, namespace: m[2] as string, serviceAccount: m[4] as string };
}

/** The URI SANs in a certificate's `subjectAltName` string (node:crypto / node:tls form: "URI:a, DNS:b"). */
export function uriSans(subjectAltName: string | undefined): string[] {
  if (!subjectAltName) return [];
  return subjectAltName
    .split(/,\s*/)
    .filter((s) => s.startsWith('URI:'))
    .map((s) => s.slice(4));
}
