// Storage interoperability with CNCF Distribution 2.8 (`registry:2`, Debian's docker-registry):
// a storage root written by one registry is served unchanged by the other, both ways. Real
// processes, real files, real clients (skopeo); everything read back byte for byte.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { startProcess, tempDir, type BerthProcess } from '../helpers/berth.js';
import { distributionUnavailable, startDistribution, type DistributionProcess } from '../helpers/distribution.js';
import { have, run } from '../helpers/exec.js';
import { buildImage, type BuiltImage } from '../helpers/images.js';

const skip = distributionUnavailable() || (have('skopeo') ? false : 'skopeo is not installed');

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const OCI_EMPTY = 'application/vnd.oci.empty.v1+json';
const ACCEPT = [
  OCI_MANIFEST,
  OCI_INDEX,
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');
const REPOS = '/docker/registry/v2/repositories';

function sha256(b: Buffer | string): string {
  return 'sha256:' + createHash('sha256').update(b).digest('hex');
}

/** Both registries as the tests use them: a base URL and the name clients give it. */
interface Server {
  url: string;
  host: string;
}

/** skopeo copy --all of a built image into `host/repo:tag`, digests preserved. */
async function skopeoPush(image: BuiltImage, host: string, repo: string, tag: string): Promise<void> {
  await run('skopeo', ['copy', '--quiet', '--all', '--preserve-digests', '--dest-tls-verify=false', image.ref, `docker://${host}/${repo}:${tag}`]);
}

/**
 * skopeo copy --all from `host/repo<ref>` into a fresh OCI layout, then checks that the layout
 * holds exactly the image's blobs (manifests, configs, layers), byte for byte.
 */
async function skopeoPullIdentical(server: Server, repo: string, ref: string, image: BuiltImage, cleanup: string[]): Promise<void> {
  const out = tempDir('berth-interop-pull-');
  cleanup.push(out);
  const src = ref.startsWith('@') ? `${server.host}/${repo}${ref}` : `${server.host}/${repo}:${ref}`;
  await run('skopeo', ['copy', '--quiet', '--all', '--preserve-digests', '--src-tls-verify=false', `docker://${src}`, `oci:${out}:pulled`]);
  const index = JSON.parse(readFileSync(join(out, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
  assert.equal(index.manifests.length, 1);
  assert.equal(index.manifests[0]!.digest, image.digest, `${src}: top-level digest`);
  const files = readdirSync(join(out, 'blobs', 'sha256')).sort();
  assert.deepEqual(files, [...image.blobs.keys()].map((d) => d.slice('sha256:'.length)).sort(), `${src}: the set of blobs`);
  for (const f of files) {
    const got = readFileSync(join(out, 'blobs', 'sha256', f));
    assert.ok(got.equals(image.blobs.get(`sha256:${f}`)!), `${src}: blob sha256:${f} differs`);
  }
}

async function getManifest(server: Server, repo: string, ref: string, method = 'GET'): Promise<{ res: Response; body: Buffer }> {
  const res = await fetch(`${server.url}/v2/${repo}/manifests/${ref}`, { method, headers: { Accept: ACCEPT } });
  return { res, body: Buffer.from(await res.arrayBuffer()) };
}

/** Over the HTTP API: the tag and every manifest and blob of the image, byte-identical. */
async function assertServes(server: Server, repo: string, tag: string, image: BuiltImage): Promise<void> {
  const top = image.blobs.get(image.digest)!;
  const topType = image.manifests.length > 1 ? OCI_INDEX : OCI_MANIFEST;
  for (const ref of [tag, image.digest]) {
    const head = await getManifest(server, repo, ref, 'HEAD');
    assert.equal(head.res.status, 200, `HEAD ${repo}:${ref}`);
    assert.equal(head.res.headers.get('docker-content-digest'), image.digest, `HEAD ${repo}:${ref}`);
    assert.equal(head.res.headers.get('content-length'), String(top.length), `HEAD ${repo}:${ref}`);
    const get = await getManifest(server, repo, ref);
    assert.equal(get.res.status, 200, `GET ${repo}:${ref}: ${get.body}`);
    assert.equal(get.res.headers.get('content-type'), topType, `GET ${repo}:${ref}`);
    assert.equal(get.res.headers.get('docker-content-digest'), image.digest);
    assert.ok(get.body.equals(top), `GET ${repo}:${ref}: manifest bytes differ`);
  }
  for (const m of image.manifests) {
    const get = await getManifest(server, repo, m.digest);
    assert.equal(get.res.status, 200, `GET ${repo}@${m.digest}`);
    assert.ok(get.body.equals(image.blobs.get(m.digest)!), `GET ${repo}@${m.digest}: bytes differ`);
    for (const blob of [m.config, ...m.layers]) {
      const res = await fetch(`${server.url}/v2/${repo}/blobs/${blob.digest}`);
      const bytes = Buffer.from(await res.arrayBuffer());
      assert.equal(res.status, 200, `GET blob ${repo}@${blob.digest}`);
      assert.equal(res.headers.get('docker-content-digest'), blob.digest);
      assert.ok(bytes.equals(image.blobs.get(blob.digest)!), `blob ${blob.digest} differs`);
      const head = await fetch(`${server.url}/v2/${repo}/blobs/${blob.digest}`, { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(head.headers.get('content-length'), String(blob.size));
    }
  }
}

async function tagsOf(server: Server, repo: string): Promise<string[]> {
  const res = await fetch(`${server.url}/v2/${repo}/tags/list`);
  const text = await res.text();
  assert.equal(res.status, 200, `tags of ${repo}: ${text}`);
  return ((JSON.parse(text) as { tags: string[] | null }).tags ?? []).sort();
}

async function catalogOf(server: Server): Promise<string[]> {
  const res = await fetch(`${server.url}/v2/_catalog`);
  const text = await res.text();
  assert.equal(res.status, 200, `catalog: ${text}`);
  return (JSON.parse(text) as { repositories: string[] }).repositories;
}

async function assertManifestUnknown(server: Server, repo: string, ref: string): Promise<void> {
  const { res, body } = await getManifest(server, repo, ref);
  assert.equal(res.status, 404, `${repo}:${ref} should be gone, got ${res.status}: ${body}`);
  const errors = (JSON.parse(body.toString()) as { errors: { code: string }[] }).errors;
  assert.ok(
    errors.some((e) => e.code === 'MANIFEST_UNKNOWN'),
    `${repo}:${ref}: expected MANIFEST_UNKNOWN, got ${body}`,
  );
}

/** Error (50) and fatal (60) lines in the logs of the Berth processes, but client hang-ups. */
function berthErrors(procs: BerthProcess[]): string[] {
  return procs.flatMap((p) =>
    p
      .output()
      .split('\n')
      .filter((l) => /"level":(50|60)/.test(l) && !/ERR_STREAM_PREMATURE_CLOSE/.test(l)),
  );
}

async function deleteManifest(server: Server, repo: string, ref: string): Promise<Response> {
  const res = await fetch(`${server.url}/v2/${repo}/manifests/${ref}`, { method: 'DELETE' });
  await res.arrayBuffer();
  return res;
}

/** Images for one direction: content differs per `prefix`, so the two directions share nothing. */
function images(prefix: string) {
  return {
    single: buildImage({ tag: 'v1', layers: 2, layerSize: 256 * 1024, seed: `${prefix}-single` }),
    multi: buildImage({ tag: 'v1', platforms: ['linux/amd64', 'linux/arm64'], layers: 2, layerSize: 64 * 1024, seed: `${prefix}-multi` }),
    first: buildImage({ tag: 'moving', layers: 1, seed: `${prefix}-moving-1` }),
    second: buildImage({ tag: 'moving', layers: 1, seed: `${prefix}-moving-2` }),
    doomed: buildImage({ tag: 'doomed', layers: 1, seed: `${prefix}-doomed` }),
  };
}

describe('a storage root written by Distribution is served by Berth', { skip }, () => {
  const cleanup: string[] = [];
  let root: string;
  let img: ReturnType<typeof images> | undefined;
  let dist: DistributionProcess | undefined;
  let berth: BerthProcess | undefined;
  const started: BerthProcess[] = [];
  const startBerth = async (env?: Record<string, string>): Promise<BerthProcess> => {
    const b = await startProcess({ root, env });
    started.push(b);
    return b;
  };

  before(async () => {
    root = tempDir('berth-interop-r1-');
    cleanup.push(root);
    const i = (img = images('d2b'));
    for (const x of Object.values(i)) cleanup.push(x.dir);
    dist = await startDistribution({ root });
    await skopeoPush(i.single, dist.host, 'interop/single', 'v1');
    await skopeoPush(i.single, dist.host, 'interop/single', 'extra');
    await skopeoPush(i.multi, dist.host, 'interop/deep/multi', 'v1');
    await skopeoPush(i.first, dist.host, 'interop/single', 'moving');
    await skopeoPush(i.second, dist.host, 'interop/single', 'moving'); // overwritten
    await skopeoPush(i.doomed, dist.host, 'interop/single', 'doomed');
    // Distribution deletes by digest, untagging every tag that points at it.
    assert.equal((await deleteManifest(dist, 'interop/single', i.doomed.digest)).status, 202);
    assert.deepEqual(await tagsOf(dist, 'interop/single'), ['extra', 'moving', 'v1']);
    await dist.stop();
    dist = undefined;
    berth = await startBerth();
  });

  after(async () => {
    await Promise.allSettled([dist?.stop(), ...started.map((b) => b.stop())]);
    for (const d of cleanup) rmSync(d, { recursive: true, force: true });
  });

  test('catalog and tags lists', async () => {
    assert.deepEqual(await catalogOf(berth!), ['interop/deep/multi', 'interop/single']);
    assert.deepEqual(await tagsOf(berth!, 'interop/single'), ['extra', 'moving', 'v1']);
    assert.deepEqual(await tagsOf(berth!, 'interop/deep/multi'), ['v1']);
  });

  test('manifests by tag and digest, and blobs, byte-identical over the API', async () => {
    await assertServes(berth!, 'interop/single', 'v1', img!.single);
    await assertServes(berth!, 'interop/single', 'extra', img!.single);
    await assertServes(berth!, 'interop/deep/multi', 'v1', img!.multi);
  });

  test('skopeo pulls everything back byte-identically (single and multi-arch, by tag and digest)', async () => {
    await skopeoPullIdentical(berth!, 'interop/single', 'v1', img!.single, cleanup);
    await skopeoPullIdentical(berth!, 'interop/single', `@${img!.single.digest}`, img!.single, cleanup);
    await skopeoPullIdentical(berth!, 'interop/deep/multi', 'v1', img!.multi, cleanup);
    await skopeoPullIdentical(berth!, 'interop/deep/multi', `@${img!.multi.digest}`, img!.multi, cleanup);
  });

  test("Distribution's tag overwrite and manifest delete are what Berth sees", async () => {
    const moving = await getManifest(berth!, 'interop/single', 'moving');
    assert.equal(moving.res.status, 200);
    assert.equal(moving.res.headers.get('docker-content-digest'), img!.second.digest);
    assert.ok(moving.body.equals(img!.second.blobs.get(img!.second.digest)!));
    await skopeoPullIdentical(berth!, 'interop/single', 'moving', img!.second, cleanup);
    // The first image is still a revision of the repository, reachable by digest.
    assert.equal((await getManifest(berth!, 'interop/single', img!.first.digest)).res.status, 200);
    await assertManifestUnknown(berth!, 'interop/single', 'doomed');
    await assertManifestUnknown(berth!, 'interop/single', img!.doomed.digest);
  });

  test('Berth untags and pushes into the root Distribution wrote; Distribution sees it', async () => {
    await berth!.stop();
    berth = await startBerth({ REGISTRY_STORAGE_DELETE_ENABLED: 'true' });
    await skopeoPush(img!.first, berth.host, 'interop/single', 'again');
    assert.equal((await deleteManifest(berth, 'interop/single', 'extra')).status, 202);
    assert.deepEqual(await tagsOf(berth, 'interop/single'), ['again', 'moving', 'v1']);
    await berth.stop();
    berth = undefined;
    dist = await startDistribution({ root });
    assert.deepEqual(await tagsOf(dist, 'interop/single'), ['again', 'moving', 'v1']);
    await assertManifestUnknown(dist, 'interop/single', 'extra');
    await assertServes(dist, 'interop/single', 'again', img!.first);
    await assertServes(dist, 'interop/single', 'v1', img!.single);
  });

  test('Berth logged no errors', () => {
    assert.deepEqual(berthErrors(started), []);
  });
});

describe("a storage root written by Berth is served by Distribution", { skip }, () => {
  const cleanup: string[] = [];
  let root: string;
  let img: ReturnType<typeof images> | undefined;
  let dist: DistributionProcess | undefined;
  let berth: BerthProcess | undefined;
  const started: BerthProcess[] = [];
  const startBerth = async (env?: Record<string, string>): Promise<BerthProcess> => {
    const b = await startProcess({ root, env });
    started.push(b);
    return b;
  };
  let artifact: { digest: string; body: Buffer } | undefined;

  /** Pushes an artifact manifest whose subject is `subject`, by digest, through Berth's API. */
  async function pushReferrer(server: Server, repo: string, subject: BuiltImage): Promise<{ digest: string; body: Buffer }> {
    const upload = async (data: Buffer): Promise<string> => {
      const digest = sha256(data);
      const res = await fetch(`${server.url}/v2/${repo}/blobs/uploads/?digest=${digest}`, {
        method: 'POST',
        body: new Uint8Array(data),
        headers: { 'Content-Type': 'application/octet-stream' },
      });
      assert.equal(res.status, 201, await res.text());
      return digest;
    };
    const empty = Buffer.from('{}');
    const sbom = Buffer.from(JSON.stringify({ spdxVersion: 'SPDX-2.3', name: 'berth interop test' }));
    const body = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        artifactType: 'application/spdx+json',
        config: { mediaType: OCI_EMPTY, digest: await upload(empty), size: empty.length },
        layers: [{ mediaType: 'application/spdx+json', digest: await upload(sbom), size: sbom.length }],
        subject: { mediaType: OCI_MANIFEST, digest: subject.digest, size: subject.blobs.get(subject.digest)!.length },
        annotations: { 'org.opencontainers.image.created': '2026-01-01T00:00:00Z' },
      }),
    );
    const digest = sha256(body);
    const res = await fetch(`${server.url}/v2/${repo}/manifests/${digest}`, {
      method: 'PUT',
      body: new Uint8Array(body),
      headers: { 'Content-Type': OCI_MANIFEST },
    });
    assert.equal(res.status, 201, await res.text());
    assert.equal(res.headers.get('docker-content-digest'), digest);
    assert.equal(res.headers.get('oci-subject'), subject.digest);
    return { digest, body };
  }

  async function referrersOf(server: Server, repo: string, subject: string): Promise<string[]> {
    const res = await fetch(`${server.url}/v2/${repo}/referrers/${subject}`);
    const text = await res.text();
    assert.equal(res.status, 200, `referrers: ${text}`);
    return (JSON.parse(text) as { manifests: { digest: string }[] }).manifests.map((m) => m.digest);
  }

  before(async () => {
    root = tempDir('berth-interop-r2-');
    cleanup.push(root);
    const i = (img = images('b2d'));
    for (const x of Object.values(i)) cleanup.push(x.dir);
    berth = await startBerth({ REGISTRY_STORAGE_DELETE_ENABLED: 'true' });
    await skopeoPush(i.single, berth.host, 'interop/single', 'v1');
    await skopeoPush(i.single, berth.host, 'interop/single', 'extra');
    await skopeoPush(i.multi, berth.host, 'interop/deep/multi', 'v1');
    await skopeoPush(i.first, berth.host, 'interop/single', 'moving');
    await skopeoPush(i.second, berth.host, 'interop/single', 'moving'); // overwritten
    await skopeoPush(i.doomed, berth.host, 'interop/single', 'doomed');
    await skopeoPush(i.single, berth.host, 'interop/single', 'untagged');
    // Berth deletes a manifest by digest (untagging it everywhere) and a tag by name.
    assert.equal((await deleteManifest(berth, 'interop/single', i.doomed.digest)).status, 202);
    assert.equal((await deleteManifest(berth, 'interop/single', 'untagged')).status, 202);
    assert.deepEqual(await tagsOf(berth, 'interop/single'), ['extra', 'moving', 'v1']);
    artifact = await pushReferrer(berth, 'interop/single', i.single);
    assert.deepEqual(await referrersOf(berth, 'interop/single', i.single.digest), [artifact.digest]);
    // The referrers index is on disk, where Distribution will meet it.
    assert.ok(existsSync(join(root, REPOS, 'interop/single/_berth')), 'Berth wrote no _berth/ directory');
    await berth.stop();
    berth = undefined;
    dist = await startDistribution({ root });
  });

  after(async () => {
    await Promise.allSettled([dist?.stop(), ...started.map((b) => b.stop())]);
    for (const d of cleanup) rmSync(d, { recursive: true, force: true });
  });

  test("Distribution's catalog and tags lists show Berth's repositories (and not _berth)", async () => {
    assert.deepEqual(await catalogOf(dist!), ['interop/deep/multi', 'interop/single']);
    assert.deepEqual(await tagsOf(dist!, 'interop/single'), ['extra', 'moving', 'v1']);
    assert.deepEqual(await tagsOf(dist!, 'interop/deep/multi'), ['v1']);
  });

  test('manifests by tag and digest, and blobs, byte-identical over the API', async () => {
    await assertServes(dist!, 'interop/single', 'v1', img!.single);
    await assertServes(dist!, 'interop/single', 'extra', img!.single);
    await assertServes(dist!, 'interop/deep/multi', 'v1', img!.multi);
  });

  test('skopeo pulls everything from Distribution byte-identically (single and multi-arch, by tag and digest)', async () => {
    await skopeoPullIdentical(dist!, 'interop/single', 'v1', img!.single, cleanup);
    await skopeoPullIdentical(dist!, 'interop/single', `@${img!.single.digest}`, img!.single, cleanup);
    await skopeoPullIdentical(dist!, 'interop/deep/multi', 'v1', img!.multi, cleanup);
    await skopeoPullIdentical(dist!, 'interop/deep/multi', `@${img!.multi.digest}`, img!.multi, cleanup);
  });

  test("Berth's tag overwrite, tag delete and manifest delete are what Distribution sees", async () => {
    const moving = await getManifest(dist!, 'interop/single', 'moving');
    assert.equal(moving.res.status, 200);
    assert.equal(moving.res.headers.get('docker-content-digest'), img!.second.digest);
    await skopeoPullIdentical(dist!, 'interop/single', 'moving', img!.second, cleanup);
    assert.equal((await getManifest(dist!, 'interop/single', img!.first.digest)).res.status, 200);
    await assertManifestUnknown(dist!, 'interop/single', 'doomed');
    await assertManifestUnknown(dist!, 'interop/single', img!.doomed.digest);
    await assertManifestUnknown(dist!, 'interop/single', 'untagged');
    // Untagging kept the manifest itself.
    assert.equal((await getManifest(dist!, 'interop/single', img!.single.digest)).res.status, 200);
  });

  test("the artifact pushed through Berth (with a subject) is served by Distribution; Berth's referrers index survives Distribution's delete", async () => {
    const got = await getManifest(dist!, 'interop/single', artifact!.digest);
    assert.equal(got.res.status, 200, `GET artifact from Distribution: ${got.body}`);
    assert.ok(got.body.equals(artifact!.body), 'artifact manifest bytes differ');

    // Distribution deletes the artifact; back on Berth, the referrers list drops it and the
    // subject still pulls.
    assert.equal((await deleteManifest(dist!, 'interop/single', artifact!.digest)).status, 202);
    await skopeoPush(img!.first, dist!.host, 'interop/single', 'from-distribution');
    await dist!.stop();
    dist = undefined;
    berth = await startBerth();
    assert.deepEqual(await referrersOf(berth, 'interop/single', img!.single.digest), []);
    await assertManifestUnknown(berth, 'interop/single', artifact!.digest);
    await assertServes(berth, 'interop/single', 'from-distribution', img!.first);
    await skopeoPullIdentical(berth, 'interop/single', 'v1', img!.single, cleanup);
    assert.deepEqual(await catalogOf(berth), ['interop/deep/multi', 'interop/single']);
  });

  test('Berth logged no errors', () => {
    assert.deepEqual(berthErrors(started), []);
  });
});
