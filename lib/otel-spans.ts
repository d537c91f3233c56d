/** Span helpers for the programs' own spans (lib/otel.ts starts the SDK that exports them). */
import { type Context, ROOT_CONTEXT, type Span, SpanKind, SpanStatusCode, type Tracer, propagation } from '@opentelemetry/api';

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
