// End-to-end on S3 (a real S3 server: Ceph RGW from ../shared/tools/ceph-s3.sh, found through
// the S3_* variables; a fresh bucket per run). Two `berth serve` processes share one bucket
// (the scale-out setup: stateless replicas over object storage). One is configured by a config
// file and redirects blob GETs to presigned S3 URLs (skopeo then fetches the bytes from RGW
// itself); the other is configured by REGISTRY_* variables alone, with
// `storage.redirect.disable: true`, and streams blobs through Berth. Images pushed by skopeo
// through either come back byte-identical through both, a multi-arch index included; a
// chunked upload hops between the processes, also after one is killed mid-PATCH; and a 2 GiB
// blob pushed with one streamed PATCH leaves Berth's resident memory within 100 MiB.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { HeadObjectCommand, ListMultipartUploadsCommand, type S3Client } from '@aws-sdk/client-s3';
import { startProcess, type BerthProcess } from '../helpers/berth.js';
import { fetchBlob, sha256 } from '../helpers/containers.js';
import { have } from '../helpers/exec.js';
import { Scratch, assertLayout, blobGets, checkMultiArchCopy, checkStreamedPull, copy, skopeo } from '../helpers/cloud-e2e.js';
import { createBucket, destroyBucket, listKeys, rawClient, s3FromEnv } from '../helpers/s3.js';

const ROOT = 'berth-e2e';
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** `len` bytes of a deterministic, incompressible stream (AES-256-CTR over zeros), in 1 MiB chunks. */
async function* pseudoRandom(len: number, seed: string): AsyncGenerator<Buffer> {
  const key = createHash('sha256').update(seed).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  const zeros = Buffer.alloc(MiB);
  for (let left = len; left > 0; left -= MiB) {
    yield cipher.update(left >= MiB ? zeros : zeros.subarray(0, left));
  }
}

/** VmRSS and VmHWM of a process, in bytes. */
function memoryOf(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)![1]) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/** Streams `body` as one PATCH with Transfer-Encoding: chunked (backpressure from the socket). */
function streamPatch(url: string, body: AsyncIterable<Buffer>, onChunk?: (sent: number) => Promise<void> | void): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'PATCH', headers: { 'Content-Type': 'application/octet-stream', 'Transfer-Encoding': 'chunked' } }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text }));
      res.on('error', reject);
    });
    req.on('error', reject);
    void (async () => {
      let sent = 0;
      for await (const chunk of body) {
        if (!req.write(chunk)) await new Promise<void>((r) => req.once('drain', () => r()));
        sent += chunk.length;
        await onChunk?.(sent);
      }
      req.end();
    })().catch((err: unknown) => {
      req.destroy(err as Error);
      reject(err);
    });
  });
}

