/**
 * The one place where the sidecar's layers are ordered. A request passes, in this order:
 *
 *   1. fault injection    first, so a drill looks to the application exactly like a failing
 *                         dependency, and costs nothing else
 *   2. rate limit         route, then upstream: the cheapest refusal, before anything is held
 *   3. circuit breaker    the upstream's: while open, fail fast without taking a queue slot
 *   4. client throttle    SRE-book adaptive throttling: refuse locally what the upstream would
 *   5. load shedding      the adaptive concurrency limit, by priority class
 *   6. bulkhead + queue   route, then upstream: the hard cap, with a bounded wait
 *   7. deadline           the earliest of requestMs and the caller's own deadline
 *   8. retries / hedges   around attempts, drawing on one budget
 *   9. per attempt        balancer (skipping ejected, open-breaker and already-tried endpoints)
 *                         → endpoint breaker → attempt timeout → transport
 *
 * Admission layers (1–6) are released in reverse order when the response ends; outcomes flow
 * back to outlier detection, breakers, the balancer, the limit and the throttle. Layers 1–6
 * are cheap and synchronous when they admit at once; only a queue wait or an injected delay
 * waits.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { Readable } from 'node:stream';
import type { TimerHandle } from '../lib/clock.ts';
import type { catalogue } from './errors.ts';
import { decideFault } from './policies/fault.ts';
import { backoffDelay, serverPushbackMs } from './policies/retry-budget.ts';
import { type Priority } from './policies/bulkhead.ts';
import { hedgeDelay } from './policies/hedge.ts';
import { callerBudgetMs, deadlineHeader, formatGrpcTimeout } from './policies/timeout.ts';
import { type TraceParent, parseTraceParent } from './traceparent.ts';
import type { AttemptSpan } from './tracing.ts';
import { ReplayBody } from './upstream/body.ts';
import type { AttemptControl, AttemptError, Headers, OutRequest } from './upstream/transport.ts';
import type { EndpointState, RouteState, Upstream } from './upstream/upstream.ts';

export type DownReq = IncomingMessage | Http2ServerRequest;
/** What the stack uses of a response, HTTP/1.1 (ServerResponse) or HTTP/2 (compat Http2ServerResponse). */
export interface DownRes {
  writeHead(status: number, headers?: Record<string, string | string[]>): unknown;
  write(chunk: Buffer): boolean;
  end(chunk?: string | Buffer): unknown;
  destroy(err?: Error): unknown;
  once(event: 'close' | 'drain', fn: () => void): unknown;
  addTrailers?(trailers: Record<string, string | string[]>): void;
  readonly headersSent: boolean;
  readonly writableEnded: boolean;
}

export const asDownRes = (res: ServerResponse | Http2ServerResponse): DownRes => res as unknown as DownRes;

type Code = keyof typeof catalogue.entries;

const hopByHop = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'host', 'http2-settings']);
const idempotentMethods = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);
const priorities: Record<string, Priority> = { critical: 0, default: 1, sheddable: 2 };

/** gRPC status codes the policies care about. */
const grpc = { OK: 0, CANCELLED: 1, UNKNOWN: 2, DEADLINE_EXCEEDED: 4, RESOURCE_EXHAUSTED: 8, INTERNAL: 13, UNAVAILABLE: 14, DATA_LOSS: 15 } as const;

/** What a gRPC status means to breakers and outlier detection, as an HTTP status. */
function grpcAsHttp(code: number): number {
  switch (code) {
    case grpc.UNAVAILABLE: return 503;
    case grpc.DEADLINE_EXCEEDED: return 504;
    case grpc.RESOURCE_EXHAUSTED: return 429;
    case grpc.UNKNOWN: case grpc.INTERNAL: case grpc.DATA_LOSS: return 500;
    default: return 200;
  }
}

/** A local refusal or failure: HTTP status, gRPC status, metrics outcome. */
const refusals: Record<Code, { status: number; grpc: number; outcome: string }> = {
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
};

export interface StackOptions {
  replayBufferBytes: number;
}

