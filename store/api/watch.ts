/**
 * etcd's Watch service: one bidirectional stream carries many watchers (create, cancel,
 * progress requests in; created, events, progress and cancel responses out).
 */
import type * as grpc from '@grpc/grpc-js';
import type { WatchHub, WatchSink, WatchSpec } from '../mvcc/watch.ts';
import type { Event } from '../mvcc/types.ts';
import { kvOut } from './convert.ts';

/* eslint-disable @typescript-eslint/no-explicit-any -- wire objects are untyped by proto-loader */
type Wire = Record<string, any>;

export interface WatchServiceOptions {
  hub: WatchHub;
  /** The response header for a revision. */
  header(revision?: number): Wire;
  /** Responses larger than this are split when the watcher asked for fragments. */
  maxResponseBytes: number;
  /** Called after a watcher is created, so the driver can start its catch-up. */
  onCreated(): void;
}

const eventSize = (e: Event): number => 48 + e.kv.key.length + e.kv.value.length + (e.prevKv ? 48 + e.prevKv.key.length + e.prevKv.value.length : 0);

/** Wire form of each event, made once however many watchers receive it. */
const wireCache = new WeakMap<Event, Wire>();
function eventOut(e: Event): Wire {
  let w = wireCache.get(e);
  if (!w) {
    w = { type: e.type, kv: kvOut(e.kv), ...(e.prevKv ? { prev_kv: kvOut(e.prevKv) } : {}) };
    wireCache.set(e, w);
  }
  return w;
}

export function watchHandler(o: WatchServiceOptions): (call: grpc.ServerDuplexStream<Wire, Wire>) => void {
  return (call) => {
    const sink: WatchSink = {
      events(watchId, events, revision, fragment) {
        const total = events.reduce((n, e) => n + eventSize(e), 0);
        if (!fragment || total <= o.maxResponseBytes) {
          call.write({ header: o.header(revision), watch_id: String(watchId), events: events.map(eventOut) });
          return;
        }
        // Fragment a large revision over several responses; all but the last say fragment=true.
        let batch: Event[] = [];
        let size = 0;
        for (const [i, e] of events.entries()) {
          if (batch.length > 0 && size + eventSize(e) > o.maxResponseBytes) {
            call.write({ header: o.header(revision), watch_id: String(watchId), events: batch.map(eventOut), fragment: true });
            batch = [];
            size = 0;
          }
          batch.push(e);
          size += eventSize(e);
          if (i === events.length - 1) call.write({ header: o.header(revision), watch_id: String(watchId), events: batch.map(eventOut), fragment: false });
        }
      },
      progress(watchId, revision) {
        call.write({ header: o.header(revision), watch_id: String(watchId) });
      },
      canceled(watchId, reason, compactRevision) {
        call.write({ header: o.header(), watch_id: String(watchId), canceled: true, cancel_reason: reason, compact_revision: String(compactRevision) });
      },
      backlog: () => call.writableLength,
    };
    const stream = o.hub.openStream(sink);
    call.on('data', (req: Wire) => {
      const create = req['create_request'] as Wire | undefined;
      if (req['request_union'] === 'create_request' && create) {
        const filters = (create['filters'] ?? []) as number[];
        const spec: WatchSpec = {
          key: (create['key'] as Buffer | undefined)?.toString('latin1') ?? '',
          rangeEnd: (create['range_end'] as Buffer | undefined)?.toString('latin1') ?? '',
          startRevision: Number(create['start_revision'] ?? 0),
          noPut: filters.includes(0),
          noDelete: filters.includes(1),
          prevKv: !!create['prev_kv'],
          progressNotify: !!create['progress_notify'],
          fragment: !!create['fragment'],
        };
        const r = o.hub.add(stream, spec, Number(create['watch_id'] ?? 0));
        if ('error' in r) {
          // As etcd: created and immediately cancelled, with the compaction point when relevant.
          call.write({ header: o.header(), watch_id: '-1', created: true, canceled: true, cancel_reason: r.error, compact_revision: String(r.compactRevision ?? 0) });
          return;
        }
        call.write({ header: o.header(), watch_id: String(r.id), created: true });
        o.onCreated();
      } else if (req['request_union'] === 'cancel_request') {
        const id = Number((req['cancel_request'] as Wire)['watch_id'] ?? 0);
        if (o.hub.cancel(stream, id)) call.write({ header: o.header(), watch_id: String(id), canceled: true });
      } else if (req['request_union'] === 'progress_request') {
        o.hub.requestProgress(stream);
      }
    });
    const close = (): void => o.hub.closeStream(stream);
    call.on('end', () => {
      close();
      call.end();
    });
    call.on('cancelled', close);
    call.on('error', close);
  };
}
