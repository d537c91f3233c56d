/**
 * The watch hub (pure). Watchers see the events of their key range in revision order, with no
 * gaps and no duplicates: events come from applied log entries, which every member applies in
 * the same order, so a watcher on any member sees the same sequence, and a leader change cannot
 * make it go back.
 *
 * A watcher is either synced (receives new events as they are applied) or catching up (reads
 * history from the key space in bounded windows until it reaches the current revision). A
 * watcher whose stream is slow stops receiving live events and catches up from history later,
 * so memory stays bounded; if its stream stays too far behind, it is cancelled with a reason.
 */
import type { MvccStore } from './store.ts';
import type { Event } from './types.ts';

export interface WatchSpec {
  key: string;
  rangeEnd: string;
  /** 0: from the next revision. */
  startRevision: number;
  noPut: boolean;
  noDelete: boolean;
  prevKv: boolean;
  progressNotify: boolean;
  fragment: boolean;
}

/** Where a stream's responses go; implemented at the gRPC edge. */
export interface WatchSink {
  events(watchId: number, events: Event[], revision: number, fragment: boolean): void;
  progress(watchId: number, revision: number): void;
  canceled(watchId: number, reason: string, compactRevision: number): void;
  /** Bytes written but not yet taken by the client. */
  backlog(): number;
}

interface Watcher {
  id: number;
  stream: WatchStream;
  spec: WatchSpec;
  /** The next revision this watcher has not seen. */
  nextRev: number;
  synced: boolean;
  /** Events were sent since the last periodic progress check. */
  active: boolean;
}

interface WatchStream {
  sink: WatchSink;
  watchers: Map<number, Watcher>;
  nextId: number;
  /** A progress request waiting for every watcher of the stream to be synced. */
  progressPending: boolean;
}

export interface WatchHubOptions {
  /** Stop pushing live events to a stream with this many bytes unread; it catches up later. */
  slowBytes: number;
  /** Cancel a stream's watchers once this many bytes are unread. */
  cancelBytes: number;
  /** Revisions read from history per catch-up step. */
  catchUpRevisions: number;
  /** A catch-up response holds whole revisions up to about this many bytes of events. */
  catchUpResponseBytes: number;
}

export class WatchHub {
  readonly #store: () => MvccStore;
  readonly #options: WatchHubOptions;
  readonly #streams = new Set<WatchStream>();

  /** `store` is a getter: a snapshot restore replaces the key space. */
  constructor(store: () => MvccStore, o: Partial<WatchHubOptions> = {}) {
    this.#store = store;
    this.#options = { slowBytes: 1 << 20, cancelBytes: 64 << 20, catchUpRevisions: 1000, catchUpResponseBytes: 256 << 10, ...o };
  }

  openStream(sink: WatchSink): WatchStream {
    const s: WatchStream = { sink, watchers: new Map(), nextId: 0, progressPending: false };
    this.#streams.add(s);
    return s;
  }

  closeStream(s: WatchStream): void {
    this.#streams.delete(s);
    s.watchers.clear();
  }

  /**
   * Create a watcher. Returns its id, or an error: a duplicate id, or a start revision already
   * compacted (then `compactRevision` says from where history is still held).
   */
  add(s: WatchStream, spec: WatchSpec, requestedId = 0): { id: number } | { error: string; compactRevision?: number } {
    const store = this.#store();
    let id = requestedId;
    if (id !== 0) {
      if (s.watchers.has(id)) return { error: `watch id ${id} is already in use on this stream` };
    } else {
      while (s.watchers.has(s.nextId)) s.nextId++;
      id = s.nextId++;
    }
    if (spec.startRevision > 0 && spec.startRevision < store.compactRevision) {
      return { error: 'etcdserver: mvcc: required revision has been compacted', compactRevision: store.compactRevision };
    }
    const nextRev = spec.startRevision > 0 ? spec.startRevision : store.revision + 1;
    const w: Watcher = { id, stream: s, spec, nextRev, synced: nextRev > store.revision, active: false };
    s.watchers.set(id, w);
    return { id };
  }

