// gRPC framing both ways: whatever way the DATA chunks cut the bytes, the same messages come out.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { Deframer, frameMessages } from './grpc-frame.ts';
import { SeededRandom } from './random.ts';

const bodies = [Buffer.alloc(0), Buffer.from('one'), Buffer.alloc(70_000, 7), Buffer.from('last')];
const framed = frameMessages(bodies);

it('messages come out whole and in order however the chunks cut them (one byte at a time, random cuts)', () => {
  const r = new SeededRandom(5);
  for (const cut of [() => 1, () => 1 + Math.floor(r.next() * 20_000), () => framed.length]) {
    const d = new Deframer(1 << 20);
    const got: string[] = [];
    for (let at = 0; at < framed.length;) {
      const n = Math.min(cut(), framed.length - at);
      assert.equal(
        d.push(framed.subarray(at, at + n), (flag, body) => {
          assert.equal(flag, 0);
          got.push(body.toString('hex'));
          return true;
        }),
        undefined,
      );
      at += n;
    }
    assert.deepEqual(
      got,
      bodies.map((b) => b.toString('hex')),
    );
    assert.equal(d.buffered, 0);
  }
});

it('a message announced over the limit is named by its length, before its bytes arrive; a false from the reader stops it', () => {
  const d = new Deframer(1000);
  assert.equal(
    d.push(framed.subarray(0, 5 + 0 + 5 + 3 + 5), () => true),
    70_000,
  );
  const once = new Deframer(1 << 20);
  let seen = 0;
  once.push(framed, () => (++seen, false));
  assert.equal(seen, 1);
  assert.ok(once.buffered > 0, 'the rest stays unread');
});
