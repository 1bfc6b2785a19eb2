// The ONE storage driver test suite (modelled on CNCF Distribution's
// registry/storage/driver/testsuites): every driver runs it unchanged with its own factory,
//
//   storageSuite('s3', async () => ({ driver: new S3Driver(...), cleanup: async () => {...} }),
//                { skip: serverAvailable ? false : 'no S3-compatible server at ...' });
//
// The driver is always used through `new BaseDriver(driver)`, as the registry uses it. The
// factory is called once per suite; every test works below its own directory under a random
// suite root, so a shared bucket or root directory is fine. Nothing here knows one driver's
// internals: what is asserted is the StorageDriver contract (src/storage/driver.ts).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { BaseDriver } from '../src/storage/base.js';
import {
  InvalidOffsetError,
  InvalidPathError,
  PathNotFoundError,
  type FileInfo,
  type StorageDriver,
  type WalkControl,
} from '../src/storage/driver.js';

export interface SuiteDriver {
  driver: StorageDriver;
  cleanup(): Promise<void>;
}
export type SuiteFactory = () => Promise<SuiteDriver>;
export interface SuiteOptions {
  /** A reason to skip the whole suite (e.g. the backing server is absent), or false. */
  skip?: string | false;
  /**
   * Set (to the reason) when the backing server cannot append to a non-empty file, e.g. an
   * emulator without GCS's compose: the tests that need it are skipped with that reason.
   */
  noAppendToNonEmpty?: string;
}

const KiB = 1024;
const MiB = 1024 * 1024;

// ---------------------------------------------------------------------------------------
// Helpers (exported so driver-specific test files can use the same ones).

/** Byte-wise order, computed independently of the drivers' own comparator. */
export function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
  return Buffer.concat(chunks);
}

export async function sha256Stream(stream: Readable): Promise<{ digest: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const chunk of stream) {
    h.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { digest: h.digest('hex'), size };
}

function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

/** Runs fn over items with at most `width` in flight. */
export async function pool<T>(items: T[], width: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(width, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i]!, i);
    }
  });
  await Promise.all(workers);
}

/** An error check for assert.rejects: the class, and the path the error names. */
function notFound(path: string) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof PathNotFoundError, `expected PathNotFoundError for ${path}, got ${String(err)}`);
    assert.equal(err.path, path, 'PathNotFoundError names the path asked for');
    return true;
  };
}

function invalidOffset(offset: number) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof InvalidOffsetError, `expected InvalidOffsetError for offset ${offset}, got ${String(err)}`);
    assert.equal(err.offset, offset);
    return true;
  };
}

/** The walk a correct driver performs over `files` (full paths) below `root`: depth first, children byte-wise sorted. */
export function expectedWalk(root: string, files: Map<string, number>): Array<{ path: string; isDir: boolean; size?: number }> {
  interface Dir {
    dirs: Map<string, Dir>;
    files: Set<string>;
  }
  const top: Dir = { dirs: new Map(), files: new Set() };
  for (const file of files.keys()) {
    assert.ok(file.startsWith(root + '/'));
    const segs = file.slice(root.length + 1).split('/');
    let d = top;
    for (const s of segs.slice(0, -1)) {
      let n = d.dirs.get(s);
      if (!n) d.dirs.set(s, (n = { dirs: new Map(), files: new Set() }));
      d = n;
    }
    d.files.add(segs[segs.length - 1]!);
  }
  const out: Array<{ path: string; isDir: boolean; size?: number }> = [];
  const rec = (d: Dir, path: string) => {
    const names = [...d.dirs.keys(), ...d.files].sort(byteOrder);
    for (const n of names) {
      const p = `${path}/${n}`;
      const sub = d.dirs.get(n);
      if (sub) {
        out.push({ path: p, isDir: true });
        rec(sub, p);
      } else out.push({ path: p, isDir: false, size: files.get(p)! });
    }
  };
  rec(top, root);
  return out;
}

/** Paths the base driver must refuse. */
export const INVALID_PATHS = [
  '',
  'a',
  'a/b',
  '/a/../b',
  '/..',
  '/.',
  '/a/./b',
  '/a/..',
  '/a//b',
  '//a',
  '/a/b/',
  '/a b',
  '/a\tb',
  '/a\nb',
  '/a~',
  '/~a',
  '/a/b~c',
  '/a/b.berth~0123456789ab',
  '/a\\b',
  '/a/%2e%2e',
  '/ä',
  '/a?b',
  '/a*b',
];

// ---------------------------------------------------------------------------------------

