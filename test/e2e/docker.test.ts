// End to end with the real Docker engine: a private dockerd (test/helpers/dockerd.ts) loads
// test images, pushes them to a real `berth serve` process, pulls them back, and the docker
// CLI builds and pushes a manifest list. Docker treats 127.0.0.0/8 registries as insecure,
// so everything goes over plain HTTP.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { startProcess, tempDir, type BerthProcess } from '../helpers/berth.js';
import { dockerdUnavailable, startDockerd, type Dockerd } from '../helpers/dockerd.js';
import { have, run } from '../helpers/exec.js';
import { buildImage, type BuiltImage } from '../helpers/images.js';

const skip = dockerdUnavailable() || (have('skopeo') ? false : 'skopeo is not installed (needed to turn test images into docker-archive tarballs)');

const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const ACCEPT_ALL = [DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX].join(', ');

function sha256(b: Buffer): string {
  return 'sha256:' + createHash('sha256').update(b).digest('hex');
}

const PREMATURE_CLOSE = /ERR_STREAM_PREMATURE_CLOSE/;

/** Error (50) and fatal (60) lines of a pino log that `keep` selects, with the access-log lines of their requests. */
function loggedErrors(output: string, keep: (line: string) => boolean): { errors: string[]; context: string[] } {
  const lines = output.split('\n');
  const errors = lines.filter((l) => /"level":(50|60)/.test(l) && keep(l));
  const idOf = (l: string) => /"requestId":"([^"]+)"/.exec(l)?.[1];
  const ids = new Set(errors.map(idOf).filter(Boolean));
  return { errors, context: lines.filter((l) => /"msg":"request"/.test(l) && ids.has(idOf(l))) };
}

interface Recorded {
  method: string;
  path: string;
  transferEncoding?: string;
  contentLength?: string;
  status?: number;
  bytes: number;
}

/**
 * A pass-through HTTP proxy in front of Berth that records each request's method, path,
 * framing and status, so the test can see how docker talked to the registry (the Host header
 * is forwarded unchanged, so Berth's Location URLs point back at the proxy).
 */
async function recordingProxy(targetPort: number): Promise<{ host: string; log: Recorded[]; close(): Promise<void> }> {
  const log: Recorded[] = [];
  const agent = new http.Agent({ keepAlive: true });
  const server = http.createServer((req: IncomingMessage, res: ServerResponse) => {
    const entry: Recorded = {
      method: req.method ?? '',
      path: req.url ?? '',
      transferEncoding: req.headers['transfer-encoding'],
      contentLength: req.headers['content-length'],
      bytes: 0,
    };
    log.push(entry);
    req.on('data', (d: Buffer) => (entry.bytes += d.length));
    const upstream = http.request(
      { host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers: req.headers, agent },
      (ures) => {
        entry.status = ures.statusCode;
        res.writeHead(ures.statusCode ?? 502, ures.headers);
        ures.pipe(res);
      },
    );
    upstream.on('error', () => {
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    });
    req.pipe(upstream);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    log,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        agent.destroy();
        server.close(() => r());
      }),
  };
}

