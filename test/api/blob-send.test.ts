// Blob bodies served from the filesystem through reused buffers (src/api/send-file.ts): many
// concurrent downloads each get exactly their own bytes, clients that go away mid-body leave
// no open file behind, and a data file shorter than its announced length cuts the response
// instead of padding it or hanging.
import assert from 'node:assert/strict';
import { readdirSync, rmSync, truncateSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startInProcess, type RunningBerth } from '../helpers/berth.js';
import { Client, random, sha256 } from '../helpers/client.js';

let berth: RunningBerth;
let c: Client;
before(async () => {
  berth = await startInProcess();
  c = new Client(berth.url);
});
after(async () => {
  await berth.stop();
  rmSync(berth.root!, { recursive: true, force: true });
});

const openFds = () => readdirSync('/proc/self/fd').length;

/** GET through node:http; a slow reader pauses 40 ms after every MiB, so the server's writes back up. */
function download(url: string, slow = false): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    request(url, (res) => {
      const chunks: Buffer[] = [];
      let sincePause = 0;
      res.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        sincePause += chunk.length;
        if (slow && sincePause >= 1024 * 1024) {
          sincePause = 0;
          res.pause();
          setTimeout(() => res.resume(), 40);
        }
      });
      res.on('end', () => resolve(Buffer.concat(chunks)));
      res.on('error', reject);
    })
      .on('error', reject)
      .end();
  });
}

test('concurrent downloads, some held up by slow clients, each get exactly their own bytes', async () => {
  const blobs = Array.from({ length: 16 }, (_, i) => random(1024 * 1024 + i * 70_001));
  const digests = await Promise.all(blobs.map((b) => c.pushBlob('send/many', b)));
  const big = Array.from({ length: 3 }, () => random(32 * 1024 * 1024));
  const bigDigests = await Promise.all(big.map((b) => c.pushBlob('send/many', b)));
  // While slow readers leave the server's writes pending, other responses keep running.
  let slowDone = false;
  const slow = Promise.all(bigDigests.map((d) => download(`${berth.url}/v2/send/many/blobs/${d}`, true))).finally(() => (slowDone = true));
  let rounds = 0;
  while (!slowDone || rounds < 2) {
    const got = await Promise.all(digests.map((d) => download(`${berth.url}/v2/send/many/blobs/${d}`)));
    got.forEach((g, i) => assert.equal(sha256(g), digests[i], `blob ${i} in round ${rounds}`));
    rounds++;
  }
  (await slow).forEach((g, i) => assert.equal(sha256(g), bigDigests[i], `slow download ${i}`));
});

test('clients that disconnect mid-body leave no open file behind, and the server goes on serving', async () => {
  const data = random(24 * 1024 * 1024);
  const digest = await c.pushBlob('send/abort', data);
  const baseline = openFds();
  await Promise.all(
    Array.from({ length: 12 }, () =>
      new Promise<void>((resolve, reject) => {
        const req = request(`${berth.url}/v2/send/abort/blobs/${digest}`, (res) => {
          let seen = 0;
          res.on('data', (chunk: Buffer) => {
            seen += chunk.length;
            if (seen > 512 * 1024) req.destroy(); // go away after half a MiB
          });
          res.on('error', () => {});
          res.on('close', () => resolve());
        });
        req.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' || err.message === 'socket hang up' ? resolve() : reject(err)));
        req.end();
      }),
    ),
  );
  let now = openFds();
  for (let i = 0; i < 50 && now > baseline; i++) {
    await new Promise((r) => setTimeout(r, 100));
    now = openFds();
  }
  assert.ok(now <= baseline, `${now - baseline} descriptors still open after the aborted downloads`);
  const again = Buffer.from(await (await c.fetch(`/v2/send/abort/blobs/${digest}`)).arrayBuffer());
  assert.equal(sha256(again), digest);
});

test('a data file shorter than its size on record: the response is cut, not padded, and the file is closed', async () => {
  const data = random(3 * 1024 * 1024);
  const digest = await c.pushBlob('send/short', data);
  const hex = digest.slice('sha256:'.length);
  // Damage the storage behind the registry's back (a disk error, an operator's mistake).
  const file = join(berth.root!, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
  const baseline = openFds();
  truncateSync(file, 1024 * 1024 + 5);
  const res = await c.fetch(`/v2/send/short/blobs/${digest}`);
  // The size on record may be cached (3 MiB) or re-read (the truncated size); either way the
  // client never receives bytes that are not the blob's.
  const announced = Number(res.headers.get('content-length'));
  let body: Buffer | null = null;
  try {
    body = Buffer.from(await res.arrayBuffer());
  } catch {
    // the connection was cut short of Content-Length: what a client must see
  }
  if (announced === data.length) assert.equal(body, null, 'a body shorter than Content-Length must not end cleanly');
  else assert.ok(body!.equals(data.subarray(0, announced)));
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(openFds() <= baseline, 'the data file was closed');
});
