// The API's base behaviour against a live server: the version check, headers on every
// answer, unknown routes and methods, repository-name validation, read-only mode, and the
// delete switch.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Client, expectError, expectRawError, random, rawRequest, sha256 } from '../helpers/client.js';
import { apiDrivers, stopDrivers, storageFor as driverStorage } from '../helpers/drivers.js';
import { startInProcess, tempDir, type RunningBerth } from '../helpers/berth.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const API_VERSION = 'registry/2.0';

/** Pushes a one-layer image under `tag`; returns the manifest digest, body and layer digest. */
async function pushImage(c: Client, repo: string, tag: string): Promise<{ digest: string; body: Buffer; layer: string }> {
  const r = await c.pushImage(repo, tag);
  return { digest: r.digest, body: r.body, layer: r.layers[0]! };
}

/** Stops a server and removes the storage root the helper made for it. */
async function stop(berth: RunningBerth): Promise<void> {
  await berth.stop();
  if (berth.root) rmSync(berth.root, { recursive: true, force: true });
}

/** Sends raw bytes over TCP and returns everything the server answers before closing. */
function rawSocket(port: number, data: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1', () => sock.write(data));
    let out = '';
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => (out += d));
    sock.on('end', () => resolve(out));
    sock.on('close', () => resolve(out));
    sock.on('error', reject);
    sock.setTimeout(5000, () => {
      sock.destroy();
      resolve(out);
    });
  });
}

/** Every error answer: the given status, JSON error body with the code, the API version header. */
async function expectApiError(res: Response, status: number, code: string): Promise<void> {
  assert.equal(res.headers.get('docker-distribution-api-version'), API_VERSION, `no API version header on ${status} ${code}`);
  await expectError(res, status, code);
}

after(() => stopDrivers());

