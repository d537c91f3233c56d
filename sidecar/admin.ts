/**
 * The sidecar's admin endpoint: /live, /ready, /metrics, /config, /endpoints (JSON, plain HTTP
 * on the admin address). What it answers comes from the sidecar through {@link AdminView}.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer } from '../lib/node-http.ts';
import type { MeshIdentity } from './identity.ts';
import { splitAddress } from './server/listener.ts';

export interface AdminView {
  /** Listeners are open. */
  started(): boolean;
  /** Upstreams that have no endpoint (ready, but worth knowing). */
  upstreamsWithoutEndpoints(): string[];
  /** The mesh identity's state, when the mesh is on. */
  mesh(): Record<string, unknown> | undefined;
  /** What /config shows: the running configuration and where it came from. */
  config(): Record<string, unknown>;
  /** Every upstream's endpoints and their state. */
  endpoints(): unknown[];
  /** Scrape: point-in-time gauges refreshed, then the registry written. */
  metrics(req: IncomingMessage, res: ServerResponse): void;
}

/** The mesh identity as /ready and /config tell it (never the key). */
export function meshStatus(identity: MeshIdentity | undefined): Record<string, unknown> {
  const m = identity?.material;
  if (m)
    return {
      state: 'certified',
      spiffeId: m.spiffeId,
      notAfter: new Date(m.notAfter).toISOString(),
      trustAnchors: m.bundlePem.match(/BEGIN CERTIFICATE/g)?.length ?? 0,
    };
  return {
    state: 'no-certificate',
    reason: identity?.lastError || 'the first certificate has not been issued yet',
    effect: 'plaintext where the policy allows it: permissive upstreams and inbound listeners; strict ones refuse',
  };
}

/** Listen on `address` (host:port; port 0: any); resolves with the server and the port it got. */
export async function startAdmin(address: string, view: AdminView): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const json = (status: number, body: unknown): void => {
      const text = `${JSON.stringify(body, null, 2)}\n`;
      res.writeHead(status, { 'content-type': 'application/json' }).end(text);
    };
    switch (path) {
      case '/live':
        return json(200, { live: true });
      case '/ready': {
        if (!view.started()) return json(503, { ready: false, reason: 'listeners are not open yet' });
        const mesh = view.mesh();
        return json(200, { ready: true, upstreamsWithoutEndpoints: view.upstreamsWithoutEndpoints(), ...(mesh ? { mesh } : {}) });
      }
      case '/metrics':
        return view.metrics(req, res);
      case '/config':
        return json(200, view.config());
      case '/endpoints':
        return json(200, view.endpoints());
      default:
        return json(404, { error: `no such admin path ${path}; try /ready, /live, /metrics, /config, /endpoints` });
    }
  });
  const { host, port } = splitAddress(address);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return { server, port: (server.address() as { port: number }).port };
}
