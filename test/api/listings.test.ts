// Listing endpoints against a live server: tags list and catalog (order, n/last pagination,
// Link headers), and the referrers API (descriptors, filtering, deletion, scoping).
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { Client, expectError, nextLink, random, sha256 } from '../helpers/client.js';
import { apiDrivers, stopDrivers, storageFor as driverStorage } from '../helpers/drivers.js';
import { startInProcess, type RunningBerth } from '../helpers/berth.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const EMPTY_TYPE = 'application/vnd.oci.empty.v1+json';
const EMPTY_DIGEST = 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a';

/** Byte-order comparison (what the spec's "lexical" order means for ASCII names). */
const byteOrder = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

/** Pushes a small manifest (empty config, one layer) to `repo` under each of `refs`. */
async function pushSmall(c: Client, repo: string, refs: string[], extra: Record<string, unknown> = {}): Promise<{ digest: string; body: Buffer }> {
  await c.pushBlob(repo, '{}');
  const layer = random(64);
  const layerDigest = await c.pushBlob(repo, layer);
  const body = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: EMPTY_TYPE, digest: EMPTY_DIGEST, size: 2 },
      layers: [{ mediaType: 'application/octet-stream', digest: layerDigest, size: layer.length }],
      ...extra,
    }),
  );
  for (const ref of refs.length ? refs : [sha256(body)]) {
    const res = await c.fetch(`/v2/${repo}/manifests/${ref}`, { method: 'PUT', body, headers: { 'Content-Type': OCI_MANIFEST } });
    assert.equal(res.status, 201, await res.text());
  }
  return { digest: sha256(body), body };
}

/** Follows Link headers from `first`; returns every page's entries. */
async function allPages<T>(c: Client, first: string, key: string, prefix: RegExp): Promise<T[][]> {
  const pages: T[][] = [];
  let url: string | null = first;
  while (url !== null) {
    assert.ok(pages.length < 100, 'pagination does not end');
    const res = await c.fetch(url);
    assert.equal(res.status, 200, await res.clone().text());
    const link = nextLink(res);
    if (link !== null) assert.match(link, prefix);
    pages.push(((await res.json()) as Record<string, T[]>)[key]!);
    url = link;
  }
  return pages;
}

/** Stops a server and removes the storage root the helper made for it. */
async function stop(berth: RunningBerth): Promise<void> {
  await berth.stop();
  if (berth.root) rmSync(berth.root, { recursive: true, force: true });
}

after(() => stopDrivers());

