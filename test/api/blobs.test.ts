// Blob endpoints against a live server: GET/HEAD with their headers, single byte ranges,
// repository scoping, DELETE, digest grammar, and a large blob streamed back.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Client, expectError, random, sha256, sha512 } from '../helpers/client.js';
import { apiDrivers, stopDrivers, storageFor as driverStorage } from '../helpers/drivers.js';
import { startInProcess, type RunningBerth } from '../helpers/berth.js';

/**
 * One request over a fresh connection (Connection: close); returns the status, headers and
 * every byte the server sent after the header block, so a body longer than its
 * Content-Length cannot hide behind a client that stops reading at Content-Length.
 */
function exchange(port: number, path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, string>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('error', reject);
    sock.on('close', () => {
      const all = Buffer.concat(chunks);
      const end = all.indexOf('\r\n\r\n');
      if (end < 0) return reject(new Error(`no response head: ${all.toString('latin1').slice(0, 200)}`));
      const lines = all.subarray(0, end).toString('latin1').split('\r\n');
      const h: Record<string, string> = {};
      for (const l of lines.slice(1)) h[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
      resolve({ status: Number(lines[0]!.split(' ')[1]), headers: h, body: all.subarray(end + 4) });
    });
    const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
    sock.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${extra}Connection: close\r\n\r\n`);
  });
}

after(() => stopDrivers());

for (const { driver, skip } of apiDrivers()) {
  describe(`blobs (${driver})`, { skip }, () => {
    let berth: RunningBerth;
    let c: Client;
    before(async () => {
      const storage: Record<string, unknown> = { delete: { enabled: true } };
      berth = await startInProcess({ storage: await driverStorage(driver, storage) });
      c = new Client(berth.url);
    });
    after(async () => {
      await berth.stop();
      if (berth.root) rmSync(berth.root, { recursive: true, force: true });
    });

    test('GET and HEAD: Docker-Content-Digest, Content-Length, Accept-Ranges, the bytes', async () => {
      const data = random(12_345);
      const digest = await c.pushBlob('get/repo', data);
      const get = await c.fetch(`/v2/get/repo/blobs/${digest}`);
      assert.equal(get.status, 200);
      assert.equal(get.headers.get('docker-content-digest'), digest);
      assert.equal(get.headers.get('content-length'), String(data.length));
      assert.equal(get.headers.get('accept-ranges'), 'bytes');
      assert.ok(Buffer.from(await get.arrayBuffer()).equals(data));
      const head = await c.fetch(`/v2/get/repo/blobs/${digest}`, { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(head.headers.get('docker-content-digest'), digest);
      assert.equal(head.headers.get('content-length'), String(data.length));
      assert.equal(head.headers.get('accept-ranges'), 'bytes');
      assert.equal((await head.arrayBuffer()).byteLength, 0);
    });

    test('a sha512 blob is served under its sha512 digest', async () => {
      const data = random(3000);
      const res = await c.fetch(`/v2/get/sha512/blobs/uploads/?digest=${sha512(data)}`, { method: 'POST', body: data });
      assert.equal(res.status, 201, await res.text());
      const get = await c.fetch(`/v2/get/sha512/blobs/${sha512(data)}`);
      assert.equal(get.status, 200);
      assert.equal(get.headers.get('docker-content-digest'), sha512(data));
      assert.ok(Buffer.from(await get.arrayBuffer()).equals(data));
      await expectError(await c.fetch(`/v2/get/sha512/blobs/${sha256(data)}`), 404, 'BLOB_UNKNOWN');
    });

    test('Range requests: bytes=0-9, bytes=10-, bytes=-5, an end past the size → 206 with Content-Range', async () => {
      const data = random(100);
      const digest = await c.pushBlob('range/repo', data);
      const cases: [string, number, number][] = [
        ['bytes=0-9', 0, 9],
        ['bytes=10-', 10, 99],
        ['bytes=-5', 95, 99],
        ['bytes=42-42', 42, 42],
        ['bytes=90-1000', 90, 99],
        ['bytes=-1000', 0, 99],
        ['bytes=0-99', 0, 99],
      ];
      for (const [range, start, end] of cases) {
        const res = await c.fetch(`/v2/range/repo/blobs/${digest}`, { headers: { Range: range } });
        assert.equal(res.status, 206, `${range}: ${res.status}`);
        assert.equal(res.headers.get('content-range'), `bytes ${start}-${end}/100`, range);
        assert.equal(res.headers.get('content-length'), String(end - start + 1), range);
        assert.equal(res.headers.get('docker-content-digest'), digest);
        const got = Buffer.from(await res.arrayBuffer());
        assert.ok(got.equals(data.subarray(start, end + 1)), `${range}: wrong bytes`);
        const head = await c.fetch(`/v2/range/repo/blobs/${digest}`, { method: 'HEAD', headers: { Range: range } });
        assert.equal(head.status, 206, range);
        assert.equal(head.headers.get('content-range'), `bytes ${start}-${end}/100`);
        await head.arrayBuffer();
      }
    });

    test('an unsatisfiable range → 416 RANGE_INVALID with Content-Range bytes */size', async () => {
      const data = random(100);
      const digest = await c.pushBlob('range/bad', data);
      for (const range of ['bytes=100-', 'bytes=150-160', 'bytes=100-200', 'bytes=-0', 'bytes=20-10']) {
        const res = await c.fetch(`/v2/range/bad/blobs/${digest}`, { headers: { Range: range } });
        assert.equal(res.headers.get('content-range'), 'bytes */100', range);
        await expectError(res, 416, 'RANGE_INVALID');
      }
    });

    test('a Range the server does not understand is ignored (RFC 9110 §14.2): 200 with the whole blob', async () => {
      const data = random(100);
      const digest = await c.pushBlob('range/ignored', data);
      // RFC 9110 §14.2: "An origin server MUST ignore a Range header field that contains a
      // range unit it does not understand." A syntactically invalid Range is ignored too.
      for (const range of ['items=0-9', 'bytes=abc', 'bytes 0-9']) {
        const res = await c.fetch(`/v2/range/ignored/blobs/${digest}`, { headers: { Range: range } });
        const got = Buffer.from(await res.arrayBuffer());
        assert.equal(res.status, 200, `Range: ${range} → ${res.status} ${got}`);
        assert.equal(res.headers.get('content-range'), null);
        assert.ok(got.equals(data), range);
      }
      // several ranges: served whole (ignored) or as multipart/byteranges, never refused as unsatisfiable
      const multi = await c.fetch(`/v2/range/ignored/blobs/${digest}`, { headers: { Range: 'bytes=0-9,20-29' } });
      const body = Buffer.from(await multi.arrayBuffer());
      assert.ok(multi.status === 200 || multi.status === 206, `Range: bytes=0-9,20-29 → ${multi.status} ${body}`);
      if (multi.status === 200) assert.ok(body.equals(data));
      else assert.match(multi.headers.get('content-type') ?? '', /^multipart\/byteranges/);
    });

    test('ranges deep inside a 10 MiB blob cross read-chunk boundaries correctly; the whole blob streams back identical', async () => {
      const data = random(10 * 1024 * 1024);
      const digest = await c.pushBlob('large/repo', data);
      const whole = await c.fetch(`/v2/large/repo/blobs/${digest}`);
      assert.equal(whole.status, 200);
      assert.equal(whole.headers.get('content-length'), String(data.length));
      const got = Buffer.from(await whole.arrayBuffer());
      assert.equal(got.length, data.length);
      assert.equal(sha256(got), digest);
      for (const [start, end] of [
        [65_535, 200_001],
        [5_000_000, 5_000_099],
        [1, 4 * 1024 * 1024],
        [data.length - 70_000, data.length - 2],
      ] as [number, number][]) {
        const res = await c.fetch(`/v2/large/repo/blobs/${digest}`, { headers: { Range: `bytes=${start}-${end}` } });
        assert.equal(res.status, 206);
        assert.equal(res.headers.get('content-range'), `bytes ${start}-${end}/${data.length}`);
        const part = Buffer.from(await res.arrayBuffer());
        assert.equal(part.length, end - start + 1);
        assert.ok(part.equals(data.subarray(start, end + 1)), `bytes ${start}-${end} differ`);
        // on the wire: exactly Content-Length bytes follow the head, nothing more
        const raw = await exchange(berth.port, `/v2/large/repo/blobs/${digest}`, { Range: `bytes=${start}-${end}` });
        assert.equal(raw.status, 206);
        assert.equal(raw.headers['content-length'], String(end - start + 1));
        assert.equal(raw.body.length, end - start + 1, `bytes ${start}-${end}: ${raw.body.length} bytes on the wire`);
        assert.ok(raw.body.equals(data.subarray(start, end + 1)));
      }
    });

    test('a blob of another repository is not visible (404 BLOB_UNKNOWN); an unknown blob → 404', async () => {
      const data = random(2000);
      const digest = await c.pushBlob('scope/owner', data);
      await expectError(await c.fetch(`/v2/scope/other/blobs/${digest}`), 404, 'BLOB_UNKNOWN');
      await expectError(await c.fetch(`/v2/scope/other/blobs/${digest}`, { method: 'HEAD' }), 404, 'BLOB_UNKNOWN');
      await expectError(await c.fetch(`/v2/scope/other/blobs/${digest}`, { headers: { Range: 'bytes=0-9' } }), 404, 'BLOB_UNKNOWN');
      // a repository nested under the owner is another repository too
      await expectError(await c.fetch(`/v2/scope/owner/sub/blobs/${digest}`), 404, 'BLOB_UNKNOWN');
      await expectError(await c.fetch(`/v2/scope/owner/blobs/${sha256('never pushed')}`), 404, 'BLOB_UNKNOWN');
      await expectError(await c.fetch(`/v2/scope/owner/blobs/${sha256('never pushed')}`, { method: 'HEAD' }), 404, 'BLOB_UNKNOWN');
      assert.equal((await c.fetch(`/v2/scope/owner/blobs/${digest}`, { method: 'HEAD' })).status, 200);
    });

    test('a manifest is not served as a blob of a repository that only has it as a manifest', async () => {
      const cfg = await c.pushBlob('scope/manifest', '{"os":"linux"}');
      const body = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: cfg, size: 14 },
          layers: [],
        }),
      );
      const put = await c.fetch('/v2/scope/manifest/manifests/v1', { method: 'PUT', body, headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' } });
      assert.equal(put.status, 201, await put.text());
      // other repositories cannot read those bytes through the blob endpoint
      await expectError(await c.fetch(`/v2/scope/elsewhere/blobs/${sha256(body)}`), 404, 'BLOB_UNKNOWN');
    });

    test('DELETE → 202, then GET/HEAD → 404 and DELETE again → 404; other repositories keep the blob', async () => {
      const data = random(4096);
      const digest = await c.pushBlob('del/a', data);
      await c.pushBlob('del/b', data);
      const del = await c.fetch(`/v2/del/a/blobs/${digest}`, { method: 'DELETE' });
      assert.equal(del.status, 202, await del.text());
      await expectError(await c.fetch(`/v2/del/a/blobs/${digest}`), 404, 'BLOB_UNKNOWN');
      await expectError(await c.fetch(`/v2/del/a/blobs/${digest}`, { method: 'HEAD' }), 404, 'BLOB_UNKNOWN');
      await expectError(await c.fetch(`/v2/del/a/blobs/${digest}`, { method: 'DELETE' }), 404, 'BLOB_UNKNOWN');
      const other = await c.fetch(`/v2/del/b/blobs/${digest}`);
      assert.equal(other.status, 200);
      assert.ok(Buffer.from(await other.arrayBuffer()).equals(data));
      await expectError(await c.fetch(`/v2/del/c/blobs/${sha256('none')}`, { method: 'DELETE' }), 404, 'BLOB_UNKNOWN');
      // pushing it again makes it visible again
      await c.pushBlob('del/a', data);
      assert.equal((await c.fetch(`/v2/del/a/blobs/${digest}`, { method: 'HEAD' })).status, 200);
    });

    test('malformed digests → 400 DIGEST_INVALID on GET, HEAD and DELETE, never a 500', async () => {
      const data = random(64);
      const digest = await c.pushBlob('digest/forms', data);
      const hex = digest.slice(7);
      const forms = [
        'sha256:abc',
        'sha256',
        'notadigest',
        `sha256:${'g'.repeat(64)}`,
        `sha256:${hex.toUpperCase()}`,
        `SHA256:${hex}`,
        `sha256:${hex}00`,
        `sha512:${hex}`,
        `md5:${'d'.repeat(32)}`,
        `sha384:${'a'.repeat(96)}`,
        `__proto__:${hex}`,
        `constructor:${hex}`,
        `sha256:${hex.slice(0, 63)}%20`,
        `sha256:${hex.slice(0, 63)}%00`,
        `sha256::${hex}`,
        `:${hex}`,
        `sha256%3A${hex}x`,
      ];
      for (const d of forms) {
        for (const method of ['GET', 'HEAD', 'DELETE']) {
          const res = await c.fetch(`/v2/digest/forms/blobs/${d}`, { method });
          try {
            await expectError(res, 400, 'DIGEST_INVALID');
          } catch (err) {
            (err as Error).message = `${method} ${d}: ${(err as Error).message}`;
            throw err;
          }
        }
      }
      assert.equal((await c.fetch(`/v2/digest/forms/blobs/${digest}`, { method: 'HEAD' })).status, 200);
    });
  });
}
