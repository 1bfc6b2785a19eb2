// End-to-end with the real skopeo (containers/image): push OCI layouts into a `berth serve`
// process, read them back through skopeo and plain HTTP, and compare bytes with what was built.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { startProcess, tempDir, type BerthProcess } from '../helpers/berth.js';
import { have, run } from '../helpers/exec.js';
import type { buildImage, BuiltImage } from '../helpers/images.js';
import {
  buildImageIn,
  errorCode,
  fetchBlob,
  fetchManifest,
  lowercaseTempDir,
  sha256,
  waitForLog,
  type ImageConfig,
  type ImageManifest,
} from '../helpers/containers.js';

const SKIP = have('skopeo') ? false : 'skopeo is not installed';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';

// --insecure-policy: the tests must not depend on the host's /etc/containers/policy.json.
function skopeo(args: string[], opts: { allowFail?: boolean } = {}) {
  return run('skopeo', ['--insecure-policy', ...args], { timeoutMs: 120_000, ...opts });
}

/** skopeo copy with TLS verification off on both sides (Berth serves plain HTTP). */
function copy(src: string, dest: string, extra: string[] = []) {
  return skopeo(['copy', '--src-tls-verify=false', '--dest-tls-verify=false', ...extra, src, dest]);
}

/** The bytes of blob `digest` in an OCI image layout. */
function layoutBlob(dir: string, digest: string): Buffer {
  return readFileSync(join(dir, 'blobs', ...digest.split(':')));
}

/** What the layout's index.json names for its single entry. */
function layoutTop(dir: string): { digest: string; mediaType: string } {
  const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as { manifests: { digest: string; mediaType: string }[] };
  assert.equal(index.manifests.length, 1, `index.json of ${dir} has ${index.manifests.length} entries`);
  return index.manifests[0]!;
}