for (const { driver, skip } of apiDrivers()) {
  const storageFor = () => driverStorage(driver, { delete: { enabled: true } });

  describe(`tags list (${driver})`, { skip }, () => {
    let berth: RunningBerth;
    let c: Client;
    const tags = ['latest', 'b', 'a', 'B', 'A', '_x', '1.10', '1.9', '1.0', 'z-1', 'v1.0.0-rc.1', 'a_b', 'a-b', 'a.b'];
    const sorted = [...tags].sort(byteOrder);
    before(async () => {
      berth = await startInProcess({ storage: await storageFor() });
      c = new Client(berth.url);
      await pushSmall(c, 'tags/repo', tags);
    });
    after(() => stop(berth));

    test('every tag, in lexical (byte) order, with the repository name', async () => {
      assert.deepEqual(sorted.slice(0, 5), ['1.0', '1.10', '1.9', 'A', 'B']);
      const res = await c.fetch('/v2/tags/repo/tags/list');
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /application\/json/);
      assert.equal(res.headers.get('link'), null, 'no Link without n');
      assert.deepEqual(await res.json(), { name: 'tags/repo', tags: sorted });
    });

    test('n limits the page; following Link headers returns every tag exactly once, in order', async () => {
      for (const n of [1, 3, 5, 7, 13, 14]) {
        const pages = await allPages<string>(c, `/v2/tags/repo/tags/list?n=${n}`, 'tags', /^\/v2\/tags\/repo\/tags\/list\?/);
        for (const p of pages) assert.ok(p.length <= n, `page larger than n=${n}`);
        assert.deepEqual(pages.flat(), sorted, `n=${n}`);
        assert.equal(pages.filter((p) => p.length > 0).length, Math.ceil(sorted.length / n), `n=${n}: page count`);
      }
      // the first page's Link carries n and last
      const res = await c.fetch('/v2/tags/repo/tags/list?n=4');
      const link = nextLink(res);
      assert.ok(link);
      const q = new URL(link, 'http://x').searchParams;
      assert.equal(q.get('n'), '4');
      assert.equal(q.get('last'), sorted[3]);
      assert.deepEqual(((await res.json()) as { tags: string[] }).tags, sorted.slice(0, 4));
    });

    test('n larger than the number of tags → all of them, no Link', async () => {
      const res = await c.fetch('/v2/tags/repo/tags/list?n=1000');
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('link'), null);
      assert.deepEqual(((await res.json()) as { tags: string[] }).tags, sorted);
    });

    test('last: tags after it (whether or not it is a tag), with or without n', async () => {
      const after = async (q: string) => ((await (await c.fetch(`/v2/tags/repo/tags/list?${q}`)).json()) as { tags: string[] }).tags;
      assert.deepEqual(await after('last=a'), sorted.slice(sorted.indexOf('a') + 1));
      assert.deepEqual(await after('last=a&n=2'), sorted.slice(sorted.indexOf('a') + 1, sorted.indexOf('a') + 3));
      assert.deepEqual(await after('last=1.5'), sorted.filter((t) => byteOrder(t, '1.5') > 0));
      assert.deepEqual(await after('n=2&last=1.0'), ['1.10', '1.9']);
    });

    test('n=0 → empty list; last beyond the end → 200 empty list', async () => {
      const zero = await c.fetch('/v2/tags/repo/tags/list?n=0');
      assert.equal(zero.status, 200);
      assert.deepEqual(((await zero.json()) as { tags: string[] }).tags, []);
      const beyond = await c.fetch('/v2/tags/repo/tags/list?last=zzz');
      assert.equal(beyond.status, 200);
      assert.equal(beyond.headers.get('link'), null);
      assert.deepEqual(((await beyond.json()) as { tags: string[] }).tags, []);
      const beyondN = await c.fetch('/v2/tags/repo/tags/list?n=5&last=zzz');
      assert.equal(beyondN.status, 200);
      assert.deepEqual(((await beyondN.json()) as { tags: string[] }).tags, []);
    });

    test('n=-1, n=abc, n=1.5 → 400 PAGINATION_NUMBER_INVALID', async () => {
      for (const n of ['-1', 'abc', '1.5', '1e3']) {
        await expectError(await c.fetch(`/v2/tags/repo/tags/list?n=${n}`), 400, 'PAGINATION_NUMBER_INVALID');
      }
    });

    test('unknown repository → 404 NAME_UNKNOWN; invalid name → 400 NAME_INVALID', async () => {
      await expectError(await c.fetch('/v2/tags/nothing/tags/list'), 404, 'NAME_UNKNOWN');
      await expectError(await c.fetch('/v2/tags/nothing/tags/list?n=2'), 404, 'NAME_UNKNOWN');
      await expectError(await c.fetch('/v2/Tags/Repo/tags/list'), 400, 'NAME_INVALID');
    });

    test('a deleted tag disappears from the list; a new tag appears', async () => {
      await pushSmall(c, 'tags/changing', ['one', 'two', 'three']);
      const del = await c.fetch('/v2/tags/changing/manifests/two', { method: 'DELETE' });
      assert.equal(del.status, 202);
      await pushSmall(c, 'tags/changing', ['four']);
      const res = await c.fetch('/v2/tags/changing/tags/list');
      assert.deepEqual(((await res.json()) as { tags: string[] }).tags, ['four', 'one', 'three']);
    });
  });

  describe(`catalog (${driver})`, { skip }, () => {
    let berth: RunningBerth;
    let c: Client;
    const repos = ['b', 'a/b', 'a', 'a-b', 'z/y/x', 'ab', 'a/b/c', 'a.b', 'a_b', 'a__b', 'a0', 'x/a-b/c'];
    const sorted = [...repos, 'blobonly/repo'].sort(byteOrder);
    before(async () => {
      berth = await startInProcess({ storage: await storageFor() });
      c = new Client(berth.url);
      for (const r of repos) await pushSmall(c, r, ['v1']);
      // a repository with blobs but no manifest yet is listed (as Distribution 2.8 lists
      // it); one with only an upload session in progress is not
      await c.pushBlob('blobonly/repo', random(10));
      await c.startUpload('uploadonly/repo');
    });
    after(() => stop(berth));

    test('every repository with blobs or manifests, nested names included, in byte order', async () => {
      assert.deepEqual(sorted.slice(0, 5), ['a', 'a-b', 'a.b', 'a/b', 'a/b/c']);
      const res = await c.fetch('/v2/_catalog');
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /application\/json/);
      assert.deepEqual(await res.json(), { repositories: sorted });
    });

    test('n and Link pagination return every repository exactly once', async () => {
      for (const n of [1, 2, 5, 12]) {
        const pages = await allPages<string>(c, `/v2/_catalog?n=${n}`, 'repositories', /^\/v2\/_catalog\?/);
        for (const p of pages) assert.ok(p.length <= n);
        assert.deepEqual(pages.flat(), sorted, `n=${n}`);
      }
      const res = await c.fetch('/v2/_catalog?n=4');
      const link = nextLink(res);
      assert.ok(link);
      const q = new URL(link, 'http://x').searchParams;
      assert.equal(q.get('n'), '4');
      assert.equal(q.get('last'), 'a/b');
    });

    test('last, n=0, last beyond the end, bad n', async () => {
      const list = async (q: string) => ((await (await c.fetch(`/v2/_catalog?${q}`)).json()) as { repositories: string[] }).repositories;
      assert.deepEqual(await list('last=a/b'), sorted.slice(sorted.indexOf('a/b') + 1));
      assert.deepEqual(await list('last=a%2Fb&n=2'), ['a/b/c', 'a0']);
      assert.deepEqual(await list('n=0'), []);
      assert.deepEqual(await list('last=zzz'), []);
      for (const n of ['-1', 'abc']) await expectError(await c.fetch(`/v2/_catalog?n=${n}`), 400, 'PAGINATION_NUMBER_INVALID');
    });

    test('a repository whose first blob arrives is listed from then on; an upload alone does not list it', async () => {
      const before = ((await (await c.fetch('/v2/_catalog')).json()) as { repositories: string[] }).repositories;
      assert.ok(!before.includes('late/repo'));
      await c.startUpload('late/repo');
      const during = ((await (await c.fetch('/v2/_catalog')).json()) as { repositories: string[] }).repositories;
      assert.ok(!during.includes('late/repo'));
      await c.pushBlob('late/repo', random(10));
      const after = ((await (await c.fetch('/v2/_catalog')).json()) as { repositories: string[] }).repositories;
      assert.deepEqual(after, [...sorted, 'late/repo'].sort(byteOrder));
    });
  });

  describe(`referrers (${driver})`, { skip }, () => {
    let berth: RunningBerth;
    let c: Client;
    before(async () => {
      berth = await startInProcess({ storage: await storageFor() });
      c = new Client(berth.url);
    });
    after(() => stop(berth));

    interface Desc {
      mediaType: string;
      digest: string;
      size: number;
      artifactType?: string;
      annotations?: Record<string, string>;
    }

    async function referrers(repo: string, subject: string, query = ''): Promise<{ res: Response; manifests: Desc[] }> {
      const res = await c.fetch(`/v2/${repo}/referrers/${subject}${query}`);
      const text = await res.text();
      assert.equal(res.status, 200, text);
      assert.equal(res.headers.get('content-type'), OCI_INDEX);
      const body = JSON.parse(text) as { schemaVersion: number; mediaType: string; manifests: Desc[] };
      assert.equal(body.schemaVersion, 2);
      assert.equal(body.mediaType, OCI_INDEX);
      assert.ok(Array.isArray(body.manifests));
      return { res, manifests: [...body.manifests].sort((a, b) => byteOrder(a.digest, b.digest)) };
    }

    const byDigest = (ds: Desc[]) => [...ds].sort((a, b) => byteOrder(a.digest, b.digest));

    test('descriptors of image manifests and indexes that name the subject, with artifactType and annotations', async () => {
      const repo = 'ref/app';
      const subject = await pushSmall(c, repo, ['v1']);
      const subj = { mediaType: OCI_MANIFEST, digest: subject.digest, size: subject.body.length };

      // A: artifactType set on the manifest, annotations
      const sbom = await pushSmall(c, repo, [], {
        artifactType: 'application/vnd.example.sbom.v1',
        subject: subj,
        annotations: { 'org.opencontainers.image.created': '2024-05-01T00:00:00Z', 'com.example.k': 'v' },
      });
      // B: no artifactType: the config's media type stands in for it
      const cfg = Buffer.from('{"sig":true}');
      const cfgDigest = await c.pushBlob(repo, cfg);
      const sigBody = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          config: { mediaType: 'application/vnd.example.sig.config.v1+json', digest: cfgDigest, size: cfg.length },
          layers: [{ mediaType: EMPTY_TYPE, digest: EMPTY_DIGEST, size: 2 }],
          subject: subj,
        }),
      );
      const put = await c.fetch(`/v2/${repo}/manifests/sig`, { method: 'PUT', body: sigBody, headers: { 'Content-Type': OCI_MANIFEST } });
      assert.equal(put.status, 201, await put.text());
      // C: an index with a subject
      const child = await pushSmall(c, repo, []);
      const idxBody = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_INDEX,
          artifactType: 'application/vnd.example.bundle',
          manifests: [{ mediaType: OCI_MANIFEST, digest: child.digest, size: child.body.length }],
          subject: subj,
          annotations: { 'com.example.index': 'yes' },
        }),
      );
      const putIdx = await c.fetch(`/v2/${repo}/manifests/bundle`, { method: 'PUT', body: idxBody, headers: { 'Content-Type': OCI_INDEX } });
      assert.equal(putIdx.status, 201, await putIdx.text());

      const { res, manifests } = await referrers(repo, subject.digest);
      assert.equal(res.headers.get('oci-filters-applied'), null);
      assert.deepEqual(
        manifests,
        byDigest([
          {
            mediaType: OCI_MANIFEST,
            digest: sbom.digest,
            size: sbom.body.length,
            artifactType: 'application/vnd.example.sbom.v1',
            annotations: { 'org.opencontainers.image.created': '2024-05-01T00:00:00Z', 'com.example.k': 'v' },
          },
          { mediaType: OCI_MANIFEST, digest: sha256(sigBody), size: sigBody.length, artifactType: 'application/vnd.example.sig.config.v1+json' },
          { mediaType: OCI_INDEX, digest: sha256(idxBody), size: idxBody.length, artifactType: 'application/vnd.example.bundle', annotations: { 'com.example.index': 'yes' } },
        ]),
      );

      // ?artifactType= filters, and says so
      const f = await referrers(repo, subject.digest, `?artifactType=${encodeURIComponent('application/vnd.example.sbom.v1')}`);
      assert.equal(f.res.headers.get('oci-filters-applied'), 'artifactType');
      assert.deepEqual(f.manifests.map((m) => m.digest), [sbom.digest]);
      const g = await referrers(repo, subject.digest, `?artifactType=${encodeURIComponent('application/vnd.example.sig.config.v1+json')}`);
      assert.equal(g.res.headers.get('oci-filters-applied'), 'artifactType');
      assert.deepEqual(g.manifests.map((m) => m.digest), [sha256(sigBody)]);
      const none = await referrers(repo, subject.digest, '?artifactType=application/vnd.example.none');
      assert.equal(none.res.headers.get('oci-filters-applied'), 'artifactType');
      assert.deepEqual(none.manifests, []);

      // pushing a referrer again (another tag) does not list it twice
      const again = await c.fetch(`/v2/${repo}/manifests/sig-again`, { method: 'PUT', body: sigBody, headers: { 'Content-Type': OCI_MANIFEST } });
      assert.equal(again.status, 201);
      assert.equal((await referrers(repo, subject.digest)).manifests.length, 3);

      // a deleted referrer disappears
      const del = await c.fetch(`/v2/${repo}/manifests/${sha256(sigBody)}`, { method: 'DELETE' });
      assert.equal(del.status, 202, await del.text());
      assert.deepEqual((await referrers(repo, subject.digest)).manifests.map((m) => m.digest), byDigest([
        { digest: sbom.digest } as Desc,
        { digest: sha256(idxBody) } as Desc,
      ]).map((d) => d.digest));
      // untagging one does not
      const untag = await c.fetch(`/v2/${repo}/manifests/bundle`, { method: 'DELETE' });
      assert.equal(untag.status, 202);
      assert.equal((await referrers(repo, subject.digest)).manifests.length, 2);

      // the subject's own referrers are per repository
      assert.deepEqual((await referrers('ref/other', subject.digest)).manifests, []);
    });

    test('referrers pushed before their subject are listed; the subject need never exist', async () => {
      const repo = 'ref/early';
      const ghost = sha256('a subject nobody pushed');
      const r = await pushSmall(c, repo, [], {
        artifactType: 'application/vnd.example.early',
        subject: { mediaType: OCI_MANIFEST, digest: ghost, size: 99 },
      });
      const { manifests } = await referrers(repo, ghost);
      assert.deepEqual(manifests, [{ mediaType: OCI_MANIFEST, digest: r.digest, size: r.body.length, artifactType: 'application/vnd.example.early' }]);
    });

    test('an unknown subject, or an unknown repository → 200 with no manifests (never 404)', async () => {
      await pushSmall(c, 'ref/empty', ['v1']);
      assert.deepEqual((await referrers('ref/empty', sha256('unknown subject'))).manifests, []);
      assert.deepEqual((await referrers('ref/nothing/here', sha256('unknown subject'))).manifests, []);
      const f = await referrers('ref/nothing/here', sha256('x'), '?artifactType=application/vnd.example');
      assert.equal(f.res.headers.get('oci-filters-applied'), 'artifactType');
    });

    test('an invalid subject digest → 400 DIGEST_INVALID', async () => {
      for (const d of ['sha256:abc', 'latest', `sha256:${'G'.repeat(64)}`, `md5:${'a'.repeat(32)}`]) {
        await expectError(await c.fetch(`/v2/ref/app/referrers/${d}`), 400, 'DIGEST_INVALID');
      }
    });
  });
}

