// Crash safety with a real `berth serve` process: `kill -9` in the middle of a PATCH leaves a
// session that reports exactly the bytes held and can be finished after a restart; nothing
// partial is ever visible as a blob.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Client, expectError, random, sha256 } from './helpers/client.js';
import { startProcess, tempDir, type BerthProcess } from './helpers/berth.js';
import { rmSync } from 'node:fs';

const V2 = 'docker/registry/v2';
const root = tempDir();
const running: BerthProcess[] = [];
after(async () => {
  for (const p of running) await p.stop();
  rmSync(root, { recursive: true, force: true });
});

async function start(): Promise<BerthProcess> {
  const p = await startProcess({ root });
  running.push(p);
  return p;
}

test('kill -9 during a PATCH: after restart the upload reports the bytes held and completes', async () => {
  const data = random(24 * 1024 * 1024);
  let berth = await start();
  let c = new Client(berth.url);
  const loc = await c.startUpload('crash/repo');
  const uuid = loc.split('/uploads/')[1]!.split('?')[0]!;
  const dataFile = join(root, V2, 'repositories/crash/repo/_uploads', uuid, 'data');

  // Send 16 MiB of a 24 MiB PATCH, then kill the server while the request is still open.
  const req = request(berth.url + loc, { method: 'PATCH', headers: { 'Content-Length': String(data.length) } });
  req.on('error', () => {});
  const sent = 16 * 1024 * 1024;
  for (let off = 0; off < sent; off += 1024 * 1024) {
    if (!req.write(data.subarray(off, off + 1024 * 1024))) await new Promise((r) => req.once('drain', r));
  }
  // wait until some of it reached the disk
  for (let i = 0; i < 100 && !(existsSync(dataFile) && statSync(dataFile).size > 0); i++) await new Promise((r) => setTimeout(r, 50));
  berth.kill('SIGKILL');
  await berth.exited;
  req.destroy();

  const onDisk = statSync(dataFile).size;
  assert.ok(onDisk > 0 && onDisk <= sent, `held ${onDisk} bytes`);
  // nothing of the blob is visible in the blob store
  const hex = sha256(data).slice(7);
  assert.ok(!existsSync(join(root, V2, 'blobs/sha256', hex.slice(0, 2), hex)));

  berth = await start();
  c = new Client(berth.url);
  const st = await c.fetch(loc);
  assert.equal(st.status, 204);
  assert.equal(st.headers.get('range'), `0-${onDisk - 1}`, 'the status reports exactly what is held');
  await expectError(await c.fetch(`/v2/crash/repo/blobs/${sha256(data)}`, { method: 'HEAD' }), 404, 'BLOB_UNKNOWN');

  // continue from there, with a Content-Range, as a client would
  const rest = await c.fetch(loc, {
    method: 'PATCH',
    body: data.subarray(onDisk),
    headers: { 'Content-Range': `${onDisk}-${data.length - 1}` },
  });
  assert.equal(rest.status, 202, await rest.text());
  const done = await c.fetch(Client.withParam(c.location(rest), `digest=${sha256(data)}`), { method: 'PUT' });
  assert.equal(done.status, 201, await done.text());
  const get = await c.fetch(`/v2/crash/repo/blobs/${sha256(data)}`);
  assert.equal(sha256(Buffer.from(await get.arrayBuffer())), sha256(data));
  assert.deepEqual(readdirSync(join(root, V2, 'repositories/crash/repo/_uploads')), []);
});

test('kill -9 during a monolithic upload leaves no blob and no readable partial data', async () => {
  const data = random(32 * 1024 * 1024);
  const berth = await start();
  const req = request(`${berth.url}/v2/crash/mono/blobs/uploads/?digest=${sha256(data)}`, {
    method: 'POST',
    headers: { 'Content-Length': String(data.length) },
  });
  req.on('error', () => {});
  req.write(data.subarray(0, 20 * 1024 * 1024));
  await new Promise((r) => setTimeout(r, 300));
  berth.kill('SIGKILL');
  await berth.exited;
  req.destroy();

  const again = await start();
  const c = new Client(again.url);
  await expectError(await c.fetch(`/v2/crash/mono/blobs/${sha256(data)}`, { method: 'HEAD' }), 404, 'BLOB_UNKNOWN');
  const hex = sha256(data).slice(7);
  assert.ok(!existsSync(join(root, V2, 'blobs/sha256', hex.slice(0, 2), hex)));
  // the same blob can be pushed in full afterwards
  assert.equal(await c.pushBlob('crash/mono', data), sha256(data));
});