describe('docker engine against berth serve', { skip }, () => {
  let engine: Dockerd | undefined;
  let berth: BerthProcess | undefined;
  let proxy: Awaited<ReturnType<typeof recordingProxy>> | undefined;
  const dirs: string[] = [];

  before(async () => {
    [engine, berth] = await Promise.all([startDockerd(), startProcess({ env: { REGISTRY_STORAGE_DELETE_ENABLED: 'true' } })]);
    proxy = await recordingProxy(berth.port);
  });

  after(async () => {
    await Promise.allSettled([engine?.stop(), berth?.stop(), proxy?.close()]);
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  /** Builds an image, turns it into a docker-archive and `docker load`s it as `name`. */
  async function loadImage(name: string, opts: Parameters<typeof buildImage>[0]): Promise<{ image: BuiltImage; id: string }> {
    const image = buildImage(opts);
    dirs.push(image.dir);
    const work = tempDir('berth-docker-');
    dirs.push(work);
    const tar = join(work, 'image.tar');
    await run('skopeo', ['copy', '--quiet', image.ref, `docker-archive:${tar}:${name}`]);
    const loaded = await engine!.docker(['load', '--input', tar]);
    assert.match(loaded.stdout, new RegExp(`Loaded image: ${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    const id = (await engine!.docker(['image', 'inspect', '--format', '{{.Id}}', name])).stdout.trim();
    assert.match(id, /^sha256:[0-9a-f]{64}$/);
    return { image, id };
  }

  /** `docker push`, returning the manifest digest docker reports. */
  async function push(ref: string): Promise<{ digest: string; size: number; output: string }> {
    const r = await engine!.docker(['push', ref]);
    const m = /digest: (sha256:[0-9a-f]{64}) size: (\d+)/.exec(r.stdout);
    assert.ok(m, `no digest in docker push output:\n${r.stdout}\n${r.stderr}`);
    return { digest: m[1]!, size: Number(m[2]), output: r.stdout };
  }

  async function headManifest(repo: string, ref: string): Promise<Response> {
    const res = await fetch(`${berth!.url}/v2/${repo}/manifests/${ref}`, { method: 'HEAD', headers: { Accept: ACCEPT_ALL } });
    await res.arrayBuffer();
    return res;
  }

  async function getManifest(repo: string, ref: string, accept = ACCEPT_ALL): Promise<{ res: Response; body: Buffer }> {
    const res = await fetch(`${berth!.url}/v2/${repo}/manifests/${ref}`, { headers: { Accept: accept } });
    return { res, body: Buffer.from(await res.arrayBuffer()) };
  }

  test('docker load, tag, push (streamed PATCH), rmi, pull: same image id and manifest digest', async () => {
    const local = 'berth-e2e/app:v1';
    const { image, id } = await loadImage(local, { tag: 'v1', layers: 2, layerSize: 2 * 1024 * 1024, seed: 'docker-push-pull' });
    // docker-archive keeps the config bytes, so the image id is the config's digest.
    assert.equal(id, image.manifests[0]!.config.digest);

    // Through the recording proxy, to see how dockerd sends blobs.
    const remote = `${proxy!.host}/e2e/app:v1`;
    await engine!.docker(['tag', local, remote]);
    const pushed = await push(remote);

    const streamed = proxy!.log.filter(
      (r) => r.method === 'PATCH' && r.path.startsWith('/v2/e2e/app/blobs/uploads/') && r.transferEncoding === 'chunked',
    );
    assert.ok(
      streamed.length >= 3, // two layers and the config
      `expected streamed (chunked) PATCH uploads, saw:\n${proxy!.log.map((r) => `${r.method} ${r.path} te=${r.transferEncoding} cl=${r.contentLength} -> ${r.status}`).join('\n')}`,
    );
    for (const r of streamed) assert.equal(r.status, 202, `${r.method} ${r.path} -> ${r.status}`);
    assert.ok(streamed.some((r) => r.bytes > 2 * 1024 * 1024), 'a layer of more than 2 MiB went through one streamed PATCH');
    const put = proxy!.log.find((r) => r.method === 'PUT' && r.path === '/v2/e2e/app/manifests/v1');
    assert.equal(put?.status, 201);

    // What Berth serves is what docker pushed.
    const head = await headManifest('e2e/app', 'v1');
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('docker-content-digest'), pushed.digest);
    assert.equal(head.headers.get('content-type'), DOCKER_MANIFEST);
    assert.equal(head.headers.get('content-length'), String(pushed.size));
    const { res, body } = await getManifest('e2e/app', pushed.digest);
    assert.equal(res.status, 200);
    assert.equal(sha256(body), pushed.digest);
    const manifest = JSON.parse(body.toString()) as { mediaType: string; config: { digest: string; size: number }; layers: { digest: string; size: number }[] };
    assert.equal(manifest.mediaType, DOCKER_MANIFEST);
    assert.equal(manifest.config.digest, id);
    assert.equal(manifest.layers.length, 2);
    for (const layer of [...manifest.layers, manifest.config]) {
      const b = await fetch(`${berth!.url}/v2/e2e/app/blobs/${layer.digest}`);
      const bytes = Buffer.from(await b.arrayBuffer());
      assert.equal(b.status, 200, `blob ${layer.digest}`);
      assert.equal(sha256(bytes), layer.digest);
      assert.equal(bytes.length, layer.size);
    }
    const tags = (await (await fetch(`${berth!.url}/v2/e2e/app/tags/list`)).json()) as { tags: string[] };
    assert.deepEqual(tags.tags, ['v1']);

    // The same image into another repository: dockerd mounts the blobs it just pushed
    // (POST ?mount=&from=) instead of sending them again.
    const copy = `${proxy!.host}/e2e/app-copy:v1`;
    await engine!.docker(['tag', local, copy]);
    const before = proxy!.log.length;
    assert.equal((await push(copy)).digest, pushed.digest);
    const second = proxy!.log.slice(before);
    const mounts = second.filter((r) => r.method === 'POST' && /^\/v2\/e2e\/app-copy\/blobs\/uploads\/\?.*mount=/.test(r.path));
    assert.ok(mounts.length >= 2, `expected cross-repository mounts, saw:\n${second.map((r) => `${r.method} ${r.path} -> ${r.status}`).join('\n')}`);
    for (const r of mounts) assert.equal(r.status, 201, `${r.method} ${r.path} -> ${r.status}`);
    // dockerd re-sends only the small image config (it never mounts configs), not the layers.
    const sent = second.filter((r) => r.method === 'PATCH' || (r.method === 'PUT' && r.path.includes('/blobs/uploads/')));
    assert.ok(
      sent.every((r) => r.bytes <= manifest.config.size || r.path.includes(encodeURIComponent(manifest.config.digest))),
      `layer bytes were sent again:\n${second.map((r) => `${r.method} ${r.path} te=${r.transferEncoding} bytes=${r.bytes} -> ${r.status}`).join('\n')}`,
    );
    await engine!.docker(['image', 'rm', copy]);

    // Gone locally…
    await engine!.docker(['image', 'rm', remote, local]);
    const gone = await engine!.docker(['image', 'inspect', id], { allowFail: true });
    assert.notEqual(gone.code, 0, 'the image is still present locally after docker image rm');

    // …and back from Berth (directly, not through the proxy this time).
    const direct = `${berth!.host}/e2e/app:v1`;
    const pulled = await engine!.docker(['pull', direct]);
    assert.match(pulled.stdout, new RegExp(`Digest: ${pushed.digest}`));
    const info = JSON.parse((await engine!.docker(['image', 'inspect', direct])).stdout) as { Id: string; RepoDigests: string[] }[];
    assert.equal(info[0]!.Id, id);
    assert.ok(info[0]!.RepoDigests.includes(`${berth!.host}/e2e/app@${pushed.digest}`), JSON.stringify(info[0]!.RepoDigests));

    // By digest as well.
    await engine!.docker(['image', 'rm', direct]);
    const byDigest = `${berth!.host}/e2e/app@${pushed.digest}`;
    await engine!.docker(['pull', byDigest]);
    assert.equal((await engine!.docker(['image', 'inspect', '--format', '{{.Id}}', byDigest])).stdout.trim(), id);

    // A tag Berth does not have is a clean "manifest unknown" for docker.
    const missing = await engine!.docker(['pull', `${berth!.host}/e2e/app:missing`], { allowFail: true });
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /manifest unknown|not found/i);
  });

  test('docker manifest create/push --insecure: a manifest list of two platform images', async () => {
    const amd = await loadImage('berth-e2e/multi:amd64', { tag: 'amd64', platforms: ['linux/amd64'], layers: 1, layerSize: 256 * 1024, seed: 'docker-list-amd64' });
    const arm = await loadImage('berth-e2e/multi:arm64', { tag: 'arm64', platforms: ['linux/arm64'], layers: 1, layerSize: 256 * 1024, seed: 'docker-list-arm64' });
    const repo = 'e2e/multi';
    const pushedChildren: Record<string, string> = {};
    for (const [arch, img] of [['amd64', amd], ['arm64', arm]] as const) {
      const remote = `${berth!.host}/${repo}:${arch}`;
      await engine!.docker(['tag', `berth-e2e/multi:${arch}`, remote]);
      pushedChildren[arch] = (await push(remote)).digest;
      const head = await headManifest(repo, arch);
      assert.equal(head.headers.get('docker-content-digest'), pushedChildren[arch]);
      assert.equal(img.id, img.image.manifests[0]!.config.digest);
    }

    const list = `${berth!.host}/${repo}:list`;
    await engine!.docker(['manifest', 'create', '--insecure', list, `${berth!.host}/${repo}:amd64`, `${berth!.host}/${repo}:arm64`]);
    const pushedList = await engine!.docker(['manifest', 'push', '--insecure', '--purge', list]);
    const m = /(sha256:[0-9a-f]{64})/.exec(pushedList.stdout);
    assert.ok(m, `no digest in docker manifest push output:\n${pushedList.stdout}\n${pushedList.stderr}`);
    const listDigest = m[1]!;

    // The list as Berth serves it: by tag and by digest, byte-identical, children present.
    const byTag = await getManifest(repo, 'list');
    assert.equal(byTag.res.status, 200);
    assert.equal(byTag.res.headers.get('content-type'), DOCKER_LIST);
    assert.equal(byTag.res.headers.get('docker-content-digest'), listDigest);
    assert.equal(sha256(byTag.body), listDigest);
    const byDigest = await getManifest(repo, listDigest);
    assert.equal(byDigest.res.status, 200);
    assert.deepEqual(byDigest.body, byTag.body);

    const parsed = JSON.parse(byTag.body.toString()) as {
      mediaType: string;
      manifests: { mediaType: string; digest: string; size: number; platform: { os: string; architecture: string } }[];
    };
    assert.equal(parsed.mediaType, DOCKER_LIST);
    const byArch = Object.fromEntries(parsed.manifests.map((c) => [c.platform.architecture, c]));
    assert.deepEqual(Object.keys(byArch).sort(), ['amd64', 'arm64']);
    for (const arch of ['amd64', 'arm64']) {
      const child = byArch[arch]!;
      assert.equal(child.platform.os, 'linux');
      assert.equal(child.digest, pushedChildren[arch]);
      assert.equal(child.mediaType, DOCKER_MANIFEST);
      const head = await headManifest(repo, child.digest);
      assert.equal(head.status, 200, `child ${arch} ${child.digest}`);
      assert.equal(head.headers.get('docker-content-digest'), child.digest);
      assert.equal(head.headers.get('content-length'), String(child.size));
    }
    const tags = (await (await fetch(`${berth!.url}/v2/${repo}/tags/list`)).json()) as { tags: string[] };
    assert.deepEqual([...tags.tags].sort(), ['amd64', 'arm64', 'list']);

    // The docker CLI reads the list back, and the engine pulls its arm64 image through it.
    const inspected = JSON.parse((await engine!.docker(['manifest', 'inspect', '--insecure', list])).stdout) as { manifests: { digest: string }[] };
    assert.deepEqual(inspected.manifests.map((c) => c.digest).sort(), Object.values(pushedChildren).sort());
    await engine!.docker(['image', 'rm', `berth-e2e/multi:arm64`, `${berth!.host}/${repo}:arm64`]);
    await engine!.docker(['pull', '--platform', 'linux/arm64', list]);
    assert.equal((await engine!.docker(['image', 'inspect', '--format', '{{.Id}}', list])).stdout.trim(), arm.id);
  });

  test('no server errors along the way', () => {
    const failed = proxy!.log.filter((r) => r.status === undefined || r.status >= 500);
    assert.deepEqual(failed, [], 'requests through the proxy that failed');
    const { errors, context } = loggedErrors(berth!.output(), (l) => !PREMATURE_CLOSE.test(l));
    assert.deepEqual(errors, [], `Berth logged errors; the requests:\n${context.join('\n')}`);
  });

  test('a client hanging up after the whole body is not an error', () => {
    const { errors, context } = loggedErrors(berth!.output(), (l) => PREMATURE_CLOSE.test(l));
    assert.deepEqual(errors, [], `Berth logged errors; the requests:\n${context.join('\n')}`);
  });
});
