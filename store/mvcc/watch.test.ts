import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MvccStore } from './store.ts';
import { type Event } from './types.ts';
import { type WatchSink, type WatchSpec, WatchHub } from './watch.ts';

const spec = (o: Partial<WatchSpec> = {}): WatchSpec => ({
  key: 'k',
  rangeEnd: '',
  startRevision: 0,
  noPut: false,
  noDelete: false,
  prevKv: false,
  progressNotify: false,
  fragment: false,
  ...o,
});

function sink() {
  const got: Array<{ id: number; revs: number[]; values: string[]; prev: Array<string | undefined> }> = [];
  const canceled: Array<{ id: number; reason: string; compact: number }> = [];
  const progress: Array<{ id: number; rev: number }> = [];
  let backlog = 0;
  const s: WatchSink = {
    events: (id, events: Event[]) =>
      got.push({
        id,
        revs: events.map((e) => e.kv.modRevision),
        values: events.map((e) => e.kv.value),
        prev: events.map((e) => e.prevKv?.value),
      }),
    progress: (id, rev) => progress.push({ id, rev }),
    canceled: (id, reason, compact) => canceled.push({ id, reason, compact }),
    backlog: () => backlog,
  };
  return { s, got, canceled, progress, setBacklog: (n: number) => (backlog = n) };
}

function put(store: MvccStore, hub: WatchHub, key: string, value: string): void {
  const r = store.put({ key, value, lease: '0', prevKv: false, ignoreValue: false, ignoreLease: false });
  hub.onApplied(r.events, r.revision);
}

