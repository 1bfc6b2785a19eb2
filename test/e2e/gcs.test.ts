// End-to-end on Google Cloud Storage, as far as the firebase-tools storage emulator allows:
// two `berth serve` processes share one emulator bucket (the scale-out setup). One is
// configured by a config file with redirects left on (the default): without a service
// account key it has no way to sign a URL, so it streams blobs itself; the other is
// configured by REGISTRY_* variables alone, with `storage.redirect.disable: true`. Images
// pushed by skopeo through either come back byte-identical through both, a multi-arch index
// included. (Signed-URL redirects need credentials, whose token exchange this closed network
// cannot do; test/storage/gcs.test.ts checks the URLs themselves.)
//
// skopeo sends each blob in one PATCH, so no upload here appends to a non-empty object: the
// emulator's missing compose is not in the way. Layers stay below its 130 MB request limit
// and below the chunk size (it finalizes a resumable upload on its first PUT).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Storage, type Bucket } from '@google-cloud/storage';
import { startProcess, type BerthProcess } from '../helpers/berth.js';
import { NO_COMPOSE, bucketName, tryStartGcsEmulator, type RunningGcsEmulator } from '../helpers/gcs-emulator.js';
import { fetchBlob } from '../helpers/containers.js';
import { have } from '../helpers/exec.js';
import { Scratch, checkMultiArchCopy, checkStreamedPull, copy } from '../helpers/cloud-e2e.js';

const ROOT = 'berth-e2e';
const CHUNK = String(128 * 1024 * 1024);

describe('skopeo through berth serve on GCS (firebase-tools storage emulator)', () => {
  let emulator: RunningGcsEmulator | undefined;
  let skip: string | false = have('skopeo') ? false : 'skopeo is not installed';
  let bucket: string;
  let raw: Bucket;
  /** Redirects left on (the default), configured by a config file; no key, so it streams. */
  let defaults: BerthProcess;
  /** storage.redirect.disable: true, configured by environment variables only. */
  let streaming: BerthProcess;
  const work = new Scratch('gcs');

  before(async () => {
    if (skip) return;
    const started = await tryStartGcsEmulator();
    if (!started.emulator) {
      skip = started.skip;
      return;
    }
    emulator = started.emulator;
    bucket = bucketName('e2e');
    raw = new Storage({ apiEndpoint: emulator.endpoint, useAuthWithCustomEndpoint: false }).bucket(bucket);
    const config = [
      'version: 0.1',
      'storage:',
      '  gcs:',
      `    bucket: ${bucket}`,
      `    rootdirectory: /${ROOT}`,
      `    endpoint: ${emulator.endpoint}`,
      `    chunksize: ${CHUNK}`,
      '  delete:',
      '    enabled: true',
      '',
    ].join('\n');
    // REGISTRY_STORAGE=gcs selects the gcs driver over startProcess's filesystem variable.
    defaults = await startProcess({ config, env: { REGISTRY_STORAGE: 'gcs' } });
    streaming = await startProcess({
      env: {
        REGISTRY_STORAGE: 'gcs',
        REGISTRY_STORAGE_GCS_BUCKET: bucket,
        REGISTRY_STORAGE_GCS_ROOTDIRECTORY: ROOT,
        REGISTRY_STORAGE_GCS_ENDPOINT: emulator.endpoint,
        REGISTRY_STORAGE_GCS_CHUNKSIZE: CHUNK,
        REGISTRY_STORAGE_REDIRECT_DISABLE: 'true',
      },
    });
  });

  after(async () => {
    await defaults?.stop();
    await streaming?.stop();
    await emulator?.stop();
    work.cleanup();
  });

  const names = async (prefix: string) => (await raw.getFiles({ prefix }))[0].map((f) => f.name);

  test('push, then pull through both processes: byte-identical, stored in Distribution layout', { timeout: 300_000 }, async (t) => {
    if (skip) return t.skip(skip);
    // Layers of 40 MiB of incompressible data.
    const img = work.image({ tag: 'v1', layers: 2, layerSize: 40 << 20, seed: 'gcs-single' });
    const m = img.manifests[0]!;
    await copy(img.ref, `docker://${defaults.host}/e2e/single:v1`);

    for (const l of m.layers) {
      const [meta] = await raw.file(`${ROOT}/docker/registry/v2/blobs/sha256/${l.digest.slice(7, 9)}/${l.digest.slice(7)}/data`).getMetadata();
      assert.equal(Number(meta.size), l.size);
    }
    assert.deepEqual(await names(`${ROOT}/docker/registry/v2/repositories/e2e/single/_uploads/`), [], 'no upload session is left');
    assert.deepEqual(await names(`${ROOT}/~berth-parts/`), [], 'no append part is left');

    // No key to sign a URL with: both processes, redirects on or off, stream blobs themselves.
    for (const berth of [defaults, streaming]) await checkStreamedPull(work, berth, img);
  });

  test('copy --all of a two-platform index through either process keeps every digest and byte', { timeout: 300_000 }, async (t) => {
    if (skip) return t.skip(skip);
    await checkMultiArchCopy(work, defaults, streaming, 'gcs-multi', { redirects: false });
  });

  test('an upload started on one process is sent to the other and completed on the first', { timeout: 120_000 }, async (t) => {
    if (skip) return t.skip(skip);
    // One PATCH only: a second one would append to a non-empty object, which needs GCS's
    // compose (${NO_COMPOSE}).
    const body = Buffer.alloc(9 << 20, 3);
    const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
    const start = await fetch(`${defaults.url}/v2/e2e/hop/blobs/uploads/`, { method: 'POST' });
    assert.equal(start.status, 202);
    const path = new URL(start.headers.get('location')!, defaults.url).pathname;
    const patch = await fetch(`${streaming.url}${path}`, {
      method: 'PATCH',
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': `0-${body.length - 1}` },
      body,
    });
    assert.equal(patch.status, 202, await patch.text());
    const status = await fetch(`${defaults.url}${path}`);
    assert.equal(status.status, 204);
    assert.equal(status.headers.get('range'), `0-${body.length - 1}`, 'the status is read from storage by the other process');
    const done = await fetch(`${defaults.url}${path}?digest=${digest}`, { method: 'PUT' });
    assert.equal(done.status, 201, await done.text());
    const got = await fetchBlob(streaming.url, 'e2e/hop', digest);
    assert.equal(got.status, 200);
    assert.ok(got.body.equals(body));
  });
});