/** Answer a request the sidecar itself refuses or fails. */
export function localReply(res: DownRes, isGrpc: boolean, code: Code, message: string, extra: Record<string, string> = {}): void {
  if (res.headersSent || res.writableEnded) {
    if (!res.writableEnded) res.destroy();
    return;
  }
  const r = refusals[code];
  if (isGrpc) {
    res.writeHead(200, { 'content-type': 'application/grpc', 'grpc-status': String(r.grpc), 'grpc-message': encodeURIComponent(`${code}: ${message}`), 'x-ballast-error': code, ...extra });
    res.end();
    return;
  }
  const body = JSON.stringify({ code, message });
  res.writeHead(r.status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), 'x-ballast-error': code, ...extra });
  res.end(body);
}

interface Attempt {
  ep: EndpointState;
  /** The endpoint's in-flight count when this attempt started (its adaptive limit learns from it). */
  epInflight: number;
  ctl: AttemptControl;
  started: number;
  timer: TimerHandle | undefined;
  ticket: ReturnType<NonNullable<EndpointState['breaker']>['tryAcquire']> | undefined;
  settled: boolean;
  /** Time from the attempt's start to its answer's head, once it came. */
  headLatency?: number;
  span?: AttemptSpan | undefined;
}

/**
 * Proxy one request through an upstream's layers. `path` is the path to send (the proxy mode
 * strips the absolute URL). Resolves when the exchange is over.
 */
export function proxy(up: Upstream, req: DownReq, res: DownRes, path: string, isH2: boolean, o: StackOptions): void {
  new Exchange(up, req, res, path, isH2, o).start();
}

class Exchange {
  readonly up: Upstream;
  readonly req: DownReq;
  readonly res: DownRes;
  readonly path: string;
  readonly method: string;
  readonly isGrpc: boolean;
  readonly h2Up: boolean;
  readonly o: StackOptions;
  readonly arrived: number;
  route!: RouteState;
  priority: Priority = 1;
  deadline = Infinity;
  /** From the caller: bounds the whole exchange, streams included. */
  callerDeadline = Infinity;
  /** Admission held (released in reverse on finish). */
  held: Array<() => void> = [];
  /** Admitted by the adaptive limit (released when the request ends). */
  adaptiveHeld = false;
  /** Admitted by the client throttle (its answer is reported back). */
  throttled = false;
  body: ReplayBody | null = null;
  directBody: Readable | null = null;
  attempts: Attempt[] = [];
  /** Endpoints already tried (a retry or hedge goes elsewhere). */
  tried: string[] = [];
  attemptCount = 0;
  lastFailure: { code: Code; message: string } | undefined;
  committed: Attempt | undefined;
  finished = false;
  deadlineTimer: TimerHandle | undefined;
  hedgeTimer: TimerHandle | undefined;
  retryTimer: TimerHandle | undefined;
  outcomeStatus = 0;
  overloaded = false;

  constructor(up: Upstream, req: DownReq, res: DownRes, path: string, isH2: boolean, o: StackOptions) {
    this.up = up;
    this.req = req;
    this.res = res;
    this.path = path;
    this.method = req.method ?? 'GET';
    const ct = req.headers['content-type'];
    this.isGrpc = isH2 && typeof ct === 'string' && ct.startsWith('application/grpc');
    const proto = up.spec.protocol;
    this.h2Up = proto === 'http2' || (proto === 'auto' && isH2);
    this.o = o;
    this.arrived = up.deps.clock.now();
  }

  start(): void {
    const { up, res } = this;
    res.once('close', () => {
      if (!this.finished) this.finish('cancelled', 499);
    });
    this.route = up.route(this.method, this.path);
    const p = this.route.policy;
    const pr = this.req.headers[p.shed.priorityHeader];
    if (typeof pr === 'string') this.priority = priorities[pr] ?? 1;
    // 1. fault injection
    const f = p.fault;
    if (f.delayPercent > 0 || f.abortPercent > 0) {
      const d = decideFault({ ...(f.delayPercent > 0 ? { delay: { percent: f.delayPercent, ms: f.delayMs } } : {}), ...(f.abortPercent > 0 ? { abort: { percent: f.abortPercent, status: f.abortStatus, grpcStatus: f.abortGrpcStatus } } : {}) }, up.deps.random);
      if (d.delayMs > 0 || d.abort) {
        const go = (): void => {
          if (this.finished) return;
          if (d.abort) return this.injectAbort(d.abort.status, d.abort.grpcStatus ?? grpc.UNAVAILABLE);
          this.admit();
        };
        if (d.delayMs > 0) up.deps.clock.setTimeout(go, d.delayMs);
        else go();
        return;
      }
    }
    this.admit();
  }

