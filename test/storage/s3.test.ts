// The shared storage driver suite against the S3 driver on a real S3 server (Ceph RGW from
// ../shared/tools/ceph-s3.sh, found through the S3_* variables; a fresh bucket per run), plus
// what only S3 can show: keys under the root directory, how writers carry held bytes between
// each other (small tails read back, large ones copied server-side), incomplete multipart
// uploads (aborted by cancel, delete and purgeStaleWrites), multipart moves, listing order and
// bounded pagination, recursive deletes beyond one DeleteObjects batch, presigned redirects,
// and the `storage.s3` configuration.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { buildConfig, loadConfig } from '../../src/config/config.js';
import { BaseDriver } from '../../src/storage/base.js';
import { PathNotFoundError, canPurgeStaleWrites } from '../../src/storage/driver.js';
import { S3Driver, type S3Options } from '../../src/storage/drivers/s3/index.js';
import { copyRanges } from '../../src/storage/drivers/s3/writer.js';
import { createDriver } from '../../src/storage/factory.js';
import { createBucket, destroyBucket, driverOptions, listKeys, listUploads, rawClient, s3FromEnv } from '../helpers/s3.js';
import { byteOrder, pool, readAll, storageSuite } from '../storage-suite.js';

const MiB = 1024 * 1024;
const { s3, skip } = s3FromEnv();

// One bucket for this file's run; removed at the end.
let client: S3Client;
let bucket: string;
before(async () => {
  if (skip) return;
  client = rawClient(s3!);
  bucket = await createBucket(client, 'storage');
});
after(async () => {
  if (bucket) await destroyBucket(client, bucket);
});

const options = (extra: Partial<S3Options> = {}): S3Options => driverOptions(s3!, bucket, extra);

// 5 MiB parts (the minimum; default 10 MiB) and 5 MiB copy parts: the suite's larger writes
// span many parts, two in flight, and its moves above 5 MiB are multipart copies.
storageSuite(
  's3 (Ceph RGW)',
  async () => ({
    driver: new S3Driver(options({ rootdirectory: '/registry/root/', chunksize: 5 * MiB, multipartcopychunksize: 5 * MiB, multipartcopythresholdsize: 5 * MiB })),
    cleanup: async () => {},
  }),
  { skip },
);

