/**
 * Load-balancing pickers (pure): given the healthy endpoints of an upstream, choose one per
 * request. Randomness and time are injected, so every choice replays from a seed in tests.
 *
 *   roundRobin      each endpoint in turn
 *   weighted        smooth weighted round-robin (nginx's): proportional, and interleaved
 *   random          uniform
 *   leastRequest    power of two choices on in-flight requests (Envoy's default)
 *   ewma            power of two choices on peak-EWMA latency × (in flight + 1) (Linkerd, Finagle)
 *   ringHash        consistent hashing with virtual nodes: a key sticks to an endpoint, and
 *                   adding or removing an endpoint moves only about 1/N of the keys
 *   maglev          Maglev hashing (Google's load balancer): a lookup table of prime size filled
 *                   from per-endpoint permutations; O(1) picks, even spread, minimal disruption
 *
 * Every pick may name endpoints to skip (ejected ones, and those a retry or hedge already
 * tried). When every endpoint is skipped, the pick falls back to all of them: a retry to the
 * same endpoint beats no retry.
 */
import type { Random } from '../../lib/random.ts';

export interface Endpoint {
  /** Stable identity, e.g. `10.0.0.7:8080`. */
  id: string;
  /** Relative weight (weighted and ring hash); 1 by default. */
  weight?: number;
}

export interface Picker {
  /** Choose an endpoint (undefined when there is none). `key` is the hash key for ringHash and maglev. */
  pick(key?: string, skip?: ReadonlySet<string>): Endpoint | undefined;
  /** A request to `id` started. */
  started(id: string): void;
  /**
   * A request to `id` finished after `latencyMs`. `lowerBound`: it was abandoned (a hedge won,
   * the caller left) and only took at least that long — it may raise an estimate, never lower it.
   */
  finished(id: string, latencyMs: number, lowerBound?: boolean): void;
}

export type PickerKind = 'roundRobin' | 'weighted' | 'random' | 'leastRequest' | 'ewma' | 'ringHash' | 'maglev';
export const pickerKinds: readonly PickerKind[] = ['roundRobin', 'weighted', 'random', 'leastRequest', 'ewma', 'ringHash', 'maglev'];

/** The endpoints not skipped; all of them when every one is skipped (or nothing is). */
function eligible(eps: readonly Endpoint[], skip: ReadonlySet<string> | undefined): readonly Endpoint[] {
  if (skip === undefined || skip.size === 0) return eps;
  const left = eps.filter((e) => !skip.has(e.id));
  return left.length === 0 ? eps : left;
}

export interface PickerDeps {
  random: Random;
  /** Monotonic milliseconds (EWMA decay). */
  now: () => number;
  /** EWMA decay time constant (Linkerd's default: 10 s). */
  ewmaDecayMs?: number;
  /** The latency assumed for an endpoint not measured yet (default 30 ms). */
  ewmaDefaultMs?: number;
  /** Virtual nodes per unit of weight on the ring (default 100). */
  ringReplicas?: number;
  /** Maglev lookup-table size, a prime well above the endpoint count (default 65,537, Envoy's). */
  maglevTableSize?: number;
}

/** In-flight request counts, shared by the pickers that care. */
class Inflight {
  readonly #counts = new Map<string, number>();
  get(id: string): number {
    return this.#counts.get(id) ?? 0;
  }
  started(id: string): void {
    this.#counts.set(id, this.get(id) + 1);
  }
  finished(id: string): void {
    this.#counts.set(id, Math.max(0, this.get(id) - 1));
  }
}

function roundRobin(eps: readonly Endpoint[]): Picker {
  let i = 0;
  return {
    pick(_key, skip) {
      const list = eligible(eps, skip);
      return list.length === 0 ? undefined : list[i++ % list.length];
    },
    started: () => undefined,
    finished: () => undefined,
  };
}

