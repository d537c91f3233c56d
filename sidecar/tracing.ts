/**
 * OpenTelemetry traces: one client span per attempt (first try, retry or hedge), a child of the
 * caller's W3C `traceparent` when it sent one, and the attempt's own span passed on as the new
 * `traceparent` so the upstream's spans hang under it. Spans go to the file's collector
 * (`tracing.endpoint`, OTLP/HTTP, batched), else through the process' OpenTelemetry SDK when
 * OTEL_EXPORTER_OTLP_ENDPOINT set one up (lib/otel.ts). With neither, nothing is created and
 * `traceparent`/`tracestate` pass through untouched.
 */
import { type Context, ROOT_CONTEXT, type Span, SpanKind, SpanStatusCode, type TraceFlags, type Tracer, trace } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler, TracerProvider } from '@opentelemetry/sdk-trace';
import { type TraceParent, formatTraceParent } from './traceparent.ts';

export type { TraceParent } from './traceparent.ts';

export interface TracingConfig {
  /** OTLP/HTTP base URL (…:4318); empty: off. */
  endpoint: string;
  /** Share of new traces (no sampled parent) that are recorded. */
  sampleRatio: number;
  serviceName: string;
}

export interface AttemptSpan {
  /** The header value to send upstream. */
  readonly traceparent: string;
  end(o: { status?: number; grpcStatus?: number; error?: string }): void;
}

export class Tracing {
  readonly #tracer: Tracer;
  readonly #provider: TracerProvider | undefined;

  private constructor(tracer: Tracer, provider?: TracerProvider) {
    this.#tracer = tracer;
    this.#provider = provider;
  }

  /** Spans to the sidecar's own collector (the file's `tracing.endpoint`), batched over OTLP/HTTP. */
  static withCollector(c: TracingConfig): Tracing {
    const provider = new TracerProvider({
      resource: resourceFromAttributes({ 'service.name': c.serviceName }),
      sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(c.sampleRatio) }),
      spanProcessors: [new BatchSpanProcessor({ exporter: new OTLPTraceExporter({ url: `${c.endpoint.replace(/\/$/, '')}/v1/traces` }) })],
    });
    return new Tracing(provider.getTracer('ballast-sidecar'), provider);
  }

  /** Spans through the process' OpenTelemetry SDK (started from OTEL_* variables; it exports and flushes them). */
  static withTracer(tracer: Tracer): Tracing {
    return new Tracing(tracer);
  }

  /** Start an attempt's span under the caller's context (if any). */
  attempt(
    parent: TraceParent | undefined,
    a: { upstream: string; endpoint: string; method: string; path: string; attempt: number; hedge: boolean },
  ): AttemptSpan {
    const ctx: Context = parent
      ? trace.setSpanContext(ROOT_CONTEXT, {
          traceId: parent.traceId,
          spanId: parent.spanId,
          traceFlags: parent.flags as TraceFlags,
          isRemote: true,
        })
      : ROOT_CONTEXT;
    const span: Span = this.#tracer.startSpan(
      `${a.method} ${a.upstream}`,
      {
        kind: SpanKind.CLIENT,
        attributes: {
          'http.request.method': a.method,
          'url.path': a.path,
          'server.address': a.endpoint,
          'ballast.upstream': a.upstream,
          'ballast.attempt': a.attempt,
          'ballast.hedge': a.hedge,
        },
      },
      ctx,
    );
    const sc = span.spanContext();
    return {
      traceparent: formatTraceParent({ traceId: sc.traceId, spanId: sc.spanId, flags: sc.traceFlags }),
      end(o) {
        if (o.status !== undefined) span.setAttribute('http.response.status_code', o.status);
        if (o.grpcStatus !== undefined) span.setAttribute('rpc.grpc.status_code', o.grpcStatus);
        if (o.error !== undefined) span.setStatus({ code: SpanStatusCode.ERROR, message: o.error });
        else if ((o.status ?? 0) >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
        span.end();
      },
    };
  }

  async shutdown(): Promise<void> {
    await this.#provider?.shutdown();
  }

  async flush(): Promise<void> {
    await this.#provider?.forceFlush();
  }
}
