// Manifest endpoints against a live server: PUT/GET/HEAD/DELETE by tag and digest for every
// supported media type, byte-exact storage, validation, references that must exist in the
// repository, size limit, tag and digest grammar, content negotiation, subject, concurrency.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { Client, expectError, random, rawRequest, sha256, sha512 } from '../helpers/client.js';
import { apiDrivers, stopDrivers, storageFor as driverStorage } from '../helpers/drivers.js';
import { startInProcess, type RunningBerth } from '../helpers/berth.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';
const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
const DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json';
const DOCKER_LAYER = 'application/vnd.docker.image.rootfs.diff.tar.gzip';
const EMPTY_TYPE = 'application/vnd.oci.empty.v1+json';
const EMPTY_DIGEST = 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a';
const MAX = 4 * 1024 * 1024;

interface Built {
  manifest: Record<string, unknown>;
  body: Buffer;
  digest: string;
  config: string;
  layers: string[];
}

/** Pushes a config and layers to `repo` and builds (without pushing) a manifest over them. */
async function build(
  c: Client,
  repo: string,
  opts: { docker?: boolean; layers?: number; extra?: Record<string, unknown>; omitMediaType?: boolean } = {},
): Promise<Built> {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, n: Math.random() }));
  const configDigest = await c.pushBlob(repo, config);
  const layers: { mediaType: string; digest: string; size: number }[] = [];
  for (let i = 0; i < (opts.layers ?? 1); i++) {
    const data = random(512 + i);
    layers.push({ mediaType: opts.docker ? DOCKER_LAYER : OCI_LAYER, digest: await c.pushBlob(repo, data), size: data.length });
  }
  const manifest: Record<string, unknown> = {
    schemaVersion: 2,
    ...(opts.omitMediaType ? {} : { mediaType: opts.docker ? DOCKER_MANIFEST : OCI_MANIFEST }),
    config: { mediaType: opts.docker ? DOCKER_CONFIG : OCI_CONFIG, digest: configDigest, size: config.length },
    layers,
    ...opts.extra,
  };
  const body = Buffer.from(JSON.stringify(manifest));
  return { manifest, body, digest: sha256(body), config: configDigest, layers: layers.map((l) => l.digest) };
}

function indexOf(children: { body: Buffer; mediaType: string }[], mediaType = OCI_INDEX, extra: Record<string, unknown> = {}): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType,
      manifests: children.map((ch, i) => ({
        mediaType: ch.mediaType,
        digest: sha256(ch.body),
        size: ch.body.length,
        platform: { architecture: i % 2 ? 'arm64' : 'amd64', os: 'linux' },
      })),
      ...extra,
    }),
  );
}

async function put(c: Client, repo: string, ref: string, body: Buffer, contentType: string): Promise<Response> {
  return c.fetch(`/v2/${repo}/manifests/${ref}`, { method: 'PUT', body, headers: { 'Content-Type': contentType } });
}

/** PUT that must succeed: 201, Location of the digest, Docker-Content-Digest of the bytes. */
async function putOk(c: Client, repo: string, ref: string, body: Buffer, contentType: string): Promise<Response> {
  const res = await put(c, repo, ref, body, contentType);
  assert.equal(res.status, 201, await res.text());
  assert.equal(res.headers.get('docker-content-digest'), sha256(body));
  assert.equal(c.location(res), `/v2/${repo}/manifests/${sha256(body)}`);
  return res;
}

/** GET and HEAD by `ref` serve exactly `body` with its media type, length and digest. */
async function expectServed(c: Client, repo: string, ref: string, body: Buffer, mediaType: string, headers: Record<string, string> = {}): Promise<void> {
  const get = await c.fetch(`/v2/${repo}/manifests/${ref}`, { headers });
  const got = Buffer.from(await get.arrayBuffer());
  assert.equal(get.status, 200, got.toString());
  assert.equal(get.headers.get('content-type'), mediaType);
  assert.equal(get.headers.get('content-length'), String(body.length));
  assert.equal(get.headers.get('docker-content-digest'), sha256(body));
  assert.ok(got.equals(body), `GET ${ref} returned different bytes:\n${got}\n---\n${body}`);
  const head = await c.fetch(`/v2/${repo}/manifests/${ref}`, { method: 'HEAD', headers });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get('content-type'), mediaType);
  assert.equal(head.headers.get('content-length'), String(body.length));
  assert.equal(head.headers.get('docker-content-digest'), sha256(body));
  assert.equal((await head.arrayBuffer()).byteLength, 0);
}

async function expectUnknown(c: Client, repo: string, ref: string): Promise<void> {
  await expectError(await c.fetch(`/v2/${repo}/manifests/${ref}`), 404, 'MANIFEST_UNKNOWN');
  await expectError(await c.fetch(`/v2/${repo}/manifests/${ref}`, { method: 'HEAD' }), 404, 'MANIFEST_UNKNOWN');
}

after(() => stopDrivers());

