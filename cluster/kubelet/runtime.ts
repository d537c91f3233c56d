/**
 * What the process kubelet keeps per pod while it runs, and the pod status it reports from it.
 */
import type { ChildProcess } from 'node:child_process';
import type { V1Container, V1Pod, V1PodStatus } from '@kubernetes/client-node';
import type { TimerHandle } from '../../lib/clock.ts';
import type { PodSandbox } from './network.ts';
import type { ProbeWorker } from './probes.ts';

export interface RunningContainer {
  name: string;
  /** init: runs to completion before the main containers; sidecar: an init container with restartPolicy Always. */
  kind: 'init' | 'sidecar' | 'main';
  /** An init container that exited 0. */
  completed: boolean;
  proc: ChildProcess | undefined;
  restarts: number;
  startedAt: string | undefined;
  lastExit: { code: number | null; signal: string | null; at: string } | undefined;
  waitingReason: string | undefined;
  restartTimer: TimerHandle | undefined;
  /** The startup probe passed (or there is none). */
  started: boolean;
  /** The readiness probe's verdict (true when there is none). */
  ready: boolean;
  probes: ProbeWorker[];
}

export interface PodRuntime {
  uid: string;
  /** The pod as it was when it started (its containers' specs, for hooks and restarts). */
  pod: V1Pod;
  dir: string;
  /** Refreshes projected service-account tokens before they expire. */
  tokenTimer: TimerHandle | undefined;
  volumes: Map<string, string>;
  sandbox: PodSandbox;
  containers: Map<string, RunningContainer>;
  startTime: string;
  terminating: boolean;
  /** Every init container completed (or, for sidecars, started). */
  initialized: boolean;
  /** A regular init container failed under restartPolicy Never. */
  failed: boolean;
  /** configMapKeyRef / secretKeyRef values, read once when the pod starts. */
  envRefs: Map<string, string>;
}

/** The status a user sees: phase, conditions, container states, addresses. */
export function podStatus(pod: V1Pod, rt: PodRuntime, hostIP: string): V1PodStatus & { containerStatuses: NonNullable<V1PodStatus['containerStatuses']> } {
  const now = new Date();
  const statusOf = (c: V1Container) => {
    const rc = rt.containers.get(c.name);
    const running = rc?.proc !== undefined;
    const started = running && rc?.started === true;
    const state = rc?.completed
      ? { terminated: { exitCode: 0, reason: 'Completed', finishedAt: new Date(rc.lastExit?.at ?? now) } }
      : running ? { running: { startedAt: new Date(rc?.startedAt ?? now) } } : { waiting: { reason: rc?.waitingReason ?? 'ContainerCreating' } };
    return {
      name: c.name, image: c.image ?? '', imageID: '', ready: started && rc?.ready === true, started, restartCount: rc?.restarts ?? 0, state,
      ...(rc?.lastExit && !rc.completed ? { lastState: { terminated: { exitCode: rc.lastExit.code ?? 137, signal: 0, reason: rc.lastExit.signal ? 'Killed' : 'Error', finishedAt: new Date(rc.lastExit.at) } } } : {}),
    };
  };
  const statuses = (pod.spec?.containers ?? []).map(statusOf);
  const initStatuses = (pod.spec?.initContainers ?? []).map(statusOf);
  const ready = rt.initialized && statuses.every((s) => s.ready);
  const cond = (type: string, ok: boolean) => ({ type, status: ok ? 'True' : 'False', lastTransitionTime: now });
  return {
    phase: rt.failed ? 'Failed' : rt.initialized ? 'Running' : 'Pending', hostIP, hostIPs: [{ ip: hostIP }], podIP: rt.sandbox.ip, podIPs: [{ ip: rt.sandbox.ip }], startTime: new Date(rt.startTime),
    conditions: [cond('PodScheduled', true), cond('Initialized', rt.initialized), cond('ContainersReady', ready), cond('Ready', ready)],
    containerStatuses: statuses,
    ...(initStatuses.length > 0 ? { initContainerStatuses: initStatuses } : {}),
  };
}
