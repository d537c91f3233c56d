/**
 * HTTP/1.1 Upgrade (WebSocket, and any other protocol switch) through the sidecar: the request
 * head goes to an endpoint the balancer picks (skipping ejected endpoints and open breakers),
 * then the bytes of both directions are passed through untouched — the endpoint's own answer
 * (101 Switching Protocols, or a refusal) included. What applies: the balancer, connect
 * failures retried on another endpoint (the endpoint saw nothing), the connect timeout, the
 * idle timeout, TLS to the endpoint, metrics. What does not: retries or hedges once connected,
 * request timeouts, per-message policies (after the switch the sidecar sees opaque bytes).
 */
import net, { type Socket } from 'node:net';
import tls from 'node:tls';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { hopByHop } from '../http.ts';
import type { Upstream } from './upstream.ts';

/** The request head as it goes to the endpoint: the caller's, with its Upgrade and Connection. */
export function upgradeHead(req: IncomingMessage, path: string, authority: string): string {
  const lines = [`${req.method ?? 'GET'} ${path} HTTP/1.1`, `host: ${authority}`];
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    const k = name.toLowerCase();
    // Hop-by-hop headers stop here, except the two that ask for the switch.
    if (k === 'host' || (hopByHop.has(k) && k !== 'upgrade' && k !== 'connection')) continue;
    lines.push(`${name}: ${raw[i + 1] as string}`);
  }
  return `${lines.join('\r\n')}\r\n\r\n`;
}

function refuse(socket: Duplex, status: number, code: string, message: string): void {
  const body = JSON.stringify({ code, message });
  socket.end(
    `HTTP/1.1 ${status} ${status === 503 ? 'Service Unavailable' : 'Bad Gateway'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nx-ballast-error: ${code}\r\nconnection: close\r\n\r\n${body}`,
  );
}

/** Tunnel an Upgrade request to one of the upstream's endpoints. */
export function tunnel(up: Upstream, req: IncomingMessage, client: Duplex, head: Buffer, path: string): void {
  const started = up.deps.clock.now();
  const policy = up.defaultRoute.policy;
  const tried = new Set<string>();
  const count = (outcome: string) =>
    up.deps.metrics.requestPath.request(up.name, 'default', outcome, (up.deps.clock.now() - started) / 1000);
  client.on('error', () => undefined);
  const attempt = (): void => {
    const now = up.deps.clock.now();
    const skip = new Set<string>(tried);
    for (const id of up.outlier?.excluded(now) ?? []) skip.add(id);
    for (const e of up.endpointList) if (e.breaker?.state(now) === 'open') skip.add(e.id);
    const picked = skip.size < up.endpointList.length ? up.picker.pick(undefined, skip) : undefined;
    const ep = picked ? up.endpoints.get(picked.id) : undefined;
    if (!ep) {
      count('unreachable');
      return refuse(
        client,
        503,
        up.endpointList.length === 0 ? 'SIDECAR_ERR_NO_ENDPOINT' : 'SIDECAR_ERR_UPSTREAM_UNREACHABLE',
        up.endpointList.length === 0 ? `${up.name} has no endpoints` : `no endpoint of ${up.name} could be connected to for the upgrade`,
      );
    }
    tried.add(ep.id);
    const i = ep.id.lastIndexOf(':');
    const host = ep.id.slice(0, i).replace(/^\[|\]$/g, '');
    const port = Number(ep.id.slice(i + 1));
    const t = up.tls;
    const server: Socket = t
      ? tls.connect({
          host,
          port,
          ca: t.ca,
          servername: t.serverName || host,
          rejectUnauthorized: !t.insecureSkipVerify,
          ALPNProtocols: ['http/1.1'],
        })
      : net.connect({ host, port });
    const timer = setTimeout(
      () => server.destroy(new Error(`no connection within ${policy.timeouts.connectMs} ms`)),
      policy.timeouts.connectMs,
    );
    let connected = false;
    server.once(t ? 'secureConnect' : 'connect', () => {
      connected = true;
      clearTimeout(timer);
      server.setNoDelay(true);
      server.write(upgradeHead(req, path, req.headers.host ?? up.name));
      if (head.length > 0) server.write(head);
      server.pipe(client);
      client.pipe(server);
      const idle = (): void => {
        server.destroy();
        client.destroy();
      };
      server.setTimeout(policy.timeouts.idleMs, idle);
      count('upgrade');
    });
    server.on('error', () => {
      clearTimeout(timer);
      if (connected) return client.destroy();
      // Never reached the endpoint: another may take it.
      if (tried.size < policy.retries.maxAttempts) return attempt();
      count('unreachable');
      refuse(client, 503, 'SIDECAR_ERR_UPSTREAM_UNREACHABLE', `${ep.id}: could not connect for the upgrade`);
    });
    server.on('close', () => {
      if (connected) client.destroy();
    });
    client.on('close', () => server.destroy());
  };
  attempt();
}
