/**
 * The programs' operational HTTP endpoints (metrics, health, the operator's admission webhooks)
 * on fastify: routes with schemas (requests validated, JSON answers serialized from their
 * schema), one answer for an unknown path that names the known ones, 405 for a known path asked
 * with the wrong method, and `inject()` for tests without a socket. Not the data path, and not
 * the sidecar's admin endpoint: docs/sidecar.md has the measurement (fastify costs a sidecar
 * about 10 MiB of its idle memory for five GET routes).
 */
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Metrics } from './metrics.ts';

/** A health check: ok, or the reason it is not. */
export type Check = () => { ok: boolean; reason: string };

export interface EndpointOptions {
  /** Serve HTTPS with this certificate (PEM). */
  https?: { cert: string; key: string };
  /** The largest request body accepted (bytes); default 1 MiB. */
  bodyLimit?: number;
}

/** A fastify app with the shared conventions; add routes, then {@link listen}. */
export function endpointApp(o: EndpointOptions = {}): FastifyInstance {
  const app = (o.https
    ? Fastify({
        logger: false,
        https: { cert: o.https.cert, key: o.https.key },
        forceCloseConnections: true,
        bodyLimit: o.bodyLimit ?? 1 << 20,
      })
    : Fastify({ logger: false, forceCloseConnections: true, bodyLimit: o.bodyLimit ?? 1 << 20 })) as unknown as FastifyInstance;
  app.setNotFoundHandler((req: FastifyRequest, reply: FastifyReply) => {
    const path = req.url.split('?')[0] ?? '/';
    const allowed = ['GET', 'POST'].filter((method) => app.hasRoute({ method, url: path }));
    if (allowed.length > 0) {
      const allow = allowed.includes('GET') ? [...allowed, 'HEAD'] : allowed;
      return reply
        .code(405)
        .header('allow', allow.join(', '))
        .type('text/plain')
        .send(`${req.method} is not served on ${path}; use ${allow.join(' or ')}\n`);
    }
    return reply
      .code(404)
      .type('text/plain')
      .send(`not found: ${path}; try ${knownPaths(app).join(', ')}\n`);
  });
  return app;
}

/** The paths an app serves (for the 404's hint). */
function knownPaths(app: FastifyInstance): string[] {
  const paths = new Set<string>();
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const m = /([/][^\s(]*)\s\(/.exec(line);
    if (m?.[1]) paths.add(m[1]);
  }
  return [...paths].sort();
}

/** `GET /metrics`: the registry's exposition text; `refresh` updates point-in-time gauges first. */
export function metricsRoute(app: FastifyInstance, metrics: Metrics, refresh?: () => void): void {
  app.get('/metrics', async (_req, reply) => {
    refresh?.();
    try {
      const { contentType, body } = await metrics.render();
      return reply.type(contentType).send(body);
    } catch (err) {
      return reply
        .code(500)
        .type('text/plain')
        .send(`metrics collection failed: ${(err as Error).message}\n`);
    }
  });
}

/** `GET path`: 200 `ok` when the check passes, 503 with its reason when it does not (Kubernetes' /readyz style). */
export function checkRoute(app: FastifyInstance, path: string, check: Check): void {
  app.get(path, { schema: { response: { 200: { type: 'string' }, 503: { type: 'string' } } } }, async (_req, reply) => {
    const r = check();
    return reply
      .code(r.ok ? 200 : 503)
      .type('text/plain')
      .send(r.ok ? 'ok\n' : `not ready: ${r.reason}\n`);
  });
}

/** Listen on host:port (0 picks a free port); the port it got. */
export async function listen(app: FastifyInstance, host: string, port: number): Promise<number> {
  await app.listen({ host, port });
  const addr = app.server.address();
  return typeof addr === 'object' && addr ? addr.port : port;
}

/** Serve `/metrics` and the given health checks (path → check) on host:port; port 0 picks a free port. */
export async function serveMetrics(
  metrics: Metrics,
  host: string,
  port: number,
  checks: Record<string, Check> = {},
): Promise<{ app: FastifyInstance; port: number; close(): Promise<void> }> {
  const app = endpointApp();
  metricsRoute(app, metrics);
  for (const [path, check] of Object.entries(checks)) checkRoute(app, path, check);
  const got = await listen(app, host, port);
  return { app, port: got, close: () => app.close() };
}
