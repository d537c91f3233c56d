/**
 * The sidecar's side of transparent interception: the two capture listeners, and which
 * upstream or inbound listener an intercepted connection's original destination belongs to.
 * Upstreams are found by their Service addresses (`addresses`, the cluster IPs discovery sends)
 * and their endpoints' addresses (a headless Service's pods); inbound listeners by their port.
 * Each upstream and inbound listener gets its own HTTP service of intercepted connections (made
 * when first used), with the same handlers as its listener, so a request takes the same path
 * however the application reached the sidecar.
 */
import type { Socket } from 'node:net';
import type { Logger } from '../lib/log.ts';
import { type SidecarConfig, reachedDirectly } from './config.ts';
import type { SidecarMetrics } from './metrics.ts';
import { type CaptureRoutes, addressKey, captureListener } from './server/capture.ts';
import { type Listener, type ServeOptions, type Served, type Handler, serve, splitAddress } from './server/listener.ts';

export interface ServiceOf {
  handler: Handler;
  options: ServeOptions;
}

export class Interception {
  readonly #log: Logger;
  readonly #metrics: SidecarMetrics;
  readonly #lookup: ((s: Socket) => { host: string; port: number } | undefined) | undefined;
  #byAddress = new Map<string, string>();
  #inboundByPort = new Map<number, string>();
  /** `up:<name>` / `in:<name>` → how to serve it and the configuration it was made from. */
  #want = new Map<string, { ident: string; make: () => ServiceOf }>();
  readonly #served = new Map<string, { ident: string; served: Served }>();
  readonly #listeners = new Map<string, { addr: string; listener: Listener }>();

  constructor(log: Logger, metrics: SidecarMetrics, lookup?: (s: Socket) => { host: string; port: number } | undefined) {
    this.#log = log;
    this.#metrics = metrics;
    this.#lookup = lookup;
  }

  /** The capture listener's port (`outbound` / `inbound`), when open. */
  port(direction: 'outbound' | 'inbound'): number | undefined {
    return this.#listeners.get(direction)?.listener.port;
  }

  /**
   * Take a new configuration: what each upstream and inbound listener is served with
   * (`services`, by `up:<name>` / `in:<name>`, with an identity of their configuration), and the
   * capture listeners to have open.
   */
  async apply(c: SidecarConfig, services: Map<string, { ident: string; make: () => ServiceOf }>, drainMs: number): Promise<void> {
    const byAddress = new Map<string, string>();
    for (const u of c.upstreams) {
      for (const a of u.addresses) if (!byAddress.has(a)) byAddress.set(a, u.name);
      // A Service with a cluster IP is reached by it: a call straight to one of its pods is not a
      // call to the Service, and its routes and policy do not apply (the Gateway API's "frontend").
      // A headless Service has only its pods' addresses. (One reached only as a Gateway API
      // route's backend is not reached by address at all.)
      if (u.addresses.length === 0 && reachedDirectly(u))
        for (const e of u.endpoints) if (!byAddress.has(e.address)) byAddress.set(e.address, u.name);
    }
    this.#byAddress = byAddress;
    this.#inboundByPort = new Map(c.inbound.map((ib) => [splitAddress(ib.listen).port, ib.name]));
    this.#want = services;
    const gone: Served[] = [];
    for (const [key, s] of this.#served) {
      if (services.get(key)?.ident === s.ident) continue;
      this.#served.delete(key);
      gone.push(s.served);
    }
    const listeners: Array<['outbound' | 'inbound', string]> = [
      ['outbound', c.capture.outbound],
      ['inbound', c.capture.inbound],
    ];
    for (const [direction, addr] of listeners) {
      const have = this.#listeners.get(direction);
      if (have && have.addr === addr) continue;
      if (have) {
        this.#listeners.delete(direction);
        await have.listener.close(drainMs);
      }
      if (!addr) continue;
      const listener = await captureListener(addr, direction, this.#routes(direction), this.#log, this.#lookup);
      this.#listeners.set(direction, { addr, listener });
    }
    await Promise.all(gone.map((s) => s.close(drainMs)));
  }

  #routes(direction: 'outbound' | 'inbound'): CaptureRoutes {
    return {
      route: (dst) => {
        const name = direction === 'outbound' ? this.#byAddress.get(addressKey(dst.host, dst.port)) : this.#inboundByPort.get(dst.port);
        return name === undefined ? undefined : this.#service(direction === 'outbound' ? `up:${name}` : `in:${name}`);
      },
      // Inbound connections for a port no inbound listener claims go to the application's own port.
      passTo: (dst) => (direction === 'outbound' ? dst : { host: '127.0.0.1', port: dst.port }),
      count: (result) => this.#metrics.intercepted.inc({ direction, result }),
    };
  }

  #service(key: string): Served | undefined {
    const have = this.#served.get(key);
    if (have) return have.served;
    const want = this.#want.get(key);
    if (!want) return undefined;
    const s = want.make();
    const served = serve(s.handler, s.options);
    this.#served.set(key, { ident: want.ident, served });
    return served;
  }

  async close(drainMs: number): Promise<void> {
    const listeners = [...this.#listeners.values()].map((l) => l.listener.close(drainMs));
    const served = [...this.#served.values()].map((s) => s.served.close(drainMs));
    this.#listeners.clear();
    this.#served.clear();
    await Promise.all([...listeners, ...served]);
  }
}
