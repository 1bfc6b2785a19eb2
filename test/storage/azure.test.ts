// The shared storage driver suite against the Azure driver on Azurite (the Azure Storage
// emulator from npm, started here from node_modules), plus what only Azure can show: blob
// names under the root directory, block blobs after a writer's commit and after a move,
// resuming an upload held in an append blob (as CNCF Distribution's azure driver leaves it),
// appending to a blob written whole, and read-only, expiring redirect URLs.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { BlobServiceClient, StorageSharedKeyCredential, type ContainerClient } from '@azure/storage-blob';
import { buildConfig } from '../../src/config/config.js';
import { BaseDriver } from '../../src/storage/base.js';
import { PathNotFoundError } from '../../src/storage/driver.js';
import { AzureDriver, type AzureOptions } from '../../src/storage/drivers/azure/index.js';
import { createDriver } from '../../src/storage/factory.js';
import { containerName, tryStartAzurite } from '../helpers/azurite.js';
import { readAll, storageSuite } from '../storage-suite.js';

const { azurite, skip } = await tryStartAzurite();
after(async () => {
  await azurite?.stop();
});

function options(extra: Partial<AzureOptions> = {}): AzureOptions {
  return {
    accountname: azurite!.account,
    accountkey: azurite!.key,
    serviceurl: azurite!.serviceUrl,
    container: containerName('suite'),
    ...extra,
  };
}

/** A client of the raw container, to look at what the driver stored. */
function rawContainer(name: string): ContainerClient {
  const cred = new StorageSharedKeyCredential(azurite!.account, azurite!.key);
  return new BlobServiceClient(azurite!.serviceUrl, cred).getContainerClient(name);
}

function suiteFactory(extra: Partial<AzureOptions>) {
  return async () => {
    const opts = options(extra);
    return { driver: new AzureDriver(opts), cleanup: async () => void (await rawContainer(opts.container).deleteIfExists()) };
  };
}

// 1 MiB blocks (default 4 MiB): the suite's larger writes span many blocks, two in flight.
// (One run only: Azurite reads a whole directory per listing, so the pagination test alone
// takes about half a minute.)
storageSuite('azure (Azurite)', suiteFactory({ rootdirectory: '/registry/root/', blockSize: 1024 * 1024 }), { skip });