/** Two Berth processes on one storage root, `options` applied to both; stopped afterwards. */
async function withSharedStorage(options: Record<string, unknown>, run: (ca: Client, cb: Client) => Promise<void>): Promise<void> {
  const storage = (options.storage as Record<string, unknown>) ?? {};
  const a = await startInProcess(options);
  const b = await startInProcess({ ...options, storage: { ...storage, filesystem: { rootdirectory: a.root! } } });
  try {
    await run(new Client(a.url), new Client(b.url));
  } finally {
    await b.stop();
    await a.stop();
  }
}

describe('catalog across processes sharing storage', () => {
  test('a repository created by another process appears once the cached catalog expires', async () => {
    await withSharedStorage({}, async (ca, cb) => {
      await ca.pushImage('shared/one', 'v1');
      const first = (await (await cb.fetch('/v2/_catalog')).json()) as { repositories: string[] };
      assert.deepEqual(first.repositories, ['shared/one']);
      await ca.pushImage('shared/two', 'v1');
      // b's copy is fresh for a few seconds; a sees its own push at once
      const own = (await (await ca.fetch('/v2/_catalog')).json()) as { repositories: string[] };
      assert.deepEqual(own.repositories, ['shared/one', 'shared/two']);
      let seen: string[] = [];
      for (let i = 0; i < 40 && seen.length < 2; i++) {
        seen = ((await (await cb.fetch('/v2/_catalog')).json()) as { repositories: string[] }).repositories;
        if (seen.length < 2) await new Promise((r) => setTimeout(r, 250));
      }
      assert.deepEqual(seen, ['shared/one', 'shared/two']);
    });
  });
});

