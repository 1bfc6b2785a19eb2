// The eleven scenarios of the benchmark (issue 3), written against the OCI Distribution API
// only, so the same code drives Berth, CNCF Distribution and any other registry. Each returns
// its figures (numbers, or null where a figure cannot be measured on that target) and a few
// details for the JSON report. Scenarios that build on an earlier one (a pull of the pushed
// blobs, listings of the pushed repositories) read what it left in the run context.
import { blobChunks, blobDigest, blobRange, blobBuffer, manifestFor, newSeed, MiB, type BlobSpec } from './data.js';
import { pool, type Client } from './http.js';
import { runLoad } from './load.js';
import type { ScenarioId, Sizes } from './options.js';
import { RssSampler, type Target } from './servers.js';

export const MANIFEST_ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json';
/** A blob HEAD path of the shape scenario 7 uses (for the bare server, which ignores it). */
export const HEAD_PATH_SHAPE = `/v2/bench/small/r00000/blobs/sha256:${'0'.repeat(64)}`;

export interface Blob {
  spec: BlobSpec;
  digest: string;
}

export interface SmallItem {
  repo: string;
  digest: string;
  size: number;
  manifest: Buffer;
}

export interface RunCtx {
  client: Client;
  target: Target;
  sizes: Sizes;
  /** Repository names start with this (unique per round on a shared target). */
  prefix: string;
  round: number;
  /**
   * Blob sets of this round, shared by the registries under test (each has its own storage),
   * so their digests are computed once.
   */
  shared: Map<string, Blob[]>;
  /** Blobs of scenario 1, shared with the pull. */
  big?: Blob[];
  /** Items of scenario 6. */
  small?: SmallItem[];
  /** Peak RSS sample during scenario 5. */
  rssS5?: { peakMiB: number; growthMiB: number } | null;
}

export type Figures = Record<string, number | null>;

export interface ScenarioResult {
  figures: Figures;
  details?: Record<string, unknown>;
  notes?: string[];
}

export interface Scenario {
  id: ScenarioId;
  title: string;
  /** Scenarios whose state this one uses. */
  needs: ScenarioId[];
  /**
   * Once per round before any registry runs the scenario: builds the round's blobs and their
   * digests (client CPU that must not fall inside one registry's figures).
   */
  prepare?(ctx: Pick<RunCtx, 'shared' | 'sizes'>): void;
  run(ctx: RunCtx): Promise<ScenarioResult>;
}

// ---------------------------------------------------------------------------------------------
// Client-side protocol helpers

function withDigest(location: string, digest: string): string {
  return `${location}${location.includes('?') ? '&' : '?'}digest=${encodeURIComponent(digest)}`;
}

async function startUpload(c: Client, repo: string): Promise<string> {
  const res = await c.expect(202, 'POST', `/v2/${repo}/blobs/uploads/`);
  return c.resolve(res.headers.location);
}

/** POST, then PUT ?digest= with the whole body (the portable monolithic upload). */
export async function pushMonolithic(c: Client, repo: string, blob: Blob): Promise<void> {
  const loc = await startUpload(c, repo);
  await c.expect(201, 'PUT', withDigest(loc, blob.digest), {
    headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(blob.spec.size) },
    body: blobChunks(blob.spec),
  });
}

/** POST, PATCHes of `chunkSize` bytes with Content-Range, then PUT ?digest=. */
export async function pushChunked(c: Client, repo: string, blob: Blob, chunkSize: number): Promise<void> {
  let loc = await startUpload(c, repo);
  for (let start = 0; start < blob.spec.size; start += chunkSize) {
    const len = Math.min(chunkSize, blob.spec.size - start);
    const res = await c.expect(202, 'PATCH', loc, {
      headers: {
        'Content-Type': 'application/octet-stream',
        'Content-Range': `${start}-${start + len - 1}`,
        'Content-Length': String(len),
      },
      body: blobRange(blob.spec, start, len),
    });
    loc = c.resolve(res.headers.location);
  }
  await c.expect(201, 'PUT', withDigest(loc, blob.digest));
}

