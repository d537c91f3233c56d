/**
 * The attempt phase of a request (layers 7–9 of sidecar/stack.ts, which orders them): the
 * deadline, attempts with retries and hedges drawing on one budget, and per attempt the
 * balancer (skipping ejected, open-breaker and already-tried endpoints), the endpoint breaker,
 * the attempt timeout and the transport. The first answer that is not retried is committed:
 * its head, body and trailers stream to the caller, and every other attempt is cancelled.
 * Outcomes flow back to the balancer, the endpoint's adaptive limit, outlier detection and the
 * endpoint breaker.
 */
import type { Http2ServerRequest } from 'node:http2';
import type { Readable } from 'node:stream';
import type { TimerHandle } from '../lib/clock.ts';
import { type Code, breakResponse, endHeadersOnly, endToEnd, grpc, grpcAsHttp, grpcMessage, localReply, refusals } from './http.ts';
import { hedgeDelay } from './policies/hedge.ts';
import { isIdempotent, retryReason, type AttemptOutcome } from './policies/retry.ts';
import { backoffDelay, serverPushbackMs } from './policies/retry-budget.ts';
import { type TraceParent, parseTraceParent } from './traceparent.ts';
import type { AttemptSpan } from './tracing.ts';
import { ReplayBody } from './upstream/body.ts';
import { chooseEndpoint } from './upstream/choose.ts';
import { type ExchangeView, type RequestEnd, authority, hashKey, upstreamHeaders } from './exchange.ts';
import type { AttemptControl, AttemptError, Headers, OutRequest } from './upstream/transport.ts';
import type { AttemptStart } from './upstream/upstream.ts';

interface Attempt {
  readonly start: AttemptStart;
  ctl: AttemptControl;
  timer: TimerHandle | undefined;
  settled: boolean;
  /** Time from the attempt's start to its answer's head, once it came. */
  headLatency?: number;
  span?: AttemptSpan | undefined;
  /**
   * This attempt's reader of the replayable body. Released when the attempt settles: a reader
   * left behind holds the replay buffer's back-pressure for ever once the body outgrows it.
   */
  replay: Readable | undefined;
}

/**
 * The attempts of one request (layers 7–9), owned by its exchange: everything here is private
 * but {@link start} and {@link cancel}; the end is reported once to the exchange's `done`.
 */
export class Attempts {
  readonly #x: ExchangeView;
  readonly #done: (end: RequestEnd) => void;
  /** The protocol towards the endpoint (see {@link OutRequest.protocol}). */
  readonly #upProtocol: OutRequest['protocol'];
  #deadline = Infinity;
  /** From the caller: bounds the whole exchange, streams included. */
  #callerDeadline = Infinity;
  /** The request body: replayable (kept up to the buffer), or streamed once. */
  #body: ReplayBody | null = null;
  #directBody: Readable | null = null;
  /** The body was larger than the replay buffer: it went with the first attempt, none may follow. */
  #bodySentOnce = false;
  #attempts: Attempt[] = [];
  /** Endpoints already tried (a retry or hedge goes elsewhere). */
  #tried: string[] = [];
  #attemptCount = 0;
  #committed: Attempt | undefined;
  #finished = false;
  #deadlineTimer: TimerHandle | undefined;
  #hedgeTimer: TimerHandle | undefined;
  #retryTimer: TimerHandle | undefined;
  /** The committed answer's status so far (its trailers may change it). */
  #status = 0;
  #overloaded = false;
  /** What the last failed attempt failed with (the answer if no other attempt may follow). */
  #lastFailure: { code: Code; message: string } | undefined;
  #parent: TraceParent | null | undefined;

  constructor(exchange: ExchangeView, done: (end: RequestEnd) => void) {
    this.#x = exchange;
    this.#done = done;
    const proto = exchange.up.spec.protocol;
    // auto: the caller's protocol, except that a plain HTTP/2 caller's request goes over
    // HTTP/1.1 to an endpoint that does not speak HTTP/2 (gRPC needs HTTP/2 end to end).
    this.#upProtocol = proto === 'http2' || exchange.isGrpc ? 'h2' : proto === 'auto' && exchange.isH2 ? 'prefer-h2' : 'h1';
  }

  /** The caller left: stop every attempt and the timers; nothing is reported. */
  cancel(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#stop();
  }

