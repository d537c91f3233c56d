// A small etcd KV client for tests that must ride through members moving: each call has a
// deadline, and a failed call is retried on the next endpoint, from a list the caller refreshes
// (pods that come back at new addresses), as a client behind a retrying proxy would.
import * as grpc from '@grpc/grpc-js';
import { loadProtos } from '../../store/api/protos.ts';

type Wire = Record<string, unknown>;

export class RetryingKv {
  #endpoints: string[] = [];
  #clients = new Map<string, grpc.Client>();
  #next = 0;
  retries = 0;
  readonly #KV = (loadProtos()['etcdserverpb'] as grpc.GrpcObject)['KV'] as grpc.ServiceClientConstructor;

  setEndpoints(eps: string[]): void {
    this.#endpoints = eps;
    for (const [ep, c] of this.#clients)
      if (!eps.includes(ep)) {
        c.close();
        this.#clients.delete(ep);
      }
  }

  #client(ep: string): grpc.Client {
    let c = this.#clients.get(ep);
    if (!c) {
      c = new this.#KV(ep, grpc.credentials.createInsecure(), {
        'grpc.use_local_subchannel_pool': 1,
        'grpc.initial_reconnect_backoff_ms': 100,
        'grpc.max_reconnect_backoff_ms': 1000,
      });
      this.#clients.set(ep, c);
    }
    return c;
  }

  #once(method: 'Put' | 'Range', req: Wire): Promise<Wire> {
    const ep = this.#endpoints[this.#next++ % Math.max(1, this.#endpoints.length)];
    if (!ep) return Promise.reject(new Error('no endpoints'));
    const c = this.#client(ep) as unknown as Record<string, (r: Wire, o: grpc.CallOptions, cb: (e: Error | null, r: Wire) => void) => void>;
    return new Promise((resolve, reject) => c[method]!(req, { deadline: Date.now() + 1000 }, (e, r) => (e ? reject(e) : resolve(r))));
  }

  /** Retries until it succeeds or `giveUpMs` passes. */
  async call(method: 'Put' | 'Range', req: Wire, giveUpMs = 60_000): Promise<Wire> {
    const end = Date.now() + giveUpMs;
    for (;;) {
      try {
        return await this.#once(method, req);
      } catch (err) {
        if (Date.now() > end) throw err;
        this.retries++;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  put(key: string, value: string): Promise<Wire> {
    return this.call('Put', { key: Buffer.from(key), value: Buffer.from(value) });
  }

  async keys(prefix: string): Promise<Set<string>> {
    const end = Buffer.from(prefix);
    end[end.length - 1]!++;
    const r = await this.call('Range', { key: Buffer.from(prefix), range_end: end, keys_only: true });
    return new Set(((r['kvs'] as Array<{ key: Buffer }>) ?? []).map((kv) => kv.key.toString()));
  }

  close(): void {
    for (const c of this.#clients.values()) c.close();
    this.#clients.clear();
  }
}
