/**
 * etcd's Lock and Election services (v3lock, v3election), served over the store's own KV and
 * watch hub, with etcd's key layout (`<name>/<lease id in hex>`) so clients interoperate.
 * A waiter watches only its predecessor's key (the one created just before its own), so a
 * release wakes one waiter, not all of them.
 */
import type * as grpc from '@grpc/grpc-js';
import { BallastError } from '../../lib/errors.ts';
import { catalogue } from '../errors.ts';
import type { KeyValue, RangeRequest } from '../mvcc/types.ts';
import { emptyRange } from '../mvcc/types.ts';
import type { StoreNode } from '../node.ts';
import type { AuthInfo } from '../auth/auth-store.ts';
import type { Caller } from './auth.ts';
import { kvOut } from './convert.ts';
import { toGrpcError } from './status.ts';

/* eslint-disable @typescript-eslint/no-explicit-any -- wire objects are untyped by proto-loader */
type Wire = Record<string, any>;

const prefixEnd = (p: string): string => {
  for (let i = p.length - 1; i >= 0; i--) {
    const c = p.charCodeAt(i);
    if (c < 0xff) return p.slice(0, i) + String.fromCharCode(c + 1);
  }
  return '\0';
};

/**
 * While auth is on, every call works as its caller, as etcd's (which runs these services over a
 * client carrying the caller's token): writes are checked where they apply, and reading the
 * queue under `<name>/` needs read access to that prefix.
 */
export class Concurrency {
  readonly #node: StoreNode;
  readonly #header: (rev?: number) => Wire;
  readonly #who: (call: Caller) => Promise<AuthInfo | undefined> | undefined;

  constructor(node: StoreNode, header: (rev?: number) => Wire, who: (call: Caller) => Promise<AuthInfo | undefined> | undefined) {
    this.#node = node;
    this.#header = header;
    this.#who = who;
  }

