/** Building a step: what the plans return. */
import type { Action, Step, StepEvent, StepStatus } from './types.ts';

/** A step that performs `actions` then records `events`. */
export function step(status: StepStatus, actions: Action[] = [], events: StepEvent[] = []): Step {
  return { ...status, ensureObjects: true, actions, events };
}