  injectAbort(status: number, grpcStatus: number): void {
    this.finished = true;
    this.count('fault');
    const res = this.res;
    if (this.isGrpc) {
      res.writeHead(200, { 'content-type': 'application/grpc', 'grpc-status': String(grpcStatus), 'grpc-message': 'SIDECAR_ERR_FAULT_INJECTED', 'x-ballast-error': 'SIDECAR_ERR_FAULT_INJECTED' });
      res.end();
    } else {
      const body = JSON.stringify({ code: 'SIDECAR_ERR_FAULT_INJECTED', message: `fault injection aborted this request with ${status}` });
      res.writeHead(status, { 'content-type': 'application/json', 'x-ballast-error': 'SIDECAR_ERR_FAULT_INJECTED' });
      res.end(body);
    }
  }

  refuse(code: Code, message: string, extra?: Record<string, string>): void {
    this.release();
    this.finished = true;
    this.count(refusals[code].outcome);
    localReply(this.res, this.isGrpc, code, message, extra);
  }

  admit(): void {
    const { up, route } = this;
    const now = up.deps.clock.now();
    const def = up.defaultRoute;
    // 2. rate limits: route, then upstream
    for (const r of route === def ? [def] : [route, def]) {
      if (r.rateLimit) {
        const wait = r.rateLimit.take(now);
        if (wait > 0) return this.refuse('SIDECAR_ERR_RATE_LIMITED', `${up.name} (${r.name}) allows ${r.policy.rateLimit.perSecond} requests per second`, { 'retry-after': String(Math.ceil(wait / 1000)) });
      }
    }
    // 3. the upstream's circuit breaker
    if (up.breaker) {
      const t = up.breaker.tryAcquire(now);
      if (!t.ok) return this.refuse('SIDECAR_ERR_CIRCUIT_OPEN', `the circuit breaker of ${up.name} is open: its recent calls failed`, { 'retry-after': String(Math.max(1, Math.ceil(t.retryAfterMs / 1000))) });
      const b = up.breaker;
      const ticket = t.ticket;
      // A request refused further on (shed, queue full) or cancelled by its caller says nothing
      // about the upstream: it must not count as a failure.
      this.held.push(() => (this.outcomeStatus === 0 || this.outcomeStatus === 499 ? b.onCancel(ticket) : b.onResult(ticket, up.deps.clock.now(), this.outcomeStatus < 500, up.deps.clock.now() - this.arrived)));
    }
    // 4. client-side throttling
    if (up.throttle) {
      if (!up.throttle.admit(now, up.deps.random)) return this.refuse('SIDECAR_ERR_THROTTLED', `${up.name} has been refusing requests for overload; this one was throttled locally`);
      this.throttled = true;
    }
    // 5. adaptive concurrency limit
    if (up.adaptive) {
      if (!up.adaptive.tryAcquire(this.priority)) return this.refuse('SIDECAR_ERR_SHED', `${up.name} is at its adaptive concurrency limit (${up.adaptive.limit}) for ${['critical', 'default', 'sheddable'][this.priority]} requests`);
      this.adaptiveHeld = true;
    }
    // 6. bulkheads: route, then upstream
    this.bulkheads(route === def ? [def] : [route, def], 0);
  }

  bulkheads(list: RouteState[], i: number): void {
    if (i >= list.length) return this.begin();
    const r = list[i] as RouteState;
    const release = (): void => r.bulkhead.release();
    if (r.bulkhead.tryAcquire()) {
      this.held.push(release);
      return this.bulkheads(list, i + 1);
    }
    r.bulkhead.enqueue(this.priority, (ok, why) => {
      if (this.finished) {
        if (ok) r.bulkhead.release();
        return;
      }
      if (!ok) {
        const b = r.policy.bulkhead;
        return why === 'timeout'
          ? this.refuse('SIDECAR_ERR_QUEUE_TIMEOUT', `waited ${b.queueWaitMs} ms for one of ${b.maxConcurrent} slots of ${this.up.name} (${r.name})`)
          : this.refuse('SIDECAR_ERR_BULKHEAD_FULL', `${this.up.name} (${r.name}) has ${b.maxConcurrent} requests in flight and ${b.queueLength} waiting`);
      }
      this.held.push(release);
      this.bulkheads(list, i + 1);
    });
  }

