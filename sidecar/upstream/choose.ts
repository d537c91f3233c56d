/**
 * Step 9 of sidecar/stack.ts: the endpoint an attempt goes to. The balancer picks among endpoints
 * not ejected by outlier detection whose breaker admits the request, preferring one this request
 * has not tried yet; a hedge goes only where there is room to spare; in panic every endpoint not
 * yet tried shares the load.
 */
import type { Ticket } from '../policies/breaker.ts';
import type { EndpointState, Upstream } from './upstream.ts';

/** The endpoints a pick skips: the ejected ones, and those already tried when `untried`. */
function skipping(
  up: Upstream,
  ejected: ReadonlySet<string> | undefined,
  tried: readonly string[],
  untried: boolean,
): Set<string> | undefined {
  if ((!ejected || ejected.size === 0) && !(untried && tried.length > 0) && up.openBreakers === 0) return undefined;
  const skip = new Set(ejected);
  if (untried) for (const id of tried) skip.add(id);
  return skip;
}

/** Under half its adaptive limit in flight (or no adaptive limit): a hedge may go there. */
function hasHeadroom(up: Upstream, e: EndpointState): boolean {
  const l = up.adaptive?.endpoint(e.id);
  return l === undefined || l.inflight < l.limit / 2;
}

/**
 * The endpoint for the next attempt and its breaker's ticket, or undefined when none will take it
 * (for a hedge, also when the one picked has no room to spare: its ticket is given back).
 */
export function chooseEndpoint(
  up: Upstream,
  now: number,
  key: string | undefined,
  tried: readonly string[],
  hedge: boolean,
): { ep: EndpointState; ticket: Ticket | undefined } | undefined {
  // Skip ejected and open-breaker endpoints, and prefer one not tried yet. Only a preference
  // (Envoy's previous_hosts): when every endpoint not yet tried is ejected or refused by its
  // breaker, a retry goes back to one that was tried (a cluster in an election answers
  // UNAVAILABLE everywhere for a moment while one member is down).
  const ejected = up.outlier?.excluded(now);
  let { ep, ticket } = up.pickAdmitted(now, key, skipping(up, ejected, tried, true));
  if (!ep && !hedge && tried.length > 0) ({ ep, ticket } = up.pickAdmitted(now, key, skipping(up, ejected, tried, false)));
  // A hedge goes only to an endpoint with room to spare: under load it would only add queueing.
  if (hedge && ep && !hasHeadroom(up, ep)) {
    if (ticket) ep.breaker?.onCancel(ticket);
    return undefined;
  }
  // Panic (Envoy's rule, applied to breakers as to ejections): when fewer than
  // panicThresholdPercent of the endpoints will take a request, the breakers are advisory and
  // every endpoint not yet tried shares the load. Failures confined to some requests (one
  // path, one tenant) open every endpoint's breaker without the endpoints being down; refusing
  // everything then turns a partial failure into a total one.
  if (!ep && up.endpointList.length > 0 && up.panicking(now)) {
    const picked = up.picker.pick(key, tried.length > 0 ? new Set(tried) : undefined);
    ep = picked ? up.endpoints.get(picked.id) : undefined;
    ticket = undefined;
  }
  return ep ? { ep, ticket } : undefined;
}
