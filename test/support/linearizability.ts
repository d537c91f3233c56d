/**
 * A Jepsen-style register workload over the etcd v3 gRPC API: concurrent clients doing get, put
 * and compare-and-set (Txn) on a few keys, each operation recorded with invocation and
 * completion times from a monotonic clock. An operation that fails without a definite answer is
 * recorded as unknown (it may or may not have taken effect). The history is checked by
 * test/lincheck (Porcupine).
 */
import * as grpc from '@grpc/grpc-js';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SeededRandom } from '../../lib/random.ts';
import { loadProtos } from '../../store/api/server.ts';

export interface HistoryOp {
  client: number;
  key: string;
  op: 'get' | 'put' | 'cas';
  value: string;
  old: string;
  call: number;
  return: number;
  unknown: boolean;
  ok: boolean;
  exists: boolean;
  result: string;
  /** The store revision of an acknowledged write (0 otherwise). */
  revision: number;
  /** Why the outcome is unknown (gRPC status and details). */
  error?: string;
}

type Unary = (
  req: object,
  md: grpc.Metadata,
  opts: grpc.CallOptions,
  cb: (err: grpc.ServiceError | null, res: Record<string, unknown>) => void,
) => void;

/** A bare etcd KV client (no retries: every attempt is one recorded operation). */
export class KvClient {
  readonly #kv: grpc.Client;
  readonly #timeoutMs: number;

  constructor(endpoint: string, timeoutMs = 2000) {
    const pb = loadProtos()['etcdserverpb'] as Record<string, grpc.ServiceClientConstructor>;
    const KV = pb['KV'] as grpc.ServiceClientConstructor;
    this.#kv = new KV(endpoint, grpc.credentials.createInsecure());
    this.#timeoutMs = timeoutMs;
  }