describe('azure driver specifics', { skip }, () => {
  let opts: AzureOptions;
  let d: BaseDriver;
  let raw: ContainerClient;
  before(() => {
    opts = options({ rootdirectory: 'berth-root', blockSize: 100_000 });
    d = new BaseDriver(new AzureDriver(opts));
    raw = rawContainer(opts.container);
  });
  after(async () => {
    await raw?.deleteIfExists();
  });

  const names = async (prefix = '') => {
    const out: string[] = [];
    for await (const b of raw.listBlobsFlat({ prefix })) out.push(b.name);
    return out;
  };

  test('the container is created on first use; blob names are <rootdirectory>/<path>, as Distribution names them', async () => {
    assert.equal(await raw.exists(), false);
    await d.putContent('/docker/registry/v2/repositories/a/_manifests/tags/t/current/link', 'sha256:00');
    assert.equal(await raw.exists(), true);
    assert.deepEqual(await names(), ['berth-root/docker/registry/v2/repositories/a/_manifests/tags/t/current/link']);
    // Blobs outside the root directory are not seen, and blobs that are not storage paths are hidden.
    await raw.getBlockBlobClient('elsewhere/x').upload('x', 1);
    await raw.getBlockBlobClient('berth-root/docker/with space').upload('x', 1);
    assert.deepEqual(await d.listAll('/'), ['/docker']);
    assert.deepEqual(await d.listAll('/docker'), ['/docker/registry']);
    // A directory marker blob (`dir/`, as hierarchical-namespace tools write) is an empty directory.
    await raw.getBlockBlobClient('berth-root/docker/marker/').upload('', 0);
    assert.deepEqual(await d.listAll('/docker'), ['/docker/marker', '/docker/registry']);
    assert.deepEqual(await d.listAll('/docker/marker'), []);
    assert.equal((await d.stat('/docker/marker')).isDir, true);
  });

  test('a committed writer leaves a block blob; close keeps the held bytes readable; move keeps it a block blob', async () => {
    const parts = [randomBytes(250_000), randomBytes(10), randomBytes(123_456)];
    const w1 = await d.writer('/up/data', { append: true });
    await w1.write(parts[0]!);
    await w1.close();
    // What the registry does to rebuild a hash: read the held bytes of a closed upload from 0.
    assert.ok((await readAll(await d.reader('/up/data', 0))).equals(parts[0]!));
    assert.equal((await d.stat('/up/data')).size, parts[0]!.length);
    const w2 = await d.writer('/up/data', { append: true });
    assert.equal(w2.size, parts[0]!.length);
    await w2.write(parts[1]!);
    await w2.write(parts[2]!);
    await w2.commit();
    const props = await raw.getBlobClient('berth-root/up/data').getProperties();
    assert.equal(props.blobType, 'BlockBlob');
    const blocks = await raw.getBlockBlobClient('berth-root/up/data').getBlockList('committed');
    assert.ok((blocks.committedBlocks ?? []).length >= 4, 'bytes were sent in blocks');

    await d.move('/up/data', '/blobs/x/data');
    const moved = await raw.getBlobClient('berth-root/blobs/x/data').getProperties();
    assert.equal(moved.blobType, 'BlockBlob');
    assert.ok((await d.getContent('/blobs/x/data')).equals(Buffer.concat(parts)));
    await assert.rejects(d.stat('/up/data'), PathNotFoundError);
  });

  test('an upload held in an append blob (Distribution) is resumed, committed and moved', async () => {
    const key = 'berth-root/dist/_uploads/u/data';
    const first = randomBytes(300_000);
    const append = raw.getAppendBlobClient(key);
    await append.create();
    await append.appendBlock(first, first.length);
    const w = await d.writer('/dist/_uploads/u/data', { append: true });
    assert.equal(w.size, first.length);
    const more = randomBytes(250_001);
    await w.write(more);
    await w.close();
    assert.equal((await raw.getBlobClient(key).getProperties()).blobType, 'AppendBlob');
    const w2 = await d.writer('/dist/_uploads/u/data', { append: true });
    assert.equal(w2.size, first.length + more.length);
    await w2.commit();
    await d.move('/dist/_uploads/u/data', '/dist/blob');
    assert.ok((await d.getContent('/dist/blob')).equals(Buffer.concat([first, more])));
    assert.ok((await readAll(await d.reader('/dist/blob', 5))).equals(Buffer.concat([first, more]).subarray(5)));
  });

  test('an append writer on a blob written whole (putContent) continues after its bytes', async () => {
    const start = randomBytes(222_222);
    await d.putContent('/whole/f', start);
    const w = await d.writer('/whole/f', { append: true });
    assert.equal(w.size, start.length);
    assert.ok((await d.getContent('/whole/f')).equals(start), 'unchanged until the writer commits');
    const tail = Buffer.from('tail');
    await w.write(tail);
    await w.commit();
    assert.ok((await d.getContent('/whole/f')).equals(Buffer.concat([start, tail])));
  });

  test('two writers racing on one path: the second commit fails instead of dropping bytes', async () => {
    await d.putContent('/race/f', 'base');
    const a = await d.writer('/race/f', { append: true });
    const b = await d.writer('/race/f', { append: true });
    await a.write(Buffer.from('-a'));
    await b.write(Buffer.from('-b'));
    await a.commit();
    await assert.rejects(b.commit());
    assert.equal((await d.getContent('/race/f')).toString(), 'base-a');
  });

  test('redirectUrl: a read-only SAS URL that serves GET and HEAD, refuses writes, and expires', async () => {
    const content = randomBytes(70_000);
    await d.putContent('/redir/blob', content);
    const url = (await d.redirectUrl('/redir/blob', { method: 'GET' }))!;
    assert.ok(url.startsWith(`${azurite!.serviceUrl}/${opts.container}/berth-root/redir/blob?`), url);
    const params = new URL(url).searchParams;
    assert.equal(params.get('sp'), 'r');
    const ttl = Date.parse(params.get('se')!) - Date.now();
    assert.ok(ttl > 0 && ttl <= 21 * 60_000, `expires in ${ttl} ms`);
    const got = await fetch(url);
    assert.equal(got.status, 200);
    assert.ok(Buffer.from(await got.arrayBuffer()).equals(content));
    const head = await fetch(url, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), String(content.length));
    const ranged = await fetch(url, { headers: { Range: 'bytes=10-19' } });
    assert.equal(ranged.status, 206);
    assert.ok(Buffer.from(await ranged.arrayBuffer()).equals(content.subarray(10, 20)));
    const put = await fetch(url, { method: 'PUT', headers: { 'x-ms-blob-type': 'BlockBlob' }, body: 'overwrite' });
    assert.equal(put.status, 403, 'a read SAS cannot write');
    const del = await fetch(url, { method: 'DELETE' });
    assert.equal(del.status, 403, 'a read SAS cannot delete');
    assert.ok((await d.getContent('/redir/blob')).equals(content));
    assert.equal(await d.redirectUrl('/redir/blob', { method: 'PUT' }), null);

    const short = new BaseDriver(new AzureDriver({ ...opts, redirectExpiryMs: 1 }));
    const expired = (await short.redirectUrl('/redir/blob'))!;
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal((await fetch(expired)).status, 403, 'an expired SAS is refused');
  });

  test('delete of a tree larger than one batch (300 blobs) removes every blob below, nothing beside', async () => {
    const files = Array.from({ length: 300 }, (_, i) => `/many/d${i % 7}/f${i}`);
    for (let i = 0; i < files.length; i += 50) await Promise.all(files.slice(i, i + 50).map((f) => d.putContent(f, 'x')));
    await d.putContent('/many-sibling/f', 'keep');
    await d.delete('/many');
    assert.deepEqual(await names('berth-root/many/'), []);
    assert.equal((await d.getContent('/many-sibling/f')).toString(), 'keep');
    await assert.rejects(d.delete('/many'), PathNotFoundError);
  });

  test('config: storage.azure builds this driver; keys are validated with their name', async () => {
    const c = buildConfig({
      storage: { azure: { accountname: azurite!.account, accountkey: azurite!.key, container: opts.container, serviceurl: azurite!.serviceUrl, rootdirectory: 'berth-root' } },
    });
    assert.equal(c.storage.driver, 'azure');
    assert.equal(c.storage.driver === 'azure' && c.storage.azure.realm, 'core.windows.net');
    assert.deepEqual(c.warnings, []);
    const driver = await createDriver(c.storage);
    assert.equal(driver.name, 'azure');
    assert.equal((await driver.getContent('/whole/f')).subarray(-4).toString(), 'tail', 'the same data as the driver built by hand');
    assert.throws(() => buildConfig({ storage: { azure: { accountname: 'a', container: 'c-1' } } }), /config: storage\.azure\.accountkey: /);
    assert.throws(() => buildConfig({ storage: { azure: { accountname: 'a', accountkey: 'k', container: 'Bad_Name' } } }), /config: storage\.azure\.container: /);
    assert.throws(() => buildConfig({ storage: { azure: { accountname: 'a', accountkey: 'k', container: 'ok-1' }, inmemory: null } }), /more than one driver/);
  });
});
