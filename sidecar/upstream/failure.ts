/**
 * How an attempt failed, by kind, so the policies above can tell "never reached the server" (safe
 * to retry anything) from "reset mid-request" (safe only for idempotent requests); and the
 * classification of the errors undici, node:http2, node:net and node:tls raise into those kinds.
 */
/**
 * How an attempt failed: `connect` and `refused` never reached the server; `invalid` was never
 * sent (the request breaks a rule of the upstream protocol: a local problem, not the endpoint's).
 */
export type FailureKind = 'connect' | 'refused' | 'reset' | 'timeout' | 'cancelled' | 'protocol' | 'invalid';

export class AttemptError extends Error {
  readonly kind: FailureKind;
  constructor(kind: FailureKind, message: string, options?: ErrorOptions) {
    super(message, options);
    this.kind = kind;
  }
}

/** Errors raised before anything was sent, for a request that cannot be sent as it is. */
const invalidCodes = new Set([
  'UND_ERR_INVALID_ARG',
  'UND_ERR_NOT_SUPPORTED',
  'ERR_HTTP2_INVALID_HEADER_VALUE',
  'ERR_HTTP2_INVALID_CONNECTION_HEADERS',
  'ERR_INVALID_HTTP_TOKEN',
  'ERR_INVALID_CHAR',
  'ERR_HTTP2_HEADER_SINGLE_VALUE',
  'ERR_HTTP2_INVALID_PSEUDOHEADER',
]);

const connectCodes = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EADDRNOTAVAIL',
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_CONNECT_TIMEOUT',
  'ERR_HTTP2_SESSION_ERROR',
  // The TLS handshake failed: nothing was sent.
  'ERR_MESH_PEER_IDENTITY',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA',
  'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE',
  'ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED',
  'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED',
  'ERR_SSL_WRONG_VERSION_NUMBER',
]);

export function classify(err: Error & { code?: string; cause?: unknown }): AttemptError {
  if (err instanceof AttemptError) return err;
  const code = err.code ?? (err.cause as { code?: string } | undefined)?.code;
  if (code && connectCodes.has(code)) return new AttemptError('connect', `cannot connect: ${err.message}`, { cause: err });
  if (code && invalidCodes.has(code)) return new AttemptError('invalid', err.message, { cause: err });
  if (code === 'UND_ERR_ABORTED' || code === 'ABORT_ERR') return new AttemptError('cancelled', err.message, { cause: err });
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT')
    return new AttemptError('timeout', err.message, { cause: err });
  return new AttemptError('reset', `connection reset: ${err.message}`, { cause: err });
}
