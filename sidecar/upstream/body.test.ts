import assert from 'node:assert/strict';
import { PassThrough, type Readable } from 'node:stream';
import { it } from 'node:test';
import { ReplayBody } from './body.ts';

const drain = async (r: Readable): Promise<Buffer> => {
  const got: Buffer[] = [];
  for await (const c of r) got.push(c as Buffer);
  return Buffer.concat(got);
};
const tick = () => new Promise((r) => setImmediate(r));

it('a body within the buffer replays whole to every reader', async () => {
  const src = new PassThrough();
  const body = new ReplayBody(src, 1024);
  const first = body.reader()!;
  src.end(Buffer.alloc(600, 'a'));
  assert.equal((await drain(first)).length, 600);
  assert.equal(body.replayable, true);
  assert.equal((await drain(body.reader()!)).length, 600, 'a retry gets the same 600 bytes');
});

it('with no reader out (between a failed attempt and its retry), the body is not read past the buffer: it stays whole for the retry', async () => {
  const src = new PassThrough();
  const body = new ReplayBody(src, 1024);
  body.reader()!.destroy(); // the first attempt failed before taking anything
  const all = Buffer.alloc(4096);
  for (let i = 0; i < all.length; i++) all[i] = i % 251;
  src.write(all.subarray(0, 512));
  src.write(all.subarray(512, 1536));
  await tick();
  assert.equal(body.replayable, true, 'one chunk past the buffer, held, and the source paused');
  src.end(all.subarray(1536));
  const retry = body.reader();
  assert.ok(retry, 'the retry gets a reader');
  assert.deepEqual(await drain(retry), all, 'and the whole body, in order');
  assert.equal(body.replayable, false, 'carried past the buffer, it cannot be replayed again');
  assert.equal(body.reader(), undefined);
});

it('a reader left behind does not hold back the others: once it is destroyed the body flows past the buffer', async () => {
  const src = new PassThrough();
  const body = new ReplayBody(src, 1024);
  const abandoned = body.reader()!;
  const live = body.reader()!;
  abandoned.destroy(); // an attempt that lost (a refused stream, a hedge)
  const done = drain(live);
  for (let i = 0; i < 64; i++) src.write(Buffer.alloc(1024, i));
  src.end();
  assert.equal((await done).length, 64 * 1024, 'the live reader got every byte');
});