/** Smooth weighted round-robin: weights 5,1,1 give a a b a c a a, never five a's in a row. */
function weighted(eps: readonly Endpoint[]): Picker {
  const current = eps.map(() => 0);
  const total = eps.reduce((n, e) => n + (e.weight ?? 1), 0);
  return {
    pick(_key, skip) {
      if (eps.length === 0) return undefined;
      const list = eligible(eps, skip);
      let best = -1;
      for (let i = 0; i < eps.length; i++) {
        if (list !== eps && skip?.has((eps[i] as Endpoint).id)) continue;
        current[i] = (current[i] as number) + ((eps[i] as Endpoint).weight ?? 1);
        if (best < 0 || (current[i] as number) > (current[best] as number)) best = i;
      }
      current[best] = (current[best] as number) - (list === eps ? total : list.reduce((n, e) => n + (e.weight ?? 1), 0));
      return eps[best];
    },
    started: () => undefined,
    finished: () => undefined,
  };
}

/** A uniformly random eligible endpoint (also the hashing pickers' answer when there is no key). */
function randomPick(eps: readonly Endpoint[], skip: ReadonlySet<string> | undefined, random: Random): Endpoint | undefined {
  const list = eligible(eps, skip);
  return list.length === 0 ? undefined : list[random.int(list.length)];
}

function random(eps: readonly Endpoint[], d: PickerDeps): Picker {
  return {
    pick: (_key, skip) => randomPick(eps, skip, d.random),
    started: () => undefined,
    finished: () => undefined,
  };
}

/** Two distinct random endpoints, the one with the lower cost (ties: the first). */
function p2c(eps: readonly Endpoint[], d: PickerDeps, cost: (id: string) => number): Endpoint | undefined {
  if (eps.length <= 1) return eps[0];
  const a = d.random.int(eps.length);
  let b = d.random.int(eps.length - 1);
  if (b >= a) b++;
  const ea = eps[a] as Endpoint;
  const eb = eps[b] as Endpoint;
  return cost(eb.id) < cost(ea.id) ? eb : ea;
}

function leastRequest(eps: readonly Endpoint[], d: PickerDeps): Picker {
  const inflight = new Inflight();
  return {
    pick: (_key, skip) => p2c(eligible(eps, skip), d, (id) => inflight.get(id)),
    started: (id) => inflight.started(id),
    finished: (id) => inflight.finished(id),
  };
}

/**
 * Peak EWMA: a latency above the average is taken at once (peak), one below decays in with time
 * constant `ewmaDecayMs`; cost = EWMA × (in flight + 1). The estimate also decays with the time
 * since it was last updated (as tower's PeakEwma under linkerd2-proxy), so an endpoint that was
 * slow, and so gets no traffic to be measured by, is tried again and can win back its share.
 * An endpoint not yet measured is assumed to take `ewmaDefaultMs` (30 ms, linkerd2-proxy's
 * default RTT), so requests piling up on it before its first answer raise its cost: a new or
 * slow endpoint cannot soak up a second of traffic before it is first measured.
 */
function ewma(eps: readonly Endpoint[], d: PickerDeps): Picker {
  const inflight = new Inflight();
  const tau = d.ewmaDecayMs ?? 10_000;
  const initial = d.ewmaDefaultMs ?? 30;
  const stats = new Map<string, { value: number; at: number }>();
  return {
    pick(_key, skip) {
      const now = d.now();
      return p2c(eligible(eps, skip), d, (id) => {
        const st = stats.get(id);
        const estimate = st ? st.value * Math.exp(-(now - st.at) / tau) : initial;
        return estimate * (inflight.get(id) + 1);
      });
    },
    started: (id) => inflight.started(id),
    finished(id, latencyMs, lowerBound) {
      inflight.finished(id);
      const now = d.now();
      const s = stats.get(id);
      if (lowerBound && (!s || latencyMs <= s.value)) return;
      if (!s || latencyMs > s.value) {
        stats.set(id, { value: latencyMs, at: now });
        return;
      }
      const w = Math.exp(-(now - s.at) / tau);
      stats.set(id, { value: s.value * w + latencyMs * (1 - w), at: now });
    },
  };
}

