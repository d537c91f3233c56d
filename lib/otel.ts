/**
 * OpenTelemetry for every program. When OTEL_EXPORTER_OTLP_ENDPOINT (or
 * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set, `@opentelemetry/sdk-node` is started with the
 * standard OTEL_* environment (exporter protocol, headers, sampler, resource attributes) and no
 * auto-instrumentation: the programs create the spans that matter themselves (the store a
 * server span per gRPC call, the sidecar a client span per attempt, the operator a span per
 * reconcile), and W3C trace context joins them. Without those variables nothing is loaded.
 */
import { type Context, ROOT_CONTEXT, type Span, SpanKind, SpanStatusCode, type Tracer, propagation, trace } from '@opentelemetry/api';

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
  const sdk = new NodeSDK({ serviceName: env['OTEL_SERVICE_NAME'] || `ballast-${program}`, instrumentations: [] });
  sdk.start();
  return { tracer: trace.getTracer(`ballast-${program}`), shutdown: () => sdk.shutdown() };
}

/** The caller's context from request headers or gRPC metadata (W3C traceparent/tracestate). */
export function extractContext(get: (name: string) => string | undefined): Context {
  const carrier: Record<string, string> = {};
  for (const k of ['traceparent', 'tracestate', 'baggage']) {
    const v = get(k);
    if (v) carrier[k] = v;
  }
  return Object.keys(carrier).length > 0 ? propagation.extract(ROOT_CONTEXT, carrier) : ROOT_CONTEXT;
}

/** A server span for one gRPC call; end it with the call's status code. */
export function grpcServerSpan(
  tracer: Tracer,
  service: string,
  method: string,
  parent: Context,
): { span: Span; end(code: number, message?: string): void } {
  const span = tracer.startSpan(
    `${service}/${method}`,
    { kind: SpanKind.SERVER, attributes: { 'rpc.system': 'grpc', 'rpc.service': service, 'rpc.method': method } },
    parent,
  );
  return {
    span,
    end(code, message) {
      span.setAttribute('rpc.grpc.status_code', code);
      if (code !== 0) span.setStatus({ code: SpanStatusCode.ERROR, ...(message ? { message } : {}) });
      span.end();
    },
  };
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
