// The shared storage driver suite against the GCS driver on Google's Cloud Storage emulator
// (from the npm package firebase-tools, started here from node_modules), plus what only GCS
// can show: object names under the root directory, listing across many objects.list pages,
// atomic writes (an aborted or cancelled upload leaves no object), signed redirect URLs, the
// hidden part objects of appends and their purge, and the `storage.gcs` configuration.
//
// The emulator has no objects.compose: tests that append to a non-empty object are skipped
// with that reason (NO_COMPOSE). It finalizes a resumable upload on its first PUT, so the
// driver runs here with a chunk size above the largest object a test writes (the suite's
// 64 MiB): each upload is then one PUT, as on GCS for objects below the chunk size. The suite
// runs a second time with appends re-uploading the object instead of composing (what the
// driver does for objects near GCS's 1024-component limit), which the emulator can serve.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Storage, type Bucket } from '@google-cloud/storage';
import { buildConfig, ConfigError, loadConfig } from '../../src/config/config.js';
import { BaseDriver } from '../../src/storage/base.js';
import { PathNotFoundError } from '../../src/storage/driver.js';
import { GcsDriver, type GcsOptions } from '../../src/storage/drivers/gcs/index.js';
import { createDriver } from '../../src/storage/factory.js';
import { NO_COMPOSE, NO_PRECONDITIONS, bucketName, tryStartGcsEmulator } from '../helpers/gcs-emulator.js';
import { readAll, storageSuite } from '../storage-suite.js';

const MiB = 1024 * 1024;
const { emulator, skip } = await tryStartGcsEmulator();
after(async () => {
  await emulator?.stop();
});

function options(extra: Partial<GcsOptions> = {}): GcsOptions {
  return { bucket: bucketName('suite'), endpoint: emulator!.endpoint, chunksize: 128 * MiB, ...extra };
}

/** A client of the raw bucket, to look at what the driver stored. */
function rawBucket(name: string): Bucket {
  return new Storage({ apiEndpoint: emulator!.endpoint, useAuthWithCustomEndpoint: false }).bucket(name);
}

async function names(bucket: Bucket, prefix = ''): Promise<string[]> {
  const [files] = await bucket.getFiles({ prefix });
  return files.map((f) => f.name).sort();
}

/** A service account key of a made-up account (signing is local; nothing is sent to Google). */
function serviceAccountKey(): Record<string, string> {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    type: 'service_account',
    project_id: 'berth-test',
    private_key_id: 'k1',
    private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    client_email: 'berth@berth-test.iam.gserviceaccount.com',
    token_uri: 'https://oauth2.googleapis.com/token',
  };
}

// Listing pages of 100 objects: the suite's 2,500-entry directory spans 25 objects.list pages.
storageSuite(
  'gcs (firebase-tools storage emulator)',
  async () => {
    const opts = options({ rootdirectory: '/registry/root/', listPageSize: 100 });
    return { driver: new GcsDriver(opts), cleanup: async () => {} };
  },
  { skip, noAppendToNonEmpty: NO_COMPOSE },
);

// Appends by re-upload: the path an object near GCS's component limit takes (every append
// here, with the limit at 1), which needs no compose — so the suite's append test runs.
storageSuite(
  'gcs (firebase-tools storage emulator), appends by re-upload',
  async () => ({ driver: new GcsDriver(options({ rootdirectory: 'reupload', maxComponents: 1 })), cleanup: async () => {} }),
  { skip },
);