  /** 7. deadline, then the first attempt. */
  begin(): void {
    const { up } = this;
    const clock = up.deps.clock;
    const now = clock.now();
    const t = this.route.policy.timeouts;
    const caller = callerBudgetMs(this.req.headers);
    if (caller !== undefined) this.callerDeadline = this.arrived + caller;
    this.deadline = Math.min(this.arrived + t.requestMs, this.callerDeadline);
    if (this.deadline <= now) return this.refuse('SIDECAR_ERR_TIMEOUT', `the caller's deadline (${caller} ms) passed before the request could be sent`);
    // The body: replayable up to the buffer, else streamed once.
    const req = this.req;
    const hasBody = req.httpVersionMajor === 2
      ? !(req as Http2ServerRequest).stream.endAfterHeaders
      : (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0') || req.headers['transfer-encoding'] !== undefined;
    if (hasBody) {
      const len = Number(req.headers['content-length'] ?? NaN);
      if (len > this.o.replayBufferBytes) this.directBody = req as unknown as Readable;
      else this.body = new ReplayBody(req as unknown as Readable, this.o.replayBufferBytes);
    }
    up.budget.onRequest(now);
    this.launch(false);
  }

  armDeadline(): void {
    if (this.deadlineTimer || this.deadline === Infinity) return;
    const clock = this.up.deps.clock;
    this.deadlineTimer = clock.setTimeout(() => this.onDeadline(), Math.max(0, this.deadline - clock.now()));
  }

  onDeadline(): void {
    this.deadlineTimer = undefined;
    if (this.finished) return;
    if (this.committed) {
      // A stream outlived its caller's deadline: end it as gRPC would.
      this.abortAll();
      this.outcomeStatus = 504;
      if (this.isGrpc && !this.res.writableEnded) {
        this.res.addTrailers?.({ 'grpc-status': String(grpc.DEADLINE_EXCEEDED), 'grpc-message': 'SIDECAR_ERR_TIMEOUT' });
        this.res.end();
      } else this.res.destroy();
      return this.finish('timeout', 504);
    }
    this.abortAll();
    this.overloaded = true;
    const ms = Math.round(this.deadline - this.arrived);
    this.fail('SIDECAR_ERR_TIMEOUT', `${this.up.name} did not answer within ${ms} ms${this.callerDeadline === this.deadline ? ' (the caller\'s deadline)' : ''}`);
  }

  idempotent(): boolean {
    if (this.route.policy.retries.methods === 'all') return true;
    if (!this.isGrpc && idempotentMethods.has(this.method)) return true;
    for (const p of this.route.idempotentPaths) if (this.path.startsWith(p)) return true;
    return false;
  }

  /** Start an attempt (a first try, a retry, or a hedge). */
  /** Start an attempt; false when none was started. */
  launch(hedge: boolean): boolean {
    const { up } = this;
    const clock = up.deps.clock;
    const now = clock.now();
    // 9. pick an endpoint: skip ejected, open-breaker and already-tried ones.
    let skip: Set<string> | undefined;
    const ejected = up.outlier?.excluded(now);
    if ((ejected && ejected.size > 0) || this.tried.length > 0 || up.openBreakers > 0) {
      skip = new Set(ejected);
      for (const id of this.tried) skip.add(id);
    }
    let ep: EndpointState | undefined;
    let ticket: Attempt['ticket'];
    const headroom = (e: EndpointState): boolean => {
      const l = up.adaptive?.endpoint(e.id);
      return l === undefined || l.inflight < l.limit / 2;
    };
    for (let tries = 0; tries <= up.endpointList.length; tries++) {
      const picked = up.picker.pick(this.hashKey(), skip);
      ep = picked ? up.endpoints.get(picked.id) : undefined;
      if (!ep) break;
      if (!ep.breaker) break;
      ticket = ep.breaker.tryAcquire(now);
      if (ticket.ok) break;
      (skip ??= new Set()).add(ep.id);
      if (skip.size >= up.endpointList.length) {
        ep = undefined;
        break;
      }
    }
    // A hedge goes only to an endpoint with room to spare: under load it would only add queueing.
    if (hedge && ep && !headroom(ep)) {
      if (ticket?.ok) ep.breaker?.onCancel(ticket.ticket);
      return false;
    }
    if (!ep) {
      if (this.attempts.length > 0) return false; // others are still trying
      this.fail(up.endpointList.length === 0 ? 'SIDECAR_ERR_NO_ENDPOINT' : 'SIDECAR_ERR_UPSTREAM_UNREACHABLE', up.endpointList.length === 0 ? `${up.name} has no endpoints` : `every endpoint of ${up.name} has an open circuit breaker`);
      return false;
    }
    this.attemptCount++;
    this.tried.push(ep.id);
    const body = this.body ? this.body.reader() ?? null : this.directBody;
    if (this.directBody) this.directBody = null; // sent once
    const out: OutRequest = { method: this.method, path: this.path, authority: this.authority(), headers: this.upstreamHeaders(now), body, h2: this.h2Up };
    const span = up.deps.tracing?.attempt(this.parentTrace(), { upstream: up.name, endpoint: ep.id, method: this.method, path: this.path, attempt: this.attemptCount, hedge });
    if (span) out.headers['traceparent'] = span.traceparent;
    const a: Attempt = { ep, epInflight: up.adaptive?.endpoint(ep.id)?.begin() ?? 0, ctl: undefined as unknown as AttemptControl, started: now, timer: undefined, ticket, settled: false, span };
    this.attempts.push(a);
    up.picker.started(ep.id);
    a.ctl = ep.transport.send(out, {
      head: (status, headers) => this.onHead(a, status, headers),
      data: (chunk) => this.onData(a, chunk),
      end: (trailers) => this.onEnd(a, trailers),
      error: (err) => this.onError(a, err),
    });
    if (this.finished || a.settled) return true;
    // One timer per attempt, up to its own timeout; the request's deadline gets a timer of its
    // own only when no attempt's timer covers it (a timer per request is not free at 20k/s).
    const attemptMs = this.route.policy.timeouts.attemptMs;
    if (attemptMs < this.deadline - now) a.timer = clock.setTimeout(() => this.onAttemptTimeout(a), attemptMs);
    else this.armDeadline();
    this.armHedge();
    return true;
  }

  armHedge(): void {
    const { up } = this;
    const h = this.route.policy.hedge;
    if (!h.enabled || this.hedgeTimer || this.committed || this.attempts.length > h.maxHedges || !this.idempotent()) return;
    if (this.body && !this.body.replayable) return;
    const delay = hedgeDelay(this.route.hedge, up.hedgeTracker);
    if (delay === undefined) return;
    this.hedgeTimer = up.deps.clock.setTimeout(() => {
      this.hedgeTimer = undefined;
      if (this.finished || this.committed || up.endpointList.length < 2) return;
      if (this.body && !this.body.replayable) return;
      // Hedge only into spare capacity: under load a hedge is one more request to a struggling
      // upstream (the loser keeps its slot there until the cancel arrives).
      if (up.adaptive && up.adaptive.inflight >= up.adaptive.limit) {
        this.armHedge();
        return;
      }
      if (up.budget.remaining(up.deps.clock.now()) < 1) return;
      if (!this.launch(true)) {
        // No endpoint has room right now (a burst): look again after another delay.
        this.armHedge();
        return;
      }
      up.budget.tryWithdraw(up.deps.clock.now());
      up.deps.metrics.hedges.inc({ upstream: up.name });
    }, delay);
  }

  #parent: TraceParent | null | undefined;

  /** The caller's W3C trace context (parsed once). */
  parentTrace(): TraceParent | undefined {
    if (this.#parent === undefined) this.#parent = parseTraceParent(this.req.headers['traceparent']) ?? null;
    return this.#parent ?? undefined;
  }

  hashKey(): string | undefined {
    const k = this.route.policy.balancer.kind;
    if (k !== 'ringHash' && k !== 'maglev') return undefined;
    const on = this.route.policy.balancer.hashOn;
    if (on === 'path') return this.path;
    if (on === 'client') return this.req.socket?.remoteAddress ?? '';
    const v = this.req.headers[on.slice(7).toLowerCase()];
    return typeof v === 'string' ? v : undefined;
  }

  authority(): string {
    const h = this.req.headers;
    return (h[':authority'] as string | undefined) ?? h.host ?? this.up.name;
  }

  upstreamHeaders(now: number): Headers {
    const src = this.req.headers as IncomingHttpHeaders;
    const out: Headers = {};
    for (const k in src) if (k[0] !== ':' && !hopByHop.has(k)) out[k] = src[k];
    if (this.isGrpc) out['te'] = 'trailers';
    if (!this.h2Up) out['host'] = this.authority();
    // Pass the time left on, so no hop works past its caller.
    const left = this.deadline - now;
    if (this.callerDeadline !== Infinity || this.isGrpc) {
      if (this.isGrpc) out['grpc-timeout'] = formatGrpcTimeout(left);
      else out[deadlineHeader] = String(Math.max(1, Math.floor(left)));
    }
    return out;
  }

  retryable(kind: 'status' | AttemptError['kind'], status: number, grpcStatus: number | undefined): string | undefined {
    const on = this.route.policy.retries.retryOn;
    if (kind === 'connect') return on.includes('connect-failure') ? 'connect-failure' : undefined;
    if (kind === 'refused') return on.includes('refused-stream') ? 'refused-stream' : undefined;
    if (!this.idempotent()) return undefined;
    if (kind === 'reset') return on.includes('reset') ? 'reset' : undefined;
    if (kind === 'timeout') return on.includes('504') || on.includes('deadline-exceeded') ? 'attempt-timeout' : undefined;
    if (kind !== 'status') return undefined;
    if (grpcStatus !== undefined) {
      if (grpcStatus === grpc.UNAVAILABLE && on.includes('unavailable')) return 'unavailable';
      if (grpcStatus === grpc.RESOURCE_EXHAUSTED && on.includes('resource-exhausted')) return 'resource-exhausted';
      if (grpcStatus === grpc.DEADLINE_EXCEEDED && on.includes('deadline-exceeded')) return 'deadline-exceeded';
      return undefined;
    }
    const s = String(status);
    if (on.includes(s as never)) return s;
    if (status >= 500 && on.includes('5xx')) return '5xx';
    return undefined;
  }

  /** Whether another attempt may follow (and, if so, the budget is drawn). */
  mayRetry(reason: string, headers: Headers | undefined): number | undefined {
    const { up } = this;
    const r = this.route.policy.retries;
    const now = up.deps.clock.now();
    if (this.attemptCount >= r.maxAttempts) return undefined;
    if (this.body && !this.body.replayable) return undefined;
    if (this.directBody === null && this.body === null && this.req.headers['content-length'] !== undefined && Number(this.req.headers['content-length']) > this.o.replayBufferBytes) return undefined;
    let delay = backoffDelay(this.attemptCount - 1, r.backoffBaseMs, r.backoffMaxMs, up.deps.random);
    if (headers) {
      const push = serverPushbackMs(headers, up.deps.clock.wallNow());
      if (push === 'stop') return undefined;
      if (push !== undefined) delay = Math.max(delay, push);
    }
    if (now + delay >= this.deadline) return undefined;
    if (!up.budget.tryWithdraw(now)) return undefined;
    up.deps.metrics.retries.inc({ upstream: up.name, reason });
    return delay;
  }

  settle(a: Attempt, result: string, status: number | 'connect', latencyMs: number): void {
    if (a.settled) return;
    a.settled = true;
    a.span?.end(typeof status === 'number' && status > 0 ? (result === 'ok' || /xx$/.test(result) ? { status } : { status, error: result }) : { error: result });
    a.timer?.cancel();
    const i = this.attempts.indexOf(a);
    if (i >= 0) this.attempts.splice(i, 1);
    const { up } = this;
    const now = up.deps.clock.now();
    // A cancelled attempt (a hedge lost, the caller left) took at least this long: tell the
    // balancer so (reporting 0 would make a slow endpoint that keeps losing look fast).
    if (result === 'cancelled') up.picker.finished(a.ep.id, now - a.started, true);
    else up.picker.finished(a.ep.id, latencyMs);
    // The endpoint's adaptive limit learns from the attempt's time to its answer's head (not a
    // stream's lifetime); a connection failure or a cancel teaches it nothing.
    const lim = up.adaptive?.endpoint(a.ep.id);
    if (lim) {
      if (a.headLatency !== undefined) lim.onSample(a.headLatency, status === 503 || status === 429, a.epInflight);
      else if (result === 'timeout') lim.onSample(latencyMs, true, a.epInflight);
      else lim.onDrop();
    }
    if (result === 'cancelled') return;
    up.deps.metrics.hot.attempt(up.name, a.ep.id, result);
    up.outlier?.onResult(a.ep.id, now, status);
    if (a.ticket?.ok && a.ep.breaker) a.ep.breaker.onResult(a.ticket.ticket, now, status !== 'connect' && status < 500, latencyMs);
  }

  onHead(a: Attempt, status: number, headers: Headers): void {
    if (this.finished || a.settled) return;
    const { up } = this;
    const now = up.deps.clock.now();
    const latency = now - a.started;
    const gs = this.isGrpc && headers['grpc-status'] !== undefined ? Number(headers['grpc-status']) : undefined;
    const effective = gs !== undefined ? grpcAsHttp(gs) : status;
    a.headLatency = latency;
    const reason = this.retryable('status', status, gs);
    if (reason !== undefined && !this.committed) {
      // A retryable answer: drop it if a sibling (hedge) is still out, or if a retry may follow.
      const others = this.attempts.length > 1;
      const delay = others ? undefined : this.mayRetry(reason, headers);
      if (others || delay !== undefined) {
        a.ctl.abort();
        this.settle(a, `${Math.floor(effective / 100)}xx`, effective, latency);
        if (delay !== undefined) this.scheduleRetry(delay);
        return;
      }
      // No retry left: this answer is the answer, passed on as it is.
    }
    // Commit: this attempt wins; cancel the others.
    this.committed = a;
    up.deps.metrics.hot.attemptHead(up.name, a.ep.id, latency / 1000);
    up.latency.record(latency);
    up.hedgeTracker?.record(latency);
    this.hedgeTimer?.cancel();
    this.retryTimer?.cancel();
    for (const o of this.attempts) if (o !== a) { o.ctl.abort(); this.settle(o, 'cancelled', 0, 0); }
    this.outcomeStatus = effective;
    this.overloaded = effective === 503 || effective === 429;
    a.timer?.cancel();
    a.timer = undefined;
    // From here on only the caller's own deadline bounds the exchange (a stream may run long).
    if (this.callerDeadline === Infinity) {
      this.deadlineTimer?.cancel();
      this.deadlineTimer = undefined;
    } else if (this.deadline !== this.callerDeadline) {
      this.deadlineTimer?.cancel();
      this.deadlineTimer = undefined;
      this.deadline = this.callerDeadline;
      this.armDeadline();
    } else this.armDeadline();
    const out: Record<string, string | string[]> = {};
    for (const k in headers) if (!hopByHop.has(k) && headers[k] !== undefined) out[k] = headers[k] as string | string[];
    try {
      this.res.writeHead(status, out);
    } catch (err) {
      a.ctl.abort();
      this.settle(a, 'protocol', 502, latency);
      return this.fail('SIDECAR_ERR_UPSTREAM_RESET', `the response head from ${a.ep.id} could not be passed on: ${(err as Error).message}`);
    }
    if (gs !== undefined) {
      // Trailers-only gRPC answer: nothing more will come.
      this.settle(a, effective < 500 ? 'ok' : `${Math.floor(effective / 100)}xx`, effective, latency);
    }
  }

  onData(a: Attempt, chunk: Buffer): boolean {
    if (this.committed !== a || this.finished) return true;
    const ok = this.res.write(chunk);
    if (!ok) this.res.once('drain', () => a.ctl.resume());
    return ok;
  }

  onEnd(a: Attempt, trailers: Headers | undefined): void {
    if (this.committed !== a || this.finished) return;
    const now = this.up.deps.clock.now();
    let status = this.outcomeStatus;
    if (trailers) {
      const gs = trailers['grpc-status'];
      if (gs !== undefined) status = grpcAsHttp(Number(gs));
      if (this.res.addTrailers) {
        const t: Record<string, string | string[]> = {};
        for (const k in trailers) if (trailers[k] !== undefined) t[k] = trailers[k] as string | string[];
        try {
          this.res.addTrailers(t);
        } catch {
          // HTTP/1.1 without a declared Trailer header: trailers are dropped, as every proxy does.
        }
      }
    }
    this.outcomeStatus = status;
    this.overloaded = status === 503 || status === 429;
    this.settle(a, status < 500 ? 'ok' : `${Math.floor(status / 100)}xx`, status, now - a.started);
    this.res.end();
    this.finish(undefined, status);
  }

  onError(a: Attempt, err: AttemptError): void {
    if (this.finished || a.settled) return;
    const { up } = this;
    const now = up.deps.clock.now();
    if (this.committed === a) {
      // The body broke after the head was sent: the caller sees the reset too.
      this.settle(a, 'reset', 502, now - a.started);
      this.outcomeStatus = 502;
      this.res.destroy();
      return this.finish('reset', 502);
    }
    this.settle(a, err.kind, err.kind === 'connect' ? 'connect' : 502, now - a.started);
    if (err.kind === 'cancelled') return;
    const code: Code = err.kind === 'connect' || err.kind === 'refused' ? 'SIDECAR_ERR_UPSTREAM_UNREACHABLE' : err.kind === 'timeout' ? 'SIDECAR_ERR_TIMEOUT' : 'SIDECAR_ERR_UPSTREAM_RESET';
    this.lastFailure = { code, message: `${a.ep.id}: ${err.message}` };
    if (this.attempts.length > 0) return; // a hedge is still out
    const reason = this.retryable(err.kind, 0, undefined);
    const delay = reason === undefined ? undefined : this.mayRetry(reason, undefined);
    if (delay !== undefined) return this.scheduleRetry(delay);
    this.fail(code, this.lastFailure.message);
  }

  onAttemptTimeout(a: Attempt): void {
    a.timer = undefined;
    this.armDeadline();
    if (this.finished || a.settled || this.committed) return;
    a.ctl.abort();
    const ms = this.route.policy.timeouts.attemptMs;
    this.onError(a, Object.assign(new Error(`no answer within ${ms} ms (timeouts.attemptMs)`), { kind: 'timeout' as const }) as AttemptError);
    this.overloaded = true;
  }

  scheduleRetry(delay: number): void {
    this.armDeadline();
    if (delay <= 0) {
      this.launch(false);
      return;
    }
    this.retryTimer = this.up.deps.clock.setTimeout(() => {
      this.retryTimer = undefined;
      if (!this.finished && !this.committed) this.launch(false);
    }, delay);
  }

  abortAll(): void {
    for (const a of this.attempts) {
      a.ctl.abort();
      this.settle(a, 'cancelled', 0, 0);
    }
  }

  /** Fail the request with the sidecar's own answer (after admission). */
  fail(code: Code, message: string): void {
    if (this.finished) return;
    this.outcomeStatus = refusals[code].status;
    this.overloaded = code === 'SIDECAR_ERR_TIMEOUT' || code === 'SIDECAR_ERR_UPSTREAM_UNREACHABLE';
    const outcome = refusals[code].outcome;
    localReply(this.res, this.isGrpc, code, message);
    this.finish(outcome, this.outcomeStatus);
  }

  count(outcome: string): void {
    this.up.deps.metrics.hot.request(this.up.name, this.route?.name ?? 'default', outcome, (this.up.deps.clock.now() - this.arrived) / 1000);
  }

  release(): void {
    const held = this.held;
    this.held = [];
    for (let i = held.length - 1; i >= 0; i--) (held[i] as () => void)();
  }

  finish(outcome: string | undefined, status: number): void {
    if (this.finished) return;
    this.finished = true;
    const { up } = this;
    const clock = up.deps.clock;
    const now = clock.now();
    this.deadlineTimer?.cancel();
    this.hedgeTimer?.cancel();
    this.retryTimer?.cancel();
    this.abortAll();
    this.body?.dispose();
    this.outcomeStatus = status;
    const cancelled = outcome === 'cancelled';
    if (up.adaptive && this.adaptiveHeld) up.adaptive.release();
    if (up.throttle && this.throttled && !cancelled) up.throttle.onResult(now, !this.overloaded);
    this.release();
    this.count(outcome ?? `${Math.floor(status / 100)}xx`);
  }
}