describe('s3 driver specifics', { skip }, () => {
  const ROOT = 'berth-root';
  let inner: S3Driver;
  let d: BaseDriver;
  before(() => {
    inner = new S3Driver(options({ rootdirectory: ROOT, chunksize: 5 * MiB, multipartcopychunksize: 5 * MiB, multipartcopythresholdsize: 6 * MiB }));
    d = new BaseDriver(inner);
  });

  const keys = (prefix: string) => listKeys(client, bucket, `${ROOT}/${prefix}`);
  const uploads = (prefix: string) => listUploads(client, bucket, `${ROOT}/${prefix}`);

  test('keys are <rootdirectory>/<path>, as Distribution names them; foreign and non-path keys are not seen', async () => {
    await d.putContent('/docker/registry/v2/repositories/a/_manifests/tags/t/current/link', 'sha256:00');
    assert.deepEqual(await keys('docker/'), [`${ROOT}/docker/registry/v2/repositories/a/_manifests/tags/t/current/link`]);
    const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: `${ROOT}/docker/registry/v2/repositories/a/_manifests/tags/t/current/link` }));
    assert.equal(head.ContentType, 'application/octet-stream');
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'elsewhere/x', Body: 'x' }));
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: `${ROOT}/docker/with space`, Body: 'x' }));
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: `${ROOT}/docker//empty-segment`, Body: 'x' }));
    assert.ok(!(await d.listAll('/')).includes('/elsewhere'));
    assert.deepEqual(await d.listAll('/docker'), ['/docker/registry']);
    // A directory marker object (`dir/`, as some tools write) is an empty directory.
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: `${ROOT}/docker/marker/`, Body: '' }));
    assert.deepEqual(await d.listAll('/docker'), ['/docker/marker', '/docker/registry']);
    assert.deepEqual(await d.listAll('/docker/marker'), []);
    assert.equal((await d.stat('/docker/marker')).isDir, true);
    await d.delete('/docker');
    assert.deepEqual(await keys('docker'), []);
  });

  test('copyRanges: pieces of the copy size, none but a lone one below 5 MiB', () => {
    assert.deepEqual(copyRanges(12 * MiB, 5 * MiB), [
      [0, 5 * MiB],
      [5 * MiB, 12 * MiB],
    ]);
    assert.deepEqual(copyRanges(15 * MiB, 5 * MiB), [
      [0, 5 * MiB],
      [5 * MiB, 10 * MiB],
      [10 * MiB, 15 * MiB],
    ]);
    assert.deepEqual(copyRanges(6 * MiB, 32 * MiB), [[0, 6 * MiB]]);
  });

  test('a held tail below 5 MiB is carried in storage: closed bytes are readable, the next writer reads them back', async () => {
    const p = '/tail/_uploads/u/data';
    const parts = [randomBytes(3 * MiB), randomBytes(1), randomBytes(4 * MiB + 3)];
    const w1 = await d.writer(p, { append: true });
    await w1.write(parts[0]!);
    await w1.close();
    // What the registry does to rebuild a hash: read the held bytes of a closed upload from 0.
    assert.ok((await readAll(await d.reader(p, 0))).equals(parts[0]!));
    assert.deepEqual(await uploads('tail/'), [], 'small content is one PutObject, no multipart upload');
    const w2 = await d.writer(p, { append: true });
    assert.equal(w2.size, parts[0]!.length);
    await w2.write(parts[1]!);
    await w2.close();
    const w3 = await d.writer(p, { append: true });
    await w3.write(parts[2]!); // 3 MiB held + 4 MiB new: the first part (5 MiB) goes while writing
    await w3.commit();
    assert.ok((await d.getContent(p)).equals(Buffer.concat(parts)));
    assert.deepEqual(await uploads('tail/'), []);
  });

  test('a held object of 5 MiB or more is carried by UploadPartCopy (in copy-size pieces); a writer given nothing changes nothing', async () => {
    const p = '/big/_uploads/u/data';
    const a = randomBytes(7 * MiB);
    const b = randomBytes(12 * MiB + 5);
    const w1 = await d.writer(p, { append: true });
    await w1.write(a);
    await w1.close();
    const etag1 = (await client.send(new HeadObjectCommand({ Bucket: bucket, Key: `${ROOT}${p}` }))).ETag!;
    assert.match(etag1, /-2"$/, 'two parts: 5 MiB + 2 MiB');
    const w2 = await d.writer(p, { append: true });
    assert.equal(w2.size, a.length);
    await w2.write(b);
    await w2.close();
    const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: `${ROOT}${p}` }));
    assert.equal(head.ContentLength, a.length + b.length);
    // 7 MiB copied as one piece (the 2 MiB rest joins the first), then 12 MiB + 5 in 5 MiB parts.
    assert.match(head.ETag!, /-4"$/, `ETag ${head.ETag}: 1 copied part + 3 uploaded parts`);
    assert.ok((await d.getContent(p)).equals(Buffer.concat([a, b])));
    const w3 = await d.writer(p, { append: true });
    await w3.commit();
    assert.equal((await client.send(new HeadObjectCommand({ Bucket: bucket, Key: `${ROOT}${p}` }))).ETag, head.ETag, 'untouched');
    // A last write below one part on a large held object: copy + one small part.
    const w4 = await d.writer(p, { append: true });
    await w4.write(Buffer.from('end'));
    await w4.commit();
    assert.ok((await d.getContent(p)).equals(Buffer.concat([a, b, Buffer.from('end')])));
    assert.deepEqual(await uploads('big/'), []);
  });

  test('a writer that got nothing on a missing path leaves an empty object; a non-append writer replaces on close', async () => {
    const w = await d.writer('/empty/f', { append: true });
    await w.close();
    assert.equal((await d.stat('/empty/f')).size, 0);
    await d.putContent('/empty/g', 'old content');
    const n = await d.writer('/empty/g', { append: false });
    assert.equal((await d.getContent('/empty/g')).toString(), 'old content', 'kept until the writer closes');
    await n.close();
    assert.equal((await d.stat('/empty/g')).size, 0);
  });

  test('a writer that dies mid-upload leaves the held bytes intact and a multipart upload that purgeStaleWrites and delete abort', async () => {
    const p = '/dead/_uploads/u/data';
    const held = randomBytes(1000);
    await d.putContent(p, held);
    const w = await d.writer(p, { append: true });
    await w.write(randomBytes(6 * MiB)); // the first part is on its way: a multipart upload exists
    // (the process "dies": the writer is never closed)
    await new Promise((r) => setTimeout(r, 500));
    assert.equal((await uploads('dead/')).length, 1);
    assert.ok((await d.getContent(p)).equals(held), 'the object still holds what it held');
    assert.equal((await d.stat(p)).size, held.length, 'so the registry reports exactly that');

    assert.ok(canPurgeStaleWrites(inner));
    assert.deepEqual(await inner.purgeStaleWrites(3600_000), [], 'younger than the age: kept');
    const dry = await inner.purgeStaleWrites(0, { dryRun: true });
    assert.equal(dry.length, 1);
    assert.match(dry[0]!, /^multipart upload \S+ of \/dead\/_uploads\/u\/data initiated /);
    assert.equal((await uploads('dead/')).length, 1, 'dry run aborts nothing');
    assert.equal((await inner.purgeStaleWrites(0)).length, 1);
    assert.deepEqual(await uploads('dead/'), []);
    assert.ok((await d.getContent(p)).equals(held));

    // delete of a directory aborts the multipart uploads below it (the registry's cancel and purge).
    const w2 = await d.writer(p, { append: true });
    await w2.write(randomBytes(6 * MiB));
    await new Promise((r) => setTimeout(r, 500));
    const w3 = await d.writer('/dead-sibling/data', { append: true });
    await w3.write(randomBytes(6 * MiB));
    await new Promise((r) => setTimeout(r, 500));
    assert.equal((await uploads('dead/')).length, 1);
    await d.delete('/dead/_uploads/u');
    assert.deepEqual(await uploads('dead/'), []);
    assert.equal((await uploads('dead-sibling/')).length, 1, 'a sibling sharing the name prefix is untouched');
    await assert.rejects(d.stat(p), PathNotFoundError);
    await assert.rejects(w2.close(), 'the aborted writer fails on close');
    await assert.rejects(d.stat(p), PathNotFoundError, 'and recreates nothing');
    await w3.cancel();
    assert.deepEqual(await uploads('dead-sibling/'), [], 'cancel aborts the upload');
    await assert.rejects(d.stat('/dead-sibling/data'), PathNotFoundError);
  });

  test('a failure while carrying the held bytes poisons the writer: close() fails and the object keeps its bytes', async () => {
    const p = '/poison/_uploads/u/data';
    const held = randomBytes(3000);
    await d.putContent(p, held);
    const w = await d.writer(p, { append: true });
    const send = inner.client.send.bind(inner.client);
    let failures = 0;
    inner.client.send = ((cmd: unknown, ...rest: unknown[]) => {
      // The read-back of the held bytes fails (as after the SDK's retries of a network error).
      if (cmd instanceof GetObjectCommand && failures++ === 0) return Promise.reject(new Error('connection reset'));
      return (send as (...a: unknown[]) => unknown)(cmd, ...rest);
    }) as typeof inner.client.send;
    try {
      await assert.rejects(w.write(Buffer.from('new bytes')), /connection reset/);
      await assert.rejects(w.close(), /connection reset/);
    } finally {
      inner.client.send = send;
    }
    assert.ok((await d.getContent(p)).equals(held), 'the held bytes were not replaced by the new ones alone');
  });

  test('two writers racing on one path: a writer whose held object was replaced fails instead of dropping bytes', async () => {
    for (const size of [4, 6 * MiB]) {
      const p = `/race-${size}/f`;
      const base = randomBytes(size);
      await d.putContent(p, base);
      const a = await d.writer(p, { append: true });
      const b = await d.writer(p, { append: true });
      await a.write(Buffer.from('-a'));
      await b.write(Buffer.from('-b'));
      await a.commit();
      await assert.rejects(b.commit(), `size ${size}`);
      assert.ok((await d.getContent(p)).equals(Buffer.concat([base, Buffer.from('-a')])));
    }
    assert.deepEqual(await uploads('race-'), []);
  });

  test('move above multipartcopythresholdsize is a multipart copy; below, one CopyObject', async () => {
    const big = randomBytes(13 * MiB + 1);
    await d.putContent('/mv/src-big', big);
    await d.move('/mv/src-big', '/mv/dst/big');
    const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: `${ROOT}/mv/dst/big` }));
    assert.match(head.ETag!, /-2"$/, `ETag ${head.ETag}: 5 MiB + 8 MiB copied parts`);
    assert.ok((await d.getContent('/mv/dst/big')).equals(big));
    await assert.rejects(d.stat('/mv/src-big'), PathNotFoundError);
    const small = randomBytes(6 * MiB);
    await d.putContent('/mv/src-small', small);
    await d.move('/mv/src-small', '/mv/dst/small');
    assert.ok((await d.getContent('/mv/dst/small')).equals(small));
    assert.deepEqual(await uploads('mv/'), []);
  });

  test("list: S3 orders a directory x as 'x/' (after x-y, x.y); pages are byte-wise and read only the listing they need", async () => {
    const dir = '/order';
    const files = ['a', 'a-b', 'a.c', 'a0', 'b', 'b-x', 'b-y.z', 'b.q', 'b/c-d'];
    for (const f of files) await d.putContent(`${dir}/${f}`, f);
    await d.putContent(`${dir}/a/inside`, 'x'); // 'a' is a file and a directory: the directory wins
    await d.putContent(`${dir}/b-x/inside`, 'x');
    const want = ['a', 'a-b', 'a.c', 'a0', 'b', 'b-x', 'b-y.z', 'b.q'].map((n) => `${dir}/${n}`);
    // Listing requests of 1 and 2 keys: a page often ends where S3 has not yet shown a
    // directory that sorts before the page's last name.
    for (const listPageSize of [1000, 2, 1]) {
      const ds = new BaseDriver(new S3Driver(options({ rootdirectory: ROOT, listPageSize })));
      assert.deepEqual(await ds.listAll(dir), want, `listPageSize ${listPageSize}`);
      for (const limit of [1, 2, 3, 5]) {
        const got: string[] = [];
        let after: string | undefined;
        for (let i = 0; i < 20; i++) {
          const page = await ds.list(dir, { limit, after });
          assert.ok(page.entries.length <= limit);
          got.push(...page.entries);
          if (!page.next) break;
          after = page.next;
        }
        assert.deepEqual(got, want, `listPageSize ${listPageSize}, limit ${limit}`);
      }
      // `after` anywhere: between names, before the directory, past it.
      assert.deepEqual((await ds.list(dir, { after: `${dir}/a-a`, limit: 2 })).entries, [`${dir}/a-b`, `${dir}/a.c`]);
      assert.deepEqual((await ds.list(dir, { after: `${dir}/a-c`, limit: 2 })).entries, [`${dir}/a.c`, `${dir}/a0`]);
      assert.deepEqual((await ds.list(dir, { after: '/order', limit: 1 })).entries, [`${dir}/a`]);
      assert.deepEqual(await ds.list(dir, { after: '/order0', limit: 1 }), { entries: [] });
      await assert.rejects(ds.list('/order-missing', { after: '/order-missing/x' }), PathNotFoundError);
    }
    assert.equal((await d.stat(`${dir}/a`)).isDir, false, 'stat finds the file first');

    // 1,100 entries read 100 keys per request: a page of 10 costs one listing request plus one
    // probe for a directory `e` (which would sort before `e-1`), not the 11 of the whole listing.
    const many = Array.from({ length: 1100 }, (_, i) => `${dir}/many/e-${i}`);
    await pool(many, 32, (p) => d.putContent(p, ''));
    const paged = new S3Driver(options({ rootdirectory: ROOT, listPageSize: 100 }));
    const dp = new BaseDriver(paged);
    const requests: string[] = [];
    const send = paged.client.send.bind(paged.client);
    paged.client.send = ((cmd: unknown, ...rest: unknown[]) => {
      if (cmd instanceof ListObjectsV2Command) requests.push(`${cmd.input.Prefix}${cmd.input.Delimiter ? ' /' : ''}`);
      return (send as (...a: unknown[]) => unknown)(cmd, ...rest);
    }) as typeof paged.client.send;
    const sorted = [...many].sort(byteOrder);
    const first = await dp.list(`${dir}/many`, { limit: 10 });
    assert.deepEqual(first.entries, sorted.slice(0, 10));
    assert.deepEqual(requests, [`${ROOT}/order/many/ /`, `${ROOT}/order/many/e/`]);
    requests.length = 0;
    const second = await dp.list(`${dir}/many`, { limit: 10, after: first.next });
    assert.deepEqual(second.entries, sorted.slice(10, 20));
    assert.equal(requests.length, 1, 'after e-…, a directory e could not be on the page: no probe');
    requests.length = 0;
    // Pages of 1,000: ten listing requests and a probe, then one request for the last 100.
    const big = await dp.list(`${dir}/many`, { limit: 1000 });
    assert.deepEqual(big.entries, sorted.slice(0, 1000));
    assert.equal(requests.length, 11, requests.join(', '));
    const rest = await dp.list(`${dir}/many`, { limit: 1000, after: big.next });
    assert.deepEqual(rest, { entries: sorted.slice(1000) });
    assert.equal(requests.length, 12, requests.join(', '));
    requests.length = 0;
    // No limit: the whole directory, 11 listing requests and nothing else.
    assert.deepEqual(await dp.listAll(`${dir}/many`), sorted);
    assert.deepEqual((await dp.list(`${dir}/many`)).entries, sorted);
    assert.ok(requests.every((r) => r === `${ROOT}/order/many/ /`), requests.join(', '));
    // With the directory `e` present, it comes first.
    await d.putContent(`${dir}/many/e/x`, '');
    assert.deepEqual((await dp.list(`${dir}/many`, { limit: 2 })).entries, [`${dir}/many/e`, sorted[0]]);
    await d.delete(`${dir}/many/e`);
  });

  test('delete of a tree beyond one DeleteObjects batch (1,100 objects) removes everything below, nothing beside', async () => {
    await d.putContent('/order/many-sibling', 'keep');
    await d.delete('/order/many');
    assert.deepEqual(await keys('order/many/'), []);
    assert.equal((await d.getContent('/order/many-sibling')).toString(), 'keep');
    await assert.rejects(d.delete('/order/many'), PathNotFoundError);
  });

  test('redirectUrl: a presigned URL that serves GET, HEAD and Range, refuses writes, and expires', async () => {
    const content = randomBytes(70_000);
    await d.putContent('/redir/blob', content);
    const url = (await d.redirectUrl('/redir/blob', { method: 'GET' }))!;
    assert.ok(url.startsWith(`${s3!.endpoint}/${bucket}/${ROOT}/redir/blob?`), url);
    const params = new URL(url).searchParams;
    assert.equal(params.get('X-Amz-Expires'), '1200', 'valid 20 minutes');
    const got = await fetch(url);
    assert.equal(got.status, 200);
    assert.ok(Buffer.from(await got.arrayBuffer()).equals(content));
    const ranged = await fetch(url, { headers: { Range: 'bytes=10-19' } });
    assert.equal(ranged.status, 206);
    assert.ok(Buffer.from(await ranged.arrayBuffer()).equals(content.subarray(10, 20)));
    const head = await fetch((await d.redirectUrl('/redir/blob', { method: 'HEAD' }))!, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), String(content.length));
    assert.equal((await fetch(url, { method: 'PUT', body: 'overwrite' })).status, 403, 'a GET URL cannot write');
    assert.equal((await fetch(url, { method: 'DELETE' })).status, 403, 'a GET URL cannot delete');
    assert.ok((await d.getContent('/redir/blob')).equals(content));
    assert.equal(await d.redirectUrl('/redir/blob', { method: 'PUT' }), null);

    const short = new BaseDriver(new S3Driver(options({ rootdirectory: ROOT, redirectExpiryMs: 1000 })));
    const expired = (await short.redirectUrl('/redir/blob'))!;
    await new Promise((r) => setTimeout(r, 2100));
    assert.equal((await fetch(expired)).status, 403, 'an expired URL is refused');
  });

  test('config: storage.s3 builds this driver; keys and REGISTRY_STORAGE_S3_* variables are validated with their name', async () => {
    const raw = { region: s3!.region, regionendpoint: s3!.endpoint, bucket, rootdirectory: `/${ROOT}`, accesskey: s3!.accessKey, secretkey: s3!.secretKey, forcepathstyle: true };
    const c = buildConfig({ storage: { s3: raw } });
    assert.equal(c.storage.driver, 's3');
    assert.deepEqual(c.warnings, []);
    if (c.storage.driver !== 's3') return;
    assert.equal(c.storage.s3.chunksize, 10 * MiB);
    assert.equal(c.storage.s3.multipartcopychunksize, 32 * MiB);
    assert.equal(c.storage.s3.multipartcopythresholdsize, 32 * MiB);
    assert.equal(c.storage.s3.secure, true);
    assert.equal(c.storage.s3.storageclass, 'STANDARD');
    const driver = await createDriver(c.storage);
    assert.equal(driver.name, 's3');
    assert.ok((await driver.getContent('/redir/blob')).length === 70_000, 'the same data as the driver built by hand');

    const env = {
      REGISTRY_STORAGE: 's3',
      REGISTRY_STORAGE_S3_REGION: 'eu-west-1',
      REGISTRY_STORAGE_S3_BUCKET: 'b',
      REGISTRY_STORAGE_S3_CHUNKSIZE: String(6 * MiB),
      REGISTRY_STORAGE_S3_FORCEPATHSTYLE: 'true',
      REGISTRY_STORAGE_S3_ENCRYPT: 'true',
      REGISTRY_STORAGE_S3_STORAGECLASS: 'NONE',
      REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: '/tmp/unused',
    };
    const e = loadConfig(undefined, env);
    assert.equal(e.storage.driver, 's3');
    if (e.storage.driver === 's3') {
      assert.equal(e.storage.s3.chunksize, 6 * MiB);
      assert.equal(e.storage.s3.forcepathstyle, true);
      assert.equal(e.storage.s3.encrypt, true);
      assert.equal(e.storage.s3.accesskey, undefined, 'no keys: the SDK default credential chain');
    }
    assert.throws(() => buildConfig({ storage: { s3: { ...raw, chunksize: 4 * MiB } } }), /config: storage\.s3\.chunksize: /);
    assert.throws(() => buildConfig({ storage: { s3: { ...raw, multipartcopychunksize: 1 } } }), /config: storage\.s3\.multipartcopychunksize: /);
    assert.throws(() => buildConfig({ storage: { s3: { region: 'r', bucket: 'b', accesskey: 'k' } } }), /config: storage\.s3\.secretkey: /);
    assert.throws(() => buildConfig({ storage: { s3: { region: 'r' } } }), /config: storage\.s3\.bucket: /);
    assert.throws(() => buildConfig({ storage: { s3: { bucket: 'b' } } }), /config: storage\.s3\.region: /);
    assert.throws(() => buildConfig({ storage: { s3: { ...raw, storageclass: 'COLD' } } }), /config: storage\.s3\.storageclass: /);
    assert.throws(() => buildConfig({ storage: { s3: raw, inmemory: null } }), /more than one driver/);
    const unknown = buildConfig({ storage: { s3: { ...raw, v4auth: true, multipartcopymaxconcurrency: 100 } } });
    assert.deepEqual(unknown.warnings, ['storage.s3.v4auth', 'storage.s3.multipartcopymaxconcurrency']);
  });
});
