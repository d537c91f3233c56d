/**
 * OpenTelemetry for every program. When OTEL_EXPORTER_OTLP_ENDPOINT (or
 * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set, `@opentelemetry/sdk-node` is started with the
 * standard OTEL_* environment (exporter protocol, headers, sampler, resource attributes) and no
 * auto-instrumentation: the programs create the spans that matter themselves (the store a
 * server span per gRPC call, the sidecar a client span per attempt, the operator a span per
 * reconcile), and W3C trace context joins them. Without those variables the SDK is not loaded;
 * span helpers (which need `@opentelemetry/api` loaded) are in lib/otel-spans.ts.
 */
import type { Tracer } from '@opentelemetry/api';

export interface Telemetry {
  readonly tracer: Tracer;
  /** Export what is buffered and stop. */
  shutdown(): Promise<void>;
}

type Env = Readonly<Record<string, string | undefined>>;

export function telemetryConfigured(env: Env): boolean {
  if ((env['OTEL_SDK_DISABLED'] ?? '').toLowerCase() === 'true') return false;
  return Boolean(env['OTEL_EXPORTER_OTLP_ENDPOINT'] || env['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT']);
}

/** Start the SDK for `program` (service.name ballast-<program> unless OTEL_SERVICE_NAME says otherwise). */
export async function startTelemetry(program: string, env: Env = process.env): Promise<Telemetry | undefined> {
  if (!telemetryConfigured(env)) return undefined;
  const { NodeSDK } = await import('@opentelemetry/sdk-node');
  const { trace } = await import('@opentelemetry/api');
  const sdk = new NodeSDK({ serviceName: env['OTEL_SERVICE_NAME'] || `ballast-${program}`, instrumentations: [] });
  sdk.start();
  return { tracer: trace.getTracer(`ballast-${program}`), shutdown: () => sdk.shutdown() };
}

/** A lifecycle component that flushes and stops the SDK last (add it first). */
export function telemetryComponent(t: Telemetry | undefined): { name: string; start(): void; stop(): Promise<void> } {
  return {
    name: 'telemetry',
    start: () => undefined,
    stop: async () => {
      await t?.shutdown().catch(() => undefined);
    },
  };
}