  call(method: 'Range' | 'Put' | 'Txn', req: object): Promise<Record<string, unknown>> {
    const fn = (this.#kv as unknown as Record<string, Unary>)[method] as Unary;
    return new Promise((resolve, reject) => {
      fn.call(this.#kv, req, new grpc.Metadata(), { deadline: Date.now() + this.#timeoutMs }, (err, res) =>
        err ? reject(err) : resolve(res),
      );
    });
  }

  close(): void {
    this.#kv.close();
  }
}

const now = (): number => Math.round(performance.now() * 1000); // microseconds, monotonic

/** Errors that prove the request was refused before it could take effect. */
export function definitelyNotApplied(err: grpc.ServiceError): boolean {
  if (
    err.code === grpc.status.INVALID_ARGUMENT ||
    /etcdserver: (no leader|not leader|mvcc: database space exceeded)$/.test(err.details ?? '')
  )
    return true;
  // grpc-js fails a call this way only while it waits for a connection: it was never sent.
  return err.code === grpc.status.UNAVAILABLE && /^No connection established/.test(err.details ?? '');
}

export interface WorkloadOptions {
  /** Fixed, or asked before each operation (members come and go in the chaos suite). */
  endpoints: string[] | (() => string[]);
  clients: number;
  keys: string[];
  durationMs: number;
  /** Pick the endpoint for each operation (default: random). */
  route?: (client: number, op: HistoryOp['op'], n: number) => string;
  seed?: number;
  /**
   * Move to fresh keys this often (Jepsen's etcd suite does the same): each key's history stays
   * short, so the checker's search stays small however long the run; an operation with an
   * unknown outcome is concurrent only with the rest of its key's life.
   */
  keyLifetimeMs?: number;
  /** Stop early when this aborts. */
  signal?: AbortSignal;
  /**
   * Keep going past `durationMs` until this says enough work was done (a busy machine does
   * less per second; a test must run until it has done enough, not for a fixed time). The
   * duration then only bounds a run that hangs: `maxDurationMs` (default 10 × durationMs).
   */
  until?: (history: readonly HistoryOp[]) => boolean;
  maxDurationMs?: number;
}

/** Run the workload; resolves with the history. */
export async function runRegisterWorkload(o: WorkloadOptions): Promise<HistoryOp[]> {
  const history: HistoryOp[] = [];
  const clients = new Map<string, KvClient>();
  const clientFor = (e: string): KvClient => {
    let c = clients.get(e);
    if (!c) clients.set(e, (c = new KvClient(e)));
    return c;
  };
  const endpoints = typeof o.endpoints === 'function' ? o.endpoints : () => o.endpoints as string[];
  const started = Date.now();
  // (A hand-rolled LCG here once took `% n` of its low bits, which cycle: keys and kinds came in patterns.)
  const random = new SeededRandom(o.seed ?? 1);
  const rand = (n: number): number => random.int(n);
  const deadline = Date.now() + o.durationMs;
  const backstop = Date.now() + (o.maxDurationMs ?? 10 * o.durationMs);
  const going = (): boolean =>
    !o.signal?.aborted && Date.now() < backstop && (Date.now() < deadline || (o.until !== undefined && !o.until(history)));
  await Promise.all(
    Array.from({ length: o.clients }, async (_, client) => {
      let n = 0;
      const lastSeen = new Map<string, string>();
      while (going()) {
        n++;
        const base = o.keys[rand(o.keys.length)] as string;
        const key = o.keyLifetimeMs ? `${base}.${Math.floor((Date.now() - started) / o.keyLifetimeMs)}` : base;
        const roll = rand(10);
        const kind: HistoryOp['op'] = roll < 4 ? 'get' : roll < 7 ? 'put' : 'cas';
        const eps = endpoints();
        const endpoint = o.route ? o.route(client, kind, n) : (eps[rand(eps.length)] as string);
        const kv = clientFor(endpoint);
        const value = `c${client}-${n}`;
        const old = lastSeen.get(key) ?? '';
        const rec: HistoryOp = {
          client,
          key,
          op: kind,
          value: kind === 'get' ? '' : value,
          old: kind === 'cas' ? old : '',
          call: now(),
          return: 0,
          unknown: false,
          ok: false,
          exists: false,
          result: '',
          revision: 0,
        };
        const k = Buffer.from(key);
        try {
          if (kind === 'get') {
            const res = await kv.call('Range', { key: k });
            const kvs = res['kvs'] as Array<{ value: Buffer }>;
            rec.exists = kvs.length > 0;
            rec.result = rec.exists ? (kvs[0] as { value: Buffer }).value.toString() : '';
            if (rec.exists) lastSeen.set(key, rec.result);
          } else if (kind === 'put') {
            const res = await kv.call('Put', { key: k, value: Buffer.from(value) });
            rec.revision = Number((res['header'] as { revision: string }).revision);
            lastSeen.set(key, value);
          } else {
            const res = await kv.call('Txn', {
              compare: [{ key: k, target: 3, result: 0, value: Buffer.from(old) }],
              success: [{ request_put: { key: k, value: Buffer.from(value) } }],
              failure: [],
            });
            rec.ok = res['succeeded'] === true;
            if (rec.ok) {
              rec.revision = Number((res['header'] as { revision: string }).revision);
              lastSeen.set(key, value);
            }
          }
          rec.return = now();
        } catch (err) {
          rec.return = now();
          if (definitelyNotApplied(err as grpc.ServiceError)) {
            // Refused: not an operation at all. Back off a little, as a client would.
            await new Promise((r) => setTimeout(r, 20));
            continue;
          }
          rec.unknown = true;
          rec.error = `${grpc.status[(err as grpc.ServiceError).code] ?? 'ERROR'}: ${((err as grpc.ServiceError).details ?? String(err)).slice(0, 80)}`;
          await new Promise((r) => setTimeout(r, 50));
        }
        history.push(rec);
      }
    }),
  );
  for (const c of clients.values()) c.close();
  return history;
}

export interface CheckResult {
  linearizable: boolean;
  output: string;
  html: string;
}

/** Check a history with test/lincheck (Porcupine); writes the history and, on failure, HTML. */
export function checkLinearizable(history: HistoryOp[], dir: string, name: string): CheckResult {
  const lincheck = process.env['BALLAST_LINCHECK'] ?? '.tools/lincheck';
  const historyPath = join(dir, `${name}.history.json`);
  const html = join(dir, `${name}.html`);
  writeFileSync(historyPath, JSON.stringify(history));
  const r = spawnSync(lincheck, ['-history', historyPath, '-html', html, '-timeout', '120s'], { encoding: 'utf8' });
  if (r.error) throw new Error(`cannot run ${lincheck} (make lincheck builds it): ${r.error.message}`);
  if (r.status === 2) throw new Error(`lincheck could not decide: ${r.stdout}${r.stderr}`);
  return { linearizable: r.status === 0, output: r.stdout + r.stderr, html };
}
