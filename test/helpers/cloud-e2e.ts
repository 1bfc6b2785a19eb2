// What the cloud-driver end-to-end tests (S3, Azure, GCS) share: skopeo with scratch directories,
// checks of pulled OCI layouts and access logs, and the multi-arch copy through two Berth
// processes sharing one bucket/container (one redirecting blob GETs, one streaming them).
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, type BerthProcess } from './berth.js';
import { accessLog, buildImageIn, fetchBlob, fetchManifest, lowercaseTempDir, type AccessLogEntry } from './containers.js';
import { run } from './exec.js';
import type { BuiltImage } from './images.js';

export const skopeo = (args: string[]) => run('skopeo', ['--insecure-policy', ...args], { timeoutMs: 180_000 });
export const copy = (src: string, dest: string, extra: string[] = []) =>
  skopeo(['copy', '--src-tls-verify=false', '--dest-tls-verify=false', ...extra, src, dest]);

/** Test images and output directories, all removed by cleanup(). */
export class Scratch {
  private readonly dirs: string[] = [];

  constructor(private readonly label: string) {}

  image = (opts: Parameters<typeof buildImageIn>[1]): BuiltImage => {
    const dir = lowercaseTempDir();
    this.dirs.push(dir);
    return buildImageIn(dir, opts);
  };

  dir = (): string => {
    const d = tempDir(`berth-${this.label}-out-`);
    this.dirs.push(d);
    return d;
  };

  cleanup(): void {
    for (const d of this.dirs) rmSync(d, { recursive: true, force: true });
  }
}

/** Every blob of `img` in an OCI layout equals what was built. */
export function assertLayout(dir: string, img: BuiltImage, digests: Iterable<string>): void {
  const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
  assert.equal(index.manifests[0]!.digest, img.digest);
  for (const d of digests) {
    const got = readFileSync(join(dir, 'blobs', ...d.split(':')));
    assert.ok(got.equals(img.blobs.get(d)!), `blob ${d} differs`);
  }
}

/**
 * Access-log records of blob GETs for `repo` in a process's output, once there are at least
 * `count` (Berth logs asynchronously: the last records may land after skopeo exits).
 */
export async function blobGets(berth: BerthProcess, repo: string, count: number): Promise<AccessLogEntry[]> {
  const prefix = `/v2/${repo}/blobs/sha256:`;
  const deadline = Date.now() + 5000;
  for (;;) {
    const gets = accessLog(berth.output()).filter((e) => e.method === 'GET' && e.path.startsWith(prefix));
    if (gets.length >= count) return gets;
    if (Date.now() > deadline) throw new Error(`${gets.length} of ${count} blob GETs of ${repo} logged:\n${berth.output().slice(-4000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Pulls `e2e/single:v1` (one platform) through a process that serves blobs itself: the OCI
 * layout equals what was built, every blob GET was answered 200 (no redirect), and the
 * second layer fetched directly comes back byte-exact.
 */
export async function checkStreamedPull(scratch: Scratch, berth: BerthProcess, img: BuiltImage): Promise<void> {
  const m = img.manifests[0]!;
  const all = [img.digest, m.config.digest, ...m.layers.map((l) => l.digest)];
  const out = join(scratch.dir(), 'layout');
  await copy(`docker://${berth.host}/e2e/single:v1`, `oci:${out}:v1`);
  assertLayout(out, img, all);
  const gets = await blobGets(berth, 'e2e/single', all.length - 1);
  assert.ok(gets.length >= 3 && gets.every((e) => e.status === 200), `expected only 200s: ${JSON.stringify(gets)}`);
  const got = await fetchBlob(berth.url, 'e2e/single', m.layers[1]!.digest);
  assert.equal(got.status, 200);
  assert.ok(got.body.equals(img.blobs.get(m.layers[1]!.digest)!));
}

/**
 * `copy --all` of a two-platform index pushed through `streaming` and read back through both
 * processes keeps every digest and byte; `redirecting` answers blob GETs with 307s (or, with
 * `redirects: false`, for a driver that has no way to sign a URL, with 200s of its own); a
 * registry-to-registry copy within Berth (blobs mounted) is pulled per platform.
 */
export async function checkMultiArchCopy(
  scratch: Scratch,
  redirecting: BerthProcess,
  streaming: BerthProcess,
  seed: string,
  { redirects = true }: { redirects?: boolean } = {},
): Promise<void> {
  const img = scratch.image({ tag: 'v1', platforms: ['linux/amd64', 'linux/arm64'], layers: 2, seed });
  await copy(img.ref, `docker://${streaming.host}/e2e/multi:v1`, ['--all']);
  for (const berth of [redirecting, streaming]) {
    const top = await fetchManifest(berth.url, 'e2e/multi', 'v1');
    assert.equal(top.status, 200);
    assert.equal(top.headers.get('docker-content-digest'), img.digest);
    assert.ok(top.body.equals(img.blobs.get(img.digest)!));
    const out = join(scratch.dir(), 'all');
    await copy(`docker://${berth.host}/e2e/multi:v1`, `oci:${out}:v1`, ['--all']);
    assertLayout(out, img, img.blobs.keys());
  }
  const redirected = await blobGets(redirecting, 'e2e/multi', img.blobs.size - 3);
  const want = redirects ? 307 : 200;
  assert.ok(redirected.length > 0 && redirected.every((e) => e.status === want), JSON.stringify(redirected));
  await copy(`docker://${redirecting.host}/e2e/multi:v1`, `docker://${redirecting.host}/e2e/multi-copy:v1`, ['--all']);
  const arm = img.manifests.find((m) => m.platform.architecture === 'arm64')!;
  const out = join(scratch.dir(), 'arm');
  await skopeo(['--override-arch', 'arm64', 'copy', '--src-tls-verify=false', `docker://${streaming.host}/e2e/multi-copy:v1`, `oci:${out}:v1`]);
  const index = JSON.parse(readFileSync(join(out, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
  assert.equal(index.manifests[0]!.digest, arm.digest);
}
