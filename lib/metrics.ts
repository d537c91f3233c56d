/**
 * Prometheus metrics. One registry per process ({@link processMetrics}) holds the default Node
 * process metrics and every component's metrics; helpers declare counters, gauges and
 * histograms with a fixed label set, typed so a label cannot be misspelt.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type * as PromClient from 'prom-client';

export type { Counter, Gauge, Histogram } from 'prom-client';

// prom-client's own modules rather than its index: the index also loads the cluster aggregator,
// the Pushgateway client (node:http, node:https), summaries (tdigest, bintrees), and, for the
// default CPU counters' exemplars, @opentelemetry/api: 12 MiB in a process that loads nothing
// else, 1.7 MiB in the idle sidecar, which shares most of that cost with what else it loads
// (A/B, median of 5; docs/sidecar.md, Memory). The metric types and the
// default metrics are prom-client's, pinned by the lockfile; only the three CPU counters are
// ours (processCpu below), with prom-client's names, help and values. lib/metrics.test.ts checks
// that the exposition names every metric prom-client's collectDefaultMetrics does.
const require = createRequire(import.meta.url);
const Registry = require('prom-client/lib/registry.js') as typeof PromClient.Registry;
const Counter = require('prom-client/lib/counter.js') as typeof PromClient.Counter;
const Gauge = require('prom-client/lib/gauge.js') as typeof PromClient.Gauge;
const Histogram = require('prom-client/lib/histogram.js') as typeof PromClient.Histogram;
type Registry = PromClient.Registry;
type Counter<L extends string> = PromClient.Counter<L>;
type Gauge<L extends string> = PromClient.Gauge<L>;
type Histogram<L extends string> = PromClient.Histogram<L>;

/** prom-client's default metrics (lib/defaultMetrics.js's list) but its processCpuTotal. */
const defaultMetricModules = [
  'processStartTime',
  'osMemoryHeap',
  'processOpenFileDescriptors',
  'processMaxFileDescriptors',
  'eventLoopLag',
  'processResources',
  'processHandles',
  'processRequests',
  'heapSizeAndUsed',
  'heapSpacesSizeAndUsed',
  'version',
  'gc',
];

function collectDefaultMetrics(registry: Registry): void {
  const config = { register: registry, eventLoopMonitoringPrecision: 10 };
  processCpu(registry);
  for (const m of defaultMetricModules) (require(`prom-client/lib/metrics/${m}.js`) as (r: Registry, c: object) => void)(registry, config);
}

/** process_cpu_{user,system}_seconds_total and process_cpu_seconds_total, as prom-client's processCpuTotal. */
function processCpu(registry: Registry): void {
  let last = process.cpuUsage();
  const user: Counter<never> = new Counter({
    name: 'process_cpu_user_seconds_total',
    help: 'Total user CPU time spent in seconds.',
    registers: [registry],
    // The first of the three to be collected sets all three (the registry reads them in order).
    collect() {
      const now = process.cpuUsage();
      const u = (now.user - last.user) / 1e6;
      const s = (now.system - last.system) / 1e6;
      last = now;
      user.inc(u);
      system.inc(s);
      total.inc(u + s);
    },
  });
  const system = new Counter({
    name: 'process_cpu_system_seconds_total',
    help: 'Total system CPU time spent in seconds.',
    registers: [registry],
  });
  const total = new Counter({
    name: 'process_cpu_seconds_total',
    help: 'Total user and system CPU time spent in seconds.',
    registers: [registry],
  });
}

/** A registry with get-or-create helpers. */
export class Metrics {
  readonly registry: Registry;

  constructor(o: { defaultMetrics?: boolean } = {}) {
    this.registry = new Registry();
    if (o.defaultMetrics ?? true) collectDefaultMetrics(this.registry);
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
