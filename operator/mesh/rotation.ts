/**
 * Trust-anchor rotation, decided (pure): the anchor Secret holds its own rotation's state, and each
 * look at it yields at most one step. Trust is widened before it is used and narrowed only after
 * nothing uses the old anchor, so no handshake between sidecars fails on the way:
 *
 *   idle ──(asked: the rotate annotation; or, for an anchor the operator made, a third of its life left)──► trusting
 *        a new anchor is made (next.crt, next.key) and ca.crt trusts both: sidecars get the
 *        widened bundle in their next snapshot; nothing is signed by the new anchor yet.
 *   trusting ──(a step later)──► issuing
 *        the new anchor becomes the active one (tls.crt, tls.key); the issuer is remade from it;
 *        sidecars see the issuer change and renew within seconds. Both anchors are still trusted.
 *   issuing ──(a step later)──► idle
 *        ca.crt trusts only the new anchor; the rotation is recorded as done.
 *
 * A step (--mesh-rotation-step, 10 minutes by default) must cover a snapshot reaching every
 * sidecar and every sidecar renewing; replicas follow the Secrets through a watch.
 */

export const rotateAnnotation = 'mesh.ballast.dev/rotate';
export const rotatedAnnotation = 'mesh.ballast.dev/rotated';
export const rotationAnnotation = 'mesh.ballast.dev/rotation';

export type Phase = 'trusting' | 'issuing';

export interface AnchorState {
  /** The active anchor (signs issuers) and its key ('' when the user keeps it elsewhere). */
  activePem: string;
  activeKeyPem: boolean;
  /** The anchors trusted (ca.crt), PEM each. */
  trusted: string[];
  /** The anchor being introduced (trusting), if any. */
  nextPem: string;
  annotations: Record<string, string>;
  /** The active anchor's validity, Unix ms. */
  activeFrom: number;
  activeTo: number;
  /** The operator made this Secret (and may rotate it as it nears its end); a user's is rotated only when asked. */
  managed: boolean;
}

export interface Rotation {
  phase: Phase;
  /** When the phase began (Unix ms). */
  since: number;
  /** What asked for it: the rotate annotation's value, or 'expiry'. */
  request: string;
}

export type Step =
  | { kind: 'none'; /** When to look again (Unix ms), if a step is pending. */ recheckAt?: number; why?: string }
  | { kind: 'begin'; request: string }
  | { kind: 'activate'; rotation: Rotation }
  | { kind: 'finish'; rotation: Rotation };

export function readRotation(annotations: Record<string, string>): Rotation | undefined {
  const raw = annotations[rotationAnnotation];
  if (!raw) return undefined;
  try {
    const r = JSON.parse(raw) as Rotation;
    return r.phase === 'trusting' || r.phase === 'issuing' ? r : undefined;
  } catch {
    return undefined;
  }
}

/** The one step to take now. */
export function planRotation(s: AnchorState, now: number, stepMs: number): Step {
  const r = readRotation(s.annotations);
  if (!r) {
    const asked = s.annotations[rotateAnnotation];
    const request = asked && asked !== s.annotations[rotatedAnnotation] ? asked : undefined;
    const expiring = s.managed && s.activeTo - now < (s.activeTo - s.activeFrom) / 3;
    if (!request && !expiring) return { kind: 'none' };
    if (!s.activeKeyPem)
      return {
        kind: 'none',
        why: "the trust anchor Secret has no tls.key, so the operator cannot make the next anchor's issuer: rotate it yourself (add the new anchor to ca.crt, then provide an issuer it signed)",
      };
    return { kind: 'begin', request: request ?? 'expiry' };
  }
  const due = r.since + stepMs;
  if (now < due) return { kind: 'none', recheckAt: due };
  if (r.phase === 'trusting') return s.nextPem ? { kind: 'activate', rotation: r } : { kind: 'finish', rotation: r };
  return { kind: 'finish', rotation: r };
}
