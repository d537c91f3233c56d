/** W3C Trace Context `traceparent` (level 1), parsed and formatted (pure; no OpenTelemetry SDK loaded). */

/** A parsed W3C traceparent. */
export interface TraceParent {
  traceId: string;
  spanId: string;
  flags: number;
}

const re = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** Parse `traceparent` (W3C Trace Context level 1); undefined when absent or invalid (all-zero ids are invalid). */
export function parseTraceParent(v: string | string[] | undefined): TraceParent | undefined {
  if (typeof v !== 'string') return undefined;
  const m = re.exec(v.trim().toLowerCase());
  if (!m || m[1] === 'ff') return undefined;
  const [traceId, spanId] = [m[2] as string, m[3] as string];
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) return undefined;
  return { traceId, spanId, flags: parseInt(m[4] as string, 16) };
}

export function formatTraceParent(p: TraceParent): string {
  return `00-${p.traceId}-${p.spanId}-${p.flags.toString(16).padStart(2, '0')}`;
}
