/**
 * The HTTP side of the stack: the request and response shapes it handles (HTTP/1.1 and HTTP/2
 * alike), hop-by-hop headers, what gRPC statuses mean to the policies, and the sidecar's own
 * answers (a refusal or failure, with its code in `x-ballast-error`).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { catalogue } from './errors.ts';

export type DownReq = IncomingMessage | Http2ServerRequest;

/** What the stack uses of a response, HTTP/1.1 (ServerResponse) or HTTP/2 (compat Http2ServerResponse). */
export interface DownRes {
  writeHead(status: number, headers?: Record<string, string | string[]>): unknown;
  statusCode: number;
  setHeader(name: string, value: string | string[]): unknown;
  write(chunk: Buffer): boolean;
  end(chunk?: string | Buffer): unknown;
  destroy(err?: Error): unknown;
  once(event: 'close' | 'drain', fn: () => void): unknown;
  addTrailers?(trailers: Record<string, string | string[]>): void;
  readonly headersSent: boolean;
  readonly writableEnded: boolean;
}

export const asDownRes = (res: ServerResponse | Http2ServerResponse): DownRes => res as unknown as DownRes;

export type Code = keyof typeof catalogue.entries;

/**
 * Headers that belong to one connection and stop at the sidecar. `expect`: the sidecar answers
 * `100-continue` itself, as Envoy does by default (Node's servers send the 100 before the
 * request is handled), so the upstream is asked nothing it would have to answer twice.
 */
export const hopByHop = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'transfer-encoding',
  'upgrade',
  'te',
  'trailer',
  'host',
  'http2-settings',
  'expect',
]);

/** Headers without hop-by-hop ones (and without HTTP/2 pseudo-headers), undefined values dropped. */
export function endToEnd(headers: Readonly<Record<string, string | string[] | undefined>>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const k in headers) {
    const v = headers[k];
    if (v !== undefined && k[0] !== ':' && !hopByHop.has(k)) out[k] = v;
  }
  return out;
}

/** gRPC status codes the policies care about. */
export const grpc = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  DEADLINE_EXCEEDED: 4,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
} as const;

/** What a gRPC status means to breakers and outlier detection, as an HTTP status. */
export function grpcAsHttp(code: number): number {
  switch (code) {
    case grpc.UNAVAILABLE:
      return 503;
    case grpc.DEADLINE_EXCEEDED:
      return 504;
    case grpc.RESOURCE_EXHAUSTED:
      return 429;
    case grpc.UNKNOWN:
    case grpc.INTERNAL:
    case grpc.DATA_LOSS:
      return 500;
    default:
      return 200;
  }
}

/** A local refusal or failure: HTTP status, gRPC status, metrics outcome. */
export const refusals: Record<Code, { status: number; grpc: number; outcome: string }> = {
  SIDECAR_ERR_CONFIG_INVALID: { status: 500, grpc: grpc.INTERNAL, outcome: 'config' },
  SIDECAR_ERR_BULKHEAD_FULL: { status: 503, grpc: grpc.UNAVAILABLE, outcome: 'bulkhead_full' },
  SIDECAR_ERR_QUEUE_TIMEOUT: { status: 503, grpc: grpc.UNAVAILABLE, outcome: 'queue_timeout' },
  SIDECAR_ERR_RATE_LIMITED: { status: 429, grpc: grpc.RESOURCE_EXHAUSTED, outcome: 'rate_limited' },
  SIDECAR_ERR_SHED: { status: 503, grpc: grpc.UNAVAILABLE, outcome: 'shed' },
  SIDECAR_ERR_THROTTLED: { status: 503, grpc: grpc.UNAVAILABLE, outcome: 'throttled' },
  SIDECAR_ERR_CIRCUIT_OPEN: { status: 503, grpc: grpc.UNAVAILABLE, outcome: 'circuit_open' },
  SIDECAR_ERR_NO_ENDPOINT: { status: 503, grpc: grpc.UNAVAILABLE, outcome: 'no_endpoint' },
  SIDECAR_ERR_UPSTREAM_UNREACHABLE: { status: 503, grpc: grpc.UNAVAILABLE, outcome: 'unreachable' },
  SIDECAR_ERR_UPSTREAM_RESET: { status: 502, grpc: grpc.UNAVAILABLE, outcome: 'reset' },
  SIDECAR_ERR_TIMEOUT: { status: 504, grpc: grpc.DEADLINE_EXCEEDED, outcome: 'timeout' },
  SIDECAR_ERR_FAULT_INJECTED: { status: 503, grpc: grpc.UNAVAILABLE, outcome: 'fault' },
  SIDECAR_ERR_NO_ROUTE: { status: 502, grpc: grpc.UNAVAILABLE, outcome: 'no_route' },
  SIDECAR_ERR_REQUEST_INVALID: { status: 400, grpc: grpc.INTERNAL, outcome: 'invalid' },
  SIDECAR_ERR_ROUTE_NOT_MATCHED: { status: 404, grpc: grpc.UNIMPLEMENTED, outcome: 'route_not_matched' },
  SIDECAR_ERR_BACKEND_INVALID: { status: 500, grpc: grpc.INTERNAL, outcome: 'backend_invalid' },
  SIDECAR_ERR_MTLS_REQUIRED: { status: 403, grpc: grpc.PERMISSION_DENIED, outcome: 'mtls_required' },
  SIDECAR_ERR_FORBIDDEN: { status: 403, grpc: grpc.PERMISSION_DENIED, outcome: 'forbidden' },
};

