/**
 * Test-only failpoints, after etcd's gofail: places in the storage path that can be told to
 * sleep or to crash, for the chaos suite's disk faults. They exist only when the process is
 * started with BALLAST_FAILPOINTS (initial terms) or BALLAST_FAILPOINTS_HTTP (an address
 * serving PUT, GET and DELETE /<name>, as gofail's GOFAIL_HTTP); otherwise nothing is created
 * and the storage path runs no failpoint code at all.
 *
 *   BALLAST_FAILPOINTS='walBeforeSync=sleep(200)'      every WAL fsync waits 200 ms first
 *   curl -X PUT -d '1*crash' http://ADDR/walBeforeSync  the next fsync crashes instead
 *
 * Terms: `sleep(MS)`, `crash`, `off`; `N*term` fires N times, then turns itself off.
 * `raftBeforeSaveSnap` (etcd's name) acts when a snapshot has been encoded and is about to be
 * written: `sleep` holds that snapshot (the member goes on serving meanwhile), `crash` kills the
 * process there.
 * `crash` at walBeforeSync is a power cut between write and fsync: every WAL byte written since
 * the last completed fsync is cut from the file (the page cache would lose it too), then the
 * process kills itself with SIGKILL. Nothing it cuts was acknowledged to anyone.
 */
import type { Server } from 'node:http';
import { createServer } from '../lib/node-http.ts';

export type FailpointName = 'walBeforeSync' | 'raftBeforeSaveSnap';
const names: readonly FailpointName[] = ['walBeforeSync', 'raftBeforeSaveSnap'];

export type FailpointTerm = { action: 'sleep'; ms: number; count: number } | { action: 'crash'; count: number };

/** Parse one term; throws with what a valid term looks like. */
export function parseTerm(s: string): FailpointTerm | undefined {
  const t = s.trim();
  if (t === 'off' || t === '') return undefined;
  const m = /^(?:(\d+)\*)?(sleep\((\d+)\)|crash)$/.exec(t);
  if (!m) throw new Error(`failpoint term "${s}" is not one of sleep(MS), crash, off (optionally N*term)`);
  const count = m[1] ? Number(m[1]) : Infinity;
  return m[3] !== undefined ? { action: 'sleep', ms: Number(m[3]), count } : { action: 'crash', count };
}

export class Failpoints {
  readonly #terms = new Map<FailpointName, FailpointTerm>();

  set(name: string, term: string): void {
    if (!names.includes(name as FailpointName)) throw new Error(`no failpoint "${name}" (there is: ${names.join(', ')})`);
    const t = parseTerm(term);
    if (t) this.#terms.set(name as FailpointName, t);
    else this.#terms.delete(name as FailpointName);
  }

  /** The term to act on now (counting it down), if any. */
  take(name: FailpointName): FailpointTerm | undefined {
    const t = this.#terms.get(name);
    if (!t) return undefined;
    if (--t.count <= 0) this.#terms.delete(name);
    return t;
  }

  list(): string {
    return [...this.#terms]
      .map(([n, t]) => `${n}=${t.count === Infinity ? '' : `${t.count}*`}${t.action === 'sleep' ? `sleep(${t.ms})` : 'crash'}\n`)
      .join('');
  }

  /** Serve gofail's HTTP interface on host:port. */
  serve(addr: string): Promise<Server> {
    const [host, port] = [addr.slice(0, addr.lastIndexOf(':')), Number(addr.slice(addr.lastIndexOf(':') + 1))];
    const srv = createServer((req, res) => {
      const name = (req.url ?? '/').slice(1);
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        try {
          if (req.method === 'GET') return void res.end(this.list());
          this.set(name, req.method === 'DELETE' ? 'off' : body);
          res.writeHead(204).end();
        } catch (err) {
          res.writeHead(400, { 'content-type': 'text/plain' }).end(`${(err as Error).message}\n`);
        }
      });
    });
    return new Promise((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(port, host, () => resolve(srv));
    });
  }
}

/** Failpoints from the environment, or undefined when neither variable is set. */
export function failpointsFromEnv(env: Record<string, string | undefined>): Failpoints | undefined {
  const initial = env['BALLAST_FAILPOINTS'];
  if (initial === undefined && env['BALLAST_FAILPOINTS_HTTP'] === undefined) return undefined;
  const fp = new Failpoints();
  for (const part of (initial ?? '').split(';').filter((p) => p.trim() !== '')) {
    const eq = part.indexOf('=');
    if (eq < 0) throw new Error(`BALLAST_FAILPOINTS: "${part}" is not name=term`);
    fp.set(part.slice(0, eq).trim(), part.slice(eq + 1));
  }
  return fp;
}