describe('WatchHub', () => {
  it('a live watcher gets its key range in revision order, with prev_kv when asked', () => {
    const store = new MvccStore();
    const hub = new WatchHub(() => store);
    const k = sink();
    const stream = hub.openStream(k.s);
    hub.add(stream, spec({ key: 'a', rangeEnd: 'b', prevKv: true }));
    put(store, hub, 'a1', 'x');
    put(store, hub, 'zz', 'not mine');
    put(store, hub, 'a1', 'y');
    assert.deepEqual(
      k.got.map((g) => [g.revs, g.values, g.prev]),
      [
        [[2], ['x'], [undefined]],
        [[4], ['y'], ['x']],
      ],
    );
  });

  it('a watcher from a past revision catches up from history, then continues live without gap or duplicate', () => {
    const store = new MvccStore();
    const hub = new WatchHub(() => store, { catchUpRevisions: 2 });
    for (let i = 0; i < 5; i++) put(store, hub, 'k', `v${i}`);
    const k = sink();
    hub.add(hub.openStream(k.s), spec({ startRevision: 3 }));
    put(store, hub, 'k', 'live-while-behind'); // not delivered live: the watcher is catching up
    while (hub.catchUp()) {
      /* window by window */
    }
    put(store, hub, 'k', 'live');
    // Five puts wrote revisions 2..6; the watcher starts at 3.
    assert.deepEqual(
      k.got.flatMap((g) => g.revs),
      [3, 4, 5, 6, 7, 8],
    );
    assert.deepEqual(
      k.got.flatMap((g) => g.values),
      ['v1', 'v2', 'v3', 'v4', 'live-while-behind', 'live'],
    );
  });

  it('filters NOPUT and NODELETE', () => {
    const store = new MvccStore();
    const hub = new WatchHub(() => store);
    const puts = sink();
    const dels = sink();
    hub.add(hub.openStream(puts.s), spec({ noDelete: true }));
    hub.add(hub.openStream(dels.s), spec({ noPut: true }));
    put(store, hub, 'k', 'v');
    const d = store.deleteRange({ key: 'k', rangeEnd: '', prevKv: false });
    hub.onApplied(d.events, d.revision);
    assert.deepEqual(
      puts.got.flatMap((g) => g.revs),
      [2],
    );
    assert.deepEqual(
      dels.got.flatMap((g) => g.revs),
      [3],
    );
  });

  it('refuses a compacted start revision and cancels a lagging watcher overtaken by compaction', () => {
    const store = new MvccStore();
    const hub = new WatchHub(() => store);
    for (let i = 0; i < 5; i++) put(store, hub, 'k', `v${i}`);
    store.compact(4);
    const k = sink();
    const stream = hub.openStream(k.s);
    assert.deepEqual(hub.add(stream, spec({ startRevision: 2 })), {
      error: 'etcdserver: mvcc: required revision has been compacted',
      compactRevision: 4,
    });
    // A slow client: live events stop, then compaction passes its position.
    hub.add(stream, spec());
    k.setBacklog(10 << 20);
    put(store, hub, 'k', 'missed');
    put(store, hub, 'k', 'missed too');
    // Compacting at the watcher's next revision would keep it readable; compact past it.
    store.compact(store.revision);
    k.setBacklog(0);
    hub.catchUp();
    assert.equal(k.canceled.length, 1);
    assert.equal(k.canceled[0]?.compact, store.revision);
  });

  it('a client that stops reading is cancelled with a reason instead of growing memory', () => {
    const store = new MvccStore();
    const hub = new WatchHub(() => store, { slowBytes: 100, cancelBytes: 1000 });
    const k = sink();
    hub.add(hub.openStream(k.s), spec());
    k.setBacklog(500);
    put(store, hub, 'k', 'v');
    assert.equal(k.got.length, 0, 'nothing more is buffered for a slow client');
    k.setBacklog(5000);
    hub.catchUp();
    assert.match(k.canceled[0]?.reason ?? '', /client read too slowly/);
    assert.equal(hub.watcherCount(), 0);
  });

  it('catching up, watchers sharing a stream stop once it is full instead of each adding its window', () => {
    const store = new MvccStore();
    const hub = new WatchHub(() => store, { slowBytes: 1000, cancelBytes: 1 << 20, catchUpRevisions: 100 });
    let unsent = 0;
    let delivered = 0;
    const s: WatchSink = {
      events: (_id, events) => {
        delivered += events.length;
        unsent += 100 * events.length; // everything stays unread
      },
      progress: () => undefined,
      canceled: () => undefined,
      backlog: () => unsent,
    };
    const stream = hub.openStream(s);
    for (let i = 0; i < 100; i++)
      store.put({ key: 'k', value: String(i), lease: '0', prevKv: false, ignoreValue: false, ignoreLease: false });
    for (let i = 0; i < 50; i++) hub.add(stream, spec({ startRevision: 2 })); // the first put's revision
    assert.equal(hub.catchUp(), true, 'watchers are still behind');
    // The first watcher's window (100 revisions) fills the stream; the other 49 wait for it to drain.
    assert.equal(delivered, 100);
    unsent = 0;
    hub.catchUp();
    assert.equal(delivered, 200);
  });

  it('catching up, a response carries several whole revisions (as etcd syncs a lagging watcher), never part of one', () => {
    const store = new MvccStore();
    // Room for about three one-event revisions per response.
    const hub = new WatchHub(() => store, { catchUpResponseBytes: 160 });
    for (let i = 0; i < 4; i++)
      store.put({ key: 'k', value: 'x'.repeat(10), lease: '0', prevKv: false, ignoreValue: false, ignoreLease: false });
    // One revision with five events (a transaction), larger than the limit by itself.
    store.txn({
      compare: [],
      success: Array.from({ length: 5 }, (_, i) => ({
        put: { key: `k${i}`, value: 'y'.repeat(10), lease: '0', prevKv: false, ignoreValue: false, ignoreLease: false },
      })),
      failure: [],
    });
    store.put({ key: 'k', value: 'z', lease: '0', prevKv: false, ignoreValue: false, ignoreLease: false });
    const k = sink();
    hub.add(hub.openStream(k.s), spec({ key: 'k', rangeEnd: 'l', startRevision: 2 }));
    hub.catchUp();
    assert.deepEqual(
      k.got.map((g) => g.revs),
      [[2, 3, 4], [5], [6, 6, 6, 6, 6], [7]],
    );
  });

  it('progress: on request once synced (watch id -1), periodically for idle watchers that asked', () => {
    const store = new MvccStore();
    const hub = new WatchHub(() => store);
    const k = sink();
    const stream = hub.openStream(k.s);
    hub.add(stream, spec({ progressNotify: true }));
    put(store, hub, 'other', 'x');
    hub.requestProgress(stream);
    assert.deepEqual(k.progress, [{ id: -1, rev: 2 }]);
    hub.notifyProgress();
    assert.deepEqual(k.progress.at(-1), { id: 0, rev: 2 });
    put(store, hub, 'k', 'v');
    const before = k.progress.length;
    hub.notifyProgress();
    assert.equal(k.progress.length, before, 'a watcher that just got events needs no progress notification');
  });

  it('creates watchers with chosen ids and refuses a duplicate', () => {
    const store = new MvccStore();
    const hub = new WatchHub(() => store);
    const stream = hub.openStream(sink().s);
    assert.deepEqual(hub.add(stream, spec(), 7), { id: 7 });
    assert.match((hub.add(stream, spec(), 7) as { error: string }).error, /already in use/);
    assert.deepEqual(hub.add(stream, spec()), { id: 0 });
  });
});
