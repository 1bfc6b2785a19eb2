// A full disk, for real: the filesystem driver's root on a small tmpfs, filled up. Every refused
// write answers 507 STORAGE_FULL with the spec's JSON error body, nothing partial becomes
// visible, what was stored before stays intact, and once space is freed the same uploads
// finish. Mounting needs root (CI runs as root); elsewhere the test skips, saying so.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, rmSync, statfsSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startInProcess, tempDir, type RunningBerth } from './helpers/berth.js';
import { Client, expectError, random, sha256 } from './helpers/client.js';

const MiB = 1024 * 1024;
const mountpoint = tempDir('berth-full-');
let mounted = false;
let skip: string | false = false;
try {
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=48m', 'tmpfs', mountpoint], { stdio: 'pipe' });
  mounted = true;
} catch (err) {
  skip = `cannot mount a tmpfs to fill up (needs root): ${(err as Error).message.split('\n')[0]}`;
}

let berth: RunningBerth;
const root = join(mountpoint, 'root');
const filler = join(mountpoint, 'filler');

before(async () => {
  if (mounted) berth = await startInProcess({ storage: { filesystem: { rootdirectory: root }, delete: { enabled: true } } });
});
after(async () => {
  await berth?.stop();
  if (mounted) execFileSync('umount', [mountpoint]);
  rmSync(mountpoint, { recursive: true, force: true });
});

/** Fills the filesystem until `leave` bytes are free (a second filler file when already filled). */
function fillUpTo(leave: number, name = filler): void {
  const st = statfsSync(mountpoint);
  const free = st.bavail * st.bsize;
  try {
    writeFileSync(name, Buffer.alloc(Math.max(0, free - leave)));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  }
}

/** Every name under the storage root that a half-done write would leave (temporary files). */
function temporaries(dir = root): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.name.includes('~')) out.push(join(dir, e.name));
    else if (e.isDirectory()) out.push(...temporaries(join(dir, e.name)));
  }
  return out;
}

test('a full disk: 507 STORAGE_FULL, nothing partial visible, stored content intact, uploads finish once space is freed', { skip }, async () => {
  const c = new Client(berth.url);
  const before = await c.pushImage('full/app', 'v1', { layers: [random(256 * 1024)] });
  const big = random(8 * MiB);
  const bigDigest = sha256(big);
  fillUpTo(2 * MiB);

  // A monolithic push larger than the free space.
  await expectError(
    await c.fetch(`/v2/full/app/blobs/uploads/?digest=${bigDigest}`, { method: 'POST', body: big, headers: { 'Content-Type': 'application/octet-stream' } }),
    507,
    'STORAGE_FULL',
  );
  await expectError(await c.fetch(`/v2/full/app/blobs/${bigDigest}`, { method: 'HEAD' }), 404, 'BLOB_UNKNOWN');

  // A chunked upload: the PATCH is refused; the session keeps exactly what reached the disk.
  const loc = await c.startUpload('full/app');
  await expectError(
    await c.fetch(loc, { method: 'PATCH', body: big, headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': `0-${big.length - 1}` } }),
    507,
    'STORAGE_FULL',
  );
  const status = await c.fetch(loc);
  assert.equal(status.status, 204);
  const held = Number(/^0-(\d+)$/.exec(status.headers.get('range') ?? '')?.[1] ?? -1) + 1;
  assert.ok(held >= 0 && held < big.length, `held ${held} bytes`);

  // No space at all: a manifest moving the tag is refused and the tag keeps its manifest.
  fillUpTo(0, `${filler}2`);
  const moved = { ...before.manifest, annotations: { 'org.example.moved': 'yes' } };
  const put = await c.putManifest('full/app', 'v1', moved);
  await expectError(put.res, 507, 'STORAGE_FULL');
  const got = await c.fetch('/v2/full/app/manifests/v1', { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } });
  assert.equal(got.status, 200);
  assert.equal(sha256(Buffer.from(await got.arrayBuffer())), before.digest);
  await expectError(await c.fetch(`/v2/full/app/manifests/${put.digest}`, { method: 'HEAD' }), 404, 'MANIFEST_UNKNOWN');
  assert.deepEqual(temporaries(), [], 'no temporary file outlives a refused write');

  // Space is freed: the chunked upload goes on from what it held, the rest works as usual.
  unlinkSync(filler);
  unlinkSync(`${filler}2`);
  const rest = await c.fetch(loc, {
    method: 'PATCH',
    body: big.subarray(held),
    headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': `${held}-${big.length - 1}` },
  });
  assert.equal(rest.status, 202, await rest.text());
  const done = await c.fetch(Client.withParam(c.location(rest), `digest=${bigDigest}`), { method: 'PUT' });
  assert.equal(done.status, 201, await done.text());
  const blob = await c.fetch(`/v2/full/app/blobs/${bigDigest}`);
  assert.equal(sha256(Buffer.from(await blob.arrayBuffer())), bigDigest);
  assert.equal((await c.putManifest('full/app', 'v1', moved)).res.status, 201);
  for (const layer of before.layers) {
    const res = await c.fetch(`/v2/full/app/blobs/${layer}`);
    assert.equal(sha256(Buffer.from(await res.arrayBuffer())), layer, 'a blob stored before the disk filled is intact');
  }
});