describe('tags across processes sharing storage', () => {
  test('a tag moved by another process is served within the cache window; a tag moved here at once', async () => {
    await withSharedStorage({ storage: { delete: { enabled: true } } }, async (ca, cb) => {
      const one = await ca.pushImage('shared/tags', 'latest');
      const two = await ca.pushImage('shared/tags', 'other');
      const digestAt = async (c: Client) => (await c.fetch('/v2/shared/tags/manifests/latest', { method: 'HEAD' })).headers.get('docker-content-digest');
      assert.equal(await digestAt(cb), one.digest); // b has now read (and cached) the tag
      assert.equal((await ca.putManifest('shared/tags', 'latest', two.body)).res.status, 201);
      assert.equal(await digestAt(ca), two.digest, 'the writing process sees its own tag move at once');
      let seen: string | null = null;
      const started = Date.now();
      while (Date.now() - started < 10_000 && seen !== two.digest) {
        seen = await digestAt(cb);
        if (seen !== two.digest) await new Promise((r) => setTimeout(r, 200));
      }
      assert.equal(seen, two.digest);
      assert.ok(Date.now() - started < 7_000, `seen after ${Date.now() - started} ms`);
      // an untag by b is seen by b at once
      assert.equal((await cb.fetch('/v2/shared/tags/manifests/latest', { method: 'DELETE' })).status, 202);
      assert.equal((await cb.fetch('/v2/shared/tags/manifests/latest', { method: 'HEAD' })).status, 404);
    });
  });

  test('a tag added by another process appears in the tags list within the cache window', async () => {
    await withSharedStorage({}, async (ca, cb) => {
      const img = await ca.pushImage('shared/list', 'one');
      const tagsAt = async (c: Client) => ((await (await c.fetch('/v2/shared/list/tags/list?n=10')).json()) as { tags: string[] }).tags;
      assert.deepEqual(await tagsAt(cb), ['one']); // b has now read (and cached) the list
      assert.equal((await ca.putManifest('shared/list', 'two', img.body)).res.status, 201);
      assert.deepEqual(await tagsAt(ca), ['one', 'two'], 'the writing process sees its own tag at once');
      let seen: string[] = [];
      const started = Date.now();
      while (Date.now() - started < 10_000 && seen.length < 2) {
        seen = await tagsAt(cb);
        if (seen.length < 2) await new Promise((r) => setTimeout(r, 200));
      }
      assert.deepEqual(seen, ['one', 'two']);
      assert.ok(Date.now() - started < 7_000, `seen after ${Date.now() - started} ms`);
    });
  });
});