/** FNV-1a, 32-bit: fast, stable across processes and versions (the ring must not move). */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  // Final avalanche (murmur3's fmix32) so nearby strings spread over the ring.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function ringHash(eps: readonly Endpoint[], d: PickerDeps): Picker {
  const replicas = d.ringReplicas ?? 100;
  const ring: Array<{ at: number; ep: Endpoint }> = [];
  for (const ep of eps) {
    const n = Math.max(1, Math.round(replicas * (ep.weight ?? 1)));
    for (let i = 0; i < n; i++) ring.push({ at: hash32(`${ep.id}#${i}`), ep });
  }
  ring.sort((x, y) => x.at - y.at);
  return {
    pick(key, skip) {
      if (ring.length === 0) return undefined;
      if (key === undefined) return randomPick(eps, skip, d.random);
      const h = hash32(key);
      // The first virtual node at or after the key's hash, wrapping around.
      let lo = 0;
      let hi = ring.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if ((ring[mid] as { at: number }).at < h) lo = mid + 1;
        else hi = mid;
      }
      // Walk on past skipped endpoints (the next distinct owner on the ring takes the key).
      if (eligible(eps, skip) !== eps) {
        for (let n = 0; n < ring.length; n++) {
          const ep = (ring[(lo + n) % ring.length] as { ep: Endpoint }).ep;
          if (!skip?.has(ep.id)) return ep;
        }
      }
      return (ring[lo % ring.length] as { ep: Endpoint }).ep;
    },
    started: () => undefined,
    finished: () => undefined,
  };
}

/** The smallest prime ≥ n (Maglev's table size must be prime). */
function primeAtLeast(n: number): number {
  for (let p = Math.max(2, n); ; p++) {
    let prime = true;
    for (let q = 2; q * q <= p; q++)
      if (p % q === 0) {
        prime = false;
        break;
      }
    if (prime) return p;
  }
}

/**
 * Maglev (Eisenbud et al., NSDI 2016): each endpoint walks its own permutation of the table
 * (offset and skip from two hashes of its id) and claims the next free slot, in turns weighted
 * by its weight, until the table is full. A key's pick is one lookup; a skipped endpoint's keys
 * fall to the next slots' owners.
 */
function maglev(eps: readonly Endpoint[], d: PickerDeps): Picker {
  const size = primeAtLeast(d.maglevTableSize ?? 65_537);
  const table = new Int32Array(size).fill(-1);
  if (eps.length > 0) {
    const offset = eps.map((e) => hash32(`${e.id}#offset`) % size);
    const skipBy = eps.map((e) => (hash32(`${e.id}#skip`) % (size - 1)) + 1);
    const next = eps.map(() => 0);
    const maxW = Math.max(...eps.map((e) => e.weight ?? 1));
    const credit = eps.map(() => 0);
    let filled = 0;
    while (filled < size) {
      for (let i = 0; i < eps.length && filled < size; i++) {
        credit[i] = (credit[i] as number) + ((eps[i] as Endpoint).weight ?? 1) / maxW;
        if ((credit[i] as number) < 1) continue;
        credit[i] = (credit[i] as number) - 1;
        let c = ((offset[i] as number) + (next[i] as number) * (skipBy[i] as number)) % size;
        while (table[c] !== -1) {
          next[i] = (next[i] as number) + 1;
          c = ((offset[i] as number) + (next[i] as number) * (skipBy[i] as number)) % size;
        }
        table[c] = i;
        next[i] = (next[i] as number) + 1;
        filled++;
      }
    }
  }
  return {
    pick(key, skip) {
      if (eps.length === 0) return undefined;
      if (key === undefined) return randomPick(eps, skip, d.random);
      const at = hash32(key) % size;
      const first = eps[table[at] as number] as Endpoint;
      if (eligible(eps, skip) === eps) return first;
      for (let n = 1; n < size; n++) {
        const ep = eps[table[(at + n) % size] as number] as Endpoint;
        if (!skip?.has(ep.id)) return ep;
      }
      return first;
    },
    started: () => undefined,
    finished: () => undefined,
  };
}

/** Build a picker over `endpoints` (rebuild it when the endpoints change). */
export function buildPicker(kind: PickerKind, endpoints: readonly Endpoint[], deps: PickerDeps): Picker {
  switch (kind) {
    case 'roundRobin':
      return roundRobin(endpoints);
    case 'weighted':
      return weighted(endpoints);
    case 'random':
      return random(endpoints, deps);
    case 'leastRequest':
      return leastRequest(endpoints, deps);
    case 'ewma':
      return ewma(endpoints, deps);
    case 'ringHash':
      return ringHash(endpoints, deps);
    case 'maglev':
      return maglev(endpoints, deps);
  }
}