for (const { driver, skip } of apiDrivers()) {
  const storageFor = (extra: Record<string, unknown> = {}) => driverStorage(driver, extra);

  describe(`base (${driver})`, { skip }, () => {
    let berth: RunningBerth;
    let c: Client;
    before(async () => {
      berth = await startInProcess({ storage: await storageFor(), http: { headers: { 'X-Berth-Test': ['yes'] } } });
      c = new Client(berth.url);
    });
    after(() => stop(berth));

    test('GET and HEAD /v2/ → 200 with Docker-Distribution-API-Version: registry/2.0', async () => {
      const get = await c.fetch('/v2/');
      assert.equal(get.status, 200);
      assert.equal(get.headers.get('docker-distribution-api-version'), API_VERSION);
      assert.match(get.headers.get('content-type') ?? '', /application\/json/);
      assert.deepEqual(await get.json(), {});
      const head = await c.fetch('/v2/', { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(head.headers.get('docker-distribution-api-version'), API_VERSION);
      assert.equal((await head.arrayBuffer()).byteLength, 0);
    });

    test('configured http.headers and X-Request-Id are on every answer, errors included', async () => {
      for (const [path, status] of [['/v2/', 200], ['/v2/x/tags/list', 404], ['/nope', 404]] as const) {
        const res = await c.fetch(path, { headers: { 'X-Request-Id': 'req-123.abc' } });
        assert.equal(res.status, status);
        assert.equal(res.headers.get('x-berth-test'), 'yes', path);
        assert.equal(res.headers.get('x-request-id'), 'req-123.abc', path);
        await res.arrayBuffer();
      }
      const own = await c.fetch('/v2/', { headers: { 'X-Request-Id': 'bad id with spaces' } });
      assert.ok(own.headers.get('x-request-id'));
      assert.notEqual(own.headers.get('x-request-id'), 'bad id with spaces');
    });

    test('unknown routes → 404 NOT_FOUND as JSON', async () => {
      for (const path of ['/', '/v1/', '/v3/', '/v2/repo', '/v2/repo/unknown', '/v2/repo/manifests/', '/v2/repo/tags/list/extra', '/v2/repo/blobs/', '/v2/_catalog/x', '/favicon.ico']) {
        const res = await c.fetch(path);
        try {
          await expectApiError(res, 404, 'NOT_FOUND');
        } catch (err) {
          (err as Error).message = `${path}: ${(err as Error).message}`;
          throw err;
        }
      }
      await expectApiError(await c.fetch('/v2/repo/unknown', { method: 'POST' }), 404, 'NOT_FOUND');
    });

    test('a method a route does not have → 405 UNSUPPORTED with Allow', async () => {
      const d = sha256('x');
      const cases: [string, string, string[]][] = [
        ['POST', '/v2/', ['GET', 'HEAD']],
        ['DELETE', '/v2/', ['GET', 'HEAD']],
        ['PUT', '/v2/_catalog', ['GET', 'HEAD']],
        ['POST', '/v2/repo/tags/list', ['GET', 'HEAD']],
        ['POST', '/v2/repo/manifests/latest', ['GET', 'HEAD', 'PUT', 'DELETE']],
        ['PATCH', '/v2/repo/manifests/latest', ['GET', 'HEAD', 'PUT', 'DELETE']],
        ['PUT', `/v2/repo/blobs/${d}`, ['GET', 'HEAD', 'DELETE']],
        ['POST', `/v2/repo/blobs/${d}`, ['GET', 'HEAD', 'DELETE']],
        ['DELETE', `/v2/repo/referrers/${d}`, ['GET', 'HEAD']],
        ['GET', '/v2/repo/blobs/uploads/', ['POST']],
      ];
      for (const [method, path, allowed] of cases) {
        const res = await c.fetch(path, { method });
        const allow = (res.headers.get('allow') ?? '').split(',').map((s) => s.trim()).filter(Boolean);
        try {
          await expectApiError(res, 405, 'UNSUPPORTED');
          assert.deepEqual(allow.sort(), [...allowed].sort());
        } catch (err) {
          (err as Error).message = `${method} ${path}: ${(err as Error).message}`;
          throw err;
        }
      }
    });

    test('every error answer carries the API version header and a JSON body', async () => {
      const img = await pushImage(c, 'errors/repo', 'v1');
      await expectApiError(await c.fetch('/v2/errors/repo/manifests/nope'), 404, 'MANIFEST_UNKNOWN');
      await expectApiError(await c.fetch(`/v2/errors/repo/blobs/${sha256('nope')}`), 404, 'BLOB_UNKNOWN');
      await expectApiError(await c.fetch('/v2/errors/none/tags/list'), 404, 'NAME_UNKNOWN');
      await expectApiError(await c.fetch('/v2/errors/repo/blobs/sha256:12'), 400, 'DIGEST_INVALID');
      await expectApiError(await c.fetch('/v2/errors/repo/manifests/-x'), 400, 'TAG_INVALID');
      await expectApiError(await c.fetch('/v2/Errors/tags/list'), 400, 'NAME_INVALID');
      await expectApiError(await c.fetch('/v2/errors/repo/tags/list?n=x'), 400, 'PAGINATION_NUMBER_INVALID');
      await expectApiError(await c.fetch(`/v2/errors/repo/blobs/${img.layer}`, { headers: { Range: 'bytes=99999-' } }), 416, 'RANGE_INVALID');
      await expectApiError(
        await c.fetch('/v2/errors/repo/manifests/v2', { method: 'PUT', body: '{', headers: { 'Content-Type': OCI_MANIFEST } }),
        400,
        'MANIFEST_INVALID',
      );
      await expectApiError(await c.fetch(`/v2/errors/repo/blobs/uploads/not-a-session`), 404, 'BLOB_UPLOAD_UNKNOWN');
      await expectApiError(await c.fetch(`/v2/errors/repo/blobs/${img.layer}`, { method: 'DELETE' }), 405, 'UNSUPPORTED');
    });

    test('a malformed HTTP request → 400 as JSON, with the API version header', async () => {
      const answer = await rawSocket(berth.port, 'GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n');
      const [head = '', body = ''] = answer.split('\r\n\r\n');
      assert.match(head, /^HTTP\/1\.1 400 /);
      assert.match(head, /\r\ncontent-type: application\/json/i);
      assert.match(head, /\r\ndocker-distribution-api-version: registry\/2\.0/i, `missing API version header in:\n${head}`);
      const parsed = JSON.parse(body) as { errors: { code: string }[] };
      assert.equal(typeof parsed.errors[0]!.code, 'string');
    });

    test('invalid repository names → 400 NAME_INVALID (paths sent exactly as written)', async () => {
      const long = 'a'.repeat(256);
      const names = [
        'Upper',
        'repo/Upper',
        'a/../b',
        '..',
        'a/./b',
        'a/%2e%2e/b',
        'a%2fb',
        'a%2Fb',
        'a//b',
        '-a',
        'a-',
        'a_',
        'a___b',
        'a..b',
        '.a',
        'a%20b',
        'a%00b',
        long,
        `${'b'.repeat(100)}/${'c'.repeat(100)}/${'d'.repeat(54)}`, // 256 with the slashes
      ];
      assert.equal(names[names.length - 1]!.length, 256);
      const d = sha256('x');
      for (const name of names) {
        const attempts: [string, string, Record<string, string>?, string?][] = [
          ['GET', `/v2/${name}/tags/list`],
          ['GET', `/v2/${name}/manifests/latest`],
          ['HEAD', `/v2/${name}/manifests/latest`],
          ['PUT', `/v2/${name}/manifests/latest`, { 'Content-Type': OCI_MANIFEST }, '{}'],
          ['GET', `/v2/${name}/blobs/${d}`],
          ['POST', `/v2/${name}/blobs/uploads/`],
          ['GET', `/v2/${name}/referrers/${d}`],
        ];
        for (const [method, path, headers, body] of attempts) {
          const res = await rawRequest(berth.url, method, path, { headers, body });
          try {
            expectRawError(res, 400, 'NAME_INVALID');
          } catch (err) {
            (err as Error).message = `${method} ${path}: ${(err as Error).message}`;
            throw err;
          }
        }
      }
      // nothing was created for any of them
      const cat = (await (await c.fetch('/v2/_catalog?n=1000')).json()) as { repositories: string[] };
      for (const r of cat.repositories) assert.match(r, /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/);
    });

    test('valid names at the edges are accepted: 255 characters, separators, many components', async () => {
      const n255 = `${'p'.repeat(100)}/${'q'.repeat(100)}/${'r'.repeat(53)}`;
      assert.equal(n255.length, 255);
      for (const name of [n255, 'a__b/c.d/e-f/g--h/0', 'x/y/z/w/v/u/t/s']) {
        const img = await pushImage(c, name, 'v1');
        const res = await c.fetch(`/v2/${name}/manifests/v1`);
        assert.equal(res.status, 200, name);
        assert.equal(res.headers.get('docker-content-digest'), img.digest);
        await res.arrayBuffer();
        const tags = await c.fetch(`/v2/${name}/tags/list`);
        assert.deepEqual(await tags.json(), { name, tags: ['v1'] });
      }
    });
  });

  describe(`deletes (${driver})`, { skip }, () => {
    test('deletes disabled (the default): DELETE of blobs and manifests → 405 UNSUPPORTED, nothing removed', async () => {
      const berth = await startInProcess({ storage: await storageFor() });
      try {
        const c = new Client(berth.url);
        const img = await pushImage(c, 'nodelete/repo', 'v1');
        await expectApiError(await c.fetch(`/v2/nodelete/repo/blobs/${img.layer}`, { method: 'DELETE' }), 405, 'UNSUPPORTED');
        await expectApiError(await c.fetch(`/v2/nodelete/repo/manifests/${img.digest}`, { method: 'DELETE' }), 405, 'UNSUPPORTED');
        await expectApiError(await c.fetch('/v2/nodelete/repo/manifests/v1', { method: 'DELETE' }), 405, 'UNSUPPORTED');
        assert.equal((await c.fetch(`/v2/nodelete/repo/blobs/${img.layer}`, { method: 'HEAD' })).status, 200);
        assert.equal((await c.fetch(`/v2/nodelete/repo/manifests/${img.digest}`, { method: 'HEAD' })).status, 200);
        assert.equal((await c.fetch('/v2/nodelete/repo/manifests/v1', { method: 'HEAD' })).status, 200);
        // uploads can still be cancelled: that is not a delete of content
        const loc = await c.startUpload('nodelete/repo');
        assert.equal((await c.fetch(loc, { method: 'DELETE' })).status, 204);
      } finally {
        await stop(berth);
      }
    });

    test('deletes enabled: DELETE of a blob and of a manifest → 202', async () => {
      const berth = await startInProcess({ storage: await storageFor({ delete: { enabled: true } }) });
      try {
        const c = new Client(berth.url);
        const img = await pushImage(c, 'delete/repo', 'v1');
        const b = await c.fetch(`/v2/delete/repo/blobs/${img.layer}`, { method: 'DELETE' });
        assert.equal(b.status, 202, await b.text());
        await expectApiError(await c.fetch(`/v2/delete/repo/blobs/${img.layer}`), 404, 'BLOB_UNKNOWN');
        const m = await c.fetch(`/v2/delete/repo/manifests/${img.digest}`, { method: 'DELETE' });
        assert.equal(m.status, 202, await m.text());
        await expectApiError(await c.fetch(`/v2/delete/repo/manifests/${img.digest}`), 404, 'MANIFEST_UNKNOWN');
        await expectApiError(await c.fetch('/v2/delete/repo/manifests/v1'), 404, 'MANIFEST_UNKNOWN');
      } finally {
        await stop(berth);
      }
    });
  });

  // Served from a root filled beforehand: the filesystem and inmemory runs cover it.
  if (driver === 'filesystem' || driver === 'inmemory') describe(`read-only mode (${driver})`, { skip }, () => {
    let root: string | undefined;
    let berth: RunningBerth;
    let c: Client;
    let img: { digest: string; body: Buffer; layer: string } | undefined;
    before(async () => {
      const readonly = { maintenance: { readonly: { enabled: true } }, delete: { enabled: true } };
      if (driver === 'filesystem') {
        // fill a storage root with a writable Berth, then serve it read-only
        root = tempDir();
        const writer = await startInProcess({ storage: { filesystem: { rootdirectory: root } } });
        img = await pushImage(new Client(writer.url), 'ro/repo', 'v1');
        await writer.stop();
        berth = await startInProcess({ storage: { filesystem: { rootdirectory: root }, ...readonly } });
      } else {
        berth = await startInProcess({ storage: { inmemory: null, ...readonly } });
      }
      c = new Client(berth.url);
    });
    after(async () => {
      await berth.stop();
      if (root) rmSync(root, { recursive: true, force: true });
    });

    test('GET and HEAD work', async () => {
      assert.equal((await c.fetch('/v2/')).status, 200);
      assert.equal((await c.fetch('/v2/', { method: 'HEAD' })).status, 200);
      const cat = await c.fetch('/v2/_catalog');
      assert.equal(cat.status, 200);
      assert.deepEqual(await cat.json(), { repositories: img ? ['ro/repo'] : [] });
      if (img) {
        const m = await c.fetch('/v2/ro/repo/manifests/v1');
        assert.equal(m.status, 200);
        assert.ok(Buffer.from(await m.arrayBuffer()).equals(img.body));
        const b = await c.fetch(`/v2/ro/repo/blobs/${img.layer}`);
        assert.equal(b.status, 200);
        assert.equal(sha256(Buffer.from(await b.arrayBuffer())), img.layer);
        const t = await c.fetch('/v2/ro/repo/tags/list');
        assert.deepEqual(await t.json(), { name: 'ro/repo', tags: ['v1'] });
        const r = await c.fetch(`/v2/ro/repo/referrers/${img.digest}`);
        assert.equal(r.status, 200);
        await r.arrayBuffer();
      } else {
        await expectApiError(await c.fetch('/v2/ro/repo/tags/list'), 404, 'NAME_UNKNOWN');
      }
    });

    test('POST, PUT, PATCH and DELETE → 405 UNSUPPORTED, and nothing changes', async () => {
      const data = random(100);
      const d = sha256(data);
      const layer = img?.layer ?? sha256('x');
      const manifest = img?.digest ?? sha256('y');
      const uuid = '0b8e2a6e-6a5c-4b8e-9a4f-000000000000';
      const attempts: [string, string, unknown?][] = [
        ['POST', '/v2/ro/repo/blobs/uploads/'],
        ['POST', `/v2/ro/repo/blobs/uploads/?digest=${d}`, data],
        ['POST', `/v2/ro/other/blobs/uploads/?mount=${layer}&from=ro/repo`],
        ['PATCH', `/v2/ro/repo/blobs/uploads/${uuid}`, data],
        ['PUT', `/v2/ro/repo/blobs/uploads/${uuid}?digest=${d}`, data],
        ['DELETE', `/v2/ro/repo/blobs/uploads/${uuid}`],
        ['PUT', '/v2/ro/repo/manifests/v2', img?.body ?? Buffer.from('{}')],
        ['DELETE', `/v2/ro/repo/manifests/${manifest}`],
        ['DELETE', '/v2/ro/repo/manifests/v1'],
        ['DELETE', `/v2/ro/repo/blobs/${layer}`],
      ];
      for (const [method, path, body] of attempts) {
        const res = await c.fetch(path, { method, body, headers: body ? { 'Content-Type': path.includes('manifests') ? OCI_MANIFEST : 'application/octet-stream' } : {} });
        try {
          await expectApiError(res, 405, 'UNSUPPORTED');
        } catch (err) {
          (err as Error).message = `${method} ${path}: ${(err as Error).message}`;
          throw err;
        }
      }
      await expectApiError(await c.fetch(`/v2/ro/repo/blobs/${d}`), 404, 'BLOB_UNKNOWN');
      await expectApiError(await c.fetch('/v2/ro/repo/manifests/v2'), 404, 'MANIFEST_UNKNOWN');
      await expectApiError(await c.fetch(`/v2/ro/other/blobs/${layer}`), 404, 'BLOB_UNKNOWN');
      if (img) {
        assert.equal((await c.fetch('/v2/ro/repo/manifests/v1', { method: 'HEAD' })).status, 200);
        assert.equal((await c.fetch(`/v2/ro/repo/blobs/${layer}`, { method: 'HEAD' })).status, 200);
      }
      const cat = (await (await c.fetch('/v2/_catalog')).json()) as { repositories: string[] };
      assert.deepEqual(cat.repositories, img ? ['ro/repo'] : []);
    });
  });
}

test('a configured header the answer sets itself is the answer\'s; repeated configured values all go out', async () => {
  const berth = await startInProcess({ http: { headers: { 'cache-control': ['no-cache'], 'X-Multi': ['a', 'b'] } } });
  try {
    const c = new Client(berth.url);
    const digest = await c.pushBlob('hdr/repo', random(100));
    const blob = await c.fetch(`/v2/hdr/repo/blobs/${digest}`);
    assert.equal(blob.status, 200);
    assert.equal(blob.headers.get('cache-control'), 'max-age=31536000', 'the blob answer sets its own Cache-Control');
    assert.equal(blob.headers.get('x-multi'), 'a, b');
    await blob.arrayBuffer();
    const base = await c.fetch('/v2/');
    assert.equal(base.headers.get('cache-control'), 'no-cache');
    assert.equal(base.headers.get('x-multi'), 'a, b');
    assert.equal(base.headers.get('docker-distribution-api-version'), 'registry/2.0');
    assert.ok(base.headers.get('x-request-id'));
  } finally {
    await berth.stop();
  }
});