describe('storage.cache.ttl: 0', () => {
  test('another process\'s tag move and deletions are seen at once', async () => {
    const cache = { ttl: '0s' };
    await withSharedStorage({ storage: { cache, delete: { enabled: true } } }, async (ca, cb) => {
      const one = await ca.pushImage('nocache/tags', 'latest');
      const two = await ca.pushImage('nocache/tags', 'other');
      const digestAt = async (c: Client) => (await c.fetch('/v2/nocache/tags/manifests/latest', { method: 'HEAD' })).headers.get('docker-content-digest');
      assert.equal(await digestAt(cb), one.digest);
      assert.equal((await ca.putManifest('nocache/tags', 'latest', two.body)).res.status, 201);
      assert.equal(await digestAt(cb), two.digest);
      assert.equal((await ca.fetch(`/v2/nocache/tags/manifests/${two.digest}`, { method: 'DELETE' })).status, 202);
      assert.equal((await cb.fetch(`/v2/nocache/tags/manifests/${two.digest}`, { method: 'HEAD' })).status, 404);
      assert.equal((await cb.fetch(`/v2/nocache/tags/blobs/${two.layers[0]}`, { method: 'HEAD' })).status, 200);
      assert.equal((await ca.fetch(`/v2/nocache/tags/blobs/${two.layers[0]}`, { method: 'DELETE' })).status, 202);
      assert.equal((await cb.fetch(`/v2/nocache/tags/blobs/${two.layers[0]}`, { method: 'HEAD' })).status, 404);
      // tags lists (deleting a manifest removed the tags pointing at it): another process's
      // new tag and untag are listed at once
      const listed = async () => ((await (await cb.fetch('/v2/nocache/tags/tags/list')).json()) as { tags: string[] }).tags;
      assert.deepEqual(await listed(), []);
      for (const t of ['third', 'fourth']) assert.equal((await ca.putManifest('nocache/tags', t, one.body)).res.status, 201);
      assert.deepEqual(await listed(), ['fourth', 'third']);
      assert.equal((await ca.fetch('/v2/nocache/tags/manifests/third', { method: 'DELETE' })).status, 202);
      assert.deepEqual(await listed(), ['fourth']);
    });
  });
});

