// Upload endpoints against a live server: monolithic, POST+PUT, chunked and streamed PATCH,
// status, cancel, mounts, bad ranges and sizes, interrupted uploads, concurrency.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { Client, expectError, random, sha256, sha512 } from '../helpers/client.js';
import { apiDrivers, stopDrivers, storageFor as driverStorage } from '../helpers/drivers.js';
import { startInProcess, tempDir, type RunningBerth } from '../helpers/berth.js';
import { buildConfig } from '../../src/config/config.js';
import { hashWorkers } from '../../src/oci/stream-hash.js';
import { parseDigest } from '../../src/oci/digest.js';
import { Registry } from '../../src/registry/registry.js';
import { UploadStore } from '../../src/registry/uploads.js';
import { createDriver } from '../../src/storage/factory.js';

const V2 = 'docker/registry/v2';

after(() => stopDrivers());

for (const { driver, skip, noAppendToNonEmpty } of apiDrivers()) {
  const multiRequest = { skip: noAppendToNonEmpty ?? false };
  describe(`uploads (${driver})`, { skip }, () => {
    let berth: RunningBerth;
    let c: Client;
    before(async () => {
      berth = await startInProcess({ storage: await driverStorage(driver) });
      c = new Client(berth.url);
    });
    after(() => berth.stop());

    // No session may be left behind (small blobs never create one).
    const noSessions = (repo: string) => {
      const dir = join(berth.root!, V2, 'repositories', repo, '_uploads');
      assert.deepEqual(existsSync(dir) ? readdirSync(dir) : [], [], `sessions left in ${repo}`);
    };
    // A completed session's files are gone; its id (which carries its start time, so any
    // process can judge it without storage) answers as a session holding nothing until it
    // expires, as a just-started one does.
    const expectEmptySession = async (loc: string) => {
      const st = await c.fetch(loc);
      assert.equal(st.status, 204, await st.text());
      assert.equal(st.headers.get('range'), '0-0');
    };

    for (const size of [100_000, 3_000_000]) test(`monolithic POST ?digest= stores the blob and links it (${size} bytes)`, async () => {
      const data = random(size);
      const digest = await c.pushBlob('mono/repo', data);
      const res = await c.fetch(`/v2/mono/repo/blobs/${digest}`);
      assert.equal(res.status, 200);
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), data);
      if (driver === 'filesystem') {
        const hex = digest.slice(7);
        assert.deepEqual(readFileSync(join(berth.root!, V2, 'blobs/sha256', hex.slice(0, 2), hex, 'data')), data);
        assert.equal(readFileSync(join(berth.root!, V2, 'repositories/mono/repo/_layers/sha256', hex, 'link'), 'utf8'), digest);
        noSessions('mono/repo');
      }
    });

    for (const size of [1000, 2_000_000]) test(`monolithic POST with a wrong digest → 400 DIGEST_INVALID and nothing stored (${size} bytes)`, async () => {
      const data = random(size);
      const wrong = sha256('something else');
      const res = await c.fetch(`/v2/mono/bad/blobs/uploads/?digest=${wrong}`, { method: 'POST', body: data });
      await expectError(res, 400, 'DIGEST_INVALID');
      await expectError(await c.fetch(`/v2/mono/bad/blobs/${wrong}`, { method: 'HEAD' }), 404, 'BLOB_UNKNOWN');
      await expectError(await c.fetch(`/v2/mono/bad/blobs/${sha256(data)}`), 404, 'BLOB_UNKNOWN');
      if (driver === 'filesystem') {
        assert.ok(!existsSync(join(berth.root!, V2, 'blobs/sha256', wrong.slice(7, 9), wrong.slice(7))));
        noSessions('mono/bad');
      }
    });

    test('POST then PUT with the whole body; Location keeps working with &digest= appended', async () => {
      const data = random(70_000);
      const loc = await c.startUpload('two/step');
      assert.ok(loc.includes('?'), 'Location carries a query so `&digest=` appends stay valid');
      const res = await c.fetch(loc + `&digest=${sha256(data)}`, { method: 'PUT', body: data });
      assert.equal(res.status, 201, await res.text());
      assert.equal(res.headers.get('docker-content-digest'), sha256(data));
      assert.equal(c.location(res), `/v2/two/step/blobs/${sha256(data)}`);
      const get = await c.fetch(`/v2/two/step/blobs/${sha256(data)}`);
      assert.deepEqual(Buffer.from(await get.arrayBuffer()), data);
    });

    for (const size of [4096, 2_000_000]) test(`POST then PUT with a ${size}-byte body: stored, linked, the session gone; a wrong digest keeps the bytes`, async () => {
      // Up to 1 MiB the final PUT is verified in memory and written once; above, it streams
      // through the session file. Both must look the same from outside.
      const data = random(size);
      const repo = `two/step${size}`;
      let loc = await c.startUpload(repo);
      const bad = await c.fetch(Client.withParam(loc, `digest=${sha256('not this')}`), { method: 'PUT', body: data });
      await expectError(bad, 400, 'DIGEST_INVALID');
      await expectError(await c.fetch(`/v2/${repo}/blobs/${sha256(data)}`, { method: 'HEAD' }), 404, 'BLOB_UNKNOWN');
      const st = await c.fetch(loc);
      assert.equal(st.status, 204);
      assert.equal(st.headers.get('range'), `0-${size - 1}`, 'the final chunk of a failed PUT is kept');
      const done = await c.fetch(Client.withParam(loc, `digest=${sha256(data)}`), { method: 'PUT' });
      assert.equal(done.status, 201, await done.text());
      await expectEmptySession(loc);
      if (driver === 'filesystem') noSessions(repo);

      loc = await c.startUpload(repo);
      const ok = await c.fetch(Client.withParam(loc, `digest=${sha256(data)}`), { method: 'PUT', body: data });
      assert.equal(ok.status, 201, await ok.text());
      await expectEmptySession(loc);
      // Repeating the PUT (a client whose response was lost) is answered the same way.
      const again = await c.fetch(Client.withParam(loc, `digest=${sha256(data)}`), { method: 'PUT', body: data });
      assert.equal(again.status, 201, await again.text());
      assert.deepEqual(Buffer.from(await (await c.fetch(`/v2/${repo}/blobs/${sha256(data)}`)).arrayBuffer()), data);
      if (driver === 'filesystem') noSessions(repo);
    });

    test('chunked PATCH with Content-Range, status, out-of-order and overlapping chunks → 416', multiRequest, async () => {
      const data = random(300_000);
      let loc = await c.startUpload('chunked/repo');
      const status0 = await c.fetch(loc);
      assert.equal(status0.status, 204);
      assert.equal(status0.headers.get('range'), '0-0');

      const parts = [data.subarray(0, 100_000), data.subarray(100_000, 200_000), data.subarray(200_000)];
      let offset = 0;
      for (const [i, part] of parts.entries()) {
        if (i === 1) {
          // out of order: skips ahead
          const skip = await c.fetch(loc, {
            method: 'PATCH',
            body: part,
            headers: { 'Content-Range': `${offset + 10}-${offset + 10 + part.length - 1}`, 'Content-Type': 'application/octet-stream' },
          });
          await expectError(skip, 416, 'RANGE_INVALID');
          assert.equal(skip.headers.get('range'), `0-${offset - 1}`);
          // overlapping: starts before the end
          const overlap = await c.fetch(loc, {
            method: 'PATCH',
            body: part,
            headers: { 'Content-Range': `${offset - 5}-${offset - 5 + part.length - 1}` },
          });
          await expectError(overlap, 416, 'RANGE_INVALID');
        }
        const res = await c.fetch(loc, {
          method: 'PATCH',
          body: part,
          headers: { 'Content-Range': `${offset}-${offset + part.length - 1}`, 'Content-Type': 'application/octet-stream' },
        });
        assert.equal(res.status, 202, await res.text());
        offset += part.length;
        assert.equal(res.headers.get('range'), `0-${offset - 1}`);
        assert.ok(res.headers.get('docker-upload-uuid'));
        loc = c.location(res);
      }
      const status = await c.fetch(loc);
      assert.equal(status.status, 204);
      assert.equal(status.headers.get('range'), `0-${data.length - 1}`);
      const done = await c.fetch(Client.withParam(loc, `digest=${sha256(data)}`), { method: 'PUT' });
      assert.equal(done.status, 201, await done.text());
      const get = await c.fetch(`/v2/chunked/repo/blobs/${sha256(data)}`);
      assert.deepEqual(Buffer.from(await get.arrayBuffer()), data);
      await expectEmptySession(loc);
      if (driver === 'filesystem') noSessions('chunked/repo');
    });

    test('streamed PATCH (Transfer-Encoding: chunked, no Content-Range) then final chunk in PUT', multiRequest, async () => {
      const data = random(2_000_000);
      const loc = await c.startUpload('streamed/repo');
      const body = new ReadableStream({
        start(ctrl) {
          for (let i = 0; i < 1_500_000; i += 100_000) ctrl.enqueue(new Uint8Array(data.subarray(i, i + 100_000)));
          ctrl.close();
        },
      });
      const res = await c.fetch(loc, { method: 'PATCH', body, duplex: 'half' });
      assert.equal(res.status, 202, await res.text());
      assert.equal(res.headers.get('range'), '0-1499999');
      await finishWithTail(c, c.location(res), 'streamed/repo', data, 1_500_000);
    });

    test('the hashing thread stopping between PATCH and PUT: the PUT re-reads the held bytes and completes', multiRequest, async () => {
      const data = random(3_000_000); // above SMALL_BLOB_MAX: hashed on a worker thread
      const loc = await c.startUpload('hashing/stops');
      const p = await c.fetch(loc, { method: 'PATCH', body: data.subarray(0, 2_000_000) });
      assert.equal(p.status, 202, await p.text());
      await hashWorkers.close(); // the running hash kept for this session is gone with it
      await finishWithTail(c, c.location(p), 'hashing/stops', data, 2_000_000);
    });

    test('PUT with the wrong digest → DIGEST_INVALID; the session keeps its bytes and can finish', async () => {
      const data = random(5000);
      const loc = await c.startUpload('wrong/digest');
      const p = await c.fetch(loc, { method: 'PATCH', body: data });
      assert.equal(p.status, 202);
      const bad = await c.fetch(Client.withParam(c.location(p), `digest=${sha256('nope')}`), { method: 'PUT' });
      await expectError(bad, 400, 'DIGEST_INVALID');
      await expectError(await c.fetch(`/v2/wrong/digest/blobs/${sha256(data)}`), 404, 'BLOB_UNKNOWN');
      const st = await c.fetch(c.location(p));
      assert.equal(st.headers.get('range'), `0-${data.length - 1}`);
      const ok = await c.fetch(Client.withParam(c.location(p), `digest=${sha256(data)}`), { method: 'PUT' });
      assert.equal(ok.status, 201);
    });

    test('PUT without digest, malformed digests, unknown algorithms → 400 DIGEST_INVALID', async () => {
      const loc = await c.startUpload('digests/repo');
      await expectError(await c.fetch(loc, { method: 'PUT' }), 400, 'DIGEST_INVALID');
      for (const d of ['sha256:abc', 'md5:d41d8cd98f00b204e9800998ecf8427e', 'sha256', 'sha256:' + 'g'.repeat(64), 'SHA256:' + 'a'.repeat(64), '']) {
        await expectError(await c.fetch(Client.withParam(loc, `digest=${encodeURIComponent(d)}`), { method: 'PUT' }), 400, 'DIGEST_INVALID');
      }
      await expectError(await c.fetch(`/v2/digests/repo/blobs/uploads/?digest=sha256:1234`, { method: 'POST', body: 'x' }), 400, 'DIGEST_INVALID');
    });

    test('sha512 digests work for uploads', multiRequest, async () => {
      const data = random(10_000);
      const res = await c.fetch(`/v2/sha512/repo/blobs/uploads/?digest=${sha512(data)}`, { method: 'POST', body: data });
      assert.equal(res.status, 201, await res.text());
      const get = await c.fetch(`/v2/sha512/repo/blobs/${sha512(data)}`);
      assert.equal(get.status, 200);
      assert.deepEqual(Buffer.from(await get.arrayBuffer()), data);
      // chunked upload finished with a sha512 digest (the running hash is sha256: rehashed)
      const loc = await c.startUpload('sha512/repo');
      const p = await c.fetch(loc, { method: 'PATCH', body: data.subarray(0, 4000) });
      const done = await c.fetch(Client.withParam(c.location(p), `digest=${sha512(data)}`), { method: 'PUT', body: data.subarray(4000) });
      assert.equal(done.status, 201, await done.text());
    });

    test('Content-Length and Content-Range disagree → 400 SIZE_INVALID; malformed Content-Range → 400', async () => {
      const loc = await c.startUpload('ranges/repo');
      await expectError(await c.fetch(loc, { method: 'PATCH', body: random(10), headers: { 'Content-Range': '0-19' } }), 400, 'SIZE_INVALID');
      await expectError(await c.fetch(loc, { method: 'PATCH', body: random(10), headers: { 'Content-Range': 'bananas' } }), 400, 'BLOB_UPLOAD_INVALID');
      await expectError(await c.fetch(loc, { method: 'PATCH', body: random(10), headers: { 'Content-Range': '9-0' } }), 416, 'RANGE_INVALID');
      const st = await c.fetch(loc);
      assert.equal(st.headers.get('range'), '0-0', 'nothing was appended by rejected chunks');
    });

    test('a chunked body longer than its Content-Range → 400 SIZE_INVALID, no more than the range kept', async () => {
      const loc = await c.startUpload('ranges/long');
      const body = new ReadableStream({
        start(ctrl) {
          ctrl.enqueue(new Uint8Array(random(50)));
          ctrl.close();
        },
      });
      const res = await c.fetch(loc, { method: 'PATCH', body, duplex: 'half', headers: { 'Content-Range': '0-19' } });
      await expectError(res, 400, 'SIZE_INVALID');
      const st = await c.fetch(loc);
      assert.equal(st.headers.get('range'), '0-19');
    });

    test('unknown or malformed upload ids → 404 BLOB_UPLOAD_UNKNOWN', async () => {
      for (const id of ['0b8e2a6e-6a5c-4b8e-9a4f-000000000000', 'not..valid', 'a%2fb']) {
        await expectError(await c.fetch(`/v2/some/repo/blobs/uploads/${id}`), 404, 'BLOB_UPLOAD_UNKNOWN');
        await expectError(await c.fetch(`/v2/some/repo/blobs/uploads/${id}`, { method: 'PATCH', body: 'x' }), 404, 'BLOB_UPLOAD_UNKNOWN');
        await expectError(await c.fetch(`/v2/some/repo/blobs/uploads/${id}?digest=${sha256('x')}`, { method: 'PUT', body: 'x' }), 404, 'BLOB_UPLOAD_UNKNOWN');
      }
      // a session belongs to its repository
      const loc = await c.startUpload('owner/repo');
      await expectError(await c.fetch(loc.replace('owner/repo', 'other/repo')), 404, 'BLOB_UPLOAD_UNKNOWN');
      // an id whose start time was changed no longer matches its check
      const uuid = loc.split('/uploads/')[1]!.split('?')[0]!;
      const parts = uuid.split('-');
      parts[5] = (parseInt(parts[5]!, 36) - 1).toString(36);
      await expectError(await c.fetch(`/v2/owner/repo/blobs/uploads/${parts.join('-')}`), 404, 'BLOB_UPLOAD_UNKNOWN');
      assert.equal((await c.fetch(`/v2/owner/repo/blobs/uploads/${uuid}`)).status, 204);
    });

    test('DELETE cancels a session', async () => {
      const loc = await c.startUpload('cancel/repo');
      await c.fetch(loc, { method: 'PATCH', body: random(100) });
      const del = await c.fetch(loc, { method: 'DELETE' });
      assert.equal(del.status, 204);
      await expectError(await c.fetch(loc), 404, 'BLOB_UPLOAD_UNKNOWN');
      await expectError(await c.fetch(loc, { method: 'DELETE' }), 404, 'BLOB_UPLOAD_UNKNOWN');
      await expectError(await c.fetch(loc, { method: 'PATCH', body: random(10) }), 404, 'BLOB_UPLOAD_UNKNOWN');
    });

    test('DELETE cancels a session that never held bytes: its id is unknown afterwards', async () => {
      const data = random(1000);
      const loc = await c.startUpload('cancel/empty');
      assert.equal((await c.fetch(loc, { method: 'DELETE' })).status, 204);
      await expectError(await c.fetch(loc), 404, 'BLOB_UPLOAD_UNKNOWN');
      await expectError(await c.fetch(loc, { method: 'PATCH', body: data }), 404, 'BLOB_UPLOAD_UNKNOWN');
      await expectError(await c.fetch(Client.withParam(loc, `digest=${sha256(data)}`), { method: 'PUT', body: data }), 404, 'BLOB_UPLOAD_UNKNOWN');
      await expectError(await c.fetch(`/v2/cancel/empty/blobs/${sha256(data)}`, { method: 'HEAD' }), 404, 'BLOB_UNKNOWN');
    });

    test('mount from another repository (201), automatic mount without from (201), unknown → 202 session', async () => {
      const data = random(4096);
      const digest = await c.pushBlob('mount/src', data);
      const m = await c.fetch(`/v2/mount/dst/blobs/uploads/?mount=${digest}&from=mount/src`, { method: 'POST' });
      assert.equal(m.status, 201, await m.text());
      assert.equal(m.headers.get('docker-content-digest'), digest);
      assert.equal(c.location(m), `/v2/mount/dst/blobs/${digest}`);
      assert.equal((await c.fetch(`/v2/mount/dst/blobs/${digest}`, { method: 'HEAD' })).status, 200);

      const auto = await c.fetch(`/v2/mount/auto/blobs/uploads/?mount=${digest}`, { method: 'POST' });
      assert.equal(auto.status, 201);
      assert.equal((await c.fetch(`/v2/mount/auto/blobs/${digest}`, { method: 'HEAD' })).status, 200);

      // from a repository that does not have it: falls back to an upload session
      const other = await c.fetch(`/v2/mount/dst2/blobs/uploads/?mount=${digest}&from=mount/nothing`, { method: 'POST' });
      assert.equal(other.status, 202);
      assert.ok(other.headers.get('docker-upload-uuid'));
      await expectError(await c.fetch(`/v2/mount/dst2/blobs/${digest}`, { method: 'HEAD' }), 404, 'BLOB_UNKNOWN');
      const unknown = await c.fetch(`/v2/mount/dst3/blobs/uploads/?mount=${sha256('never pushed')}`, { method: 'POST' });
      assert.equal(unknown.status, 202);
      await expectError(await c.fetch(`/v2/mount/dst/blobs/uploads/?mount=sha256:zz&from=mount/src`, { method: 'POST' }), 400, 'DIGEST_INVALID');
      await expectError(await c.fetch(`/v2/mount/dst/blobs/uploads/?mount=${digest}&from=Bad/Name`, { method: 'POST' }), 400, 'NAME_INVALID');
    });

    test('concurrent uploads of the same blob to several repositories all succeed', async () => {
      const data = random(500_000);
      const results = await Promise.all(
        Array.from({ length: 8 }, async (_, i) => {
          const repo = `concurrent/r${i % 3}`;
          if (i % 2 === 0) return c.pushBlob(repo, data);
          const loc = await c.startUpload(repo);
          const p = await c.fetch(loc, { method: 'PATCH', body: data, headers: { 'Content-Range': `0-${data.length - 1}` } });
          assert.equal(p.status, 202);
          const done = await c.fetch(Client.withParam(c.location(p), `digest=${sha256(data)}`), { method: 'PUT' });
          assert.equal(done.status, 201, await done.text());
          return sha256(data);
        }),
      );
      assert.ok(results.every((d) => d === sha256(data)));
      for (const r of ['concurrent/r0', 'concurrent/r1', 'concurrent/r2']) {
        const get = await c.fetch(`/v2/${r}/blobs/${sha256(data)}`);
        assert.equal(sha256(Buffer.from(await get.arrayBuffer())), sha256(data));
      }
    });

    test('a client that disconnects mid-PATCH leaves a resumable session and no blob', multiRequest, async () => {
      const data = random(3_000_000);
      const loc = await c.startUpload('drop/repo');
      const sent = 1_000_000;
      await new Promise<void>((resolve) => {
        const req = request(berth.url + loc, {
          method: 'PATCH',
          headers: { 'Content-Length': String(data.length), 'Content-Type': 'application/octet-stream' },
        });
        req.on('error', () => resolve());
        req.write(data.subarray(0, sent), () => setTimeout(() => {
          req.destroy();
          resolve();
        }, 200));
      });
      // the server notices the abort and keeps what arrived
      let held = -1;
      for (let i = 0; i < 50; i++) {
        const st = await c.fetch(loc);
        assert.equal(st.status, 204);
        held = Number(st.headers.get('range')!.split('-')[1]) + 1;
        if (held === sent) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(held, sent, 'every byte that arrived is held');
      await expectError(await c.fetch(`/v2/drop/repo/blobs/${sha256(data)}`), 404, 'BLOB_UNKNOWN');
      const rest = await c.fetch(loc, {
        method: 'PATCH',
        body: data.subarray(held),
        headers: { 'Content-Range': `${held}-${data.length - 1}` },
      });
      assert.equal(rest.status, 202, await rest.text());
      const done = await c.fetch(Client.withParam(c.location(rest), `digest=${sha256(data)}`), { method: 'PUT' });
      assert.equal(done.status, 201, await done.text());
      const get = await c.fetch(`/v2/drop/repo/blobs/${sha256(data)}`);
      assert.equal(sha256(Buffer.from(await get.arrayBuffer())), sha256(data));
    });

    test('an empty blob can be uploaded', async () => {
      const digest = await c.pushBlob('empty/repo', Buffer.alloc(0));
      const res = await c.fetch(`/v2/empty/repo/blobs/${digest}`);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-length'), '0');
      assert.equal((await res.arrayBuffer()).byteLength, 0);
    });
  });
}

