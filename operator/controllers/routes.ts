/**
 * Gateway API route status for the mesh (leader only): every HTTPRoute and GRPCRoute with a
 * Service parentRef gets, per such parent, `Accepted` and `ResolvedRefs` under the mesh's
 * controller name (operator/specs/gateway.ts decides them). Entries other controllers wrote (a
 * Gateway's) are kept. Level-triggered like the ResiliencePolicy status: any change to routes,
 * Services or ReferenceGrants re-derives every route's status, and only a changed one is written
 * (a merge patch of the status subresource, with the resourceVersion read, so a concurrent
 * writer's change is not overwritten but retried against).
 */
import { type CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { V1Service } from '@kubernetes/client-node';
import {
  type GatewayRoute,
  type ReferenceGrant,
  type RouteParentStatus,
  gatewayGroup,
  gatewayVersion,
  meshControllerName,
} from '../../api/gateway.ts';
import type { Clock } from '../../lib/clock.ts';
import { StatusQueue } from '../../lib/kube/status-queue.ts';
import type { Logger } from '../../lib/log.ts';
import type { Cache } from '../discovery/server.ts';
import { translateRoute } from '../specs/gateway.ts';

export interface RouteStatusDeps {
  httpRoutes: Cache<GatewayRoute>;
  grpcRoutes: Cache<GatewayRoute>;
  grants: Cache<ReferenceGrant>;
  services: Cache<V1Service>;
  custom: CustomObjectsApi;
  clock: Clock;
  log: Logger;
}

/** Our parents' status with each condition's lastTransitionTime kept where its status did not change. */
export function mergeParents(current: readonly RouteParentStatus[] | undefined, ours: RouteParentStatus[]): RouteParentStatus[] {
  const others = (current ?? []).filter((p) => p.controllerName !== meshControllerName);
  const before = (current ?? []).filter((p) => p.controllerName === meshControllerName);
  const key = (p: RouteParentStatus): string => JSON.stringify([p.parentRef.namespace ?? '', p.parentRef.name, p.parentRef.port ?? 0]);
  const merged = ours.map((p) => {
    const prev = before.find((b) => key(b) === key(p));
    return {
      ...p,
      conditions: p.conditions.map((c) => {
        const old = prev?.conditions.find((x) => x.type === c.type);
        return old && old.status === c.status && old.lastTransitionTime ? { ...c, lastTransitionTime: old.lastTransitionTime } : c;
      }),
    };
  });
  return [...others, ...merged];
}

const signature = (ps: readonly RouteParentStatus[] | undefined): string =>
  JSON.stringify(
    (ps ?? [])
      .filter((p) => p.controllerName === meshControllerName)
      .map((p) => [p.parentRef, p.conditions.map((c) => [c.type, c.status, c.reason, c.message, c.observedGeneration])]),
  );

export class RouteStatus {
  readonly #deps: RouteStatusDeps;
  readonly #queue: StatusQueue;
  readonly #written = new Map<string, string>();

  constructor(d: RouteStatusDeps) {
    this.#deps = d;
    this.#queue = new StatusQueue({
      clock: d.clock,
      log: d.log,
      what: 'route',
      keys: () => [
        ...d.httpRoutes.list().map((r) => `HTTPRoute/${r.metadata.namespace}/${r.metadata.name}`),
        ...d.grpcRoutes.list().map((r) => `GRPCRoute/${r.metadata.namespace}/${r.metadata.name}`),
      ],
      sync: (key) => this.sync(key),
    });
    const changed = (): void => this.#queue.schedule();
    d.httpRoutes.onChange(changed);
    d.grpcRoutes.onChange(changed);
    d.grants.onChange(changed);
    d.services.onChange(changed);
  }

  set leading(v: boolean) {
    this.#queue.leading = v;
  }

  stop(): void {
    this.#queue.stop();
  }

  /** `<kind>/<namespace>/<name>`: derive the route's mesh status and write it if it changed. */
  async sync(key: string): Promise<void> {
    const [kind, namespace, name] = key.split('/') as ['HTTPRoute' | 'GRPCRoute', string, string];
    const d = this.#deps;
    const cache = kind === 'HTTPRoute' ? d.httpRoutes : d.grpcRoutes;
    const found = cache.list().find((r) => r.metadata.namespace === namespace && r.metadata.name === name);
    if (!found) {
      this.#written.delete(key);
      return;
    }
    const route: GatewayRoute = { ...found, kind };
    const now = new Date(d.clock.wallNow()).toISOString();
    const { status } = translateRoute(route, { routes: [], grants: d.grants.list(), services: d.services.list() }, now);
    if (status.length === 0 && !(route.status?.parents ?? []).some((p) => p.controllerName === meshControllerName)) return;
    const sig = signature(status);
    // Remembered with the route's uid: a route deleted and made again under the same name (as the
    // conformance suite does from test to test) starts with no status, whatever its predecessor had.
    const memo = `${route.metadata.uid ?? ''}:${route.metadata.generation}:${sig}`;
    if (this.#written.get(key) === memo || signature(route.status?.parents) === sig) return;
    const parents = mergeParents(route.status?.parents, status);
    await d.custom.patchNamespacedCustomObjectStatus(
      {
        group: gatewayGroup,
        version: gatewayVersion,
        namespace,
        plural: kind === 'HTTPRoute' ? 'httproutes' : 'grpcroutes',
        name,
        body: { metadata: { resourceVersion: found.metadata.resourceVersion }, status: { parents } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    this.#written.set(key, memo);
  }
}