/**
 * Answer a request the sidecar itself refuses or fails: JSON `{code, message}` with the code in
 * `x-ballast-error`, or a trailers-only gRPC answer. `status` overrides the code's usual status
 * (fault injection answers with the one it was told to).
 */
export function localReply(
  res: DownRes,
  isGrpc: boolean,
  code: Code,
  message: string,
  o: { headers?: Record<string, string>; status?: number; grpcStatus?: number } = {},
): void {
  if (res.headersSent || res.writableEnded) {
    if (!res.writableEnded) breakResponse(res);
    return;
  }
  const r = refusals[code];
  const extra = o.headers ?? {};
  if (isGrpc) {
    endHeadersOnly(res, 200, {
      'content-type': 'application/grpc',
      'grpc-status': String(o.grpcStatus ?? r.grpc),
      'grpc-message': grpcMessage(`${code}: ${message}`),
      'x-ballast-error': code,
      ...extra,
    });
    return;
  }
  const body = JSON.stringify({ code, message });
  res.writeHead(o.status ?? r.status, {
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(body)),
    'x-ballast-error': code,
    ...extra,
  });
  res.end(body);
}

/**
 * An answer that is only a head: over HTTP/2 one HEADERS frame with END_STREAM, which is what
 * gRPC calls trailers-only (the status in the head). `writeHead` followed by `end` would send
 * the head alone and then an empty DATA frame ending the stream; grpc-js then ignores the
 * status in the head and reports INTERNAL "Call ended without gRPC status". Headers set on the
 * response and `end()` go out together.
 */
export function endHeadersOnly(res: DownRes, status: number, headers: Record<string, string | string[] | undefined>): void {
  res.statusCode = status;
  for (const k in headers) {
    const v = headers[k];
    if (v !== undefined) res.setHeader(k, v);
  }
  res.end();
}

/**
 * End a response whose head went out as broken, so the caller cannot take it for complete:
 * over HTTP/2 RST_STREAM with INTERNAL_ERROR (a bare destroy would reset with NO_ERROR, which a
 * client may read as a normal end), over HTTP/1.1 the connection closed before the body's end
 * (a short content-length or a missing last chunk, which every client reports).
 */
export function breakResponse(res: DownRes): void {
  const stream = (res as { stream?: { close(code: number): void; destroyed?: boolean } }).stream;
  if (stream && typeof stream.close === 'function') {
    if (!stream.destroyed) stream.close(0x2); // NGHTTP2_INTERNAL_ERROR
  } else res.destroy();
}

/**
 * A grpc-message value: the gRPC spec's percent-encoding, which escapes only `%` and bytes
 * outside printable ASCII (encodeURIComponent escapes `:` and `/` too, and clients decode
 * those back only partly: grpc-js showed "SIDECAR_ERR_...%3A").
 */
export function grpcMessage(text: string): string {
  let out = '';
  for (const b of Buffer.from(text, 'utf8'))
    out += b < 0x20 || b > 0x7e || b === 0x25 ? `%${b.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(b);
  return out;
}
