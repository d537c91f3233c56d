/**
 * Status conditions as Kubernetes API conventions describe them (metav1.Condition): one entry per
 * type, with the generation it was computed for, and a transition time that moves only when the
 * condition's status changes. Shared by the controllers; pure.
 */

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  observedGeneration: number;
  /** RFC 3339; kept from the previous condition of the same type while its status is unchanged. */
  lastTransitionTime: string;
}

interface Previous {
  type: string;
  status: string;
  lastTransitionTime?: string | Date;
}

/** The condition `c` as of `now`, its transition time carried over from `previous` when its status did not change. */
export function condition(
  previous: readonly Previous[] | undefined,
  c: Pick<Condition, 'type' | 'status' | 'reason' | 'message'>,
  generation: number,
  now: string,
): Condition {
  const prev = previous?.find((p) => p.type === c.type);
  const kept = prev && prev.status === c.status && prev.lastTransitionTime ? new Date(prev.lastTransitionTime).toISOString() : undefined;
  return { ...c, observedGeneration: generation, lastTransitionTime: kept ?? now };
}

/** A status as text without its conditions' transition times: equal texts mean nothing to write. */
export function statusSignature(status: object | undefined): string {
  const conditions = (status as { conditions?: readonly object[] } | undefined)?.conditions;
  return JSON.stringify({ ...status, conditions: conditions?.map((c) => ({ ...c, lastTransitionTime: undefined })) });
}