  /** Read access to the queue of `prefix`. */
  #checkRead(ai: AuthInfo | undefined, prefix: string): void {
    this.#node.sm.auth.checkRead(ai, prefix, prefixEnd(prefix));
  }

  #range(req: Partial<RangeRequest> & { key: string }) {
    return this.#node.sm.mvcc.range({ ...emptyRange, ...req });
  }

  /** Resolve once `key` is deleted at a revision after `afterRev` (or is already gone). */
  #waitDelete(key: string, afterRev: number, signal: AbortSignal): Promise<void> {
    const hub = this.#node.watchHub;
    return new Promise((resolve, reject) => {
      const done = (err?: Error): void => {
        hub.closeStream(stream);
        signal.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve();
      };
      const onAbort = (): void => done(catalogue.error('STORE_ERR_STOPPED', 'the client cancelled the call'));
      const stream = hub.openStream({
        events: (_id, events) => {
          if (events.some((e) => e.type === 1)) done();
        },
        progress: () => undefined,
        canceled: () => done(),
        backlog: () => 0,
      });
      const added = hub.add(stream, {
        key,
        rangeEnd: '',
        startRevision: afterRev + 1,
        noPut: true,
        noDelete: false,
        prevKv: false,
        progressNotify: false,
        fragment: false,
      });
      if ('error' in added) return done(); // history compacted: re-check the predecessors from scratch
      signal.addEventListener('abort', onAbort, { once: true });
      hub.catchUp();
    });
  }

  /** Create `key` on `lease` unless it exists; returns its create revision. */
  async #ensureKey(
    key: string,
    lease: string,
    value: string,
    ai: AuthInfo | undefined,
  ): Promise<{ rev: number; kv: KeyValue | undefined }> {
    const r = await this.#node.write(
      {
        op: 'txn',
        req: {
          compare: [{ key, rangeEnd: '', target: 1, result: 0, operand: 0 }],
          success: [{ put: { key, value, lease, prevKv: false, ignoreValue: false, ignoreLease: false } }],
          failure: [{ range: { ...emptyRange, key } }],
        },
      },
      ai,
    );
    if (r.error) throw new BallastError(r.error.code, r.error.message);
    const res = r.result as { succeeded: boolean; responses: Array<{ range?: { kvs: KeyValue[] } }> };
    if (res.succeeded) return { rev: r.revision, kv: undefined };
    const kv = res.responses[0]?.range?.kvs[0];
    return { rev: kv?.createRevision ?? r.revision, kv };
  }

  /** Wait until no key under `prefix` was created before `myRev`. */
  async #waitPredecessors(prefix: string, myRev: number, signal: AbortSignal): Promise<void> {
    for (;;) {
      await this.#node.linearizableRead();
      const pred = this.#range({
        key: prefix,
        rangeEnd: prefixEnd(prefix),
        maxCreateRevision: myRev - 1,
        sortOrder: 2,
        sortTarget: 2,
        limit: 1,
      });
      const before = pred.kvs[0];
      if (!before) return;
      await this.#waitDelete(before.key, this.#node.sm.mvcc.revision, signal);
    }
  }

  lockHandlers(): grpc.UntypedServiceImplementation {
    return {
      Lock: (call: grpc.ServerUnaryCall<Wire, Wire>, cb: grpc.sendUnaryData<Wire>) => {
        const ac = new AbortController();
        call.on('cancelled', () => ac.abort());
        const name = (call.request['name'] as Buffer).toString('latin1');
        const lease = String(call.request['lease'] ?? '0');
        const prefix = `${name}/`;
        const key = prefix + BigInt(lease).toString(16);
        (async () => {
          const ai = await this.#who(call);
          this.#checkRead(ai, prefix);
          const { rev } = await this.#ensureKey(key, lease, '', ai);
          try {
            await this.#waitPredecessors(prefix, rev, ac.signal);
          } catch (err) {
            // Gave up waiting (cancelled): leave the queue.
            await this.#node.write({ op: 'deleteRange', req: { key, rangeEnd: '', prevKv: false } }, ai).catch(() => undefined);
            throw err;
          }
          return { header: this.#header(), key: Buffer.from(key, 'latin1') };
        })().then(
          (res) => cb(null, res),
          (err: Error) => cb(toGrpcError(err) as grpc.ServiceError),
        );
      },
      Unlock: (call: grpc.ServerUnaryCall<Wire, Wire>, cb: grpc.sendUnaryData<Wire>) => {
        const key = (call.request['key'] as Buffer).toString('latin1');
        (async () => {
          const r = await this.#node.write({ op: 'deleteRange', req: { key, rangeEnd: '', prevKv: false } }, await this.#who(call));
          if (r.error) throw new BallastError(r.error.code, r.error.message);
          return { header: this.#header(r.revision) };
        })().then(
          (res) => cb(null, res),
          (err: Error) => cb(toGrpcError(err) as grpc.ServiceError),
        );
      },
    };
  }

  electionHandlers(): grpc.UntypedServiceImplementation {
    const leaderKey = (w: Wire) => ({
      name: (w['name'] as Buffer).toString('latin1'),
      key: (w['key'] as Buffer).toString('latin1'),
      rev: Number(w['rev'] ?? 0),
      lease: String(w['lease'] ?? '0'),
    });
    const unary =
      (fn: (req: Wire, signal: AbortSignal, ai: AuthInfo | undefined) => Promise<Wire>) =>
      (call: grpc.ServerUnaryCall<Wire, Wire>, cb: grpc.sendUnaryData<Wire>) => {
        const ac = new AbortController();
        call.on('cancelled', () => ac.abort());
        (async () => fn(call.request, ac.signal, await this.#who(call)))().then(
          (res) => cb(null, res),
          (err: Error) => cb(toGrpcError(err) as grpc.ServiceError),
        );
      };
    const currentLeader = (name: string): KeyValue | undefined => {
      const prefix = `${name}/`;
      return this.#range({ key: prefix, rangeEnd: prefixEnd(prefix), sortOrder: 1, sortTarget: 2, limit: 1 }).kvs[0];
    };
    return {
      Campaign: unary(async (r, signal, ai) => {
        const name = (r['name'] as Buffer).toString('latin1');
        const lease = String(r['lease'] ?? '0');
        const value = (r['value'] as Buffer | undefined)?.toString('latin1') ?? '';
        const key = `${name}/${BigInt(lease).toString(16)}`;
        this.#checkRead(ai, `${name}/`);
        const { rev, kv } = await this.#ensureKey(key, lease, value, ai);
        if (kv && kv.value !== value) await this.#proclaim(key, rev, lease, value, ai);
        await this.#waitPredecessors(`${name}/`, rev, signal);
        return {
          header: this.#header(),
          leader: { name: Buffer.from(name, 'latin1'), key: Buffer.from(key, 'latin1'), rev: String(rev), lease },
        };
      }),
      Proclaim: unary(async (r, _signal, ai) => {
        const l = leaderKey(r['leader'] ?? {});
        await this.#proclaim(l.key, l.rev, l.lease, (r['value'] as Buffer | undefined)?.toString('latin1') ?? '', ai);
        return { header: this.#header() };
      }),
      Leader: unary(async (r, _signal, ai) => {
        await this.#node.linearizableRead();
        const name = (r['name'] as Buffer).toString('latin1');
        this.#checkRead(ai, `${name}/`);
        const kv = currentLeader(name);
        if (!kv) throw catalogue.error('STORE_ERR_ELECTION_NO_LEADER', 'election: no leader');
        return { header: this.#header(), kv: kvOut(kv) };
      }),
      Resign: unary(async (r, _signal, ai) => {
        const l = leaderKey(r['leader'] ?? {});
        const res = await this.#node.write(
          {
            op: 'txn',
            req: {
              compare: [{ key: l.key, rangeEnd: '', target: 1, result: 0, operand: l.rev }],
              success: [{ deleteRange: { key: l.key, rangeEnd: '', prevKv: false } }],
              failure: [],
            },
          },
          ai,
        );
        if (res.error) throw new BallastError(res.error.code, res.error.message);
        return { header: this.#header(res.revision) };
      }),
      Observe: (call: grpc.ServerWritableStream<Wire, Wire>) => {
        const name = (call.request['name'] as Buffer).toString('latin1');
        const prefix = `${name}/`;
        if (this.#node.sm.auth.enabled) {
          void (async () => this.#checkRead(await this.#who(call), prefix))().then(
            () => this.#observe(call, name),
            (err: unknown) => call.emit('error', toGrpcError(err)),
          );
          return;
        }
        this.#observe(call, name);
      },
    };
  }

  /** Stream the election's leader: now, and each time it changes. */
  #observe(call: grpc.ServerWritableStream<Wire, Wire>, name: string): void {
    const prefix = `${name}/`;
    const currentLeader = (): KeyValue | undefined =>
      this.#range({ key: prefix, rangeEnd: prefixEnd(prefix), sortOrder: 1, sortTarget: 2, limit: 1 }).kvs[0];
    const hub = this.#node.watchHub;
    let last = '';
    const send = (): void => {
      const kv = currentLeader();
      if (!kv) return;
      const id = `${kv.key}@${kv.modRevision}`;
      if (id === last) return;
      last = id;
      call.write({ header: this.#header(), kv: kvOut(kv) });
    };
    const stream = hub.openStream({
      events: () => send(),
      progress: () => undefined,
      canceled: () => call.end(),
      backlog: () => call.writableLength,
    });
    hub.add(stream, {
      key: prefix,
      rangeEnd: prefixEnd(prefix),
      startRevision: 0,
      noPut: false,
      noDelete: false,
      prevKv: false,
      progressNotify: false,
      fragment: false,
    });
    send();
    call.on('cancelled', () => hub.closeStream(stream));
    call.on('close', () => hub.closeStream(stream));
  }

  async #proclaim(key: string, rev: number, lease: string, value: string, ai: AuthInfo | undefined): Promise<void> {
    const r = await this.#node.write(
      {
        op: 'txn',
        req: {
          compare: [{ key, rangeEnd: '', target: 1, result: 0, operand: rev }],
          success: [{ put: { key, value, lease, prevKv: false, ignoreValue: false, ignoreLease: false } }],
          failure: [],
        },
      },
      ai,
    );
    if (r.error) throw new BallastError(r.error.code, r.error.message);
    if (!(r.result as { succeeded: boolean }).succeeded) throw catalogue.error('STORE_ERR_ELECTION_NOT_LEADER', 'election: not leader');
  }
}
