/**
 * An open-loop load generator (requests are sent on schedule whether or not earlier ones have
 * answered, so a slow server cannot slow the clock that measures it: no coordinated omission).
 * Used by the sidecar's fault suite; the benchmark uses wrk.
 */
import { Pool } from 'undici';

export interface LoadResult {
  sent: number;
  ok: number;
  failed: number;
  /** Status (or error code) → count. */
  outcomes: Record<string, number>;
  /** Latencies of successful requests, ms, sorted. */
  latencies: number[];
}

export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

/** Send `rate` GETs per second for `seconds` to `origin`. `during` runs once the load is going. */
export async function openLoop(
  origin: string,
  rate: number,
  seconds: number,
  o: { path?: string; during?: () => Promise<void> } = {},
): Promise<LoadResult> {
  const pool = new Pool(origin, { connections: 512, pipelining: 1 });
  const r: LoadResult = { sent: 0, ok: 0, failed: 0, outcomes: {}, latencies: [] };
  const pending: Array<Promise<void>> = [];
  const tick = 5;
  const start = performance.now();
  const total = Math.round(rate * seconds);
  const one = (): Promise<void> => {
    const t0 = performance.now();
    r.sent++;
    return pool.request({ path: o.path ?? '/', method: 'GET' }).then(
      async (res) => {
        await res.body.dump();
        const code = res.headers['x-ballast-error'];
        const key = typeof code === 'string' ? `${res.statusCode} ${code}` : String(res.statusCode);
        r.outcomes[key] = (r.outcomes[key] ?? 0) + 1;
        if (res.statusCode === 200) {
          r.ok++;
          r.latencies.push(performance.now() - t0);
        } else r.failed++;
      },
      (err: Error & { code?: string }) => {
        const key = err.code ?? err.message;
        r.outcomes[key] = (r.outcomes[key] ?? 0) + 1;
        r.failed++;
      },
    );
  };
  const during = o.during ? new Promise<void>((resolve) => setTimeout(resolve, 50)).then(o.during) : Promise.resolve();
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate));
      while (r.sent < due) pending.push(one());
      if (r.sent >= total) {
        clearInterval(timer);
        resolve();
      }
    }, tick);
  });
  await Promise.all(pending);
  await during;
  await pool.close();
  r.latencies.sort((x, y) => x - y);
  return r;
}