describe('skopeo and HTTP clients through berth serve on S3 (Ceph RGW)', () => {
  const env = s3FromEnv();
  let skip: string | false = env.skip || (have('skopeo') ? false : 'skopeo is not installed');
  let client: S3Client;
  let bucket: string;
  /** Redirects blob GETs (the default), configured by a config file. */
  let redirecting: BerthProcess;
  /** storage.redirect.disable: true, configured by environment variables only. */
  let streaming: BerthProcess;
  let streamingEnv: Record<string, string>;
  const work = new Scratch('s3');

  before(async () => {
    if (env.skip !== false) return;
    const s3 = env.s3;
    client = rawClient(s3);
    bucket = await createBucket(client, 'e2e');
    if (skip) return;
    const config = [
      'version: 0.1',
      'storage:',
      '  s3:',
      `    region: ${s3.region}`,
      `    regionendpoint: ${s3.endpoint}`,
      `    bucket: ${bucket}`,
      `    rootdirectory: /${ROOT}`,
      `    accesskey: ${s3.accessKey}`,
      `    secretkey: ${s3.secretKey}`,
      '    forcepathstyle: true',
      '  delete:',
      '    enabled: true',
      '',
    ].join('\n');
    // startProcess also sets REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY; REGISTRY_STORAGE=s3
    // selects the s3 driver over it, as it would over a filesystem section in the file.
    redirecting = await startProcess({ config, env: { REGISTRY_STORAGE: 's3' } });
    streamingEnv = {
      REGISTRY_STORAGE: 's3',
      REGISTRY_STORAGE_S3_REGION: s3.region,
      REGISTRY_STORAGE_S3_REGIONENDPOINT: s3.endpoint,
      REGISTRY_STORAGE_S3_BUCKET: bucket,
      REGISTRY_STORAGE_S3_ROOTDIRECTORY: ROOT,
      REGISTRY_STORAGE_S3_ACCESSKEY: s3.accessKey,
      REGISTRY_STORAGE_S3_SECRETKEY: s3.secretKey,
      REGISTRY_STORAGE_S3_FORCEPATHSTYLE: 'true',
      REGISTRY_STORAGE_REDIRECT_DISABLE: 'true',
    };
    streaming = await startProcess({ env: streamingEnv });
  });

  after(async () => {
    await redirecting?.stop();
    await streaming?.stop();
    if (bucket) await destroyBucket(client, bucket).catch(() => {});
    work.cleanup();
  });

  const image = work.image;
  const scratch = work.dir;
  const uploadsIn = async (prefix: string) =>
    (await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: `${ROOT}/docker/registry/v2/${prefix}` }))).Uploads ?? [];

  /** Starts an upload session; returns its path. */
  async function startUpload(berth: BerthProcess, repo: string): Promise<string> {
    const res = await fetch(`${berth.url}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
    assert.equal(res.status, 202);
    return new URL(res.headers.get('location')!, berth.url).pathname;
  }

  async function patch(berth: BerthProcess, path: string, offset: number, part: Buffer<ArrayBuffer>): Promise<void> {
    const res = await fetch(`${berth.url}${path}`, {
      method: 'PATCH',
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': `${offset}-${offset + part.length - 1}` },
      body: part,
    });
    assert.equal(res.status, 202, `PATCH at ${offset}: ${await res.text()}`);
    assert.equal(res.headers.get('range'), `0-${offset + part.length - 1}`);
  }

  test('push, then pull through a 307 to a presigned URL and through Berth itself: byte-identical', { timeout: 300_000 }, async (t) => {
    if (skip) return t.skip(skip);
    // Layers of 12 MiB of incompressible data: more than one 10 MiB part per blob.
    const img = image({ tag: 'v1', layers: 2, layerSize: 12 * MiB, seed: 's3-single' });
    const m = img.manifests[0]!;
    const all = [img.digest, m.config.digest, ...m.layers.map((l) => l.digest)];
    await copy(img.ref, `docker://${redirecting.host}/e2e/single:v1`);

    // Stored in Distribution's layout under the root directory.
    for (const l of m.layers) {
      const key = `${ROOT}/docker/registry/v2/blobs/sha256/${l.digest.slice(7, 9)}/${l.digest.slice(7)}/data`;
      const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      assert.equal(head.ContentLength, l.size);
    }
    // No upload session and no multipart upload is left behind.
    assert.deepEqual(await listKeys(client, bucket, `${ROOT}/docker/registry/v2/repositories/e2e/single/_uploads/`), []);
    assert.deepEqual(await uploadsIn(''), []);

    // The redirecting process answers blob GETs with 307 to RGW; skopeo follows.
    const viaRedirect = join(scratch(), 'layout');
    await copy(`docker://${redirecting.host}/e2e/single:v1`, `oci:${viaRedirect}:v1`);
    assertLayout(viaRedirect, img, all);
    const redirected = await blobGets(redirecting, 'e2e/single', all.length - 1);
    assert.ok(redirected.length >= 3, `blob GETs: ${JSON.stringify(redirected)}`);
    assert.ok(redirected.every((e) => e.status === 307), `expected only 307s: ${JSON.stringify(redirected)}`);
    const direct = await fetchBlob(redirecting.url, 'e2e/single', m.layers[0]!.digest);
    assert.equal(direct.status, 307);
    const location = direct.headers.get('location')!;
    assert.ok(location.startsWith(`${env.s3!.endpoint}/${bucket}/${ROOT}/docker/registry/v2/blobs/sha256/`), location);
    assert.ok(new URL(location).searchParams.get('X-Amz-Signature'), 'a presigned URL');
    const head = await fetchBlob(redirecting.url, 'e2e/single', m.layers[0]!.digest, 'HEAD');
    assert.equal(head.status, 307);
    const headed = await fetch(head.headers.get('location')!, { method: 'HEAD' });
    assert.equal(headed.status, 200, 'the HEAD redirect is presigned for HEAD');
    assert.equal(headed.headers.get('content-length'), String(m.layers[0]!.size));

    // The other process (redirects disabled) streams the same stored blobs itself.
    await checkStreamedPull(work, streaming, img);
  });

  test('copy --all of a two-platform index through either process keeps every digest and byte', { timeout: 300_000 }, async (t) => {
    if (skip) return t.skip(skip);
    await checkMultiArchCopy(work, redirecting, streaming, 's3-multi');
  });

  test('a chunked upload hops between the two processes and completes with the right digest', { timeout: 120_000 }, async (t) => {
    if (skip) return t.skip(skip);
    // 12 MiB (a 10 MiB part and a 2 MiB last part), a tail below 5 MiB carried in storage, then 3 MiB.
    const parts = [Buffer.alloc(12 * MiB, 1), Buffer.from('middle chunk'), Buffer.alloc(3 * MiB, 7)];
    const whole = Buffer.concat(parts);
    const digest = sha256(whole);
    const path = await startUpload(redirecting, 'e2e/chunked');
    let offset = 0;
    const servers = [streaming, redirecting, streaming];
    for (const [i, part] of parts.entries()) {
      await patch(servers[i]!, path, offset, part);
      offset += part.length;
    }
    // The status is read from storage by the other process.
    const status = await fetch(`${redirecting.url}${path}`);
    assert.equal(status.status, 204);
    assert.equal(status.headers.get('range'), `0-${offset - 1}`);
    const done = await fetch(`${redirecting.url}${path}?digest=${digest}`, { method: 'PUT' });
    assert.equal(done.status, 201, await done.text());
    const got = await fetchBlob(streaming.url, 'e2e/chunked', digest);
    assert.equal(got.status, 200);
    assert.ok(got.body.equals(whole));
    assert.deepEqual(await uploadsIn('repositories/e2e/chunked/'), []);
  });

  test('kill -9 mid-PATCH: the other process reports the bytes held before it, continues, completes; no multipart upload is left', { timeout: 180_000 }, async (t) => {
    if (skip) return t.skip(skip);
    const doomed = await startProcess({ env: { ...streamingEnv, REGISTRY_STORAGE_REDIRECT_DISABLE: 'false' } });
    try {
      const first = Buffer.alloc(7 * MiB, 3);
      const path = await startUpload(doomed, 'e2e/killed');
      await patch(doomed, path, 0, first);
      // A second PATCH that never ends: once its multipart upload exists, the process dies.
      const dying = streamPatch(`${doomed.url}${path}`, pseudoRandom(64 * MiB, 'never-finished'), async (sent) => {
        if (sent < 20 * MiB) return;
        const deadline = Date.now() + 20_000;
        while ((await uploadsIn('repositories/e2e/killed/')).length === 0) {
          if (Date.now() > deadline) throw new Error('no multipart upload appeared');
          await new Promise((r) => setTimeout(r, 100));
        }
        doomed.kill('SIGKILL');
        await doomed.exited;
        throw new Error('killed');
      });
      await assert.rejects(dying);
      assert.equal((await uploadsIn('repositories/e2e/killed/')).length, 1, 'the dead PATCH left its multipart upload');

      const status = await fetch(`${streaming.url}${path}`);
      assert.equal(status.status, 204);
      assert.equal(status.headers.get('range'), `0-${first.length - 1}`, 'exactly the bytes of the completed PATCH');
      const rest = Buffer.alloc(2 * MiB, 9);
      await patch(streaming, path, first.length, rest);
      const digest = sha256(Buffer.concat([first, rest]));
      const done = await fetch(`${streaming.url}${path}?digest=${digest}`, { method: 'PUT' });
      assert.equal(done.status, 201, await done.text());
      // Removing the session (delete of _uploads/<uuid>) aborted the dead PATCH's upload.
      assert.deepEqual(await uploadsIn('repositories/e2e/killed/'), []);
    } finally {
      await doomed.stop();
    }
  });

  test('a 2 GiB blob pushed with one streamed PATCH raises Berth\'s RSS by less than 100 MiB', { timeout: 1_200_000 }, async (t) => {
    if (skip) return t.skip(skip);
    // A 5 GiB copy threshold, as docs/storage-s3.md recommends for Ceph RGW: there the move
    // into blobs/ is one CopyObject, which RGW does by reference, instead of a multipart copy
    // of 2 GiB more data (the in-RAM test cluster frees deleted data only after RGW's GC delay).
    const berth = await startProcess({ env: { ...streamingEnv, REGISTRY_STORAGE_S3_MULTIPARTCOPYTHRESHOLDSIZE: String(5 * GiB) } });
    try {
      const pid = berth.proc.pid!;
      // Warm up the code paths (SDK, sockets, hashing) with a small push.
      const warm = Buffer.alloc(11 * MiB, 5);
      const wpath = await startUpload(berth, 'e2e/big');
      await patch(berth, wpath, 0, warm);
      assert.equal((await fetch(`${berth.url}${wpath}?digest=${sha256(warm)}`, { method: 'PUT' })).status, 201);
      await new Promise((r) => setTimeout(r, 500));
      const baseline = memoryOf(pid).rss;
      // Reset the peak (VmHWM) to the current RSS, where the kernel allows it.
      try {
        writeFileSync(`/proc/${pid}/clear_refs`, '5');
      } catch {
        // without the reset, VmHWM may include an earlier peak: the check only gets stricter
      }
      let peak = baseline;
      const poll = setInterval(() => {
        try {
          peak = Math.max(peak, memoryOf(pid).rss);
        } catch {
          // the process is gone; the assertion below reports it
        }
      }, 100);
      const size = 2 * GiB;
      const hash = createHash('sha256');
      const body = (async function* () {
        for await (const chunk of pseudoRandom(size, 'two-gib')) {
          hash.update(chunk);
          yield chunk;
        }
      })();
      let hwm: number;
      const path = await startUpload(berth, 'e2e/big');
      const started = Date.now();
      try {
        const res = await streamPatch(`${berth.url}${path}`, body);
        assert.equal(res.status, 202, res.text);
        assert.equal(res.headers.range, `0-${size - 1}`);
        const digest = `sha256:${hash.digest('hex')}`;
        const done = await fetch(`${berth.url}${path}?digest=${digest}`, { method: 'PUT' });
        assert.equal(done.status, 201, await done.text());
        hwm = memoryOf(pid).hwm;
        const key = `${ROOT}/docker/registry/v2/blobs/sha256/${digest.slice(7, 9)}/${digest.slice(7)}/data`;
        assert.equal((await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }))).ContentLength, size);
        const headRes = await fetchBlob(berth.url, 'e2e/big', digest, 'HEAD');
        assert.equal(headRes.status, 200);
        assert.equal(headRes.headers.get('content-length'), String(size));
        // And the stored bytes, streamed back through Berth (redirects are off here), hash the same.
        const back = await fetch(`${berth.url}/v2/e2e/big/blobs/${digest}`);
        assert.equal(back.status, 200);
        const check = createHash('sha256');
        let n = 0;
        for await (const chunk of back.body as unknown as AsyncIterable<Uint8Array>) {
          check.update(chunk);
          n += chunk.length;
        }
        assert.equal(n, size);
        assert.equal(`sha256:${check.digest('hex')}`, digest);
        hwm = Math.max(hwm, memoryOf(pid).hwm);
      } finally {
        clearInterval(poll);
      }
      const growth = Math.max(peak, hwm) - baseline;
      t.diagnostic(
        `2 GiB pushed, moved and read back in ${((Date.now() - started) / 1000).toFixed(1)} s; RSS baseline ${(baseline / MiB).toFixed(1)} MiB, ` +
          `peak ${(Math.max(peak, hwm) / MiB).toFixed(1)} MiB (growth ${(growth / MiB).toFixed(1)} MiB)`,
      );
      assert.ok(growth < 100 * MiB, `RSS grew by ${(growth / MiB).toFixed(1)} MiB`);
      assert.deepEqual(await uploadsIn('repositories/e2e/big/'), []);
    } finally {
      await berth.stop();
    }
  });
});
