// End-to-end on Azure Blob Storage: two `berth serve` processes share one Azurite container
// (the scale-out setup: stateless replicas over object storage). One is configured by a
// config file and redirects blob GETs to read-only SAS URLs (skopeo then fetches the bytes
// from Azurite itself); the other is configured by REGISTRY_* variables alone, with
// `storage.redirect.disable: true`, and streams blobs through Berth. Images pushed by skopeo
// through either come back byte-identical through both, a multi-arch index included, and a
// chunked upload can hop between the two processes.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { BlobServiceClient, StorageSharedKeyCredential, type ContainerClient } from '@azure/storage-blob';
import { startProcess, type BerthProcess } from '../helpers/berth.js';
import { containerName, tryStartAzurite, type RunningAzurite } from '../helpers/azurite.js';
import { fetchBlob, sha256 } from '../helpers/containers.js';
import { have } from '../helpers/exec.js';
import { Scratch, assertLayout, blobGets, checkMultiArchCopy, checkStreamedPull, copy, skopeo } from '../helpers/cloud-e2e.js';

const ROOT = 'berth-e2e';

describe('skopeo through berth serve on Azure (Azurite)', () => {
  let azurite: RunningAzurite | undefined;
  let skip: string | false = have('skopeo') ? false : 'skopeo is not installed';
  let container: string;
  let raw: ContainerClient;
  /** Redirects blob GETs (the default), configured by a config file. */
  let redirecting: BerthProcess;
  /** storage.redirect.disable: true, configured by environment variables only. */
  let streaming: BerthProcess;
  const work = new Scratch('azure');

  before(async () => {
    if (skip) return;
    const started = await tryStartAzurite();
    if (!started.azurite) {
      skip = started.skip;
      return;
    }
    const az = (azurite = started.azurite);
    container = containerName('e2e');
    raw = new BlobServiceClient(az.serviceUrl, new StorageSharedKeyCredential(az.account, az.key)).getContainerClient(container);
    const config = [
      'version: 0.1',
      'storage:',
      '  azure:',
      `    accountname: ${az.account}`,
      `    accountkey: "${az.key}"`,
      `    container: ${container}`,
      `    rootdirectory: /${ROOT}`,
      `    serviceurl: ${az.serviceUrl}`,
      '  delete:',
      '    enabled: true',
      '',
    ].join('\n');
    // startProcess also sets REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY; REGISTRY_STORAGE=azure
    // selects the azure driver over it, as it would over a filesystem section in the file.
    redirecting = await startProcess({ config, env: { REGISTRY_STORAGE: 'azure' } });
    streaming = await startProcess({
      env: {
        REGISTRY_STORAGE: 'azure',
        REGISTRY_STORAGE_AZURE_ACCOUNTNAME: az.account,
        REGISTRY_STORAGE_AZURE_ACCOUNTKEY: az.key,
        REGISTRY_STORAGE_AZURE_CONTAINER: container,
        REGISTRY_STORAGE_AZURE_ROOTDIRECTORY: ROOT,
        REGISTRY_STORAGE_AZURE_SERVICEURL: az.serviceUrl,
        REGISTRY_STORAGE_REDIRECT_DISABLE: 'true',
      },
    });
  });

  after(async () => {
    await redirecting?.stop();
    await streaming?.stop();
    await raw?.deleteIfExists().catch(() => {});
    await azurite?.stop();
    work.cleanup();
  });

  const image = work.image;
  const scratch = work.dir;

  test('push, then pull through a 307 to a SAS URL and through Berth itself: byte-identical', { timeout: 300_000 }, async (t) => {
    if (skip) return t.skip(skip);
    // Layers of 6 MiB of incompressible data: several 4 MiB blocks per blob.
    const img = image({ tag: 'v1', layers: 2, layerSize: 6 << 20, seed: 'azure-single' });
    const m = img.manifests[0]!;
    const all = [img.digest, m.config.digest, ...m.layers.map((l) => l.digest)];
    await copy(img.ref, `docker://${redirecting.host}/e2e/single:v1`);

    // Stored in Distribution's layout under the root directory, as block blobs.
    for (const l of m.layers) {
      const name = `${ROOT}/docker/registry/v2/blobs/sha256/${l.digest.slice(7, 9)}/${l.digest.slice(7)}/data`;
      const props = await raw.getBlobClient(name).getProperties();
      assert.equal(props.contentLength, l.size);
      assert.equal(props.blobType, 'BlockBlob');
    }
    // No upload session is left behind.
    const uploads: string[] = [];
    for await (const b of raw.listBlobsFlat({ prefix: `${ROOT}/docker/registry/v2/repositories/e2e/single/_uploads/` })) uploads.push(b.name);
    assert.deepEqual(uploads, []);

    // The redirecting process answers blob GETs with 307 to Azurite; skopeo follows.
    const viaRedirect = join(scratch(), 'layout');
    await copy(`docker://${redirecting.host}/e2e/single:v1`, `oci:${viaRedirect}:v1`);
    assertLayout(viaRedirect, img, all);
    const redirected = await blobGets(redirecting, 'e2e/single', all.length - 1);
    assert.ok(redirected.length >= 3, `blob GETs: ${JSON.stringify(redirected)}`);
    assert.ok(redirected.every((e) => e.status === 307), `expected only 307s: ${JSON.stringify(redirected)}`);
    const direct = await fetchBlob(redirecting.url, 'e2e/single', m.layers[0]!.digest);
    assert.equal(direct.status, 307);
    const location = direct.headers.get('location')!;
    assert.ok(location.startsWith(`${azurite!.serviceUrl}/${container}/${ROOT}/docker/registry/v2/blobs/sha256/`), location);
    assert.equal(new URL(location).searchParams.get('sp'), 'r', 'a read-only SAS');

    // The other process (redirects disabled) streams the same stored blobs itself.
    await checkStreamedPull(work, streaming, img);
  });

  test('copy --all of a two-platform index through either process keeps every digest and byte', { timeout: 300_000 }, async (t) => {
    if (skip) return t.skip(skip);
    await checkMultiArchCopy(work, redirecting, streaming, 'azure-multi');
  });

  test('a chunked upload hops between the two processes and completes with the right digest', { timeout: 120_000 }, async (t) => {
    if (skip) return t.skip(skip);
    const parts = [Buffer.alloc(5 << 20, 1), Buffer.from('middle chunk'), Buffer.alloc(3 << 20, 7)];
    const whole = Buffer.concat(parts);
    const digest = sha256(whole);
    const start = await fetch(`${redirecting.url}/v2/e2e/chunked/blobs/uploads/`, { method: 'POST' });
    assert.equal(start.status, 202);
    const path = new URL(start.headers.get('location')!, redirecting.url).pathname;
    let offset = 0;
    const servers = [streaming, redirecting, streaming];
    for (const [i, part] of parts.entries()) {
      const res = await fetch(`${servers[i]!.url}${path}`, {
        method: 'PATCH',
        headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': `${offset}-${offset + part.length - 1}` },
        body: part,
      });
      assert.equal(res.status, 202, `PATCH ${i}: ${await res.text()}`);
      offset += part.length;
      assert.equal(res.headers.get('range'), `0-${offset - 1}`);
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
  });
});
