// End-to-end with the real podman and buildah, each with private vfs storage (no daemon, no
// containers run): push to a `berth serve` process, pull back, and check through the HTTP API
// what Berth holds.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { startProcess, type BerthProcess } from '../helpers/berth.js';
import { have } from '../helpers/exec.js';
import type { buildImage, BuiltImage } from '../helpers/images.js';
import {
  INDEX_TYPES,
  MANIFEST_TYPES,
  PrivateStore,
  buildImageIn,
  fetchBlob,
  fetchManifest,
  lowercaseTempDir,
  sha256,
  untar,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
} from '../helpers/containers.js';

/** A manifest (by tag or digest) that must exist, with its digest checked against its bytes. */
async function manifestAt<T>(url: string, repo: string, ref: string): Promise<{ digest: string; mediaType: string; json: T }> {
  const res = await fetchManifest(url, repo, ref);
  assert.equal(res.status, 200, `GET /v2/${repo}/manifests/${ref}: ${res.status} ${res.body.toString()}`);
  const digest = res.headers.get('docker-content-digest');
  assert.equal(digest, sha256(res.body), 'Docker-Content-Digest is not the digest of the body');
  if (ref.startsWith('sha256:')) assert.equal(digest, ref);
  return { digest: digest!, mediaType: res.headers.get('content-type') ?? '', json: JSON.parse(res.body.toString()) as T };
}

/** A blob that must exist, checked against its digest. */
async function blobAt(url: string, repo: string, digest: string): Promise<Buffer> {
  const res = await fetchBlob(url, repo, digest);
  assert.equal(res.status, 200, `GET /v2/${repo}/blobs/${digest}: ${res.status}`);
  assert.equal(sha256(res.body), digest);
  return res.body;
}

function readDigestFile(path: string): string {
  const d = readFileSync(path, 'utf8').trim();
  assert.match(d, /^sha256:[0-9a-f]{64}$/);
  return d;
}

let berth: BerthProcess;
const cleanups: (() => Promise<void> | void)[] = [];
// Skips are per test (not per suite) so the runner counts and reports them.
const NO_PODMAN = have('podman') ? false : 'podman is not installed';
const NO_BUILDAH = have('buildah') ? false : 'buildah is not installed';
const RUN_ANY = !NO_PODMAN || !NO_BUILDAH;

before(async () => {
  if (RUN_ANY) berth = await startProcess();
});

after(async () => {
  for (const c of cleanups.reverse()) await c();
  await berth?.stop();
});

function store(tool: 'podman' | 'buildah'): PrivateStore {
  const s = new PrivateStore(tool);
  cleanups.push(() => s.cleanup());
  return s;
}