export function storageSuite(name: string, factory: SuiteFactory, opts: SuiteOptions = {}): void {
  describe(`storage driver suite: ${name}`, { skip: opts.skip || false }, () => {
    let inner: StorageDriver;
    let cleanup: () => Promise<void>;
    let d: BaseDriver;
    const root = `/berth-suite-${randomBytes(5).toString('hex')}`;
    let n = 0;
    /** A fresh directory path for one test (not created). */
    const fresh = (label: string) => `${root}/${label}-${++n}`;

    before(async () => {
      ({ driver: inner, cleanup } = await factory());
      d = new BaseDriver(inner);
    });
    after(async () => {
      if (!d) return;
      try {
        await d.delete(root);
      } catch (err) {
        if (!(err instanceof PathNotFoundError)) throw err;
      } finally {
        await cleanup();
      }
    });

    // ----------------------------------------------------------------- paths
    describe('paths', () => {
      test('BaseDriver rejects invalid paths with InvalidPathError before the driver sees them', async () => {
        const calls: string[] = [];
        const spy = new Proxy(inner, {
          get(target, prop) {
            const v = Reflect.get(target, prop, target) as unknown;
            if (typeof v !== 'function') return v;
            return (...args: unknown[]) => {
              calls.push(`${String(prop)}(${JSON.stringify(args[0])})`);
              return (v as (...a: unknown[]) => unknown).apply(target, args);
            };
          },
        });
        const b = new BaseDriver(spy);
        const ok = `${root}/valid`;
        const ops: Array<[string, (p: string) => Promise<unknown>]> = [
          ['getContent', (p) => b.getContent(p)],
          ['putContent', (p) => b.putContent(p, 'x')],
          ['reader', (p) => b.reader(p, 0)],
          ['writer', (p) => b.writer(p, { append: false })],
          ['writer(append)', (p) => b.writer(p, { append: true })],
          ['stat', (p) => b.stat(p)],
          ['list', (p) => b.list(p)],
          ['list(paged)', (p) => b.list(p, { limit: 10 })],
          ['move(source)', (p) => b.move(p, ok)],
          ['move(dest)', (p) => b.move(ok, p)],
          ['delete', (p) => b.delete(p)],
          ['redirectUrl', (p) => b.redirectUrl(p)],
          ['walk', (p) => b.walk(p, () => undefined)],
        ];
        for (const bad of INVALID_PATHS) {
          for (const [op, call] of ops) {
            let pending: Promise<unknown> | undefined;
            assert.doesNotThrow(() => {
              pending = call(bad);
            }, `${op}(${JSON.stringify(bad)}) must return a rejected promise, not throw synchronously`);
            await assert.rejects(
              pending!,
              (err: unknown) => {
                assert.ok(err instanceof InvalidPathError, `${op}(${JSON.stringify(bad)}): expected InvalidPathError, got ${String(err)}`);
                assert.equal(err.path, bad);
                return true;
              },
              `${op}(${JSON.stringify(bad)}) must be rejected`,
            );
          }
        }
        // The root is a directory: it may be listed, statted and walked, never read, written or removed.
        for (const [op, call] of ops.filter(([op]) => !['stat', 'list', 'list(paged)', 'walk'].includes(op))) {
          let pending: Promise<unknown> | undefined;
          assert.doesNotThrow(() => {
            pending = call('/');
          }, `${op}('/') must not throw synchronously`);
          await assert.rejects(pending!, InvalidPathError, `${op}('/') must be rejected`);
        }
        assert.deepEqual(calls, [], 'the wrapped driver was never called with an invalid path');
      });

      test('invalid offsets are rejected with InvalidOffsetError (negative, fractional, NaN)', async () => {
        const p = `${fresh('offsets')}/f`;
        await d.putContent(p, 'abc');
        for (const off of [-1, -100, 0.5, Number.NaN, Number.POSITIVE_INFINITY]) {
          let pending: Promise<unknown> | undefined;
          assert.doesNotThrow(() => {
            pending = d.reader(p, off);
          }, `reader(offset ${off}) must not throw synchronously`);
          await assert.rejects(pending!, (err: unknown) => {
            assert.ok(err instanceof InvalidOffsetError, `offset ${off}: got ${String(err)}`);
            assert.ok(Object.is(err.offset, off));
            return true;
          });
        }
      });
    });

    // ----------------------------------------------------------------- content
    describe('putContent / getContent', () => {
      test('round trip: empty, small, binary (all 256 byte values), 5 MiB random', async () => {
        const dir = fresh('roundtrip');
        const all256 = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
        const cases: Array<[string, Buffer]> = [
          ['empty', Buffer.alloc(0)],
          ['small', Buffer.from('hello, berth\n')],
          ['binary', Buffer.concat([all256, all256.reverse(), Buffer.from([0, 0, 0xff, 0x0d, 0x0a, 0x1a])])],
          ['random-5MiB', randomBytes(5 * MiB)],
        ];
        for (const [label, content] of cases) {
          const p = `${dir}/${label}`;
          await d.putContent(p, content);
          const got = await d.getContent(p);
          assert.ok(Buffer.isBuffer(got), `${label}: getContent returns a Buffer`);
          assert.equal(got.length, content.length, `${label}: length`);
          assert.ok(got.equals(content), `${label}: bytes round-trip`);
          const st = await d.stat(p);
          assert.equal(st.size, content.length, `${label}: stat size`);
          assert.equal(st.isDir, false);
        }
        // Each file kept its own content (no aliasing between paths).
        for (const [label, content] of cases) assert.ok((await d.getContent(`${dir}/${label}`)).equals(content), label);
      });

      test('a string is stored as UTF-8', async () => {
        const p = `${fresh('utf8')}/s`;
        const s = 'héllo ✓ 𝄞 sha256:abc';
        await d.putContent(p, s);
        assert.ok((await d.getContent(p)).equals(Buffer.from(s, 'utf8')));
      });

      test('the returned buffer is a copy: mutating it does not change the stored file', async () => {
        const p = `${fresh('copy')}/f`;
        const content = Buffer.from('immutable bytes');
        await d.putContent(p, content);
        content.fill(0x41); // the caller's buffer, after putContent resolved
        const got = await d.getContent(p);
        assert.equal(got.toString(), 'immutable bytes');
        got.fill(0x42);
        assert.equal((await d.getContent(p)).toString(), 'immutable bytes');
      });

      test('putContent creates missing parent directories', async () => {
        const dir = fresh('parents');
        const p = `${dir}/a/b/c/d/e/file`;
        await d.putContent(p, 'deep');
        assert.equal((await d.getContent(p)).toString(), 'deep');
        for (const sub of ['/a', '/a/b', '/a/b/c', '/a/b/c/d', '/a/b/c/d/e']) {
          assert.equal((await d.stat(dir + sub)).isDir, true, `${sub} is a directory`);
        }
      });

      test('overwrite replaces the whole file (larger → smaller → larger)', async () => {
        const p = `${fresh('overwrite')}/f`;
        const big = randomBytes(MiB + 7);
        const small = Buffer.from('tiny');
        const bigger = randomBytes(2 * MiB + 3);
        await d.putContent(p, big);
        await d.putContent(p, small);
        const got = await d.getContent(p);
        assert.ok(got.equals(small), 'no bytes of the previous, longer content remain');
        assert.equal((await d.stat(p)).size, small.length);
        await d.putContent(p, bigger);
        assert.ok((await d.getContent(p)).equals(bigger));
        assert.equal((await d.stat(p)).size, bigger.length);
        await d.putContent(p, Buffer.alloc(0));
        assert.equal((await d.getContent(p)).length, 0);
        assert.equal((await d.stat(p)).size, 0);
      });

      test('overwrite is atomic: concurrent readers see the old or the new content, never a mix', async () => {
        const p = `${fresh('atomic')}/f`;
        const versions = [randomBytes(MiB), randomBytes(MiB + 513), randomBytes(700 * KiB), randomBytes(MiB)];
        const known = new Set(versions.map(sha256));
        await d.putContent(p, versions[0]!);
        let writing = true;
        let reads = 0;
        const reader = (async () => {
          while (writing || reads < 5) {
            const got = await d.getContent(p);
            reads++;
            assert.ok(known.has(sha256(got)), `read #${reads} (${got.length} bytes) is one complete version`);
          }
        })();
        try {
          for (let round = 0; round < 3; round++) for (const v of versions.slice(1)) await d.putContent(p, v);
        } finally {
          writing = false;
        }
        await reader;
        assert.ok((await d.getContent(p)).equals(versions[versions.length - 1]!), 'the last write wins');
      });

      test('concurrent putContent to the same path leaves exactly one of the contents', async () => {
        const p = `${fresh('samepath')}/f`;
        const contents = Array.from({ length: 16 }, (_, i) => randomBytes(256 * KiB + i * 1000));
        const known = new Map(contents.map((c) => [sha256(c), c]));
        let done = false;
        let reads = 0;
        // Readers racing the writers: each read is PathNotFound (before the first write lands) or one whole content.
        const readers = Array.from({ length: 2 }, async () => {
          while (!done) {
            try {
              const got = await d.getContent(p);
              reads++;
              assert.ok(known.has(sha256(got)), 'a concurrent read returns one whole content');
            } catch (err) {
              if (!(err instanceof PathNotFoundError)) throw err;
              await new Promise((r) => setImmediate(r));
            }
          }
        });
        try {
          await Promise.all(contents.map((c) => d.putContent(p, c)));
        } finally {
          done = true;
        }
        await Promise.all(readers);
        const final = await d.getContent(p);
        assert.ok(known.has(sha256(final)), 'the final content is exactly one of those written');
        assert.equal((await d.stat(p)).size, final.length);
        assert.deepEqual(await d.listAll(p.slice(0, p.lastIndexOf('/'))), [p], 'one file, no leftovers');
      });
    });

    // ----------------------------------------------------------------- missing paths
    describe('missing paths', () => {
      test('getContent, stat, reader, list, delete, move, walk of a missing path → PathNotFoundError', async () => {
        const dir = fresh('missing');
        await d.putContent(`${dir}/exists`, 'x');
        await d.putContent(`${dir}/treeish/child`, 'y');
        const missing = [`${dir}/nope`, `${dir}/nope/deeper`, `${root}/never-created-${randomBytes(4).toString('hex')}/x`];
        // Prefixes of existing names are not paths (object stores list by prefix).
        missing.push(`${dir}/exist`, `${dir}/tree`, `${dir}/treeish/chil`);
        // Below a file.
        missing.push(`${dir}/exists/child`);
        for (const p of missing) {
          await assert.rejects(d.getContent(p), notFound(p), `getContent ${p}`);
          await assert.rejects(d.stat(p), notFound(p), `stat ${p}`);
          await assert.rejects(d.reader(p), notFound(p), `reader ${p}`);
          await assert.rejects(d.reader(p, 5), notFound(p), `reader ${p} at 5`);
          await assert.rejects(d.list(p), notFound(p), `list ${p}`);
          await assert.rejects(d.delete(p), notFound(p), `delete ${p}`);
          await assert.rejects(d.move(p, `${dir}/moved`), notFound(p), `move ${p}`);
          await assert.rejects(
            d.walk(p, () => undefined),
            notFound(p),
            `walk ${p}`,
          );
        }
        // Nothing was created or removed by those failures.
        assert.deepEqual(await d.listAll(dir), [`${dir}/exists`, `${dir}/treeish`]);
        assert.equal((await d.getContent(`${dir}/treeish/child`)).toString(), 'y');
      });

      test('a directory has no content: getContent and reader of a directory → PathNotFoundError', async () => {
        const dir = fresh('dircontent');
        await d.putContent(`${dir}/sub/file`, 'x');
        await assert.rejects(d.getContent(`${dir}/sub`), notFound(`${dir}/sub`));
        await assert.rejects(d.reader(`${dir}/sub`), notFound(`${dir}/sub`));
      });
    });

    // ----------------------------------------------------------------- stat
    describe('stat', () => {
      test('file: isDir false, exact size, path, recent modTime', async () => {
        const p = `${fresh('statfile')}/f.bin`;
        const content = randomBytes(12345);
        const t0 = Date.now();
        await d.putContent(p, content);
        const t1 = Date.now();
        const st = await d.stat(p);
        assert.equal(st.path, p);
        assert.equal(st.isDir, false);
        assert.equal(st.size, 12345);
        assert.ok(st.modTime instanceof Date, 'modTime is a Date');
        const m = st.modTime.getTime();
        assert.ok(Number.isFinite(m), 'modTime is a valid date');
        // Generous slack for a remote server's clock and coarse timestamps, still far from 0 or "now + days".
        assert.ok(m >= t0 - 60_000 && m <= t1 + 60_000, `modTime ${st.modTime.toISOString()} is recent`);
      });

      test('directory: isDir true, size 0, path; intermediate directories too', async () => {
        const dir = fresh('statdir');
        await d.putContent(`${dir}/a/b/file`, 'content');
        for (const p of [dir, `${dir}/a`, `${dir}/a/b`]) {
          const st = await d.stat(p);
          assert.equal(st.path, p);
          assert.equal(st.isDir, true, `${p} is a directory`);
          assert.equal(st.size, 0, `${p} size`);
          assert.ok(st.modTime instanceof Date && !Number.isNaN(st.modTime.getTime()), 'modTime is a valid Date');
        }
        const f = await d.stat(`${dir}/a/b/file`);
        assert.equal(f.isDir, false);
        assert.equal(f.size, 7);
      });
    });

    // ----------------------------------------------------------------- list
    describe('list', () => {
      test('direct children as full paths, sorted byte-wise, files and directories once each', async () => {
        const dir = fresh('list');
        const files = ['B', 'Z9', 'a', 'a.b', 'a-b', 'a_b', 'a:b', 'a@b', '0', '9z', '_layers', 'sha256:abc', 'x.y-z_w:v@u', 'data'];
        const dirs = ['sub', 'a-dir', 'A.dir', 'name@sha256:00', 'x:y'];
        for (const f of files) await d.putContent(`${dir}/${f}`, f);
        for (const sub of dirs) {
          await d.putContent(`${dir}/${sub}/deep/x`, 'x');
          await d.putContent(`${dir}/${sub}/y`, 'y');
        }
        const expected = [...files, ...dirs].map((n) => `${dir}/${n}`).sort(byteOrder);
        const page = await d.list(dir);
        const entries = [...page.entries];
        // Follow pagination in case the driver pages by default.
        let next = page.next;
        for (let guard = 0; next !== undefined; guard++) {
          assert.ok(guard < 100, 'pagination ends');
          const more = await d.list(dir, { after: next });
          entries.push(...more.entries);
          next = more.next;
        }
        assert.deepEqual(entries, expected);
        assert.deepEqual(await d.listAll(`${dir}/sub`), [`${dir}/sub/deep`, `${dir}/sub/y`]);
        assert.deepEqual(await d.listAll(`${dir}/sub/deep`), [`${dir}/sub/deep/x`]);
        // Byte-wise, not locale or case-insensitive order.
        assert.ok(entries.indexOf(`${dir}/B`) < entries.indexOf(`${dir}/a`));
        assert.ok(entries.indexOf(`${dir}/a-b`) < entries.indexOf(`${dir}/a.b`));
        assert.ok(entries.indexOf(`${dir}/a:b`) < entries.indexOf(`${dir}/a@b`));
        assert.ok(entries.indexOf(`${dir}/a@b`) < entries.indexOf(`${dir}/a_b`));
      });

      test('the root lists the suite directory', async () => {
        await d.putContent(`${fresh('rootlist')}/f`, 'x');
        const all = await d.listAll('/');
        assert.ok(all.includes(root), `'/' lists ${root}`);
        assert.ok(all.every((p) => /^\/[^/]+$/.test(p)), 'root entries are direct children');
        assert.deepEqual(all, [...all].sort(byteOrder));
      });

      test('pagination over 2,500 entries: every entry exactly once, in order, for several limits', { timeout: 600_000 }, async () => {
        const dir = fresh('paginate');
        // Unpadded numbers, so byte order differs from numeric order (f-10 < f-2).
        const names = Array.from({ length: 2500 }, (_, i) => (i % 10 === 0 ? `d-${i}` : `f-${i}`));
        await pool(names, 32, async (nm) => {
          if (nm.startsWith('d-')) await d.putContent(`${dir}/${nm}/child`, nm);
          else await d.putContent(`${dir}/${nm}`, '');
        });
        const expected = names.map((nm) => `${dir}/${nm}`).sort(byteOrder);
        for (const limit of [1000, 333, 100, 1]) {
          if (limit === 1) {
            // One entry per page is slow remotely; check the first stretch only.
            let after: string | undefined;
            const got: string[] = [];
            for (let i = 0; i < 30; i++) {
              const page = await d.list(dir, { limit: 1, after });
              assert.equal(page.entries.length, 1);
              assert.ok(page.next !== undefined);
              got.push(...page.entries);
              after = page.next;
            }
            assert.deepEqual(got, expected.slice(0, 30));
            continue;
          }
          const got: string[] = [];
          let after: string | undefined;
          let pages = 0;
          for (;;) {
            const page = await d.list(dir, { limit, after });
            pages++;
            assert.ok(pages <= 2500, 'pagination terminates');
            assert.ok(page.entries.length <= limit, `limit ${limit}: page of ${page.entries.length}`);
            got.push(...page.entries);
            if (page.next === undefined) break;
            assert.ok(page.entries.length > 0, 'a page that is not the last makes progress');
            after = page.next;
          }
          assert.equal(got.length, expected.length, `limit ${limit}: count`);
          assert.equal(new Set(got).size, got.length, `limit ${limit}: no duplicates`);
          assert.deepEqual(got, expected, `limit ${limit}: every entry once, in byte order`);
          assert.ok(pages >= Math.ceil(expected.length / limit), `limit ${limit}: ${pages} pages`);
        }
        // `after` may be any name: the page starts strictly after it.
        const mid = expected[1234]!;
        const fromMid = await d.list(dir, { after: mid, limit: 5 });
        assert.deepEqual(fromMid.entries, expected.slice(1235, 1240));
        const between = `${dir}/f-1234x`; // not an entry; sorts right after f-1234
        const fromBetween = await d.list(dir, { after: between, limit: 3 });
        const firstAfter = expected.findIndex((e) => byteOrder(e, between) > 0);
        assert.deepEqual(fromBetween.entries, expected.slice(firstAfter, firstAfter + 3));
        const last = await d.list(dir, { after: expected[expected.length - 1]!, limit: 10 });
        assert.deepEqual(last.entries, []);
        assert.equal(last.next, undefined);
        // listAll follows pagination to the end.
        assert.deepEqual(await d.listAll(dir), expected);
      });

      test('list of a file or of a missing directory → PathNotFoundError', async () => {
        const dir = fresh('listerr');
        await d.putContent(`${dir}/file`, 'x');
        await assert.rejects(d.list(`${dir}/file`), notFound(`${dir}/file`));
        await assert.rejects(d.list(`${dir}/missing`), notFound(`${dir}/missing`));
        await assert.rejects(d.list(`${dir}/fil`), notFound(`${dir}/fil`));
        await assert.rejects(d.list(`${dir}/file`, { limit: 5 }), notFound(`${dir}/file`));
      });
    });

    // ----------------------------------------------------------------- delete
    describe('delete', () => {
      test('a file: then getContent/stat → not found; siblings untouched', async () => {
        const dir = fresh('delfile');
        await d.putContent(`${dir}/a`, 'a');
        await d.putContent(`${dir}/b`, 'b');
        await d.delete(`${dir}/a`);
        await assert.rejects(d.getContent(`${dir}/a`), notFound(`${dir}/a`));
        await assert.rejects(d.stat(`${dir}/a`), notFound(`${dir}/a`));
        assert.deepEqual(await d.listAll(dir), [`${dir}/b`]);
        assert.equal((await d.getContent(`${dir}/b`)).toString(), 'b');
        await assert.rejects(d.delete(`${dir}/a`), notFound(`${dir}/a`), 'deleting twice → not found');
      });

      test('a whole tree: everything below is gone; sibling trees (even sharing a name prefix) are untouched', async () => {
        const dir = fresh('deltree');
        const doomed = [`${dir}/tree/a`, `${dir}/tree/b/c`, `${dir}/tree/b/d/e/f`, `${dir}/tree/x.y`];
        const kept = [`${dir}/tree2/a`, `${dir}/tree-x/a`, `${dir}/tree.txt`, `${dir}/tre`, `${dir}/treeb/c`, `${dir}/other/tree/a`];
        for (const p of [...doomed, ...kept]) await d.putContent(p, p);
        await d.delete(`${dir}/tree`);
        await assert.rejects(d.stat(`${dir}/tree`), notFound(`${dir}/tree`));
        await assert.rejects(d.list(`${dir}/tree`), notFound(`${dir}/tree`));
        await assert.rejects(d.list(`${dir}/tree/b`), notFound(`${dir}/tree/b`));
        for (const p of doomed) {
          await assert.rejects(d.getContent(p), notFound(p));
          await assert.rejects(d.stat(p), notFound(p));
        }
        for (const p of kept) assert.equal((await d.getContent(p)).toString(), p, `${p} kept`);
        assert.deepEqual(
          await d.listAll(dir),
          [`${dir}/other`, `${dir}/tre`, `${dir}/tree-x`, `${dir}/tree.txt`, `${dir}/tree2`, `${dir}/treeb`].sort(byteOrder),
        );
        await assert.rejects(d.delete(`${dir}/tree`), notFound(`${dir}/tree`));
      });

      test('a path that is only a name prefix of existing entries → PathNotFoundError, nothing removed', async () => {
        const dir = fresh('delprefix');
        await d.putContent(`${dir}/blobs/data`, 'x');
        await d.putContent(`${dir}/blobsy`, 'y');
        await assert.rejects(d.delete(`${dir}/blob`), notFound(`${dir}/blob`));
        await assert.rejects(d.delete(`${dir}/blobs/dat`), notFound(`${dir}/blobs/dat`));
        assert.equal((await d.getContent(`${dir}/blobs/data`)).toString(), 'x');
        assert.equal((await d.getContent(`${dir}/blobsy`)).toString(), 'y');
      });
    });

    // ----------------------------------------------------------------- move
    describe('move', () => {
      test('onto a new path: creates parents, source gone, content intact', async () => {
        const dir = fresh('move');
        const content = randomBytes(MiB + 11);
        await d.putContent(`${dir}/src/file`, content);
        await d.move(`${dir}/src/file`, `${dir}/dst/a/b/file`);
        assert.ok((await d.getContent(`${dir}/dst/a/b/file`)).equals(content));
        assert.equal((await d.stat(`${dir}/dst/a/b/file`)).size, content.length);
        assert.equal((await d.stat(`${dir}/dst/a`)).isDir, true);
        await assert.rejects(d.getContent(`${dir}/src/file`), notFound(`${dir}/src/file`));
        await assert.rejects(d.stat(`${dir}/src/file`), notFound(`${dir}/src/file`));
        assert.ok((await d.listAll(dir)).includes(`${dir}/dst`), 'the new parent is listed');
        assert.deepEqual(await d.listAll(`${dir}/dst/a/b`), [`${dir}/dst/a/b/file`]);
      });

      test('over an existing file: replaced', async () => {
        const dir = fresh('moveover');
        await d.putContent(`${dir}/src`, 'new content');
        await d.putContent(`${dir}/dst`, 'old content that is longer than the new one');
        await d.move(`${dir}/src`, `${dir}/dst`);
        assert.equal((await d.getContent(`${dir}/dst`)).toString(), 'new content');
        assert.equal((await d.stat(`${dir}/dst`)).size, 11);
        await assert.rejects(d.stat(`${dir}/src`), notFound(`${dir}/src`));
        assert.deepEqual(await d.listAll(dir), [`${dir}/dst`]);
      });

      test('a file onto itself keeps it', async () => {
        const p = `${fresh('moveself')}/f`;
        await d.putContent(p, 'same');
        await d.move(p, p);
        assert.equal((await d.getContent(p)).toString(), 'same');
      });

      test('missing source → PathNotFoundError; the destination (and its parents) untouched', async () => {
        const dir = fresh('movemissing');
        await d.putContent(`${dir}/dst`, 'keep me');
        await assert.rejects(d.move(`${dir}/nope`, `${dir}/dst`), notFound(`${dir}/nope`));
        assert.equal((await d.getContent(`${dir}/dst`)).toString(), 'keep me');
        await assert.rejects(d.move(`${dir}/nope`, `${dir}/new/parent/dst`), notFound(`${dir}/nope`));
        await assert.rejects(d.stat(`${dir}/new`), notFound(`${dir}/new`), 'a failed move creates no directories');
        assert.deepEqual(await d.listAll(dir), [`${dir}/dst`]);
      });
    });

    // ----------------------------------------------------------------- reader
    describe('reader', () => {
      test('from offset 0, the middle, the last byte, the end (empty), past the end → InvalidOffsetError', async () => {
        const p = `${fresh('reader')}/f`;
        const content = randomBytes(3 * MiB + 17);
        await d.putContent(p, content);
        for (const off of [0, 1, 1000, 1.5 * MiB, 3 * MiB, content.length - 1, content.length]) {
          const got = await readAll(await d.reader(p, off));
          assert.equal(got.length, content.length - off, `offset ${off}: length`);
          assert.ok(got.equals(content.subarray(off)), `offset ${off}: bytes`);
        }
        assert.ok((await readAll(await d.reader(p))).equals(content), 'default offset is 0');
        for (const off of [content.length + 1, content.length + MiB]) {
          await assert.rejects(d.reader(p, off), invalidOffset(off), `offset ${off}`);
        }
        await assert.rejects(d.reader(p, -1), invalidOffset(-1));
      });

      test('an empty file: offset 0 is an empty stream, offset 1 → InvalidOffsetError', async () => {
        const p = `${fresh('readerempty')}/f`;
        await d.putContent(p, Buffer.alloc(0));
        assert.equal((await readAll(await d.reader(p, 0))).length, 0);
        await assert.rejects(d.reader(p, 1), invalidOffset(1));
      });

      test('a reader keeps streaming correctly while other readers run', async () => {
        const p = `${fresh('readers')}/f`;
        const content = randomBytes(2 * MiB);
        await d.putContent(p, content);
        const offsets = [0, 10, MiB, 2 * MiB - 1, 2 * MiB];
        const results = await Promise.all(offsets.map(async (off) => readAll(await d.reader(p, off))));
        results.forEach((got, i) => assert.ok(got.equals(content.subarray(offsets[i])), `reader at ${offsets[i]}`));
      });
    });

    // ------------------------------------------------------ open (optional)
    describe('open (positional reads; optional, null where the driver only streams)', () => {
      test('reads at any position into the caller\'s buffer; 0 at the end; missing path or directory → PathNotFoundError', async () => {
        const dir = fresh('open');
        const p = `${dir}/f`;
        const content = randomBytes(MiB + 333);
        await d.putContent(p, content);
        const file = await d.openFile(p);
        if (file === null) {
          assert.ok(!d.inner.open, 'null only from a driver without open()');
          return;
        }
        try {
          assert.equal(file.size, content.length);
          const buf = Buffer.alloc(64 * 1024);
          for (const pos of [0, 1, 65_535, MiB, content.length - 10]) {
            const n = await file.read(buf, buf.length, pos);
            assert.equal(n, Math.min(buf.length, content.length - pos), `at ${pos}`);
            assert.ok(buf.subarray(0, n).equals(content.subarray(pos, pos + n)), `bytes at ${pos}`);
          }
          assert.equal(await file.read(buf, buf.length, content.length), 0, 'at the end');
        } finally {
          await file.close();
        }
        await assert.rejects(d.openFile(`${dir}/missing`), notFound(`${dir}/missing`));
        await assert.rejects(d.openFile(dir), notFound(dir));
      });
    });

    // ----------------------------------------------------------------- writer
    describe('writer', () => {
      test('many chunks then commit: content is the concatenation, size grows with every write', async () => {
        const p = `${fresh('writer')}/f`;
        const w = await d.writer(p, { append: false });
        assert.equal(w.size, 0);
        const chunks: Buffer[] = [];
        let total = 0;
        for (let i = 0; i < 120; i++) {
          const len = i % 17 === 0 ? 0 : (i * 7919) % 70_000; // includes empty chunks
          const c = randomBytes(len);
          chunks.push(c);
          await w.write(c);
          total += len;
          assert.equal(w.size, total, `size after write #${i}`);
        }
        await w.commit();
        const want = Buffer.concat(chunks);
        assert.equal(w.size, want.length, 'size after commit');
        const got = await d.getContent(p);
        assert.equal(got.length, want.length);
        assert.ok(got.equals(want));
        assert.equal((await d.stat(p)).size, want.length);
      });

      test('close without commit, then append writers continue from the held size; commit gives the concatenation', { skip: opts.noAppendToNonEmpty ?? false }, async () => {
        const p = `${fresh('resume')}/data`;
        const parts = [randomBytes(100_000), randomBytes(5), randomBytes(3 * MiB + 1), randomBytes(70_001), randomBytes(1)];
        const w1 = await d.writer(p, { append: false });
        await w1.write(parts[0]!);
        await w1.write(parts[1]!);
        await w1.close();
        const held1 = parts[0]!.length + parts[1]!.length;
        assert.equal(w1.size, held1, 'size survives close');

        const w2 = await d.writer(p, { append: true });
        assert.equal(w2.size, held1, 'an append writer finds what was held');
        await w2.write(parts[2]!);
        assert.equal(w2.size, held1 + parts[2]!.length);
        await w2.close();

        const w3 = await d.writer(p, { append: true });
        const held2 = held1 + parts[2]!.length;
        assert.equal(w3.size, held2);
        await w3.write(parts[3]!);
        await w3.write(parts[4]!);
        await w3.commit();
        const want = Buffer.concat(parts);
        assert.equal(w3.size, want.length);
        assert.ok((await d.getContent(p)).equals(want));
        assert.equal((await d.stat(p)).size, want.length);
      });

      test('an append writer on a missing path starts empty', async () => {
        const p = `${fresh('appendnew')}/f`;
        const w = await d.writer(p, { append: true });
        assert.equal(w.size, 0);
        await w.write(Buffer.from('fresh'));
        await w.commit();
        assert.equal((await d.getContent(p)).toString(), 'fresh');
      });

      test('a non-append writer truncates: committed content and held (closed) content alike', async () => {
        const dir = fresh('truncate');
        await d.putContent(`${dir}/f`, 'previous content, much longer than the new one');
        const w = await d.writer(`${dir}/f`, { append: false });
        assert.equal(w.size, 0, 'a non-append writer starts at 0');
        await w.write(Buffer.from('new'));
        await w.commit();
        assert.equal((await d.getContent(`${dir}/f`)).toString(), 'new');
        assert.equal((await d.stat(`${dir}/f`)).size, 3);

        const h = await d.writer(`${dir}/g`, { append: false });
        await h.write(randomBytes(5000));
        await h.close();
        const t = await d.writer(`${dir}/g`, { append: false });
        assert.equal(t.size, 0);
        await t.write(Buffer.from('xyz'));
        await t.commit();
        assert.equal((await d.getContent(`${dir}/g`)).toString(), 'xyz');
      });

      test('cancel() removes the file, also after close + append resume', async () => {
        const dir = fresh('cancel');
        const w = await d.writer(`${dir}/a`, { append: false });
        await w.write(randomBytes(10_000));
        await w.cancel();
        await assert.rejects(d.stat(`${dir}/a`), notFound(`${dir}/a`));
        await assert.rejects(d.getContent(`${dir}/a`), notFound(`${dir}/a`));

        const w1 = await d.writer(`${dir}/b`, { append: false });
        await w1.write(randomBytes(10_000));
        await w1.close();
        const w2 = await d.writer(`${dir}/b`, { append: true });
        assert.equal(w2.size, 10_000);
        await w2.write(randomBytes(500));
        await w2.cancel();
        await assert.rejects(d.stat(`${dir}/b`), notFound(`${dir}/b`));
        const w3 = await d.writer(`${dir}/b`, { append: true });
        assert.equal(w3.size, 0, 'nothing is held after cancel');
        await w3.cancel();
        await assert.rejects(d.stat(`${dir}/b`), notFound(`${dir}/b`));
      });

      test('a closed or committed writer refuses further writes and commits', async () => {
        const dir = fresh('closedwriter');
        const w = await d.writer(`${dir}/c`, { append: false });
        await w.write(Buffer.from('abc'));
        await w.commit();
        await assert.rejects(w.write(Buffer.from('more')), 'write after commit');
        await assert.rejects(w.commit(), 'commit after commit');
        assert.equal((await d.getContent(`${dir}/c`)).toString(), 'abc');

        const x = await d.writer(`${dir}/x`, { append: false });
        await x.write(Buffer.from('held'));
        await x.close();
        await assert.rejects(x.write(Buffer.from('more')), 'write after close');
        await assert.rejects(x.commit(), 'commit after close');
        const resumed = await d.writer(`${dir}/x`, { append: true });
        assert.equal(resumed.size, 4, 'refused writes added nothing');
        await resumed.commit();
        assert.equal((await d.getContent(`${dir}/x`)).toString(), 'held');
      });

      test('concurrent writers to different paths keep their own bytes', async () => {
        const dir = fresh('concurrentwriters');
        const count = 8;
        const expected: Buffer[][] = Array.from({ length: count }, () => []);
        await Promise.all(
          Array.from({ length: count }, async (_, i) => {
            const w = await d.writer(`${dir}/w${i}`, { append: false });
            for (let j = 0; j < 40; j++) {
              const c = randomBytes(1000 + ((i * 131 + j * 977) % 60_000));
              expected[i]!.push(c);
              await w.write(c);
              if (j % 5 === i % 5) await new Promise((r) => setImmediate(r)); // interleave
            }
            await w.commit();
          }),
        );
        for (let i = 0; i < count; i++) {
          const want = Buffer.concat(expected[i]!);
          const got = await d.getContent(`${dir}/w${i}`);
          assert.equal(got.length, want.length, `w${i} length`);
          assert.ok(got.equals(want), `w${i} bytes`);
        }
        assert.deepEqual(await d.listAll(dir), Array.from({ length: count }, (_, i) => `${dir}/w${i}`).sort(byteOrder));
      });

      test('a 64 MiB write in 64 KiB chunks, streamed back by a reader with the same sha256', { timeout: 600_000 }, async () => {
        const p = `${fresh('large')}/blob`;
        const chunkSize = 64 * KiB;
        const total = 64 * MiB;
        const h = createHash('sha256');
        const w = await d.writer(p, { append: false });
        for (let off = 0; off < total; off += chunkSize) {
          const c = randomBytes(chunkSize); // a fresh buffer per chunk
          h.update(c);
          await w.write(c);
        }
        assert.equal(w.size, total);
        await w.commit();
        const want = h.digest('hex');
        assert.equal((await d.stat(p)).size, total);
        const got = await sha256Stream(await d.reader(p, 0));
        assert.equal(got.size, total);
        assert.equal(got.digest, want);
        // And from an offset inside, crossing chunk boundaries.
        const tail = await readAll(await d.reader(p, total - 100_000));
        assert.equal(tail.length, 100_000);
        await d.delete(p);
      });
    });

    // ----------------------------------------------------------------- walk
    describe('walk', () => {
      const tree = (dir: string) =>
        new Map<string, number>(
          [
            `${dir}/a`,
            `${dir}/B`,
            `${dir}/b/c`,
            `${dir}/b/d/e`,
            `${dir}/b/d/f.g`,
            `${dir}/b-x/f`,
            `${dir}/b.y`,
            `${dir}/z/y/x/w`,
            `${dir}/sha256:aa/link`,
            `${dir}/_uploads/u-1/data`,
            `${dir}/_uploads/u-1/startedat`,
          ].map((p, i) => [p, i * 3 + 1]),
        );

      async function build(dir: string): Promise<Map<string, number>> {
        const files = tree(dir);
        for (const [p, size] of files) await d.putContent(p, Buffer.alloc(size, 0x61));
        return files;
      }

      test('visits every file and directory below the path exactly once, in lexical order', async () => {
        const dir = fresh('walk');
        const files = await build(dir);
        await d.putContent(`${dir}-sibling/outside`, 'not below'); // shares the name prefix
        const visited: FileInfo[] = [];
        await d.walk(dir, (info) => {
          visited.push(info);
        });
        const want = expectedWalk(dir, files);
        assert.deepEqual(
          visited.map((v) => v.path),
          want.map((w) => w.path),
        );
        for (const [i, w] of want.entries()) {
          assert.equal(visited[i]!.isDir, w.isDir, `${w.path} isDir`);
          if (!w.isDir) assert.equal(visited[i]!.size, w.size, `${w.path} size`);
        }
        // The root of a walk may be '/' as well; the tree appears in it.
        const fromRoot: string[] = [];
        await d.walk('/', (info) => {
          fromRoot.push(info.path);
          // Stay inside this test's tree: skip every other top-level and suite-level directory.
          if (info.isDir && !(dir === info.path || dir.startsWith(info.path + '/') || info.path.startsWith(dir + '/'))) return 'skip';
        });
        const inside = fromRoot.filter((p) => p.startsWith(dir + '/'));
        assert.deepEqual(inside, want.map((w) => w.path));
        assert.ok(fromRoot.includes(root) && fromRoot.includes(dir));
      });

      test("'skip' on a directory skips its subtree; 'skip' on a file changes nothing", async () => {
        const dir = fresh('walkskip');
        const files = await build(dir);
        const visited: string[] = [];
        await d.walk(dir, (info) => {
          visited.push(info.path);
          if (info.path === `${dir}/b` || info.path === `${dir}/a` || info.path === `${dir}/_uploads/u-1`) return 'skip';
        });
        const want = expectedWalk(dir, files)
          .map((w) => w.path)
          .filter((p) => !p.startsWith(`${dir}/b/`) && !p.startsWith(`${dir}/_uploads/u-1/`));
        assert.deepEqual(visited, want);
        assert.ok(visited.includes(`${dir}/b-x/f`), 'a sibling sharing the name prefix is still walked');
      });

      test("'stop' ends the walk at once, and the walk resolves", async () => {
        const dir = fresh('walkstop');
        const files = await build(dir);
        const want = expectedWalk(dir, files).map((w) => w.path);
        for (const stopAt of [0, 3, 6, want.length - 1]) {
          const visited: string[] = [];
          await d.walk(dir, async (info) => {
            visited.push(info.path);
            await new Promise((r) => setImmediate(r)); // async visitors are awaited
            if (visited.length === stopAt + 1) return 'stop';
          });
          assert.deepEqual(visited, want.slice(0, stopAt + 1), `stop at #${stopAt}`);
        }
      });

      test('an error thrown by the visitor ends the walk and rejects it', async () => {
        const dir = fresh('walkthrow');
        await build(dir);
        const boom = new Error('visitor failed');
        let calls = 0;
        await assert.rejects(
          d.walk(dir, () => {
            if (++calls === 2) throw boom;
          }),
          (err) => err === boom,
        );
        assert.equal(calls, 2);
      });
    });

    // ----------------------------------------------------------------- redirectUrl
    describe('redirectUrl', () => {
      test('returns null or an absolute http(s) URL', async () => {
        const p = `${fresh('redirect')}/f`;
        await d.putContent(p, 'content');
        for (const method of [undefined, 'GET', 'HEAD']) {
          const url = await d.redirectUrl(p, method ? { method } : undefined);
          assert.ok(url === null || typeof url === 'string', `got ${typeof url}`);
          if (url !== null) assert.match(new URL(url).protocol, /^https?:$/);
          if (!d.redirects) assert.equal(url, null, 'a driver without redirectUrl never redirects');
        }
      });
    });

    // ----------------------------------------------------------------- temporary files
    describe('temporary files', () => {
      test('list never shows temporary files while 50 putContent calls run in the directory', { timeout: 300_000 }, async () => {
        const dir = fresh('tmpvisible');
        await d.putContent(`${dir}/existing`, 'x');
        const names = Array.from({ length: 40 }, (_, i) => `f${i}`);
        const allowed = new Set([`${dir}/existing`, `${dir}/same`, ...names.map((nm) => `${dir}/${nm}`)]);
        let done = false;
        let listings = 0;
        const watcher = (async () => {
          while (!done || listings < 3) {
            const entries = await d.listAll(dir);
            listings++;
            for (const e of entries) assert.ok(allowed.has(e), `list showed ${e}`);
            await new Promise((r) => setImmediate(r));
          }
        })();
        try {
          await Promise.all([
            ...names.map((nm) => d.putContent(`${dir}/${nm}`, randomBytes(64 * KiB))),
            ...Array.from({ length: 10 }, () => d.putContent(`${dir}/same`, randomBytes(64 * KiB))),
          ]);
        } finally {
          done = true;
        }
        await watcher;
        assert.deepEqual(await d.listAll(dir), [...allowed].sort(byteOrder));
        const walked: string[] = [];
        await d.walk(dir, (info) => {
          walked.push(info.path);
        });
        assert.deepEqual(walked, [...allowed].sort(byteOrder));
      });
    });
  });
}