describe('gcs driver specifics', { skip }, () => {
  let opts: GcsOptions;
  let d: BaseDriver;
  let raw: Bucket;
  before(() => {
    opts = options({ rootdirectory: 'berth-root', listPageSize: 3 });
    d = new BaseDriver(new GcsDriver(opts));
    raw = rawBucket(opts.bucket);
  });

  test('object names are <rootdirectory>/<path>, as Distribution names them; foreign and hidden names are not listed', async () => {
    await d.putContent('/docker/registry/v2/repositories/a/_manifests/tags/t/current/link', 'sha256:00');
    assert.deepEqual(await names(raw), ['berth-root/docker/registry/v2/repositories/a/_manifests/tags/t/current/link']);
    await raw.file('elsewhere/x').save('x');
    await raw.file('berth-root/docker/with space').save('x');
    assert.deepEqual(await d.listAll('/'), ['/docker']);
    assert.deepEqual(await d.listAll('/docker'), ['/docker/registry']);
  });

  test('list and walk page through objects.list: 3 per request over 23 entries, files and directories', async () => {
    const want: string[] = [];
    for (let i = 0; i < 17; i++) want.push(`/pages/f${String(i).padStart(2, '0')}`);
    for (let i = 0; i < 6; i++) want.push(`/pages/d${i}`);
    await Promise.all(want.map((p) => (p.includes('/d') ? d.putContent(`${p}/inner`, 'x') : d.putContent(p, p))));
    // GCS orders `d-x` before `d/`; Berth orders a directory by its name.
    await d.putContent('/pages/d0-x', 'x');
    want.push('/pages/d0-x');
    want.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    assert.deepEqual(await d.listAll('/pages'), want);
    const paged: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await d.list('/pages', { limit: 5, after });
      paged.push(...page.entries);
      if (!page.next) break;
      after = page.next;
    }
    assert.deepEqual(paged, want);
    const walked: string[] = [];
    await d.walk('/pages', (info) => void walked.push(info.path));
    assert.equal(walked.filter((p) => p.endsWith('/inner')).length, 6);
    assert.equal(walked.length, want.length + 6);
    // A recursive delete pages too.
    await d.delete('/pages');
    assert.deepEqual(await names(raw, 'berth-root/pages'), []);
    await assert.rejects(d.stat('/pages'), PathNotFoundError);
  });

  test('atomic writes: an upload abandoned mid-stream (error or cancel) leaves no object, and keeps the old one', async () => {
    await d.putContent('/atomic/kept', 'old content');
    // A writer whose upload fails half way: destroying the stream must not finalize it.
    const w = await d.writer('/atomic/kept', { append: false });
    await w.write(randomBytes(300_000));
    await w.cancel();
    await assert.rejects(d.stat('/atomic/kept'), PathNotFoundError, 'cancel removes the file (the contract)');

    await d.putContent('/atomic/kept', 'old content');
    const ac = new AbortController();
    const x = await new GcsDriver(opts).writer('/atomic/kept', { append: false }, { signal: ac.signal });
    await x.write(randomBytes(200_000));
    ac.abort(new Error('client went away'));
    await assert.rejects(x.write(randomBytes(10)));
    await assert.rejects(x.commit());
    assert.equal((await d.getContent('/atomic/kept')).toString(), 'old content', 'the aborted upload replaced nothing');

    const y = await d.writer('/atomic/new', { append: false });
    await y.write(randomBytes(100_000));
    // Never committed or closed: nothing at the path, nothing listed.
    await assert.rejects(d.stat('/atomic/new'), PathNotFoundError);
    assert.deepEqual(await d.listAll('/atomic'), ['/atomic/kept']);
    await y.cancel();
  });

  test('an append on an empty or missing object is a plain upload (no compose)', async () => {
    await d.putContent('/plain/_uploads/u/data', '');
    const w = await d.writer('/plain/_uploads/u/data', { append: true });
    assert.equal(w.size, 0);
    const body = randomBytes(1_000_000);
    await w.write(body);
    await w.close();
    assert.ok((await d.getContent('/plain/_uploads/u/data')).equals(body));
    assert.deepEqual(await names(raw, 'berth-root/~berth-parts/'), [], 'no part object was made');
  });

  test('two append writers racing to create one path: the later fails instead of replacing', { skip: NO_PRECONDITIONS }, async () => {
    const a = await d.writer('/plain/race', { append: true });
    const b = await d.writer('/plain/race', { append: true });
    await a.write(Buffer.from('a'));
    await a.commit();
    await b.write(Buffer.from('b'));
    await assert.rejects(b.commit());
    assert.equal((await d.getContent('/plain/race')).toString(), 'a');
  });

  test('an append to a non-empty object composes a hidden part onto it', { skip: NO_COMPOSE }, async () => {
    await d.putContent('/compose/f', 'base');
    const w = await d.writer('/compose/f', { append: true });
    await w.write(Buffer.from('-tail'));
    await w.commit();
    assert.equal((await d.getContent('/compose/f')).toString(), 'base-tail');
    assert.deepEqual(await names(raw, 'berth-root/~berth-parts/'), [], 'the part is deleted');
  });

  test('move rewrites the object and deletes the source; a missing source is PathNotFound', async () => {
    const content = randomBytes(3 * MiB + 5);
    await d.putContent('/mv/src', content);
    await d.move('/mv/src', '/mv/dst/data');
    assert.ok((await d.getContent('/mv/dst/data')).equals(content));
    assert.ok((await readAll(await d.reader('/mv/dst/data', 7))).equals(content.subarray(7)));
    await assert.rejects(d.stat('/mv/src'), PathNotFoundError);
    await assert.rejects(d.move('/mv/src', '/mv/other'), PathNotFoundError);
  });

  test('retries stay on for every request while copies and deletes without preconditions run', async () => {
    // The SDK's default strategy switches retries off on the shared Storage object during such
    // operations (and can leave them off); a stat made meanwhile then fails on the first
    // dropped connection.
    const g = new GcsDriver(opts);
    const retries = () => (g as unknown as { storage: Storage }).storage.retryOptions.autoRetry;
    const gd = new BaseDriver(g);
    for (let i = 0; i < 5; i++) {
      await gd.putContent(`/retry/src${i}`, randomBytes(64 * 1024));
      await gd.putContent(`/retry/gone${i}`, 'x');
    }
    const seen: (boolean | undefined)[] = [];
    await Promise.all(
      Array.from({ length: 5 }, async (_, i) => {
        const moving = gd.move(`/retry/src${i}`, `/retry/dst${i}`);
        seen.push(retries());
        await Promise.all([moving, gd.delete(`/retry/gone${i}`), gd.stat(`/retry/src${i}`).catch(() => null)]);
        seen.push(retries());
      }),
    );
    assert.deepEqual(seen.filter((on) => !on), [], 'retries were on at every moment sampled');
    assert.equal(retries(), true);
  });

  test('purgeStaleWrites removes append parts older than the age, and only those', async () => {
    await raw.file('berth-root/~berth-parts/1-old').save('left by a crash');
    assert.deepEqual(await new GcsDriver(opts).purgeStaleWrites(60_000), [], 'a fresh part is spared');
    const dry = await new GcsDriver(opts).purgeStaleWrites(0, { dryRun: true });
    assert.equal(dry.length, 1);
    assert.match(dry[0]!, /berth-root\/~berth-parts\/1-old/);
    assert.deepEqual(await names(raw, 'berth-root/~berth-parts/'), ['berth-root/~berth-parts/1-old'], 'dry run removes nothing');
    assert.equal((await new GcsDriver(opts).purgeStaleWrites(0)).length, 1);
    assert.deepEqual(await names(raw, 'berth-root/~berth-parts/'), []);
    assert.ok(!(await d.listAll('/')).some((p) => p.includes('~')), 'parts are never listed');
  });

  test('redirectUrl: null without a private key; a V4 signed GET URL with one (served by the emulator)', async () => {
    const content = randomBytes(50_000);
    await d.putContent('/redir/blob', content);
    assert.equal(await d.redirectUrl('/redir/blob'), null, 'no credentials: blobs stream through Berth');
    const signer = new GcsDriver({ ...opts, credentials: serviceAccountKey() });
    const url = (await signer.redirectUrl('/redir/blob', { method: 'GET' }))!;
    const u = new URL(url);
    assert.equal(u.origin, emulator!.endpoint);
    assert.equal(u.pathname, `/${opts.bucket}/berth-root/redir/blob`);
    assert.equal(u.searchParams.get('X-Goog-Algorithm'), 'GOOG4-RSA-SHA256');
    assert.match(u.searchParams.get('X-Goog-Credential')!, /^berth@berth-test\.iam\.gserviceaccount\.com\//);
    assert.equal(u.searchParams.get('X-Goog-Expires'), '1200');
    assert.match(u.searchParams.get('X-Goog-Signature')!, /^[0-9a-f]{512}$/);
    // The emulator does not check signatures: this shows the URL's shape, not its validity.
    const got = await fetch(url);
    assert.equal(got.status, 200);
    assert.ok(Buffer.from(await got.arrayBuffer()).equals(content));
    assert.equal(await signer.redirectUrl('/redir/blob', { method: 'HEAD' }), null);
  });

  test('config: storage.gcs builds this driver; keys and REGISTRY_STORAGE_GCS_* variables; bad values name their key', async () => {
    const c = buildConfig({ storage: { gcs: { bucket: opts.bucket, endpoint: emulator!.endpoint, rootdirectory: 'berth-root', chunksize: 128 * MiB } } });
    assert.equal(c.storage.driver, 'gcs');
    assert.deepEqual(c.warnings, []);
    const driver = await createDriver(c.storage);
    assert.equal(driver.name, 'gcs');
    await d.putContent('/config/f', 'written by hand');
    assert.equal((await driver.getContent('/config/f')).toString(), 'written by hand', 'the same data as the driver built by hand');
    const def = buildConfig({ storage: { gcs: { bucket: 'b' } } });
    assert.ok(def.storage.driver === 'gcs' && def.storage.gcs.chunksize === 5 * MiB, "Distribution's default chunk size");

    const dir = mkdtempSync(join(tmpdir(), 'berth-gcs-config-'));
    try {
      const key = serviceAccountKey();
      writeFileSync(join(dir, 'key.json'), JSON.stringify(key));
      writeFileSync(join(dir, 'config.yml'), 'version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /tmp/unused\n');
      const e = loadConfig(join(dir, 'config.yml'), {
        REGISTRY_STORAGE: 'gcs',
        REGISTRY_STORAGE_GCS_BUCKET: 'from-env',
        REGISTRY_STORAGE_GCS_KEYFILE: join(dir, 'key.json'),
        REGISTRY_STORAGE_GCS_ROOTDIRECTORY: '/reg',
        REGISTRY_STORAGE_GCS_CHUNKSIZE: String(8 * MiB),
        REGISTRY_STORAGE_GCS_ENDPOINT: emulator!.endpoint,
      });
      assert.equal(e.storage.driver, 'gcs');
      if (e.storage.driver === 'gcs') {
        assert.deepEqual(
          { ...e.storage.gcs },
          { bucket: 'from-env', keyfile: join(dir, 'key.json'), rootdirectory: '/reg', chunksize: 8 * MiB, endpoint: emulator!.endpoint },
        );
        // A key file with a private key: redirects are signed URLs.
        assert.match((await (await createDriver(e.storage)).redirectUrl('/x'))!, /X-Goog-Signature=/);
      }
      // Inline credentials: a mapping in YAML, or JSON in REGISTRY_STORAGE_GCS_CREDENTIALS.
      const inline = loadConfig(undefined, { REGISTRY_STORAGE: 'gcs', REGISTRY_STORAGE_GCS_BUCKET: 'b', REGISTRY_STORAGE_GCS_CREDENTIALS: JSON.stringify(key) });
      assert.ok(inline.storage.driver === 'gcs' && inline.storage.gcs.credentials?.client_email === key.client_email);
      assert.deepEqual(buildConfig({ storage: { gcs: { bucket: 'b', credentials: key } } }).warnings, []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }

    const bad = (gcs: Record<string, unknown>, re: RegExp) => {
      assert.throws(
        () => buildConfig({ storage: { gcs } }),
        (err: unknown) => err instanceof ConfigError && re.test(err.message) && !err.message.includes('\n'),
      );
    };
    bad({ bucket: 'b', chunksize: 1000 }, /^config: storage\.gcs\.chunksize: /);
    bad({ bucket: 'b', chunksize: 5 * MiB + 1 }, /^config: storage\.gcs\.chunksize: must be a multiple of 256 KiB/);
    bad({ bucket: 'b', chunksize: 'big' }, /^config: storage\.gcs\.chunksize: /);
    bad({}, /^config: storage\.gcs\.bucket: /);
    bad({ bucket: 'b', endpoint: 'not a url' }, /^config: storage\.gcs\.endpoint: /);
    bad({ bucket: 'b', credentials: { client_email: 'x' } }, /^config: storage\.gcs\.credentials\.private_key: /);
    bad({ bucket: 'b', keyfile: '/k.json', credentials: serviceAccountKey() }, /^config: storage\.gcs\.credentials: give keyfile or credentials/);
    assert.throws(() => buildConfig({ storage: { gcs: { bucket: 'b' }, inmemory: null } }), /more than one driver/);
    // An unreadable key file is found when the driver is built (at start): one line too.
    await assert.rejects(
      createDriver(buildConfig({ storage: { gcs: { bucket: 'b', keyfile: '/nonexistent/key.json' } } }).storage),
      (err: unknown) => err instanceof ConfigError && /^config: storage\.gcs: cannot read keyfile \/nonexistent\/key\.json: ENOENT/.test(err.message),
    );
    assert.deepEqual(buildConfig({ storage: { gcs: { bucket: 'b', colour: 'blue' } } }).warnings, ['storage.gcs.colour']);
  });
});
