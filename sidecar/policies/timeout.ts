/**
 * Deadlines (pure). A request's deadline is the earliest of the sidecar's own overall timeout and
 * what its caller allowed (`grpc-timeout`, or Ballast's `x-ballast-timeout-ms` for HTTP); the
 * remaining time is written on the way out so no hop works past its caller. Times are relative
 * (milliseconds left), as gRPC's are, because hosts' clocks differ.
 */
export const deadlineHeader = 'x-ballast-timeout-ms';

const grpcUnits: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };

/** `grpc-timeout` ("100m", "5S", at most 8 digits) in milliseconds; undefined if malformed. */
export function parseGrpcTimeout(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const m = /^(\d{1,8})([HMSmun])$/.exec(v);
  if (!m) return undefined;
  return Number(m[1]) * (grpcUnits[m[2] as string] as number);
}

/** Milliseconds as `grpc-timeout`, rounded up so a deadline is never shortened to zero. */
export function formatGrpcTimeout(ms: number): string {
  const v = Math.max(1, Math.ceil(ms));
  return v < 1e8 ? `${v}m` : `${Math.ceil(v / 1000)}S`;
}

/** The milliseconds the caller allows, from either header (the smaller if both). */
export function callerBudgetMs(headers: Readonly<Record<string, string | string[] | undefined>>): number | undefined {
  const g = parseGrpcTimeout(typeof headers['grpc-timeout'] === 'string' ? headers['grpc-timeout'] : undefined);
  const raw = headers[deadlineHeader];
  const h = typeof raw === 'string' && /^\d{1,10}$/.test(raw) ? Number(raw) : undefined;
  if (g === undefined) return h;
  return h === undefined ? g : Math.min(g, h);
}