  /** The key space was replaced (snapshot restore): every watcher catches up from history. */
  resyncAll(): void {
    for (const s of this.#streams) for (const w of s.watchers.values()) w.synced = false;
  }

  /** Whether any watcher of the stream is catching up (the driver runs {@link catchUp} when its stream drains). */
  lagging(s: WatchStream): boolean {
    for (const w of s.watchers.values()) if (!w.synced) return true;
    return false;
  }

  cancel(s: WatchStream, id: number): boolean {
    return s.watchers.delete(id);
  }

  /** Ask for a progress notification; sent once every watcher of the stream is synced. */
  requestProgress(s: WatchStream): void {
    s.progressPending = true;
    this.#maybeProgress(s);
  }

  /** Feed the events of one applied write (all at `revision`). */
  onApplied(events: Event[], revision: number): void {
    // The same event objects go to every watcher (the wire layer converts each one once).
    const withoutPrev = events.map((e) => (e.prevKv ? { type: e.type, kv: e.kv } : e));
    for (const s of this.#streams) {
      const slow = s.sink.backlog() > this.#options.slowBytes;
      for (const w of s.watchers.values()) {
        if (!w.synced || revision < w.nextRev) continue;
        if (slow) {
          // Stop buffering live events for a slow client; it catches up from history later.
          w.synced = false;
          continue;
        }
        const source = w.spec.prevKv ? events : withoutPrev;
        const mine =
          source.length === 1
            ? matches(w.spec, (source[0] as Event).kv.key) && passes(w.spec, source[0] as Event)
              ? source
              : []
            : source.filter((e) => matches(w.spec, e.kv.key) && passes(w.spec, e));
        if (mine.length > 0) this.#send(w, mine, revision);
        w.nextRev = revision + 1;
      }
    }
  }

  /**
   * Move catching-up watchers forward by one window of history each; cancel those whose
   * history was compacted away or whose client stopped reading. Call it periodically and after
   * applying. Returns whether any watcher is still catching up.
   */
  catchUp(): boolean {
    const store = this.#store();
    let behind = false;
    // Watchers that fell behind together (a slow stream's, or all of a range's after a restore)
    // read the same window of history: scan it once and hand the same event objects to each, so
    // the wire layer's per-event encoding is shared too (etcd syncs its unsynced group the same way).
    const scans = new Map<string, Revision[]>();
    for (const s of this.#streams) {
      for (const w of [...s.watchers.values()]) {
        if (w.synced) continue;
        // Read again for each watcher: the ones before it on the stream may have just filled it.
        const backlog = s.sink.backlog();
        if (backlog > this.#options.cancelBytes) {
          s.watchers.delete(w.id);
          s.sink.canceled(w.id, `watcher cancelled: the client read too slowly (${backlog} bytes unread)`, 0);
          continue;
        }
        if (w.nextRev < store.compactRevision) {
          s.watchers.delete(w.id);
          s.sink.canceled(w.id, 'etcdserver: mvcc: required revision has been compacted', store.compactRevision);
          continue;
        }
        if (backlog > this.#options.slowBytes) {
          behind = true;
          continue;
        }
        const to = Math.min(store.revision, w.nextRev + this.#options.catchUpRevisions - 1);
        if (to >= w.nextRev) {
          const key = `${w.spec.key}\0${w.spec.rangeEnd}\0${w.nextRev}\0${to}`;
          let revisions = scans.get(key);
          if (!revisions) {
            revisions = byRevision(store.eventsBetween(w.spec.key, w.spec.rangeEnd, w.nextRev, to));
            // Watchers scattered over many places share little: hold a bounded number of windows.
            if (scans.size >= 64) scans.clear();
            scans.set(key, revisions);
          }
          // As etcd's sync of unsynced watchers: several revisions go in one response (a client
          // catching up takes in one message instead of one per revision), up to
          // catchUpResponseBytes, and a revision's events are never split between responses.
          let parts: Event[][] = [];
          let bytes = 0;
          let last = 0;
          for (const r of revisions) {
            const source = w.spec.prevKv ? r.events : r.withoutPrev;
            const mine = w.spec.noPut || w.spec.noDelete ? source.filter((e) => passes(w.spec, e)) : source;
            if (mine.length === 0) continue;
            const size = w.spec.prevKv ? r.bytes : r.bytesWithoutPrev;
            if (parts.length > 0 && bytes + size > this.#options.catchUpResponseBytes) {
              this.#send(w, joined(parts), last);
              parts = [];
              bytes = 0;
            }
            parts.push(mine);
            bytes += size;
            last = r.revision;
          }
          if (parts.length > 0) this.#send(w, joined(parts), last);
          w.nextRev = to + 1;
        }
        if (w.nextRev > store.revision) w.synced = true;
        else behind = true;
      }
      this.#maybeProgress(s);
    }
    return behind;
  }

  /** Periodic progress notifications, to synced watchers that asked for them and got no events since the last round. */
  notifyProgress(): void {
    const rev = this.#store().revision;
    for (const s of this.#streams) {
      for (const w of s.watchers.values()) {
        if (w.synced && w.spec.progressNotify && !w.active) s.sink.progress(w.id, rev);
        w.active = false;
      }
    }
  }

  watcherCount(): number {
    let n = 0;
    for (const s of this.#streams) n += s.watchers.size;
    return n;
  }

  #send(w: Watcher, events: Event[], revision: number): void {
    w.stream.sink.events(w.id, events, revision, w.spec.fragment);
    w.active = true;
  }

  #maybeProgress(s: WatchStream): void {
    if (!s.progressPending) return;
    for (const w of s.watchers.values()) if (!w.synced) return;
    s.progressPending = false;
    // As etcd 3.5: a stream-wide progress response carries watch id -1.
    s.sink.progress(-1, this.#store().revision);
  }
}

/** One revision's events, with and without their previous values (the same objects for every watcher). */
interface Revision {
  revision: number;
  events: Event[];
  withoutPrev: Event[];
  /** Estimated encoded size, with and without previous values. */
  bytes: number;
  bytesWithoutPrev: number;
}

/** Revisions' events as one array (the shared one itself when there is one revision). */
const joined = (parts: Event[][]): Event[] => (parts.length === 1 ? (parts[0] as Event[]) : parts.flat());

const kvBytes = (kv: Event['kv']): number => 32 + kv.key.length + kv.value.length;

function byRevision(events: Event[]): Revision[] {
  const out: Revision[] = [];
  let i = 0;
  while (i < events.length) {
    const revision = (events[i] as Event).kv.modRevision;
    let j = i;
    while (j < events.length && (events[j] as Event).kv.modRevision === revision) j++;
    const mine = events.slice(i, j);
    let bytesWithoutPrev = 0;
    let bytes = 0;
    for (const e of mine) {
      bytesWithoutPrev += 8 + kvBytes(e.kv);
      bytes += 8 + kvBytes(e.kv) + (e.prevKv ? kvBytes(e.prevKv) : 0);
    }
    out.push({
      revision,
      events: mine,
      withoutPrev: mine.map((e) => (e.prevKv ? { type: e.type, kv: e.kv } : e)),
      bytes,
      bytesWithoutPrev,
    });
    i = j;
  }
  return out;
}

function matches(spec: WatchSpec, key: string): boolean {
  if (spec.rangeEnd === '') return key === spec.key;
  if (spec.rangeEnd === '\0') return key >= spec.key;
  return key >= spec.key && key < spec.rangeEnd;
}

function passes(spec: WatchSpec, e: Event): boolean {
  return !((e.type === 0 && spec.noPut) || (e.type === 1 && spec.noDelete));
}
