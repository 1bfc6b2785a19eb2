// The shared storage driver suite against the filesystem driver, plus what only a filesystem
// root can show: the on-disk layout is Distribution's, byte for byte, and temporary files
// never outlive an operation.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BaseDriver } from '../../src/storage/base.js';
import { PathNotFoundError } from '../../src/storage/driver.js';
import { FilesystemDriver } from '../../src/storage/drivers/filesystem/index.js';
import { byteOrder, expectedWalk, readAll, storageSuite } from '../storage-suite.js';

function tempRoot(): string {
  return mkdtempSync(join(tmpdir(), 'berth-fs-suite-'));
}

storageSuite('filesystem', async () => {
  const root = tempRoot();
  return { driver: new FilesystemDriver({ rootdirectory: root }), cleanup: async () => rmSync(root, { recursive: true, force: true }) };
});

// Tiny buffers exercise the writer's flush/in-flight path on every write and the reader's
// chunking; the root directory does not exist until the first write creates it.
storageSuite('filesystem (tiny buffers, root created on first write)', async () => {
  const parent = tempRoot();
  return {
    driver: new FilesystemDriver({ rootdirectory: join(parent, 'not', 'yet'), writeBufferSize: 1000, readChunkSize: 777 }),
    cleanup: async () => rmSync(parent, { recursive: true, force: true }),
  };
});

