/**
 * Prometheus metrics. One registry per process ({@link processMetrics}) holds the default Node
 * process metrics and every component's metrics; helpers declare counters, gauges and
 * histograms with a fixed label set, typed so a label cannot be misspelt.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export type { Counter, Gauge, Histogram } from 'prom-client';

/** A registry with get-or-create helpers. */
export class Metrics {
  readonly registry: Registry;

  constructor(o: { defaultMetrics?: boolean } = {}) {
    this.registry = new Registry();
    if (o.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  counter<const L extends string = never>(name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
    return this.#getOrCreate(name, labelNames, () => new Counter<L>({ name, help, labelNames, registers: [this.registry] }));
  }

  gauge<const L extends string = never>(name: string, help: string, labelNames: readonly L[] = []): Gauge<L> {
    return this.#getOrCreate(name, labelNames, () => new Gauge<L>({ name, help, labelNames, registers: [this.registry] }));
  }

  histogram<const L extends string = never>(name: string, help: string, labelNames: readonly L[] = [], buckets?: number[]): Histogram<L> {
    return this.#getOrCreate(
      name,
      labelNames,
      () =>
        new Histogram<L>(
          buckets
            ? { name, help, labelNames, buckets, registers: [this.registry] }
            : { name, help, labelNames, registers: [this.registry] },
        ),
    );
  }

  /** The exposition text and its content type. */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  /** A node:http handler serving `GET /metrics`. */
  handler(): (req: IncomingMessage, res: ServerResponse) => void {
    return (req, res) => {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
        return;
      }
      this.render().then(
        ({ contentType, body }) => res.writeHead(200, { 'content-type': contentType }).end(req.method === 'HEAD' ? undefined : body),
        (err: unknown) =>
          res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics collection failed: ${(err as Error).message}\n`),
      );
    };
  }

  // Components may be created more than once per process (three Raft members in one test);
  // they share the metric, but only if they agree on its labels.
  #getOrCreate<M>(name: string, labelNames: readonly string[], make: () => M): M {
    const existing = this.registry.getSingleMetric(name) as unknown as { labelNames?: string[] } | undefined;
    if (existing) {
      const had = [...(existing.labelNames ?? [])].sort().join(',');
      if (had !== [...labelNames].sort().join(','))
        throw new Error(`metric ${name} registered twice with different labels: [${had}] and [${[...labelNames].sort().join(',')}]`);
      return existing as M;
    }
    return make();
  }
}

let shared: Metrics | undefined;

/** The process's one registry. */
export function processMetrics(): Metrics {
  shared ??= new Metrics();
  return shared;
}