/** POST, one PATCH with Transfer-Encoding: chunked (docker's way), then PUT ?digest=. */
export async function pushStreamed(c: Client, repo: string, blob: Blob): Promise<void> {
  let loc = await startUpload(c, repo);
  const res = await c.expect(202, 'PATCH', loc, {
    headers: { 'Content-Type': 'application/octet-stream' },
    body: blobChunks(blob.spec),
    framing: 'chunked',
  });
  loc = c.resolve(res.headers.location);
  await c.expect(201, 'PUT', withDigest(loc, blob.digest));
}

/** GET of a blob, hashed as it arrives; fails unless the digest matches. */
export async function pullVerified(c: Client, repo: string, blob: Blob): Promise<void> {
  const res = await c.expect(200, 'GET', `/v2/${repo}/blobs/${blob.digest}`, { consume: 'sha256' });
  if (res.digest !== blob.digest) throw new Error(`pull of ${blob.digest} from ${repo}: got ${res.digest} (${res.bytes} bytes)`);
  if (res.bytes !== blob.spec.size) throw new Error(`pull of ${blob.digest}: ${res.bytes} bytes, expected ${blob.spec.size}`);
}

async function putManifest(c: Client, repo: string, ref: string, manifest: Buffer): Promise<void> {
  await c.expect(201, 'PUT', `/v2/${repo}/manifests/${ref}`, {
    headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' },
    body: manifest,
  });
}

/** `count` new blobs of `size` bytes for this round; digests are computed before any timing. */
function newBlobs(ctx: Pick<RunCtx, 'shared'>, key: string, count: number, size: number): Blob[] {
  let blobs = ctx.shared.get(key);
  if (!blobs) {
    blobs = Array.from({ length: count }, () => {
      const spec = { seed: newSeed(), size };
      return { spec, digest: blobDigest(spec) };
    });
    ctx.shared.set(key, blobs);
  }
  return blobs;
}

function mibs(bytes: number, ms: number): number {
  return bytes / MiB / (ms / 1000);
}