function workDir(): string {
  const d = lowercaseTempDir();
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** An OCI layout under a lower-case path (podman names `oci:` pulls after the path). */
function layout(opts: Parameters<typeof buildImage>[0]): BuiltImage {
  return buildImageIn(workDir(), opts);
}

describe('podman', () => {
  test('pull an OCI layout, tag, push to Berth, remove, pull back: same image id and digest', { skip: NO_PODMAN, timeout: 120_000 }, async () => {
    const podman = store('podman');
    const img = layout({ tag: 'v1', layers: 2, seed: 'podman-roundtrip' });
    const m = img.manifests[0]!;
    const imageId = m.config.digest.slice('sha256:'.length); // podman's image id is the config digest
    const name = `${berth.host}/podman/app:v1`;

    assert.equal(await podman.runLine(['pull', img.ref]), imageId);
    await podman.run(['tag', imageId, name]);
    const digestFile = join(podman.dir, 'push.digest');
    await podman.run(['push', '--tls-verify=false', '--digestfile', digestFile, name]);
    const pushed = readDigestFile(digestFile);

    // What Berth holds under the tag is what podman says it pushed.
    const man = await manifestAt<ImageManifest>(berth.url, 'podman/app', 'v1');
    assert.equal(man.digest, pushed);
    assert.ok(MANIFEST_TYPES.includes(man.mediaType), man.mediaType);
    assert.equal(man.json.config.digest, m.config.digest);
    assert.ok((await blobAt(berth.url, 'podman/app', m.config.digest)).equals(img.blobs.get(m.config.digest)!));
    // podman recompresses layers from its storage, so compare what they decompress to.
    const config = JSON.parse(img.blobs.get(m.config.digest)!.toString()) as ImageConfig;
    assert.equal(man.json.layers.length, config.rootfs.diff_ids.length);
    for (const [i, l] of man.json.layers.entries()) {
      assert.equal(sha256(gunzipSync(await blobAt(berth.url, 'podman/app', l.digest))), config.rootfs.diff_ids[i]);
    }

    await podman.run(['rmi', '--force', imageId]);
    const gone = await podman.run(['image', 'exists', name], { allowFail: true });
    assert.equal(gone.code, 1, 'the image is still in local storage');

    assert.equal(await podman.runLine(['pull', '--tls-verify=false', name]), imageId);
    const [id, digest] = (await podman.runLine(['image', 'inspect', '--format', '{{.Id}} {{.Digest}}', name])).split(' ');
    assert.equal(id, imageId);
    assert.equal(digest, pushed);
  });

  test('manifest create + add of two platforms + manifest push --all: index and children in Berth', { skip: NO_PODMAN, timeout: 120_000 }, async () => {
    const podman = store('podman');
    const img = layout({ tag: 'v1', platforms: ['linux/amd64', 'linux/arm64'], layers: 1, seed: 'podman-list' });
    const pushed = new Map<string, { digest: string; config: string }>(); // arch → pushed manifest

    for (const m of img.manifests) {
      const arch = m.platform.architecture;
      // --arch picks that platform's image out of the layout's index.
      const id = await podman.runLine(['pull', '--arch', arch, img.ref]);
      assert.equal(`sha256:${id}`, m.config.digest);
      await podman.run(['tag', id, `${berth.host}/podman/base:${arch}`]);
      const digestFile = join(podman.dir, `${arch}.digest`);
      await podman.run(['push', '--tls-verify=false', '--digestfile', digestFile, `${berth.host}/podman/base:${arch}`]);
      pushed.set(arch, { digest: readDigestFile(digestFile), config: m.config.digest });
    }
    assert.notEqual(pushed.get('amd64')!.digest, pushed.get('arm64')!.digest);

    const list = `${berth.host}/podman/list:multi`;
    await podman.run(['manifest', 'create', list]);
    // Added from Berth itself: podman reads each manifest (by tag) to learn digest and platform.
    for (const arch of ['amd64', 'arm64']) {
      await podman.run(['manifest', 'add', '--tls-verify=false', list, `docker://${berth.host}/podman/base:${arch}`]);
    }
    const digestFile = join(podman.dir, 'list.digest');
    await podman.run(['manifest', 'push', '--all', '--tls-verify=false', '--digestfile', digestFile, list, `docker://${list}`]);
    const listDigest = readDigestFile(digestFile);

    const index = await manifestAt<ImageIndex>(berth.url, 'podman/list', 'multi');
    assert.equal(index.digest, listDigest);
    assert.ok(INDEX_TYPES.includes(index.mediaType), index.mediaType);
    assert.deepEqual(
      index.json.manifests.map((d) => [d.platform?.architecture, d.digest]).sort(),
      [...pushed].map(([arch, p]) => [arch, p.digest]).sort(),
    );
    // Each child is in the list's repository (pushed or mounted there), with its blobs.
    for (const d of index.json.manifests) {
      const child = await manifestAt<ImageManifest>(berth.url, 'podman/list', d.digest);
      assert.equal(child.json.config.digest, pushed.get(d.platform!.architecture)!.config);
      const config = JSON.parse((await blobAt(berth.url, 'podman/list', child.json.config.digest)).toString()) as ImageConfig;
      assert.equal(config.architecture, d.platform!.architecture);
      for (const l of child.json.layers) await blobAt(berth.url, 'podman/list', l.digest);
    }
  });
});

describe('buildah', () => {
  /** from scratch + one file + config → a committed local image; returns its id. */
  async function scratchImage(b: PrivateStore, name: string, file: string, content: string, arch?: string): Promise<string> {
    const src = join(b.dir, `${file}.src`);
    writeFileSync(src, content);
    const ctr = await b.runLine(['from', 'scratch']);
    await b.run(['copy', ctr, src, `/${file}`]);
    await b.run(['config', '--os', 'linux', ...(arch ? ['--arch', arch] : []), '--cmd', `/${file}`, ctr]);
    const id = await b.runLine(['commit', ctr, name]);
    await b.run(['rm', ctr]);
    return id;
  }

  /** The file's content in the (only) layer of a manifest in Berth. */
  async function fileInLayer(repo: string, manifest: ImageManifest, file: string): Promise<string | undefined> {
    assert.equal(manifest.layers.length, 1);
    return untar(await blobAt(berth.url, repo, manifest.layers[0]!.digest)).get(file)?.toString();
  }

  test('from scratch, copy, commit, push; pull into fresh storage and read the file back', { skip: NO_BUILDAH, timeout: 120_000 }, async () => {
    const b1 = store('buildah');
    const content = `hello from buildah ${Math.random()}\n`;
    const id = await scratchImage(b1, 'localhost/berth-e2e/hello:v1', 'hello.txt', content);
    const ref = `${berth.host}/buildah/hello:v1`;
    const digestFile = join(b1.dir, 'push.digest');
    await b1.run(['push', '--tls-verify=false', '--digestfile', digestFile, 'localhost/berth-e2e/hello:v1', `docker://${ref}`]);
    const pushed = readDigestFile(digestFile);

    const man = await manifestAt<ImageManifest>(berth.url, 'buildah/hello', 'v1');
    assert.equal(man.digest, pushed);
    assert.equal(man.json.config.digest, `sha256:${id}`);
    assert.equal(await fileInLayer('buildah/hello', man.json, 'hello.txt'), content);

    // A second, empty store: everything must come from Berth.
    const b2 = store('buildah');
    assert.equal(await b2.runLine(['pull', '--tls-verify=false', ref]), id);
    const ctr = await b2.runLine(['from', '--pull=never', '--name', 'readback', ref]);
    const [imageId, imageDigest] = (await b2.runLine(['inspect', '--format', '{{.FromImageID}} {{.FromImageDigest}}', ctr])).split(' ');
    assert.equal(imageId, id);
    assert.equal(imageDigest, pushed);
    const mnt = await b2.runLine(['mount', ctr]);
    try {
      assert.equal(readFileSync(join(mnt, 'hello.txt'), 'utf8'), content);
    } finally {
      await b2.run(['umount', ctr]);
    }
  });

  test('manifest create + add of two platform images + manifest push --all', { skip: NO_BUILDAH, timeout: 120_000 }, async () => {
    const b = store('buildah');
    const images = new Map<string, { id: string; content: string }>(); // arch → committed image
    for (const arch of ['amd64', 'arm64']) {
      const content = `built for ${arch} ${Math.random()}\n`;
      images.set(arch, { id: await scratchImage(b, `localhost/berth-e2e/multi:${arch}`, 'arch.txt', content, arch), content });
    }
    const list = 'localhost/berth-e2e/list:v1';
    await b.run(['manifest', 'create', list]);
    // Added from local storage: buildah takes each platform from the image's config.
    for (const arch of images.keys()) await b.run(['manifest', 'add', list, `localhost/berth-e2e/multi:${arch}`]);
    const digestFile = join(b.dir, 'list.digest');
    await b.run(['manifest', 'push', '--all', '--tls-verify=false', '--digestfile', digestFile, list, `docker://${berth.host}/buildah/list:v1`]);
    const listDigest = readDigestFile(digestFile);

    const index = await manifestAt<ImageIndex>(berth.url, 'buildah/list', 'v1');
    assert.equal(index.digest, listDigest);
    assert.ok(INDEX_TYPES.includes(index.mediaType), index.mediaType);
    assert.deepEqual(index.json.manifests.map((d) => d.platform?.architecture).sort(), ['amd64', 'arm64']);
    for (const d of index.json.manifests) {
      const arch = d.platform!.architecture;
      const child = await manifestAt<ImageManifest>(berth.url, 'buildah/list', d.digest);
      assert.equal(child.json.config.digest, `sha256:${images.get(arch)!.id}`);
      const config = JSON.parse((await blobAt(berth.url, 'buildah/list', child.json.config.digest)).toString()) as ImageConfig;
      assert.equal(config.architecture, arch);
      assert.equal(await fileInLayer('buildah/list', child.json, 'arch.txt'), images.get(arch)!.content);
    }
  });
});
