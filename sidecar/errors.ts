/** The sidecar's error codes. A refused request carries its code in `x-ballast-error` (and grpc-message). */
import { defineCatalogue } from '../lib/errors.ts';

export const catalogue = defineCatalogue('sidecar', 'SIDECAR', {
  SIDECAR_ERR_CONFIG_INVALID:
    'The sidecar configuration (file or discovery) is invalid; the message lists each field path and what is allowed. The last good configuration stays in force.',
  SIDECAR_ERR_BULKHEAD_FULL:
    "The upstream's concurrency limit and queue are full; the request was refused at once (503). Raise bulkhead limits only if the upstream can take more.",
  SIDECAR_ERR_QUEUE_TIMEOUT: 'The request waited longer than bulkhead.queueWaitMs for a slot (503).',
  SIDECAR_ERR_RATE_LIMITED: 'The rate limit is spent (429, with Retry-After).',
  SIDECAR_ERR_SHED: 'Load shedding: the adaptive concurrency limit is reached for this priority class (503).',
  SIDECAR_ERR_THROTTLED:
    'Client-side adaptive throttling: the upstream has been rejecting requests, so this one was refused locally (503).',
  SIDECAR_ERR_CIRCUIT_OPEN: "The upstream's circuit breaker is open (503, with Retry-After).",
  SIDECAR_ERR_NO_ENDPOINT: 'The upstream has no endpoints to send to (503).',
  SIDECAR_ERR_UPSTREAM_UNREACHABLE: 'No endpoint could be connected to, after the allowed retries (503).',
  SIDECAR_ERR_UPSTREAM_RESET: 'The endpoint reset the connection or stream before answering (502).',
  SIDECAR_ERR_TIMEOUT: "The request's deadline passed before the upstream answered (504).",
  SIDECAR_ERR_FAULT_INJECTED: 'Fault injection (policy.fault) aborted the request on purpose.',
  SIDECAR_ERR_NO_ROUTE: "HTTP proxy mode: the requested host is not a configured upstream (502); add it to an upstream's hosts.",
  SIDECAR_ERR_ROUTE_NOT_MATCHED:
    'The Service has Gateway API routes (HTTPRoute, GRPCRoute) and none of their rules matches this request (404 / UNIMPLEMENTED), as the Gateway API asks.',
  SIDECAR_ERR_BACKEND_INVALID:
    "The route rule this request matched sends it to a backend that did not resolve (a missing Service or port), or has no backend with weight (500 / INTERNAL); the route's status says which.",
  SIDECAR_ERR_REQUEST_INVALID:
    'The request cannot be forwarded as it is (a header or method the upstream protocol does not allow) (400); nothing was sent, and it does not count against the endpoint.',
  SIDECAR_ERR_FORBIDDEN:
    "The inbound listener's authorization policy does not let this caller (its mesh identity, or plaintext) make this request (403 / PERMISSION_DENIED).",
  SIDECAR_ERR_MTLS_REQUIRED:
    'The inbound listener is in mtls: strict and the request came in plaintext, from a caller without a mesh identity (403 / PERMISSION_DENIED).',
});