/** PUT with the bytes of `data` from `from` on as the final chunk → 201; the blob reads back whole. */
async function finishWithTail(c: Client, location: string, repo: string, data: Buffer, from: number): Promise<void> {
  const done = await c.fetch(Client.withParam(location, `digest=${sha256(data)}`), {
    method: 'PUT',
    body: data.subarray(from),
    headers: { 'Content-Range': `${from}-${data.length - 1}` },
  });
  assert.equal(done.status, 201, await done.text());
  const get = await c.fetch(`/v2/${repo}/blobs/${sha256(data)}`);
  assert.equal(sha256(Buffer.from(await get.arrayBuffer())), sha256(data));
}

/** The registry over a filesystem root, in this process without a server (for service-level checks). */
async function registryAt(root: string): Promise<Registry> {
  const storage = buildConfig({ storage: { filesystem: { rootdirectory: root } } }).storage;
  return new Registry(await createDriver(storage), { deleteEnabled: false, readOnly: false, redirectDisabled: true });
}

describe('upload sessions hold storage only once bytes arrive (filesystem)', () => {
  test('POST stores nothing; the first PATCH stores the start time the id carries; a restart keeps both kinds of session', async () => {
    const root = tempDir();
    const storage = { filesystem: { rootdirectory: root } };
    let berth = await startInProcess({ storage });
    try {
      let c = new Client(berth.url);
      const empty = await c.startUpload('lazy/repo');
      const held = await c.startUpload('lazy/repo');
      assert.ok(!existsSync(join(root, V2, 'repositories/lazy')), 'a POST writes nothing');
      const late = await c.fetch(empty, { method: 'PATCH', body: random(10), headers: { 'Content-Range': '10-19' } });
      await expectError(late, 416, 'RANGE_INVALID');
      assert.ok(!existsSync(join(root, V2, 'repositories/lazy')), 'a chunk that cannot be the first writes nothing');
      const part = random(5000);
      assert.equal((await c.fetch(held, { method: 'PATCH', body: part })).status, 202);
      const uuid = held.split('/uploads/')[1]!.split('?')[0]!;
      const startedAt = Date.parse(readFileSync(join(root, V2, 'repositories/lazy/repo/_uploads', uuid, 'startedat'), 'utf8'));
      assert.ok(Math.abs(Date.now() - startedAt) < 60_000, 'the start time is the POST time');
      assert.deepEqual(readdirSync(join(root, V2, 'repositories/lazy/repo/_uploads')), [uuid]);

      await berth.stop();
      berth = await startInProcess({ storage });
      c = new Client(berth.url);
      // Locations are relative, so the new server answers them.
      const st = await c.fetch(empty);
      assert.equal(st.status, 204);
      assert.equal(st.headers.get('range'), '0-0');
      const st2 = await c.fetch(held);
      assert.equal(st2.headers.get('range'), `0-${part.length - 1}`);
      const data = random(3000);
      assert.equal((await c.fetch(Client.withParam(empty, `digest=${sha256(data)}`), { method: 'PUT', body: data })).status, 201);
      assert.equal((await c.fetch(Client.withParam(held, `digest=${sha256(part)}`), { method: 'PUT' })).status, 201);
      assert.deepEqual(readdirSync(join(root, V2, 'repositories/lazy/repo/_uploads')), [], 'completion removes the files');
    } finally {
      await berth.stop();
      rmSync(root, { recursive: true, force: true });
    }
  });

  test('ids expire with the purge age; purging removes cancelled marks', async () => {
    const root = tempDir();
    const berth = await startInProcess({
      storage: { filesystem: { rootdirectory: root }, maintenance: { uploadpurging: { enabled: true, age: '1s', interval: '1h' } } },
    });
    try {
      const c = new Client(berth.url);
      const loc = await c.startUpload('expire/repo');
      const cancelled = await c.startUpload('expire/repo');
      assert.equal((await c.fetch(loc)).status, 204);
      assert.equal((await c.fetch(cancelled, { method: 'DELETE' })).status, 204);
      const uuid = cancelled.split('/uploads/')[1]!.split('?')[0]!;
      assert.ok(existsSync(join(root, V2, 'repositories/expire/repo/_uploads', uuid, 'cancelled')));
      await new Promise((r) => setTimeout(r, 1100));
      await expectError(await c.fetch(loc), 404, 'BLOB_UPLOAD_UNKNOWN');
      const data = random(100);
      await expectError(await c.fetch(Client.withParam(loc, `digest=${sha256(data)}`), { method: 'PUT', body: data }), 404, 'BLOB_UPLOAD_UNKNOWN');
      const registry = await registryAt(root);
      assert.deepEqual(await registry.purgeUploads(1000, false), [{ repo: 'expire/repo', uuid }]);
      assert.deepEqual(readdirSync(join(root, V2, 'repositories/expire/repo/_uploads')), []);
    } finally {
      await berth.stop();
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('running hashes kept between requests (filesystem)', () => {
  test('evicting the oldest hashes neither disturbs a request using one nor loses the evicted sessions', async () => {
    const root = tempDir();
    try {
      const registry = await registryAt(root);
      const store = new UploadStore(registry.driver, registry.blobs, { maxAgeMs: null, hashHintsMax: 2 });
      const repo = registry.repository('hints/repo');
      const head = random(2_000_000); // above SMALL_BLOB_MAX: a hash on the worker thread
      const tail = random(1_500_000);
      const slow = store.start(repo.name).uuid;
      // Copies: the store takes a body's chunks (their memory moves to the hashing thread).
      await store.append(repo.name, slow, Readable.from([Buffer.from(head)]), { length: head.length });
      // The second PATCH takes the session's hash and holds it while its body waits.
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      let started!: () => void;
      const reading = new Promise<void>((r) => (started = r));
      const appending = store.append(
        repo.name,
        slow,
        (async function* () {
          yield Buffer.from(tail.subarray(0, 500_000));
          started();
          await gate;
          yield Buffer.from(tail.subarray(500_000));
        })(),
        { length: tail.length },
      );
      await reading;
      // Three other sessions leave their hashes: with room for two, older ones are evicted.
      const others = [random(3000), random(1_200_000), random(4000)];
      const ids: string[] = [];
      for (const data of others) {
        const uuid = store.start(repo.name).uuid;
        await store.append(repo.name, uuid, Readable.from([Buffer.from(data)]), { length: data.length });
        ids.push(uuid);
      }
      release();
      assert.equal((await appending).size, head.length + tail.length);
      const whole = Buffer.concat([head, tail]);
      const d = await store.complete(repo.name, slow, parseDigest(sha256(whole)), repo.blobs);
      assert.equal(d.size, whole.length);
      // Evicted or not, every session completes with the right digest (re-read when evicted).
      for (const [i, data] of others.entries()) {
        const done = await store.complete(repo.name, ids[i]!, parseDigest(sha256(data)), repo.blobs);
        assert.equal(done.size, data.length);
      }
      for (const data of [whole, ...others]) {
        const path = join(root, V2, 'blobs/sha256', sha256(data).slice(7, 9), sha256(data).slice(7), 'data');
        assert.equal(sha256(readFileSync(path)), sha256(data));
      }
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