for (const { driver, skip } of apiDrivers()) {
  describe(`manifests (${driver})`, { skip }, () => {
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

    test('OCI image manifest: PUT by tag → 201; GET/HEAD by tag and by digest return the exact bytes', async () => {
      const img = await build(c, 'oci/image', { layers: 2 });
      await putOk(c, 'oci/image', 'v1', img.body, OCI_MANIFEST);
      await expectServed(c, 'oci/image', 'v1', img.body, OCI_MANIFEST);
      await expectServed(c, 'oci/image', img.digest, img.body, OCI_MANIFEST);
    });

    test('PUT by digest → 201 with Location and Docker-Content-Digest; no tag is created', async () => {
      const img = await build(c, 'oci/bydigest');
      await putOk(c, 'oci/bydigest', img.digest, img.body, OCI_MANIFEST);
      await expectServed(c, 'oci/bydigest', img.digest, img.body, OCI_MANIFEST);
      const tags = await c.fetch('/v2/oci/bydigest/tags/list');
      assert.equal(tags.status, 200);
      assert.deepEqual(((await tags.json()) as { tags: string[] }).tags, []);
      // the same bytes PUT again by digest are accepted (idempotent)
      await putOk(c, 'oci/bydigest', img.digest, img.body, OCI_MANIFEST);
    });

    test('PUT by a sha512 digest stores the manifest under that digest', async () => {
      const img = await build(c, 'oci/sha512');
      const d = sha512(img.body);
      const res = await put(c, 'oci/sha512', d, img.body, OCI_MANIFEST);
      assert.equal(res.status, 201, await res.text());
      assert.equal(res.headers.get('docker-content-digest'), d);
      const get = await c.fetch(`/v2/oci/sha512/manifests/${d}`);
      assert.equal(get.status, 200);
      assert.equal(get.headers.get('docker-content-digest'), d);
      assert.ok(Buffer.from(await get.arrayBuffer()).equals(img.body));
    });

    test('storage is byte-exact: odd whitespace, key order and escapes come back identical', async () => {
      const img = await build(c, 'oci/exact');
      const cfg = img.manifest.config as { digest: string; size: number };
      const layer = (img.manifest.layers as { digest: string; size: number }[])[0]!;
      const text =
        `\n  {\r\n\t"layers" :[ {"size":${layer.size} ,  "digest": "${layer.digest}","mediaType":"${OCI_LAYER}"}\n\n],\n` +
        `"schemaVersion"    : 2,   "annotations": {"note": "caf\\u00e9 \\"q\\" \u00e9\u4e2d", "z": "\\/"},\n` +
        `    "config": { "mediaType": "${OCI_CONFIG}",\n "digest": "${cfg.digest}", "size": ${cfg.size}},` +
        `\n "mediaType": "${OCI_MANIFEST}"\n}\n\n   `;
      const body = Buffer.from(text, 'utf8');
      await putOk(c, 'oci/exact', 'pretty', body, OCI_MANIFEST);
      await expectServed(c, 'oci/exact', 'pretty', body, OCI_MANIFEST);
      await expectServed(c, 'oci/exact', sha256(body), body, OCI_MANIFEST);
      // The compact form of the same document is a different manifest, with its own digest.
      const compact = Buffer.from(JSON.stringify(JSON.parse(text)));
      assert.notEqual(sha256(compact), sha256(body));
      await putOk(c, 'oci/exact', 'compact', compact, OCI_MANIFEST);
      await expectServed(c, 'oci/exact', 'pretty', body, OCI_MANIFEST);
    });

    test('an OCI manifest without a mediaType field is served with the type of its Content-Type', async () => {
      const img = await build(c, 'oci/nomediatype', { omitMediaType: true });
      await putOk(c, 'oci/nomediatype', 'v1', img.body, OCI_MANIFEST);
      await expectServed(c, 'oci/nomediatype', 'v1', img.body, OCI_MANIFEST);
    });

    test('OCI index over children pushed first; served as an index', async () => {
      const a = await build(c, 'oci/index');
      const b = await build(c, 'oci/index');
      await putOk(c, 'oci/index', a.digest, a.body, OCI_MANIFEST);
      await putOk(c, 'oci/index', b.digest, b.body, OCI_MANIFEST);
      const idx = indexOf([{ body: a.body, mediaType: OCI_MANIFEST }, { body: b.body, mediaType: OCI_MANIFEST }]);
      await putOk(c, 'oci/index', 'multi', idx, OCI_INDEX);
      await expectServed(c, 'oci/index', 'multi', idx, OCI_INDEX);
      await expectServed(c, 'oci/index', sha256(idx), idx, OCI_INDEX);
      // an index of an index
      const outer = indexOf([{ body: idx, mediaType: OCI_INDEX }]);
      await putOk(c, 'oci/index', 'nested', outer, OCI_INDEX);
      await expectServed(c, 'oci/index', 'nested', outer, OCI_INDEX);
    });

    test('Docker schema2 manifest and manifest list', async () => {
      const a = await build(c, 'docker/image', { docker: true });
      await putOk(c, 'docker/image', 'amd64', a.body, DOCKER_MANIFEST);
      await expectServed(c, 'docker/image', 'amd64', a.body, DOCKER_MANIFEST);
      await expectServed(c, 'docker/image', a.digest, a.body, DOCKER_MANIFEST);
      const b = await build(c, 'docker/image', { docker: true, layers: 2 });
      await putOk(c, 'docker/image', b.digest, b.body, DOCKER_MANIFEST);
      const list = indexOf([{ body: a.body, mediaType: DOCKER_MANIFEST }, { body: b.body, mediaType: DOCKER_MANIFEST }], DOCKER_LIST);
      await putOk(c, 'docker/image', 'latest', list, DOCKER_LIST);
      await expectServed(c, 'docker/image', 'latest', list, DOCKER_LIST);
      await expectServed(c, 'docker/image', sha256(list), list, DOCKER_LIST);
    });

    test('OCI artifact: artifactType and the empty config `{}` pushed first', async () => {
      const empty = await c.pushBlob('oci/artifact', '{}');
      assert.equal(empty, EMPTY_DIGEST);
      const payload = Buffer.from('hello artifact');
      const payloadDigest = await c.pushBlob('oci/artifact', payload);
      const body = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          artifactType: 'application/vnd.example.thing.v1',
          config: { mediaType: EMPTY_TYPE, digest: EMPTY_DIGEST, size: 2, data: 'e30=' },
          layers: [{ mediaType: 'text/plain', digest: payloadDigest, size: payload.length }],
          annotations: { 'org.opencontainers.image.created': '2024-01-01T00:00:00Z' },
        }),
      );
      await putOk(c, 'oci/artifact', 'thing', body, OCI_MANIFEST);
      await expectServed(c, 'oci/artifact', 'thing', body, OCI_MANIFEST);
      // The empty blob is served as a blob too.
      const blob = await c.fetch(`/v2/oci/artifact/blobs/${EMPTY_DIGEST}`);
      assert.equal(blob.status, 200);
      assert.equal(await blob.text(), '{}');
      // An artifact whose only layer is the empty descriptor.
      const bare = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          artifactType: 'application/vnd.example.bare',
          config: { mediaType: EMPTY_TYPE, digest: EMPTY_DIGEST, size: 2 },
          layers: [{ mediaType: EMPTY_TYPE, digest: EMPTY_DIGEST, size: 2 }],
        }),
      );
      await putOk(c, 'oci/artifact', 'bare', bare, OCI_MANIFEST);
      await expectServed(c, 'oci/artifact', 'bare', bare, OCI_MANIFEST);
    });

    test('invalid manifests → 400 MANIFEST_INVALID, nothing stored', async () => {
      const repo = 'invalid/manifests';
      const img = await build(c, repo);
      const m = img.manifest;
      const cfg = m.config as Record<string, unknown>;
      const layers = m.layers as Record<string, unknown>[];
      const without = (key: string) => Object.fromEntries(Object.entries(m).filter(([k]) => k !== key));
      const cases: { name: string; body: Buffer | string | object; type?: string }[] = [
        { name: 'truncated JSON', body: img.body.subarray(0, img.body.length - 3) },
        { name: 'not JSON at all', body: 'hello, registry' },
        { name: 'empty body', body: '' },
        { name: 'JSON array', body: '[]' },
        { name: 'JSON string', body: '"manifest"' },
        { name: 'schemaVersion 1', body: { ...m, schemaVersion: 1 } },
        { name: 'schemaVersion 1 as Docker schema1', body: { schemaVersion: 1, name: repo, tag: 'x', fsLayers: [], history: [] }, type: 'application/vnd.docker.distribution.manifest.v1+prettyjws' },
        { name: 'schemaVersion missing', body: without('schemaVersion') },
        { name: 'schemaVersion "2" as a string', body: { ...m, schemaVersion: '2' } },
        { name: 'schemaVersion 3', body: { ...m, schemaVersion: 3 } },
        { name: 'unknown mediaType', body: { ...m, mediaType: 'application/vnd.example.unknown+json' }, type: 'application/vnd.example.unknown+json' },
        { name: 'unknown mediaType, OCI Content-Type', body: { ...m, mediaType: 'application/vnd.example.unknown+json' } },
        { name: 'mediaType not a string', body: { ...m, mediaType: 42 } },
        { name: 'Content-Type Docker, body OCI', body: m, type: DOCKER_MANIFEST },
        { name: 'Content-Type index, body OCI manifest', body: m, type: OCI_INDEX },
        { name: 'config missing', body: without('config') },
        { name: 'config null', body: { ...m, config: null } },
        { name: 'config digest malformed', body: { ...m, config: { ...cfg, digest: 'sha256:1234' } } },
        { name: 'config digest missing', body: { ...m, config: { mediaType: cfg.mediaType, size: cfg.size } } },
        { name: 'config digest of unknown algorithm', body: { ...m, config: { ...cfg, digest: 'md5:' + 'a'.repeat(32) } } },
        { name: 'config size negative', body: { ...m, config: { ...cfg, size: -1 } } },
        { name: 'config size a string', body: { ...m, config: { ...cfg, size: String(cfg.size) } } },
        { name: 'config size fractional', body: { ...m, config: { ...cfg, size: 1.5 } } },
        { name: 'config size missing', body: { ...m, config: { mediaType: cfg.mediaType, digest: cfg.digest } } },
        { name: 'config mediaType missing', body: { ...m, config: { digest: cfg.digest, size: cfg.size } } },
        { name: 'layers missing', body: without('layers') },
        { name: 'layers an object', body: { ...m, layers: {} } },
        { name: 'layer digest uppercase hex', body: { ...m, layers: [{ ...layers[0], digest: String(layers[0]!.digest).toUpperCase().replace('SHA256', 'sha256') }] } },
        { name: 'layer size negative', body: { ...m, layers: [{ ...layers[0], size: -5 }] } },
        { name: 'annotations not strings', body: { ...m, annotations: { a: 1 } } },
        { name: 'subject malformed', body: { ...m, subject: { mediaType: OCI_MANIFEST, digest: 'nope', size: 10 } } },
        { name: 'index with manifests not an array', body: { schemaVersion: 2, mediaType: OCI_INDEX, manifests: {} }, type: OCI_INDEX },
        { name: 'index child digest malformed', body: { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [{ mediaType: OCI_MANIFEST, digest: 'sha256:xyz', size: 1 }] }, type: OCI_INDEX },
      ];
      for (const [i, k] of cases.entries()) {
        const body = Buffer.isBuffer(k.body) ? k.body : Buffer.from(typeof k.body === 'string' ? k.body : JSON.stringify(k.body));
        const res = await put(c, repo, `case${i}`, body, k.type ?? OCI_MANIFEST);
        try {
          await expectError(res, 400, 'MANIFEST_INVALID');
        } catch (err) {
          (err as Error).message = `${k.name}: ${(err as Error).message}`;
          throw err;
        }
        await expectUnknown(c, repo, `case${i}`);
        await expectUnknown(c, repo, sha256(body));
      }
    });

    test('a config or layer not in this repository → 400 MANIFEST_BLOB_UNKNOWN, even when another repository has it', async () => {
      const img = await build(c, 'blobs/elsewhere'); // config and layer live in blobs/elsewhere only
      await putOk(c, 'blobs/elsewhere', 'ok', img.body, OCI_MANIFEST);
      // the very same manifest in a repository that has none of its blobs
      await expectError(await put(c, 'blobs/here', 'v1', img.body, OCI_MANIFEST), 400, 'MANIFEST_BLOB_UNKNOWN');
      await expectError(await put(c, 'blobs/here', img.digest, img.body, OCI_MANIFEST), 400, 'MANIFEST_BLOB_UNKNOWN');
      // only the config present here: the layer is missing
      const cfgData = Buffer.from('{"os":"linux","architecture":"amd64","x":1}');
      const cfg = await c.pushBlob('blobs/here', cfgData);
      const layer = random(100);
      const layerDigest = await c.pushBlob('blobs/elsewhere', layer);
      const onlyConfig = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          config: { mediaType: OCI_CONFIG, digest: cfg, size: cfgData.length },
          layers: [{ mediaType: OCI_LAYER, digest: layerDigest, size: layer.length }],
        }),
      );
      await expectError(await put(c, 'blobs/here', 'v2', onlyConfig, OCI_MANIFEST), 400, 'MANIFEST_BLOB_UNKNOWN');
      // only the layer present here: the config is missing
      const layer2 = random(100);
      const layer2Digest = await c.pushBlob('blobs/here', layer2);
      const cfg2 = Buffer.from('{"os":"linux","architecture":"arm64"}');
      const cfg2Digest = await c.pushBlob('blobs/elsewhere', cfg2);
      const onlyLayer = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          config: { mediaType: OCI_CONFIG, digest: cfg2Digest, size: cfg2.length },
          layers: [{ mediaType: OCI_LAYER, digest: layer2Digest, size: layer2.length }],
        }),
      );
      await expectError(await put(c, 'blobs/here', 'v3', onlyLayer, OCI_MANIFEST), 400, 'MANIFEST_BLOB_UNKNOWN');
      // a blob never pushed anywhere
      const never = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          config: { mediaType: OCI_CONFIG, digest: cfg, size: cfgData.length },
          layers: [{ mediaType: OCI_LAYER, digest: sha256('never pushed'), size: 12 }],
        }),
      );
      await expectError(await put(c, 'blobs/here', 'v4', never, OCI_MANIFEST), 400, 'MANIFEST_BLOB_UNKNOWN');
      for (const ref of ['v1', 'v2', 'v3', 'v4', img.digest, sha256(onlyConfig), sha256(onlyLayer), sha256(never)]) {
        await expectUnknown(c, 'blobs/here', ref);
      }
      // Docker schema2 likewise
      const d = await build(c, 'blobs/elsewhere', { docker: true });
      await expectError(await put(c, 'blobs/here', 'docker', d.body, DOCKER_MANIFEST), 400, 'MANIFEST_BLOB_UNKNOWN');
    });

    test('an index whose child is missing, or lives only in another repository → 400 MANIFEST_BLOB_UNKNOWN', async () => {
      const child = await build(c, 'idx/other');
      await putOk(c, 'idx/other', child.digest, child.body, OCI_MANIFEST);
      const idx = indexOf([{ body: child.body, mediaType: OCI_MANIFEST }]);
      await expectError(await put(c, 'idx/here', 'v1', idx, OCI_INDEX), 400, 'MANIFEST_BLOB_UNKNOWN');
      const fake = Buffer.from('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}');
      const missing = indexOf([{ body: fake, mediaType: OCI_MANIFEST }]);
      await expectError(await put(c, 'idx/other', 'v1', missing, OCI_INDEX), 400, 'MANIFEST_BLOB_UNKNOWN');
      const list = indexOf([{ body: fake, mediaType: DOCKER_MANIFEST }], DOCKER_LIST);
      await expectError(await put(c, 'idx/other', 'v2', list, DOCKER_LIST), 400, 'MANIFEST_BLOB_UNKNOWN');
      // one child present, one missing
      const both = indexOf([{ body: child.body, mediaType: OCI_MANIFEST }, { body: fake, mediaType: OCI_MANIFEST }]);
      await expectError(await put(c, 'idx/other', 'v3', both, OCI_INDEX), 400, 'MANIFEST_BLOB_UNKNOWN');
      await expectUnknown(c, 'idx/here', 'v1');
      for (const t of ['v1', 'v2', 'v3']) await expectUnknown(c, 'idx/other', t);
    });

    test('PUT by a digest that does not match the body → 400 DIGEST_INVALID, nothing stored', async () => {
      const img = await build(c, 'digest/mismatch');
      const wrong = sha256(Buffer.concat([img.body, Buffer.from(' ')]));
      await expectError(await put(c, 'digest/mismatch', wrong, img.body, OCI_MANIFEST), 400, 'DIGEST_INVALID');
      await expectUnknown(c, 'digest/mismatch', wrong);
      await expectUnknown(c, 'digest/mismatch', img.digest);
      // a sha512 reference that does not match either
      await expectError(await put(c, 'digest/mismatch', sha512('other'), img.body, OCI_MANIFEST), 400, 'DIGEST_INVALID');
      await expectUnknown(c, 'digest/mismatch', sha512(img.body));
    });

    test('a manifest of exactly 4 MiB is accepted; larger → 413 MANIFEST_TOO_LARGE (Content-Length or chunked)', async () => {
      const img = await build(c, 'size/limit');
      const pad = (target: number): Buffer => {
        const base = JSON.stringify({ ...img.manifest, annotations: { pad: '' } });
        return Buffer.from(JSON.stringify({ ...img.manifest, annotations: { pad: 'x'.repeat(target - Buffer.byteLength(base)) } }));
      };
      const exact = pad(MAX);
      assert.equal(exact.length, MAX);
      await putOk(c, 'size/limit', 'exact', exact, OCI_MANIFEST);
      await expectServed(c, 'size/limit', 'exact', exact, OCI_MANIFEST);

      const over = pad(MAX + 1);
      assert.equal(over.length, MAX + 1);
      await expectError(await put(c, 'size/limit', 'over', over, OCI_MANIFEST), 413, 'MANIFEST_TOO_LARGE');
      await expectUnknown(c, 'size/limit', 'over');

      const big = pad(MAX + 600_000);
      const stream = new ReadableStream({
        start(ctrl) {
          for (let i = 0; i < big.length; i += 64 * 1024) ctrl.enqueue(new Uint8Array(big.subarray(i, i + 64 * 1024)));
          ctrl.close();
        },
      });
      const chunked = await c.fetch('/v2/size/limit/manifests/chunked', {
        method: 'PUT',
        body: stream,
        duplex: 'half',
        headers: { 'Content-Type': OCI_MANIFEST },
      });
      await expectError(chunked, 413, 'MANIFEST_TOO_LARGE');
      await expectUnknown(c, 'size/limit', 'chunked');
      await expectUnknown(c, 'size/limit', sha256(big));
      // the server still answers afterwards
      await expectServed(c, 'size/limit', 'exact', exact, OCI_MANIFEST);
    });

    test('invalid tags → 400 TAG_INVALID; a 128-character tag is fine', async () => {
      const img = await build(c, 'tags/grammar');
      for (const tag of ['-bad', '.bad', 'a'.repeat(129), 'b%24ad', 'ba%20d', 'ta%2Fg']) {
        await expectError(await put(c, 'tags/grammar', tag, img.body, OCI_MANIFEST), 400, 'TAG_INVALID');
        await expectError(await c.fetch(`/v2/tags/grammar/manifests/${tag}`), 400, 'TAG_INVALID');
      }
      await expectUnknown(c, 'tags/grammar', img.digest);
      const long = 'A_' + 'z'.repeat(120) + '.-9_xy';
      assert.equal(long.length, 128);
      await putOk(c, 'tags/grammar', long, img.body, OCI_MANIFEST);
      await expectServed(c, 'tags/grammar', long, img.body, OCI_MANIFEST);
      await putOk(c, 'tags/grammar', '_', img.body, OCI_MANIFEST);
      await expectServed(c, 'tags/grammar', '_', img.body, OCI_MANIFEST);
    });

    test('malformed digest references → 400 DIGEST_INVALID on GET, HEAD, PUT and DELETE', async () => {
      const img = await build(c, 'digests/grammar');
      await putOk(c, 'digests/grammar', 'v1', img.body, OCI_MANIFEST);
      const hex = img.digest.slice(7);
      for (const ref of ['sha256:abc', `sha256:${hex.toUpperCase()}`, `sha256:${hex}0`, `sha256:${'g'.repeat(64)}`, `md5:${'a'.repeat(32)}`, 'sha256:', `:${hex}`, `sha512:${hex}`]) {
        for (const method of ['GET', 'PUT', 'DELETE']) {
          const res = await c.fetch(`/v2/digests/grammar/manifests/${ref}`, {
            method,
            ...(method === 'PUT' ? { body: img.body, headers: { 'Content-Type': OCI_MANIFEST } } : {}),
          });
          await expectError(res, 400, 'DIGEST_INVALID');
        }
        await expectError(await c.fetch(`/v2/digests/grammar/manifests/${ref}`, { method: 'HEAD' }), 400, 'DIGEST_INVALID');
      }
      await expectServed(c, 'digests/grammar', 'v1', img.body, OCI_MANIFEST);
    });

    test('unknown tag, unknown digest, a blob digest, another repository\'s manifest → 404 MANIFEST_UNKNOWN', async () => {
      const img = await build(c, 'unknown/a');
      await putOk(c, 'unknown/a', 'v1', img.body, OCI_MANIFEST);
      await expectUnknown(c, 'unknown/a', 'nope');
      await expectUnknown(c, 'unknown/a', sha256('no such manifest'));
      await expectUnknown(c, 'unknown/a', img.config); // a blob, not a manifest
      await expectUnknown(c, 'unknown/never', 'v1');
      // the manifest exists in unknown/a only
      await expectUnknown(c, 'unknown/b', img.digest);
      await expectUnknown(c, 'unknown/b', 'v1');
      await expectError(await c.fetch(`/v2/unknown/a/manifests/nope`, { method: 'DELETE' }), 404, 'MANIFEST_UNKNOWN');
      await expectError(await c.fetch(`/v2/unknown/a/manifests/${sha256('x')}`, { method: 'DELETE' }), 404, 'MANIFEST_UNKNOWN');
      await expectError(await c.fetch(`/v2/unknown/b/manifests/${img.digest}`, { method: 'DELETE' }), 404, 'MANIFEST_UNKNOWN');
      await expectServed(c, 'unknown/a', img.digest, img.body, OCI_MANIFEST);
    });

    test('re-tagging moves the tag; the old revision stays retrievable by digest', async () => {
      const a = await build(c, 'retag/repo');
      const b = await build(c, 'retag/repo');
      await putOk(c, 'retag/repo', 'latest', a.body, OCI_MANIFEST);
      await putOk(c, 'retag/repo', 'stable', a.body, OCI_MANIFEST);
      await expectServed(c, 'retag/repo', 'latest', a.body, OCI_MANIFEST);
      await putOk(c, 'retag/repo', 'latest', b.body, OCI_MANIFEST);
      await expectServed(c, 'retag/repo', 'latest', b.body, OCI_MANIFEST);
      await expectServed(c, 'retag/repo', 'stable', a.body, OCI_MANIFEST);
      await expectServed(c, 'retag/repo', a.digest, a.body, OCI_MANIFEST);
      const tags = (await (await c.fetch('/v2/retag/repo/tags/list')).json()) as { tags: string[] };
      assert.deepEqual(tags.tags, ['latest', 'stable']);
      // and back again
      await putOk(c, 'retag/repo', 'latest', a.body, OCI_MANIFEST);
      await expectServed(c, 'retag/repo', 'latest', a.body, OCI_MANIFEST);
    });

    test('a manifest with a subject → OCI-Subject header, even when the subject does not exist yet', async () => {
      const subjectImg = await build(c, 'subject/repo');
      await c.pushBlob('subject/repo', '{}');
      const referrer = (subjectDigest: string, size: number, n: number) =>
        Buffer.from(
          JSON.stringify({
            schemaVersion: 2,
            mediaType: OCI_MANIFEST,
            artifactType: 'application/vnd.example.sig',
            config: { mediaType: EMPTY_TYPE, digest: EMPTY_DIGEST, size: 2 },
            layers: [{ mediaType: EMPTY_TYPE, digest: EMPTY_DIGEST, size: 2 }],
            subject: { mediaType: OCI_MANIFEST, digest: subjectDigest, size },
            annotations: { n: String(n) },
          }),
        );
      // subject not pushed yet
      const early = referrer(subjectImg.digest, subjectImg.body.length, 1);
      const r1 = await putOk(c, 'subject/repo', sha256(early), early, OCI_MANIFEST);
      assert.equal(r1.headers.get('oci-subject'), subjectImg.digest);
      await expectServed(c, 'subject/repo', sha256(early), early, OCI_MANIFEST);
      // subject pushed; a referrer by tag
      const s = await putOk(c, 'subject/repo', 'v1', subjectImg.body, OCI_MANIFEST);
      assert.equal(s.headers.get('oci-subject'), null, 'no OCI-Subject for a manifest without subject');
      const late = referrer(subjectImg.digest, subjectImg.body.length, 2);
      const r2 = await putOk(c, 'subject/repo', 'sig', late, OCI_MANIFEST);
      assert.equal(r2.headers.get('oci-subject'), subjectImg.digest);
      // a subject that never existed anywhere
      const ghost = sha256('ghost');
      const g = referrer(ghost, 1234, 3);
      const r3 = await putOk(c, 'subject/repo', sha256(g), g, OCI_MANIFEST);
      assert.equal(r3.headers.get('oci-subject'), ghost);
      // an index with a subject
      const idx = indexOf([{ body: late, mediaType: OCI_MANIFEST }], OCI_INDEX, {
        artifactType: 'application/vnd.example.bundle',
        subject: { mediaType: OCI_MANIFEST, digest: subjectImg.digest, size: subjectImg.body.length },
      });
      const r4 = await putOk(c, 'subject/repo', 'bundle', idx, OCI_INDEX);
      assert.equal(r4.headers.get('oci-subject'), subjectImg.digest);
    });

    test('content negotiation: by tag, an Accept without the manifest type → 404; */* or no Accept → 200; by digest always 200', async () => {
      const img = await build(c, 'negotiate/repo');
      await putOk(c, 'negotiate/repo', 'oci', img.body, OCI_MANIFEST);
      const d = await build(c, 'negotiate/repo', { docker: true });
      await putOk(c, 'negotiate/repo', 'docker', d.body, DOCKER_MANIFEST);

      const only = (t: string) => ({ Accept: t });
      // OCI manifest, client accepts only Docker types
      for (const method of ['GET', 'HEAD']) {
        await expectError(await c.fetch('/v2/negotiate/repo/manifests/oci', { method, headers: only(`${DOCKER_MANIFEST}, ${DOCKER_LIST}`) }), 404, 'MANIFEST_UNKNOWN');
        await expectError(await c.fetch('/v2/negotiate/repo/manifests/docker', { method, headers: only(`${OCI_MANIFEST}, ${OCI_INDEX}`) }), 404, 'MANIFEST_UNKNOWN');
      }
      // listed (with parameters, among others, in another case) → 200
      await expectServed(c, 'negotiate/repo', 'oci', img.body, OCI_MANIFEST, only(`${DOCKER_MANIFEST};q=0.9, ${OCI_MANIFEST};q=0.5`));
      await expectServed(c, 'negotiate/repo', 'oci', img.body, OCI_MANIFEST, only(OCI_MANIFEST.toUpperCase()));
      await expectServed(c, 'negotiate/repo', 'docker', d.body, DOCKER_MANIFEST, only(`${OCI_INDEX}, ${DOCKER_MANIFEST}`));
      // */* or no Accept → 200
      await expectServed(c, 'negotiate/repo', 'oci', img.body, OCI_MANIFEST, only('*/*'));
      await expectServed(c, 'negotiate/repo', 'docker', d.body, DOCKER_MANIFEST, only(`${OCI_INDEX}, */*;q=0.1`));
      await expectServed(c, 'negotiate/repo', 'oci', img.body, OCI_MANIFEST);
      // no Accept header at all (fetch would add `Accept: */*`, so through node:http)
      for (const [tag, b, type] of [['oci', img.body, OCI_MANIFEST], ['docker', d.body, DOCKER_MANIFEST]] as const) {
        for (const method of ['GET', 'HEAD']) {
          const raw = await rawRequest(berth.url, method, `/v2/negotiate/repo/manifests/${tag}`);
          assert.equal(raw.status, 200, `${method} ${tag} without Accept: ${raw.body}`);
          assert.equal(raw.headers['content-type'], type);
          assert.equal(raw.headers['docker-content-digest'], sha256(b));
          assert.ok(method === 'HEAD' ? raw.body.length === 0 : raw.body.equals(b));
        }
      }
      // by digest the Accept header does not matter
      await expectServed(c, 'negotiate/repo', img.digest, img.body, OCI_MANIFEST, only(DOCKER_MANIFEST));
      await expectServed(c, 'negotiate/repo', d.digest, d.body, DOCKER_MANIFEST, only(OCI_INDEX));
    });

    test('DELETE by digest → 202; the manifest and every tag pointing at it are gone', async () => {
      const a = await build(c, 'delete/digest');
      const b = await build(c, 'delete/digest');
      await putOk(c, 'delete/digest', 'one', a.body, OCI_MANIFEST);
      await putOk(c, 'delete/digest', 'two', a.body, OCI_MANIFEST);
      await putOk(c, 'delete/digest', 'other', b.body, OCI_MANIFEST);
      const del = await c.fetch(`/v2/delete/digest/manifests/${a.digest}`, { method: 'DELETE' });
      assert.equal(del.status, 202, await del.text());
      await expectUnknown(c, 'delete/digest', a.digest);
      await expectUnknown(c, 'delete/digest', 'one');
      await expectUnknown(c, 'delete/digest', 'two');
      await expectServed(c, 'delete/digest', 'other', b.body, OCI_MANIFEST);
      const tags = (await (await c.fetch('/v2/delete/digest/tags/list')).json()) as { tags: string[] };
      assert.deepEqual(tags.tags, ['other']);
      await expectError(await c.fetch(`/v2/delete/digest/manifests/${a.digest}`, { method: 'DELETE' }), 404, 'MANIFEST_UNKNOWN');
      // its blobs are untouched, and it can be pushed again
      assert.equal((await c.fetch(`/v2/delete/digest/blobs/${a.config}`, { method: 'HEAD' })).status, 200);
      await putOk(c, 'delete/digest', 'again', a.body, OCI_MANIFEST);
      await expectServed(c, 'delete/digest', 'again', a.body, OCI_MANIFEST);
      await expectUnknown(c, 'delete/digest', 'one');
    });

    test('DELETE by tag → 202; only the tag goes, the digest and other tags are still served', async () => {
      const a = await build(c, 'delete/tag');
      await putOk(c, 'delete/tag', 'one', a.body, OCI_MANIFEST);
      await putOk(c, 'delete/tag', 'two', a.body, OCI_MANIFEST);
      const del = await c.fetch('/v2/delete/tag/manifests/one', { method: 'DELETE' });
      assert.equal(del.status, 202, await del.text());
      await expectUnknown(c, 'delete/tag', 'one');
      await expectServed(c, 'delete/tag', 'two', a.body, OCI_MANIFEST);
      await expectServed(c, 'delete/tag', a.digest, a.body, OCI_MANIFEST);
      const tags = (await (await c.fetch('/v2/delete/tag/tags/list')).json()) as { tags: string[] };
      assert.deepEqual(tags.tags, ['two']);
      await expectError(await c.fetch('/v2/delete/tag/manifests/one', { method: 'DELETE' }), 404, 'MANIFEST_UNKNOWN');
    });

    test('concurrent PUTs of different manifests to one tag: the tag ends at one of them, all revisions retrievable', async () => {
      const imgs = await Promise.all(Array.from({ length: 10 }, () => build(c, 'race/tag')));
      const results = await Promise.all(imgs.map((img) => put(c, 'race/tag', 'latest', img.body, OCI_MANIFEST)));
      for (const [i, res] of results.entries()) {
        assert.equal(res.status, 201, await res.text());
        assert.equal(res.headers.get('docker-content-digest'), imgs[i]!.digest);
      }
      const get = await c.fetch('/v2/race/tag/manifests/latest');
      assert.equal(get.status, 200);
      const body = Buffer.from(await get.arrayBuffer());
      const winner = imgs.find((img) => img.body.equals(body));
      assert.ok(winner, 'the tag points at one of the pushed manifests');
      assert.equal(get.headers.get('docker-content-digest'), winner.digest);
      for (const img of imgs) await expectServed(c, 'race/tag', img.digest, img.body, OCI_MANIFEST);
      const tags = (await (await c.fetch('/v2/race/tag/tags/list')).json()) as { tags: string[] };
      assert.deepEqual(tags.tags, ['latest']);
    });

    test('concurrent PUTs of one manifest to many tags: every tag resolves to it', async () => {
      const img = await build(c, 'race/many');
      const tags = Array.from({ length: 20 }, (_, i) => `t${String(i).padStart(2, '0')}`);
      const results = await Promise.all(tags.map((t) => put(c, 'race/many', t, img.body, OCI_MANIFEST)));
      for (const res of results) {
        assert.equal(res.status, 201, await res.text());
        assert.equal(res.headers.get('docker-content-digest'), img.digest);
      }
      for (const t of tags) await expectServed(c, 'race/many', t, img.body, OCI_MANIFEST);
      const list = (await (await c.fetch('/v2/race/many/tags/list')).json()) as { tags: string[] };
      assert.deepEqual(list.tags, tags);
    });
  });
}