describe('tags list served from memory', () => {
  test('a tag added or removed after the list was cached is seen at once', async () => {
    const berth = await startInProcess({ storage: { delete: { enabled: true } } });
    try {
      const c = new Client(berth.url);
      const img = await c.pushImage('cached/tags', 'a');
      for (const t of ['b', 'c']) assert.equal((await c.putManifest('cached/tags', t, img.body)).res.status, 201);
      // let the directory's time settle so the list is cached, then read it twice
      await new Promise((r) => setTimeout(r, 1100));
      for (let i = 0; i < 2; i++) {
        assert.deepEqual(((await (await c.fetch('/v2/cached/tags/tags/list')).json()) as { tags: string[] }).tags, ['a', 'b', 'c']);
      }
      assert.equal((await c.putManifest('cached/tags', 'd', img.body)).res.status, 201);
      assert.deepEqual(((await (await c.fetch('/v2/cached/tags/tags/list')).json()) as { tags: string[] }).tags, ['a', 'b', 'c', 'd']);
      await new Promise((r) => setTimeout(r, 1100));
      assert.deepEqual(((await (await c.fetch('/v2/cached/tags/tags/list')).json()) as { tags: string[] }).tags, ['a', 'b', 'c', 'd']);
      assert.equal((await c.fetch('/v2/cached/tags/manifests/b', { method: 'DELETE' })).status, 202);
      assert.deepEqual(((await (await c.fetch('/v2/cached/tags/tags/list')).json()) as { tags: string[] }).tags, ['a', 'c', 'd']);
    } finally {
      await berth.stop();
    }
  });
});