  #stop(): void {
    this.#deadlineTimer?.cancel();
    this.#hedgeTimer?.cancel();
    this.#retryTimer?.cancel();
    this.#abortAll();
    this.#body?.dispose();
  }

  /** The request is over with this answer: stop what is still going and tell the exchange once. */
  #finish(outcome: string | undefined, status: number): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#status = status;
    this.#stop();
    this.#done({ outcome, status, overloaded: this.#overloaded });
  }

  /** Set the deadline and take the body; then the first attempt. */
  start(caller: number | undefined): boolean {
    const now = this.#x.up.deps.clock.now();
    if (caller !== undefined) this.#callerDeadline = this.#x.arrived + caller;
    this.#deadline = Math.min(this.#x.arrived + this.#x.timeouts.requestMs, this.#callerDeadline);
    if (this.#deadline <= now) return false;
    const req = this.#x.req;
    const hasBody =
      req.httpVersionMajor === 2
        ? !(req as Http2ServerRequest).stream.endAfterHeaders
        : (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0') ||
          req.headers['transfer-encoding'] !== undefined;
    if (hasBody) {
      const len = Number(req.headers['content-length'] ?? NaN);
      if (len > this.#x.options.replayBufferBytes) {
        this.#directBody = req as unknown as Readable;
        this.#bodySentOnce = true;
      } else this.#body = new ReplayBody(req as unknown as Readable, this.#x.options.replayBufferBytes);
    }
    this.#x.up.budget.onRequest(now);
    this.#launch(false);
    return true;
  }

  #armDeadline(): void {
    if (this.#deadlineTimer || this.#deadline === Infinity) return;
    const clock = this.#x.up.deps.clock;
    this.#deadlineTimer = clock.setTimeout(() => this.#onDeadline(), Math.max(0, this.#deadline - clock.now()));
  }

  #onDeadline(): void {
    this.#deadlineTimer = undefined;
    if (this.#finished) return;
    if (this.#committed) {
      // A stream outlived its caller's deadline: end it as gRPC would.
      this.#abortAll();
      this.#status = 504;
      if (this.#x.isGrpc && !this.#x.res.writableEnded) {
        this.#x.res.addTrailers?.({ 'grpc-status': String(grpc.DEADLINE_EXCEEDED), 'grpc-message': 'SIDECAR_ERR_TIMEOUT' });
        this.#x.res.end();
      } else breakResponse(this.#x.res);
      return this.#finish('timeout', 504);
    }
    this.#abortAll();
    this.#overloaded = true;
    const ms = Math.round(this.#deadline - this.#x.arrived);
    this.#fail(
      'SIDECAR_ERR_TIMEOUT',
      `${this.#x.up.name} did not answer within ${ms} ms${this.#callerDeadline === this.#deadline ? " (the caller's deadline)" : ''}`,
    );
  }

  #idempotent(): boolean {
    return isIdempotent(this.#x.retries, this.#x.method, this.#x.path, this.#x.isGrpc);
  }

  /** Start an attempt (a first try, a retry, or a hedge); false when none was started. */
  #launch(hedge: boolean): boolean {
    const { up } = this.#x;
    const clock = up.deps.clock;
    const now = clock.now();
    // 9. pick an endpoint (sidecar/upstream/choose.ts).
    const chosen = chooseEndpoint(up, now, hashKey(this.#x), this.#tried, hedge);
    if (!chosen) {
      if (hedge || this.#attempts.length > 0) return false; // a hedge is extra; others are still trying
      if (up.endpointList.length === 0) this.#fail('SIDECAR_ERR_NO_ENDPOINT', `${up.name} has no endpoints`);
      else if (this.#tried.length > 0) this.#fail('SIDECAR_ERR_UPSTREAM_UNREACHABLE', `no endpoint of ${up.name} was left to try`);
      else this.#fail('SIDECAR_ERR_CIRCUIT_OPEN', `every endpoint of ${up.name} has an open circuit breaker`);
      return false;
    }
    const { ep, ticket } = chosen;
    // The whole body or nothing: a body that outgrew the replay buffer since the decision to
    // retry (it kept streaming during the back-off), or one streamed once (its content-length
    // past the buffer) after its first attempt, cannot be sent again. The failure that led here
    // is the answer: a retry or hedge with a truncated or empty body would reach the upstream as
    // a different request, and could be answered 200.
    const replay = this.#body ? this.#body.reader() : undefined;
    if (this.#body ? !replay : this.#bodySentOnce && !this.#directBody) {
      if (ticket) ep.breaker?.onCancel(ticket);
      if (hedge || this.#attempts.length > 0) return false;
      this.#fail(
        this.#lastFailure?.code ?? 'SIDECAR_ERR_UPSTREAM_RESET',
        `${this.#lastFailure?.message ?? 'the attempt failed'}; not retried: the request body outgrew the replay buffer (${this.#x.options.replayBufferBytes} bytes)`,
      );
      return false;
    }
    this.#attemptCount++;
    this.#tried.push(ep.id);
    const body = replay ?? this.#directBody;
    if (this.#directBody) this.#directBody = null; // sent once
    const out: OutRequest = {
      method: this.#x.method,
      path: this.#x.path,
      authority: authority(this.#x),
      headers: upstreamHeaders(this.#x, this.#callerDeadline, now),
      body,
      protocol: this.#upProtocol,
    };
    const span = up.deps.tracing?.attempt(this.#parentTrace(), {
      upstream: up.name,
      endpoint: ep.id,
      method: this.#x.method,
      path: this.#x.path,
      attempt: this.#attemptCount,
      hedge,
    });
    if (span) out.headers['traceparent'] = span.traceparent;
    const a: Attempt = {
      start: up.startAttempt(ep, ticket, now),
      ctl: undefined as unknown as AttemptControl,
      timer: undefined,
      settled: false,
      span,
      replay,
    };
    this.#attempts.push(a);
    a.ctl = ep.transport.send(out, {
      head: (status, headers) => this.#onHead(a, status, headers),
      data: (chunk) => this.#onData(a, chunk),
      end: (trailers) => this.#onEnd(a, trailers),
      error: (err) => this.#onError(a, err),
    });
    if (this.#finished || a.settled) return true;
    // One timer per attempt, up to its own timeout; the request's deadline gets a timer of its
    // own only when no attempt's timer covers it (a timer per request is not free at 20k/s).
    const attemptMs = this.#x.timeouts.attemptMs;
    if (attemptMs < this.#deadline - now) a.timer = clock.setTimeout(() => this.#onAttemptTimeout(a), attemptMs);
    else this.#armDeadline();
    this.#armHedge();
    return true;
  }

  #armHedge(): void {
    const { up } = this.#x;
    const h = this.#x.route.policy.hedge;
    if (!h.enabled || this.#hedgeTimer || this.#committed || this.#attempts.length > h.maxHedges || !this.#idempotent()) return;
    if (this.#bodySentOnce || (this.#body && !this.#body.replayable)) return;
    const delay = hedgeDelay(this.#x.route.hedge, up.hedgeTracker);
    if (delay === undefined) return;
    this.#hedgeTimer = up.deps.clock.setTimeout(() => {
      this.#hedgeTimer = undefined;
      // Nothing out to hedge: the last attempt failed and a retry is waiting out its back-off.
      if (this.#finished || this.#committed || this.#attempts.length === 0 || up.endpointList.length < 2) return;
      if (this.#body && !this.#body.replayable) return;
      // Hedge only into spare capacity: under load a hedge is one more request to a struggling
      // upstream (the loser keeps its slot there until the cancel arrives).
      if (up.adaptive && up.adaptive.inflight >= up.adaptive.limit) {
        this.#armHedge();
        return;
      }
      if (up.budget.remaining(up.deps.clock.now()) < 1) return;
      if (!this.#launch(true)) {
        // No endpoint has room right now (a burst): look again after another delay.
        this.#armHedge();
        return;
      }
      up.budget.tryWithdraw(up.deps.clock.now());
      up.deps.metrics.hedges.inc({ upstream: up.name });
    }, delay);
  }

  /** The caller's W3C trace context (parsed once). */
  #parentTrace(): TraceParent | undefined {
    if (this.#parent === undefined) this.#parent = parseTraceParent(this.#x.req.headers['traceparent']) ?? null;
    return this.#parent ?? undefined;
  }

  /**
   * Whether another attempt may follow (and, if so, the budget is drawn). Retrying an answer
   * (a 503, UNAVAILABLE) throws that answer away, so it is done only when the whole request
   * body is in hand: while the body still streams it could outgrow the replay buffer during
   * the back-off, and then there would be neither a retry nor the answer to give back (Envoy
   * skips such retries too: rq_retry_skipped_request_not_complete).
   */
  #mayRetry(reason: string, headers: Headers | undefined): number | undefined {
    const { up } = this.#x;
    const r = this.#x.retries;
    const now = up.deps.clock.now();
    if (this.#attemptCount >= r.maxAttempts) return undefined;
    if (this.#bodySentOnce || (this.#body && !this.#body.replayable)) return undefined;
    if (headers && this.#body && !this.#body.ended) return undefined;
    let delay = Math.max(r.minBackoffMs ?? 0, backoffDelay(this.#attemptCount - 1, r.backoffBaseMs, r.backoffMaxMs, up.deps.random));
    if (headers) {
      const push = serverPushbackMs(headers, up.deps.clock.wallNow());
      if (push === 'stop') return undefined;
      if (push !== undefined) delay = Math.max(delay, push);
    }
    if (now + delay >= this.#deadline) return undefined;
    if (!up.budget.tryWithdraw(now)) return undefined;
    up.deps.metrics.retries.inc({ upstream: up.name, reason });
    return delay;
  }

  #settle(a: Attempt, result: string, status: number | 'connect', latencyMs: number): void {
    if (a.settled) return;
    a.settled = true;
    // The reader of an attempt that lost, failed or ended goes: the buffer need not keep its
    // place (the committed attempt's reader stays while its request body still streams).
    if (a.replay && (this.#committed !== a || result !== 'ok')) a.replay.destroy();
    // Results are 'ok' or a status class ('5xx') for answers, else the failure's kind.
    a.span?.end(
      typeof status === 'number' && status > 0
        ? result === 'ok' || result.endsWith('xx')
          ? { status }
          : { status, error: result }
        : { error: result },
    );
    a.timer?.cancel();
    const i = this.#attempts.indexOf(a);
    if (i >= 0) this.#attempts.splice(i, 1);
    this.#x.up.endAttempt(a.start, { result, status, latencyMs, headLatencyMs: a.headLatency, now: this.#x.up.deps.clock.now() });
  }

  #onHead(a: Attempt, status: number, headers: Headers): void {
    if (this.#finished || a.settled) return;
    const { up } = this.#x;
    const now = up.deps.clock.now();
    const latency = now - a.start.started;
    const gs = this.#x.isGrpc && headers['grpc-status'] !== undefined ? Number(headers['grpc-status']) : undefined;
    const effective = gs !== undefined ? grpcAsHttp(gs) : status;
    a.headLatency = latency;
    const reason = retryReason(this.#x.retries, this.#idempotent(), { kind: 'status', status, grpcStatus: gs });
    if (reason !== undefined && !this.#committed) {
      // A retryable answer: drop it if a sibling (hedge) is still out, or if a retry may follow.
      const others = this.#attempts.length > 1;
      const delay = others ? undefined : this.#mayRetry(reason, headers);
      if (others || delay !== undefined) {
        a.ctl.abort();
        this.#settle(a, `${Math.floor(effective / 100)}xx`, effective, latency);
        if (delay !== undefined) this.#scheduleRetry(delay);
        return;
      }
      // No retry left: this answer is the answer, passed on as it is.
    }
    // Commit: this attempt wins; cancel the others.
    this.#committed = a;
    up.deps.metrics.requestPath.attemptHead(up.name, a.start.endpoint.id, latency / 1000);
    up.hedgeTracker?.record(latency);
    this.#hedgeTimer?.cancel();
    this.#retryTimer?.cancel();
    for (const o of this.#attempts)
      if (o !== a) {
        o.ctl.abort();
        this.#settle(o, 'cancelled', 0, 0);
      }
    this.#status = effective;
    this.#overloaded = effective === 503 || effective === 429;
    a.timer?.cancel();
    a.timer = undefined;
    // From here on only the caller's own deadline bounds the exchange (a stream may run long).
    if (this.#deadline !== this.#callerDeadline) {
      this.#deadlineTimer?.cancel();
      this.#deadlineTimer = undefined;
      this.#deadline = this.#callerDeadline;
    }
    this.#armDeadline();
    try {
      if (gs !== undefined) {
        // A trailers-only gRPC answer (the status is in the head): passed on as one, and that
        // is the whole exchange.
        endHeadersOnly(this.#x.res, status, endToEnd(headers));
        this.#settle(a, effective < 500 ? 'ok' : `${Math.floor(effective / 100)}xx`, effective, latency);
        return this.#finish(undefined, effective);
      }
      this.#x.res.writeHead(status, endToEnd(headers));
    } catch (err) {
      a.ctl.abort();
      this.#settle(a, 'protocol', 502, latency);
      return this.#fail(
        'SIDECAR_ERR_UPSTREAM_RESET',
        `the response head from ${a.start.endpoint.id} could not be passed on: ${(err as Error).message}`,
      );
    }
  }

  #onData(a: Attempt, chunk: Buffer): boolean {
    if (this.#committed !== a || this.#finished) return true;
    const ok = this.#x.res.write(chunk);
    if (!ok) this.#x.res.once('drain', () => a.ctl.resume());
    return ok;
  }

  #onEnd(a: Attempt, trailers: Headers | undefined): void {
    if (this.#committed !== a || this.#finished) return;
    const now = this.#x.up.deps.clock.now();
    let status = this.#status;
    if (trailers) {
      const gs = trailers['grpc-status'];
      if (gs !== undefined) status = grpcAsHttp(Number(gs));
      if (this.#x.res.addTrailers) {
        try {
          this.#x.res.addTrailers(endToEnd(trailers));
        } catch {
          // HTTP/1.1 without a declared Trailer header: trailers are dropped, as every proxy does.
        }
      }
    }
    this.#status = status;
    this.#overloaded = status === 503 || status === 429;
    this.#settle(a, status < 500 ? 'ok' : `${Math.floor(status / 100)}xx`, status, now - a.start.started);
    this.#x.res.end();
    this.#finish(undefined, status);
  }

  #onError(a: Attempt, err: AttemptError): void {
    if (this.#finished || a.settled) return;
    const { up } = this.#x;
    const now = up.deps.clock.now();
    if (this.#committed === a) {
      // The body broke after the head was sent. A gRPC caller gets UNAVAILABLE in the trailers
      // (what grpc-go reports for a broken transport; a bare reset would reach grpc-js as
      // INTERNAL); anyone else sees the reset too.
      this.#settle(a, 'reset', 502, now - a.start.started);
      this.#status = 502;
      if (this.#x.isGrpc && this.#x.res.addTrailers && !this.#x.res.writableEnded) {
        this.#x.res.addTrailers({
          'grpc-status': String(grpc.UNAVAILABLE),
          'grpc-message': grpcMessage(`SIDECAR_ERR_UPSTREAM_RESET: ${a.start.endpoint.id}: ${err.message}`),
          'x-ballast-error': 'SIDECAR_ERR_UPSTREAM_RESET',
        });
        this.#x.res.end();
      } else breakResponse(this.#x.res);
      return this.#finish('reset', 502);
    }
    if (err.kind === 'invalid') {
      // Nothing was sent: the request itself cannot go as it is. Not the endpoint's failure,
      // and no other endpoint would take it either.
      this.#settle(a, 'cancelled', 0, now - a.start.started);
      return this.#fail('SIDECAR_ERR_REQUEST_INVALID', `the request cannot be forwarded to ${up.name}: ${err.message}`);
    }
    this.#settle(a, err.kind, err.kind === 'connect' ? 'connect' : 502, now - a.start.started);
    if (err.kind === 'cancelled') return;
    const code: Code =
      err.kind === 'connect' || err.kind === 'refused'
        ? 'SIDECAR_ERR_UPSTREAM_UNREACHABLE'
        : err.kind === 'timeout'
          ? 'SIDECAR_ERR_TIMEOUT'
          : 'SIDECAR_ERR_UPSTREAM_RESET';
    this.#lastFailure = { code, message: `${a.start.endpoint.id}: ${err.message}` };
    if (this.#attempts.length > 0) return; // a hedge is still out
    const reason = retryReason(this.#x.retries, this.#idempotent(), { kind: err.kind } as AttemptOutcome);
    const delay = reason === undefined ? undefined : this.#mayRetry(reason, undefined);
    if (delay !== undefined) return this.#scheduleRetry(delay);
    this.#fail(code, `${a.start.endpoint.id}: ${err.message}`);
  }

  #onAttemptTimeout(a: Attempt): void {
    a.timer = undefined;
    this.#armDeadline();
    if (this.#finished || a.settled || this.#committed) return;
    a.ctl.abort();
    const ms = this.#x.timeouts.attemptMs;
    this.#onError(
      a,
      Object.assign(new Error(`no answer within ${ms} ms (timeouts.attemptMs)`), { kind: 'timeout' as const }) as AttemptError,
    );
    this.#overloaded = true;
  }

  #scheduleRetry(delay: number): void {
    this.#armDeadline();
    if (delay <= 0) {
      this.#launch(false);
      return;
    }
    this.#retryTimer = this.#x.up.deps.clock.setTimeout(() => {
      this.#retryTimer = undefined;
      if (!this.#finished && !this.#committed) this.#launch(false);
    }, delay);
  }

  #abortAll(): void {
    for (const a of this.#attempts) {
      a.ctl.abort();
      this.#settle(a, 'cancelled', 0, 0);
    }
  }

  /** Fail the request with the sidecar's own answer (after admission). */
  #fail(code: Code, message: string): void {
    if (this.#finished) return;
    this.#status = refusals[code].status;
    this.#overloaded = code === 'SIDECAR_ERR_TIMEOUT' || code === 'SIDECAR_ERR_UPSTREAM_UNREACHABLE';
    const outcome = refusals[code].outcome;
    localReply(this.#x.res, this.#x.isGrpc, code, message);
    this.#finish(outcome, this.#status);
  }
}