async function timed(fn: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function nextLink(c: Client, link: string | string[] | undefined): string | null {
  const v = Array.isArray(link) ? link[0] : link;
  if (!v) return null;
  const m = /<([^>]+)>\s*;\s*rel="?next"?/.exec(v);
  return m ? c.resolve(m[1]) : null;
}

/** Follows a paginated listing from `first`; returns pages, entries and milliseconds. */
async function walkPages(
  c: Client,
  first: string,
  key: 'tags' | 'repositories',
  maxPages: number,
): Promise<{ pages: number; entries: number; ms: number; pageMs: number[] }> {
  let path: string | null = first;
  let pages = 0;
  let entries = 0;
  const pageMs: number[] = [];
  const t0 = performance.now();
  while (path !== null && pages < maxPages) {
    const p0 = performance.now();
    const res = await c.expect(200, 'GET', path, { consume: 'buffer' });
    pageMs.push(performance.now() - p0);
    const body = JSON.parse(res.body!.toString('utf8')) as Record<string, string[] | null>;
    entries += body[key]?.length ?? 0;
    pages++;
    path = nextLink(c, res.headers.link);
  }
  return { pages, entries, ms: performance.now() - t0, pageMs };
}

// ---------------------------------------------------------------------------------------------
// Scenarios

const s1: Scenario = {
  id: 's1',
  title: 'push, monolithic (POST + PUT with the body)',
  needs: [],
  prepare: (ctx) => void newBlobs(ctx, 's1', ctx.sizes.bigCount, ctx.sizes.bigSize),
  async run(ctx) {
    const { bigCount, bigSize } = ctx.sizes;
    const blobs = newBlobs(ctx, 's1', bigCount, bigSize);
    const repo = `${ctx.prefix}/big`;
    const ms = await timed(async () => {
      for (const b of blobs) await pushMonolithic(ctx.client, repo, b);
    });
    ctx.big = blobs;
    return { figures: { 's1.push': mibs(bigCount * bigSize, ms) }, details: { blobs: bigCount, blobBytes: bigSize, ms } };
  },
};

const s2: Scenario = {
  id: 's2',
  title: 'push, chunked (PATCH with Content-Range)',
  needs: [],
  prepare: (ctx) => void newBlobs(ctx, 's2', ctx.sizes.bigCount, ctx.sizes.bigSize),
  async run(ctx) {
    const { bigCount, bigSize, chunkSize } = ctx.sizes;
    const blobs = newBlobs(ctx, 's2', bigCount, bigSize);
    const repo = `${ctx.prefix}/chunked`;
    const ms = await timed(async () => {
      for (const b of blobs) await pushChunked(ctx.client, repo, b, chunkSize);
    });
    return { figures: { 's2.push': mibs(bigCount * bigSize, ms) }, details: { blobs: bigCount, blobBytes: bigSize, chunkBytes: chunkSize, ms } };
  },
};

const s3: Scenario = {
  id: 's3',
  title: 'push, streamed (PATCH with Transfer-Encoding: chunked)',
  needs: [],
  prepare: (ctx) => void newBlobs(ctx, 's3', ctx.sizes.bigCount, ctx.sizes.bigSize),
  async run(ctx) {
    const { bigCount, bigSize } = ctx.sizes;
    const blobs = newBlobs(ctx, 's3', bigCount, bigSize);
    const repo = `${ctx.prefix}/streamed`;
    const ms = await timed(async () => {
      for (const b of blobs) await pushStreamed(ctx.client, repo, b);
    });
    return { figures: { 's3.push': mibs(bigCount * bigSize, ms) }, details: { blobs: bigCount, blobBytes: bigSize, ms } };
  },
};

const s4: Scenario = {
  id: 's4',
  title: 'pull with sha256 verification at the client',
  needs: ['s1'],
  async run(ctx) {
    const blobs = ctx.big!;
    const repo = `${ctx.prefix}/big`;
    const ms = await timed(async () => {
      for (const b of blobs) await pullVerified(ctx.client, repo, b);
    });
    const bytes = blobs.reduce((n, b) => n + b.spec.size, 0);
    return { figures: { 's4.pull': mibs(bytes, ms) }, details: { blobs: blobs.length, ms } };
  },
};

const s5: Scenario = {
  id: 's5',
  title: 'parallel pushes, then parallel pulls',
  needs: [],
  prepare: (ctx) => void newBlobs(ctx, 's5', ctx.sizes.parallel, ctx.sizes.parallelSize),
  async run(ctx) {
    const { parallel, parallelSize } = ctx.sizes;
    const blobs = newBlobs(ctx, 's5', parallel, parallelSize);
    const repo = `${ctx.prefix}/parallel`;
    const sampler = ctx.target.pid !== null ? new RssSampler(ctx.target.pid) : null;
    sampler?.begin();
    const pushMs = await timed(() => Promise.all(blobs.map((b) => pushMonolithic(ctx.client, repo, b))).then(() => {}));
    const pullMs = await timed(() => Promise.all(blobs.map((b) => pullVerified(ctx.client, repo, b))).then(() => {}));
    ctx.rssS5 = sampler?.end() ?? null;
    const bytes = parallel * parallelSize;
    return {
      figures: { 's5.push': mibs(bytes, pushMs), 's5.pull': mibs(bytes, pullMs) },
      details: { streams: parallel, blobBytes: parallelSize, pushMs, pullMs, rss: ctx.rssS5 },
    };
  },
};

const s6: Scenario = {
  id: 's6',
  title: 'small objects: blob + manifest, each in its own repository',
  needs: [],
  prepare: (ctx) => void newBlobs(ctx, 's6', ctx.sizes.smallCount, ctx.sizes.smallSize),
  async run(ctx) {
    const { smallCount, smallSize, smallConcurrency } = ctx.sizes;
    // Bodies, digests and manifests are built before timing starts.
    const blobs = newBlobs(ctx, 's6', smallCount, smallSize);
    const bodies = blobs.map((b) => blobBuffer(b.spec));
    const items: SmallItem[] = blobs.map((b, i) => ({
      repo: `${ctx.prefix}/small/r${String(i).padStart(5, '0')}`,
      digest: b.digest,
      size: smallSize,
      manifest: manifestFor(b.digest, smallSize),
    }));
    const ms = await timed(() =>
      pool(items.length, smallConcurrency, async (i) => {
        const it = items[i]!;
        const loc = await startUpload(ctx.client, it.repo);
        await ctx.client.expect(201, 'PUT', withDigest(loc, it.digest), {
          headers: { 'Content-Type': 'application/octet-stream' },
          body: bodies[i]!,
        });
        await putManifest(ctx.client, it.repo, 'v1', it.manifest);
      }),
    );
    ctx.small = items;
    // One operation is a blob push (POST + PUT) or a manifest PUT (by tag).
    return {
      figures: { 's6.ops': (2 * items.length) / (ms / 1000) },
      details: { items: items.length, blobBytes: smallSize, concurrency: smallConcurrency, ms },
    };
  },
};

const s7: Scenario = {
  id: 's7',
  title: 'HEAD blob and GET manifest (by tag), closed loop',
  needs: ['s6'],
  async run(ctx) {
    const { loadConnections, loadMs, loadWarmupMs } = ctx.sizes;
    const it = ctx.small![0]!;
    const base = { host: ctx.client.host, port: ctx.client.port, connections: loadConnections, durationMs: loadMs, warmupMs: loadWarmupMs };
    const head = await runLoad({ ...base, method: 'HEAD', path: `/v2/${it.repo}/blobs/${it.digest}` });
    const get = await runLoad({ ...base, method: 'GET', path: `/v2/${it.repo}/manifests/v1`, headers: { Accept: MANIFEST_ACCEPT } });
    const notes: string[] = [];
    for (const [what, r] of [['HEAD blob', head], ['GET manifest', get]] as const) {
      if (r.errors > 0) notes.push(`${ctx.target.kind}: ${what}: ${r.errors} of ${r.requests} answers were not 200 (${JSON.stringify(r.statuses)})`);
    }
    return {
      figures: {
        's7.head_rps': head.rps,
        's7.head_p50': head.p50Ms,
        's7.head_p99': head.p99Ms,
        's7.get_rps': get.rps,
        's7.get_p50': get.p50Ms,
        's7.get_p99': get.p99Ms,
      },
      details: { connections: loadConnections, seconds: loadMs / 1000, head, get },
      notes,
    };
  },
};

const s8: Scenario = {
  id: 's8',
  title: 'tags: PUT by tag, list whole and paginated',
  needs: [],
  prepare: (ctx) => void newBlobs(ctx, 's8', 1, ctx.sizes.smallSize),
  async run(ctx) {
    const { tagCount, pageSize, smallConcurrency, smallSize } = ctx.sizes;
    const c = ctx.client;
    const repo = `${ctx.prefix}/tags`;
    const [blob] = newBlobs(ctx, 's8', 1, smallSize);
    await pushMonolithic(c, repo, blob!);
    const manifest = manifestFor(blob!.digest, smallSize);
    const tag = (i: number) => `t${String(i).padStart(6, '0')}`;
    const firstPageMs = async (): Promise<number> => {
      const xs: number[] = [];
      for (let k = 0; k < 5; k++) {
        xs.push(await timed(() => c.expect(200, 'GET', `/v2/${repo}/tags/list?n=${pageSize}`, { consume: 'buffer' }).then(() => {})));
      }
      return median(xs);
    };
    // A tenth of the tags first, to see whether a page costs more when there are ten times more.
    const early = Math.max(1, Math.floor(tagCount / 10));
    const put1 = await timed(() => pool(early, smallConcurrency, (i) => putManifest(c, repo, tag(i), manifest)));
    const pageAtTenth = await firstPageMs();
    const put2 = await timed(() => pool(tagCount - early, smallConcurrency, (i) => putManifest(c, repo, tag(early + i), manifest)));
    const pageAtFull = await firstPageMs();

    const wholeMs: number[] = [];
    let wholeCount = 0;
    for (let k = 0; k < 3; k++) {
      const t0 = performance.now();
      const res = await c.expect(200, 'GET', `/v2/${repo}/tags/list`, { consume: 'buffer' });
      wholeMs.push(performance.now() - t0);
      wholeCount = (JSON.parse(res.body!.toString('utf8')) as { tags: string[] }).tags.length;
    }
    const walk = await walkPages(c, `/v2/${repo}/tags/list?n=${pageSize}`, 'tags', Math.ceil(tagCount / pageSize) + 10);
    const notes: string[] = [];
    if (wholeCount !== tagCount) notes.push(`${ctx.target.kind}: tags list returned ${wholeCount} tags, ${tagCount} were pushed`);
    if (walk.pages === 1 && tagCount > pageSize) {
      notes.push(`${ctx.target.kind}: tags list ignores n=${pageSize} (one page of ${walk.entries} tags): the paginated figure is one whole listing`);
    }
    return {
      figures: {
        's8.tag_put': tagCount / ((put1 + put2) / 1000),
        's8.whole': median(wholeMs),
        's8.paginated': walk.ms,
        's8.page_growth': pageAtFull / pageAtTenth,
      },
      details: { tags: tagCount, pageSize, pages: walk.pages, entries: walk.entries, firstPageMsAtTenth: pageAtTenth, firstPageMsAtFull: pageAtFull },
      notes,
    };
  },
};

const s9: Scenario = {
  id: 's9',
  title: 'catalog, paginated walk',
  needs: ['s6'],
  async run(ctx) {
    const { pageSize, smallCount } = ctx.sizes;
    // On a shared target the catalog holds whatever else is there; the walk is bounded.
    const maxPages = Math.max(1000, Math.ceil((smallCount * 4) / pageSize));
    const walk = await walkPages(ctx.client, `/v2/_catalog?n=${pageSize}`, 'repositories', maxPages);
    const notes: string[] = [];
    if (walk.entries < smallCount) notes.push(`${ctx.target.kind}: catalog walk saw ${walk.entries} repositories, at least ${smallCount} exist`);
    return {
      figures: { 's9.walk': walk.ms, 's9.page': walk.ms / walk.pages },
      details: { repositories: walk.entries, pages: walk.pages, pageSize, firstPageMs: walk.pageMs[0], lastPageMs: walk.pageMs[walk.pageMs.length - 1] },
      notes,
    };
  },
};

const s10: Scenario = {
  id: 's10',
  title: 'cross-repository blob mounts',
  needs: ['s6'],
  async run(ctx) {
    const { mountCount, smallConcurrency } = ctx.sizes;
    const small = ctx.small!;
    const ms = await timed(() =>
      pool(mountCount, smallConcurrency, async (i) => {
        const src = small[i % small.length]!;
        const into = `${ctx.prefix}/mounts/m${String(i % 10).padStart(2, '0')}`;
        await ctx.client.expect(201, 'POST', `/v2/${into}/blobs/uploads/?mount=${encodeURIComponent(src.digest)}&from=${encodeURIComponent(src.repo)}`);
      }),
    );
    return { figures: { 's10.mounts': mountCount / (ms / 1000) }, details: { mounts: mountCount, concurrency: smallConcurrency, ms } };
  },
};

const s11: Scenario = {
  id: 's11',
  title: 'peak RSS of the registry process',
  needs: ['s5'],
  prepare: (ctx) => void newBlobs(ctx, 's11', 1, ctx.sizes.rssPushSize),
  async run(ctx) {
    const { rssPushSize } = ctx.sizes;
    if (ctx.target.pid === null) {
      return {
        figures: { 's11.rss_s5': null, 's11.rss_push_growth': null, 's11.rss_push_peak': null },
        notes: [`${ctx.target.kind}: not started by the benchmark, so its RSS cannot be read`],
      };
    }
    const [blob] = newBlobs(ctx, 's11', 1, rssPushSize);
    const sampler = new RssSampler(ctx.target.pid);
    sampler.begin();
    const ms = await timed(() => pushStreamed(ctx.client, `${ctx.prefix}/huge`, blob!));
    const rss = sampler.end();
    return {
      figures: { 's11.rss_s5': ctx.rssS5?.peakMiB ?? null, 's11.rss_push_growth': rss.growthMiB, 's11.rss_push_peak': rss.peakMiB },
      details: { pushBytes: rssPushSize, pushMs: ms, pushMiBs: mibs(rssPushSize, ms), rssDuringPush: rss, rssDuringS5: ctx.rssS5 },
    };
  },
};

export const SCENARIOS: Scenario[] = [s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11];

/** The scenarios to run so that `wanted` can: each with everything it needs, in order. */
export function closure(wanted: Set<ScenarioId>): Scenario[] {
  const need = new Set<ScenarioId>();
  const add = (id: ScenarioId) => {
    if (need.has(id)) return;
    need.add(id);
    for (const n of SCENARIOS.find((s) => s.id === id)!.needs) add(n);
  };
  for (const id of wanted) add(id);
  return SCENARIOS.filter((s) => need.has(s.id));
}