// The skip is on each test (not the suite) so the runner counts and reports the skipped tests.
describe('skopeo against berth serve', () => {
  let berth: BerthProcess;
  const dirs: string[] = [];
  const image = (opts: Parameters<typeof buildImage>[0]): BuiltImage => {
    const scratch = lowercaseTempDir();
    dirs.push(scratch);
    return buildImageIn(scratch, opts);
  };
  const scratch = (): string => {
    const d = tempDir('berth-skopeo-out-');
    dirs.push(d);
    return d;
  };

  before(async () => {
    if (SKIP) return;
    berth = await startProcess({ env: { REGISTRY_STORAGE_DELETE_ENABLED: 'true' } });
  });

  after(async () => {
    await berth?.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  test('copy an OCI layout in; inspect reports the pushed digest; list-tags lists the tags', { skip: SKIP, timeout: 120_000 }, async () => {
    const img = image({ tag: 'v1', layers: 2, seed: 'skopeo-basic' });
    const ref = `docker://${berth.host}/e2e/basic:v1`;
    await copy(img.ref, ref);

    // --raw: the manifest exactly as stored, which is exactly what was pushed.
    const raw = await skopeo(['inspect', '--raw', '--tls-verify=false', ref]);
    assert.ok(Buffer.from(raw.stdout).equals(img.blobs.get(img.digest)!), `raw manifest differs:\n${raw.stdout}`);

    const info = JSON.parse((await skopeo(['inspect', '--tls-verify=false', ref])).stdout) as {
      Digest: string;
      Architecture: string;
      Layers: string[];
      Labels: Record<string, string>;
    };
    assert.equal(info.Digest, img.digest);
    assert.equal(info.Architecture, 'amd64');
    assert.deepEqual(info.Layers, img.manifests[0]!.layers.map((l) => l.digest));
    assert.equal(info.Labels.seed, 'skopeo-basic');

    const config = await skopeo(['inspect', '--config', '--raw', '--tls-verify=false', ref]);
    assert.ok(Buffer.from(config.stdout).equals(img.blobs.get(img.manifests[0]!.config.digest)!), 'config differs');

    // A second tag, written registry-to-registry within the same repository.
    await copy(ref, `docker://${berth.host}/e2e/basic:v2`);
    const head = await fetchManifest(berth.url, 'e2e/basic', 'v2', 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('docker-content-digest'), img.digest);

    const tags = JSON.parse((await skopeo(['list-tags', '--tls-verify=false', `docker://${berth.host}/e2e/basic`])).stdout) as {
      Repository: string;
      Tags: string[];
    };
    assert.equal(tags.Repository, `${berth.host}/e2e/basic`);
    assert.deepEqual([...tags.Tags].sort(), ['v1', 'v2']);
  });

  test('copy back out to an OCI layout and to dir: is byte-identical to what was pushed', { skip: SKIP, timeout: 120_000 }, async () => {
    const img = image({ tag: 'v1', layers: 3, seed: 'skopeo-roundtrip' });
    const ref = `docker://${berth.host}/e2e/roundtrip:v1`;
    await copy(img.ref, ref);
    const m = img.manifests[0]!;
    const wanted = [img.digest, m.config.digest, ...m.layers.map((l) => l.digest)];

    const out = scratch();
    await copy(ref, `oci:${join(out, 'layout')}:v1`);
    assert.equal(layoutTop(join(out, 'layout')).digest, img.digest);
    for (const d of wanted) {
      const got = layoutBlob(join(out, 'layout'), d);
      assert.equal(sha256(got), d);
      assert.ok(got.equals(img.blobs.get(d)!), `blob ${d} differs`);
    }

    // dir: names blobs by their hex digest and writes the manifest as manifest.json.
    await copy(ref, `dir:${join(out, 'dir')}`);
    assert.ok(readFileSync(join(out, 'dir', 'manifest.json')).equals(img.blobs.get(img.digest)!), 'dir: manifest differs');
    for (const d of [m.config.digest, ...m.layers.map((l) => l.digest)]) {
      const got = readFileSync(join(out, 'dir', d.slice('sha256:'.length)));
      assert.ok(got.equals(img.blobs.get(d)!), `dir: blob ${d} differs`);
    }
  });

  test('copy --all of a two-platform index keeps the index digest; both children are served by digest', { skip: SKIP, timeout: 120_000 }, async () => {
    const img = image({ tag: 'v1', platforms: ['linux/amd64', 'linux/arm64'], layers: 2, seed: 'skopeo-multi' });
    assert.equal(img.manifests.length, 2);
    const ref = `docker://${berth.host}/e2e/multi:v1`;
    await copy(img.ref, ref, ['--all']);

    const raw = await skopeo(['inspect', '--raw', '--tls-verify=false', ref]);
    assert.equal(sha256(raw.stdout), img.digest);

    const top = await fetchManifest(berth.url, 'e2e/multi', 'v1');
    assert.equal(top.status, 200);
    assert.equal(top.headers.get('content-type'), OCI_INDEX);
    assert.equal(top.headers.get('docker-content-digest'), img.digest);
    assert.ok(top.body.equals(img.blobs.get(img.digest)!));

    for (const m of img.manifests) {
      const child = await fetchManifest(berth.url, 'e2e/multi', m.digest);
      assert.equal(child.status, 200, `child ${m.digest}: ${child.body.toString()}`);
      assert.equal(child.headers.get('content-type'), OCI_MANIFEST);
      assert.equal(child.headers.get('docker-content-digest'), m.digest);
      assert.ok(child.body.equals(img.blobs.get(m.digest)!), `child ${m.digest} differs`);
      for (const d of [m.config.digest, ...m.layers.map((l) => l.digest)]) {
        const blob = await fetchBlob(berth.url, 'e2e/multi', d);
        assert.equal(blob.status, 200, `blob ${d}`);
        assert.ok(blob.body.equals(img.blobs.get(d)!), `blob ${d} differs`);
      }
    }

    // A client that resolves the index to one platform gets that platform's child.
    const out = scratch();
    await skopeo(['--override-arch', 'arm64', 'copy', '--src-tls-verify=false', ref, `oci:${join(out, 'arm64')}:v1`]);
    const arm = img.manifests.find((m) => m.platform.architecture === 'arm64')!;
    assert.equal(layoutTop(join(out, 'arm64')).digest, arm.digest);

    // And copy --all back out reproduces the index byte for byte.
    await copy(ref, `oci:${join(out, 'all')}:v1`, ['--all']);
    assert.equal(layoutTop(join(out, 'all')).digest, img.digest);
    for (const [d, bytes] of img.blobs) assert.ok(layoutBlob(join(out, 'all'), d).equals(bytes), `blob ${d} differs`);
  });

  test('copy between two repositories of one Berth mounts the layers into the second', { skip: SKIP, timeout: 120_000 }, async () => {
    const img = image({ tag: 'v1', layers: 2, seed: 'skopeo-mount' });
    const layers = img.manifests[0]!.layers.map((l) => l.digest);
    await copy(img.ref, `docker://${berth.host}/e2e/mount-src:v1`);
    // The control: before the copy the second repository does not have the layers.
    for (const d of layers) assert.equal((await fetchBlob(berth.url, 'e2e/mount-dst', d, 'HEAD')).status, 404);

    await copy(`docker://${berth.host}/e2e/mount-src:v1`, `docker://${berth.host}/e2e/mount-dst:v1`);

    // The push above recorded in containers/image's persistent blob-info cache (root:
    // /var/lib/containers/cache, else under $HOME) that these layers live in e2e/mount-src of
    // this registry, so this copy asks for a mount: POST .../blobs/uploads/?mount=<d>&from=
    // e2e/mount-src, which Berth answers 201 when it links the blob instead of opening an
    // upload session (202). (With an empty cache skopeo would upload instead of mounting.)
    const log = await waitForLog(berth.output, (e) => e.method === 'PUT' && e.path === '/v2/e2e/mount-dst/manifests/v1');
    const mounts = log.filter((e) => e.method === 'POST' && e.path === '/v2/e2e/mount-dst/blobs/uploads/' && e.status === 201);
    assert.ok(mounts.length >= layers.length, `expected ${layers.length} mounts, saw ${mounts.length}`);

    for (const d of layers) {
      const blob = await fetchBlob(berth.url, 'e2e/mount-dst', d);
      assert.equal(blob.status, 200, `blob ${d} not in e2e/mount-dst`);
      assert.ok(blob.body.equals(img.blobs.get(d)!), `blob ${d} differs`);
      // The mount is a link in the second repository to the one stored blob (Distribution layout).
      const link = join(berth.root, 'docker/registry/v2/repositories/e2e/mount-dst/_layers/sha256', d.slice(7), 'link');
      assert.ok(existsSync(link), `no layer link ${link}`);
      assert.equal(readFileSync(link, 'utf8'), d);
    }
    const head = await fetchManifest(berth.url, 'e2e/mount-dst', 'v1', 'HEAD');
    assert.equal(head.headers.get('docker-content-digest'), img.digest);
  });

  test('skopeo delete removes the manifest: GET answers 404 MANIFEST_UNKNOWN', { skip: SKIP, timeout: 120_000 }, async () => {
    const img = image({ tag: 'v1', layers: 1, seed: 'skopeo-delete' });
    await copy(img.ref, `docker://${berth.host}/e2e/del:v1`);
    await copy(img.ref, `docker://${berth.host}/e2e/del:v2`);
    await copy(img.ref, `docker://${berth.host}/e2e/keep:v1`);
    assert.equal((await fetchManifest(berth.url, 'e2e/del', img.digest)).status, 200);

    // skopeo resolves the tag, then sends DELETE /v2/e2e/del/manifests/<digest>.
    await skopeo(['delete', '--tls-verify=false', `docker://${berth.host}/e2e/del:v1`]);

    const byDigest = await fetchManifest(berth.url, 'e2e/del', img.digest);
    assert.equal(byDigest.status, 404);
    assert.equal(errorCode(byDigest), 'MANIFEST_UNKNOWN');
    // Deleting a revision takes every tag pointing at it along (as Distribution does).
    for (const tag of ['v1', 'v2']) {
      const byTag = await fetchManifest(berth.url, 'e2e/del', tag);
      assert.equal(byTag.status, 404, `tag ${tag} survived`);
      assert.equal(errorCode(byTag), 'MANIFEST_UNKNOWN');
    }
    const tags = JSON.parse((await skopeo(['list-tags', '--tls-verify=false', `docker://${berth.host}/e2e/del`])).stdout) as { Tags: string[] };
    assert.deepEqual(tags.Tags, []);
    const inspect = await skopeo(['inspect', '--raw', '--tls-verify=false', `docker://${berth.host}/e2e/del:v1`], { allowFail: true });
    assert.notEqual(inspect.code, 0, 'skopeo inspect still found the deleted image');

    // The same manifest in another repository is untouched.
    const kept = await fetchManifest(berth.url, 'e2e/keep', img.digest);
    assert.equal(kept.status, 200);
    assert.ok(kept.body.equals(img.blobs.get(img.digest)!));
  });

  test('skopeo delete fails when deletes are disabled, and the manifest stays', { skip: SKIP, timeout: 120_000 }, async () => {
    const plain = await startProcess(); // storage.delete.enabled defaults to false
    try {
      const img = image({ tag: 'v1', layers: 1, seed: 'skopeo-nodelete' });
      await copy(img.ref, `docker://${plain.host}/e2e/nodel:v1`);
      const r = await skopeo(['delete', '--tls-verify=false', `docker://${plain.host}/e2e/nodel:v1`], { allowFail: true });
      assert.notEqual(r.code, 0, `skopeo delete succeeded: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, /UNSUPPORTED|405/);

      const m = await fetchManifest(plain.url, 'e2e/nodel', 'v1');
      assert.equal(m.status, 200);
      assert.equal(m.headers.get('docker-content-digest'), img.digest);
      // What skopeo was told: 405 to its DELETE of the manifest.
      const log = await waitForLog(plain.output, (e) => e.method === 'DELETE');
      const deletes = log.filter((e) => e.method === 'DELETE');
      assert.deepEqual(deletes.map((e) => [e.path, e.status]), [[`/v2/e2e/nodel/manifests/${img.digest}`, 405]]);
    } finally {
      await plain.stop();
    }
  });

  test('pulls a large image (2 layers of 20 MiB) byte-identically', { skip: SKIP, timeout: 180_000 }, async () => {
    const img = image({ tag: 'v1', layers: 2, layerSize: 20 << 20, seed: 'skopeo-large' });
    const m = img.manifests[0]!;
    // The layer data is pseudo-random, so gzip cannot shrink it: real volume goes over the wire.
    for (const l of m.layers) assert.ok(l.size > 20 << 20, `layer is only ${l.size} bytes`);
    const ref = `docker://${berth.host}/e2e/large:v1`;
    await copy(img.ref, ref);

    const out = join(scratch(), 'layout');
    await copy(ref, `oci:${out}:v1`);
    assert.equal(layoutTop(out).digest, img.digest);
    for (const d of [m.config.digest, ...m.layers.map((l) => l.digest)]) {
      const got = layoutBlob(out, d);
      assert.equal(got.length, img.blobs.get(d)!.length, `blob ${d} size`);
      assert.equal(sha256(got), d);
      assert.ok(got.equals(img.blobs.get(d)!), `blob ${d} differs`);
    }
  });

  test('copy --dest-compress-format zstd: Berth stores and serves the recompressed layers', { skip: SKIP, timeout: 120_000 }, async () => {
    const img = image({ tag: 'v1', layers: 2, seed: 'skopeo-zstd' });
    const m = img.manifests[0]!;
    const ref = `docker://${berth.host}/e2e/zstd:v1`;
    await copy(img.ref, ref, ['--dest-compress-format', 'zstd']);

    const res = await fetchManifest(berth.url, 'e2e/zstd', 'v1');
    assert.equal(res.status, 200);
    assert.equal(sha256(res.body), res.headers.get('docker-content-digest'));
    const manifest = JSON.parse(res.body.toString()) as ImageManifest;
    // The config (and its diff_ids) does not change with the compression; the layers do.
    assert.equal(manifest.config.digest, m.config.digest);
    assert.equal(manifest.layers.length, m.layers.length);
    for (const [i, l] of manifest.layers.entries()) {
      assert.equal(l.mediaType, 'application/vnd.oci.image.layer.v1.tar+zstd');
      assert.notEqual(l.digest, m.layers[i]!.digest);
      const blob = await fetchBlob(berth.url, 'e2e/zstd', l.digest);
      assert.equal(blob.status, 200);
      assert.equal(blob.body.length, l.size);
      assert.equal(sha256(blob.body), l.digest);
      assert.equal(blob.body.readUInt32LE(0), 0xfd2fb528, 'not a zstd frame');
    }

    // Pulled and decompressed by skopeo, each layer is again the original tar (its diff_id).
    const out = join(scratch(), 'dir');
    await copy(ref, `dir:${out}`, ['--dest-decompress']);
    const pulled = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as ImageManifest;
    const config = JSON.parse(img.blobs.get(m.config.digest)!.toString()) as ImageConfig;
    assert.deepEqual(
      pulled.layers.map((l) => sha256(readFileSync(join(out, l.digest.slice(7))))),
      config.rootfs.diff_ids,
    );
  });
});