/** Every name on disk below dir (relative, '/'-joined), directories included. */
function diskTree(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const ent of readdirSync(dir, { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${ent.name}` : ent.name;
    out.push(rel);
    if (ent.isDirectory()) out.push(...diskTree(join(dir, ent.name), rel));
  }
  return out;
}

describe('filesystem driver specifics', () => {
  let root: string;
  let d: BaseDriver;
  before(() => {
    root = tempRoot();
    d = new BaseDriver(new FilesystemDriver({ rootdirectory: root }));
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  test("a root written by hand in Distribution's layout is read as expected", async () => {
    const v2 = join(root, 'dist', 'docker', 'registry', 'v2');
    const base = '/dist/docker/registry/v2';
    const layer = Buffer.from('layer bytes\n');
    const manifest = Buffer.from('{"schemaVersion":2}');
    const hex = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    const lh = hex(layer);
    const mh = hex(manifest);
    const uuid = '0b5a2f1e-7c3d-4e4f-9a8b-1c2d3e4f5a6b';
    const files: Record<string, string | Buffer> = {
      [`blobs/sha256/${lh.slice(0, 2)}/${lh}/data`]: layer,
      [`blobs/sha256/${mh.slice(0, 2)}/${mh}/data`]: manifest,
      [`repositories/library/alpine/_layers/sha256/${lh}/link`]: `sha256:${lh}`,
      [`repositories/library/alpine/_manifests/revisions/sha256/${mh}/link`]: `sha256:${mh}`,
      [`repositories/library/alpine/_manifests/tags/latest/current/link`]: `sha256:${mh}`,
      [`repositories/library/alpine/_manifests/tags/latest/index/sha256/${mh}/link`]: `sha256:${mh}`,
      [`repositories/library/alpine/_manifests/tags/3.19/current/link`]: `sha256:${mh}`,
      [`repositories/library/alpine/_uploads/${uuid}/data`]: Buffer.from('partial'),
      [`repositories/library/alpine/_uploads/${uuid}/startedat`]: '2024-01-02T03:04:05Z',
      [`repositories/library/alpine/_uploads/${uuid}/hashstates/sha256/0`]: Buffer.from([1, 2, 3]),
      [`repositories/my-org/team.x/app_1/_manifests/tags/v1.0.0-rc.1/current/link`]: `sha256:${mh}`,
    };
    for (const [rel, content] of Object.entries(files)) {
      const full = join(v2, ...rel.split('/'));
      mkdirSync(join(full, '..'), { recursive: true });
      writeFileSync(full, content);
    }

    assert.deepEqual(await d.listAll(base), [`${base}/blobs`, `${base}/repositories`]);
    assert.deepEqual(await d.listAll(`${base}/repositories`), [`${base}/repositories/library`, `${base}/repositories/my-org`]);
    assert.deepEqual(await d.listAll(`${base}/repositories/library/alpine`), [
      `${base}/repositories/library/alpine/_layers`,
      `${base}/repositories/library/alpine/_manifests`,
      `${base}/repositories/library/alpine/_uploads`,
    ]);
    assert.deepEqual(await d.listAll(`${base}/repositories/library/alpine/_manifests/tags`), [
      `${base}/repositories/library/alpine/_manifests/tags/3.19`,
      `${base}/repositories/library/alpine/_manifests/tags/latest`,
    ]);
    assert.deepEqual(
      await d.listAll(`${base}/blobs/sha256`),
      [lh, mh].map((h) => `${base}/blobs/sha256/${h.slice(0, 2)}`).sort(byteOrder),
    );
    assert.equal(
      (await d.getContent(`${base}/repositories/library/alpine/_manifests/tags/latest/current/link`)).toString(),
      `sha256:${mh}`,
    );
    const data = `${base}/blobs/sha256/${lh.slice(0, 2)}/${lh}/data`;
    assert.equal((await d.stat(data)).size, layer.length);
    assert.ok((await readAll(await d.reader(data, 6))).equals(layer.subarray(6)));
    assert.equal((await d.stat(`${base}/repositories/library/alpine/_uploads/${uuid}/data`)).size, 7);

    // A walk of the whole root visits exactly what is on disk, in lexical order.
    const sizes = new Map(Object.entries(files).map(([rel, c]) => [`${base}/${rel}`, Buffer.from(c).length]));
    const visited: Array<{ path: string; isDir: boolean; size: number }> = [];
    await d.walk(base, (info) => {
      visited.push({ path: info.path, isDir: info.isDir, size: info.size });
    });
    const want = expectedWalk(base, sizes);
    assert.deepEqual(
      visited.map((v) => [v.path, v.isDir]),
      want.map((w) => [w.path, w.isDir]),
    );
    for (const v of visited) if (!v.isDir) assert.equal(v.size, sizes.get(v.path), v.path);

    // And the reverse: what Berth writes lands at the plain path, as Distribution reads it.
    const tagLink = `${base}/repositories/library/busybox/_manifests/tags/1.36/current/link`;
    await d.putContent(tagLink, `sha256:${mh}`);
    assert.equal(
      readFileSync(join(v2, 'repositories', 'library', 'busybox', '_manifests', 'tags', '1.36', 'current', 'link'), 'utf8'),
      `sha256:${mh}`,
    );
    const w = await d.writer(`${base}/repositories/library/busybox/_uploads/${uuid}/data`, { append: false });
    await w.write(layer);
    await w.commit();
    assert.ok(readFileSync(join(v2, 'repositories', 'library', 'busybox', '_uploads', uuid, 'data')).equals(layer));
  });

  test('names that are not storage paths (leftover temporaries, lost+found) are neither listed nor walked', async () => {
    const dir = join(root, 'hidden');
    mkdirSync(join(dir, 'lost+found'), { recursive: true });
    writeFileSync(join(dir, 'visible'), 'v');
    writeFileSync(join(dir, 'visible.berth~0123456789ab'), 'a crashed write');
    mkdirSync(join(dir, 'gone.berth~ba9876543210', 'x'), { recursive: true });
    writeFileSync(join(dir, 'with space'), 's');
    assert.deepEqual(await d.listAll('/hidden'), ['/hidden/visible']);
    const walked: string[] = [];
    await d.walk('/hidden', (info) => {
      walked.push(info.path);
    });
    assert.deepEqual(walked, ['/hidden/visible']);
  });

  test("no '~' temporary files are left after putContent, writers, move and delete (successful or not)", async () => {
    const top = '/clean';
    const p = (s: string) => `${top}/${s}`;
    // putContent: new, overwrite, concurrent to one path, concurrent to many.
    await d.putContent(p('a/one'), 'one');
    await d.putContent(p('a/one'), 'one again');
    await Promise.all(Array.from({ length: 20 }, (_, i) => d.putContent(p('a/same'), randomBytes(10_000 + i))));
    await Promise.all(Array.from({ length: 30 }, (_, i) => d.putContent(p(`b/f${i}`), randomBytes(1000))));
    // writers: commit, close + resume, cancel.
    const w = await d.writer(p('up/data'), { append: false });
    await w.write(randomBytes(5000));
    await w.close();
    const w2 = await d.writer(p('up/data'), { append: true });
    await w2.write(randomBytes(5000));
    await w2.commit();
    const wc = await d.writer(p('up/cancelled'), { append: false });
    await wc.write(randomBytes(5000));
    await wc.cancel();
    // move: new place, over an existing file, missing source.
    await d.move(p('a/one'), p('moved/deep/one'));
    await d.putContent(p('src'), 'src');
    await d.move(p('src'), p('a/same'));
    await assert.rejects(d.move(p('missing'), p('nowhere/x')), PathNotFoundError);
    // delete: a file, a tree, a missing path.
    await d.delete(p('b/f0'));
    await d.delete(p('b'));
    await d.delete(p('up'));
    await assert.rejects(d.delete(p('b')), PathNotFoundError);
    // A failed putContent (a directory is in the way) must not leave its temporary behind.
    await d.putContent(p('dir/child'), 'x');
    await assert.rejects(d.putContent(p('dir'), 'cannot replace a directory'));
    assert.equal((await d.getContent(p('dir/child'))).toString(), 'x', 'the directory is untouched');

    const onDisk = diskTree(join(root, 'clean')).sort(byteOrder);
    assert.deepEqual(
      onDisk.filter((n) => n.includes('~')),
      [],
      `temporary files left: ${onDisk.join(', ')}`,
    );
    assert.deepEqual(onDisk, ['a', 'a/same', 'dir', 'dir/child', 'moved', 'moved/deep', 'moved/deep/one'].sort(byteOrder));
    assert.equal((await d.getContent(p('a/same'))).toString(), 'src');
    assert.equal((await d.getContent(p('moved/deep/one'))).toString(), 'one again');
  });

  test('a directory removed behind the driver\'s back (another process) is made again on the next write', async () => {
    // The driver remembers directories it wrote into; a stale memory must not fail a write.
    await d.putContent('/gone/a/b/link', 'one');
    const w = await d.writer('/gone/a/up/data', { append: false });
    await w.write(Buffer.from('x'));
    await w.commit();
    rmSync(join(root, 'gone'), { recursive: true });
    await d.putContent('/gone/a/b/link', 'two');
    const w2 = await d.writer('/gone/a/up/data', { append: true });
    await w2.write(Buffer.from('y'));
    await w2.commit();
    assert.equal((await d.getContent('/gone/a/b/link')).toString(), 'two');
    assert.equal((await d.getContent('/gone/a/up/data')).toString(), 'y');
  });
});
