// Streaming hashes: the worker-thread sha256 gives node:crypto's answer, hands every chunk
// back in order without copying the ones it may take, pushes back on a fast producer, and
// fails (never hangs, never guesses) when its thread dies.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { HashWorkers, InlineHash, type StreamHash } from '../../src/oci/stream-hash.js';

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** Feeds `chunks` through `hash` as the upload pump does; returns what came back, in order. */
async function feed(hash: StreamHash, chunks: Buffer[], movable = true): Promise<Buffer> {
  const back: Buffer[] = [];
  for (const c of chunks) {
    const behind = hash.update(c, movable);
    if (behind) await behind;
    back.push(...hash.takeHashed());
  }
  await hash.settle();
  back.push(...hash.takeHashed());
  return Buffer.concat(back);
}

/** Chunks of `data` of varied sizes, each owning its memory (as node:http's body chunks do). */
function ownChunks(data: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0, i = 0; off < data.length; i++) {
    const n = Math.min(data.length - off, [65536, 1, 29696, 300_000, 4096][i % 5]!);
    const c = Buffer.allocUnsafeSlow(n);
    data.copy(c, 0, off, off + n);
    out.push(c);
    off += n;
  }
  return out;
}

describe('stream hashes', () => {
  const workers = new HashWorkers(2);
  after(() => workers.close());

  test('a worker hash equals node:crypto and hands every byte back in order', async () => {
    const data = randomBytes(5_000_001);
    for (const hash of [workers.create(), new InlineHash('sha256')]) {
      const back = await feed(hash, ownChunks(data));
      assert.ok(back.equals(data), 'bytes handed back differ from those given');
      assert.equal(await hash.digest(), sha256(data));
      hash.dispose();
    }
  });

  test('chunks given up that own their memory are moved, not copied; any other is copied', async () => {
    const hash = workers.create();
    const kept = Buffer.allocUnsafeSlow(100_000).fill(3);
    const keptBack = await feed(hash, [kept], false);
    assert.equal(kept.length, 100_000, 'a chunk not given up is copied, its memory stays usable');
    assert.ok(keptBack.equals(kept));
    const own = Buffer.allocUnsafeSlow(100_000).fill(7);
    const whole = randomBytes(200_000);
    const slice = whole.subarray(50_000, 150_000); // shares `whole`'s memory
    const pooled = Buffer.from('small, from the pool');
    const expected = Buffer.concat([own, slice, pooled]);
    const back = await feed(hash, [own, slice, pooled]);
    assert.equal(own.length, 0, 'an owned chunk given up is transferred (detached here)');
    assert.equal(slice.length, 100_000, 'a slice is copied, its memory stays usable');
    assert.equal(pooled.toString(), 'small, from the pool');
    assert.ok(back.equals(expected));
    assert.equal(await hash.digest(), sha256(Buffer.concat([kept, expected])));
    hash.dispose();
  });

  test('a digest mid-stream covers what came before; the hash goes on', async () => {
    const a = randomBytes(3_000_000);
    const b = randomBytes(1_234_567);
    const hash = workers.create();
    await feed(hash, ownChunks(a));
    assert.equal(await hash.digest(), sha256(a));
    await feed(hash, ownChunks(b));
    assert.equal(await hash.digest(), sha256(Buffer.concat([a, b])));
    hash.dispose();
  });

  test('hashes on the same thread do not mix', async () => {
    const datas = [randomBytes(2_500_000), randomBytes(1_000_000), randomBytes(4_000_000)];
    const hashes = datas.map(() => workers.create());
    await Promise.all(hashes.map((h, i) => feed(h, ownChunks(datas[i]!))));
    for (let i = 0; i < datas.length; i++) assert.equal(await hashes[i]!.digest(), sha256(datas[i]!));
    for (const h of hashes) h.dispose();
  });

  test('a producer faster than the hash is asked to wait', async () => {
    const hash = workers.create();
    let waits = 0;
    for (let i = 0; i < 64; i++) {
      const behind = hash.update(Buffer.allocUnsafeSlow(256 * 1024));
      if (behind) {
        waits++;
        await behind;
      }
      hash.takeHashed();
    }
    await hash.settle();
    assert.ok(waits > 0, 'update() never asked the producer to wait');
    hash.dispose();
  });

  test('a disposed hash refuses further use instead of starting over', async () => {
    const hash = workers.create();
    await feed(hash, ownChunks(randomBytes(1_000_000)));
    hash.dispose();
    assert.equal(hash.broken, true);
    await assert.rejects(async () => hash.update(Buffer.alloc(10)));
    await assert.rejects(hash.digest());
  });

  test('a thread that dies makes its hashes fail, not hang; a new hash gets a new thread', async () => {
    const own = new HashWorkers(1);
    const hash = own.create();
    await feed(hash, ownChunks(randomBytes(1_000_000)));
    await own.close(); // the thread goes away with the hash's state
    assert.equal(hash.broken, true);
    await assert.rejects(async () => {
      const behind = hash.update(Buffer.allocUnsafeSlow(1_000_000));
      if (behind) await behind;
      await hash.settle();
    });
    await assert.rejects(hash.digest());
    const next = own.create();
    const data = randomBytes(1_500_000);
    await feed(next, ownChunks(data));
    assert.equal(await next.digest(), sha256(data));
    await own.close();
  });
});
