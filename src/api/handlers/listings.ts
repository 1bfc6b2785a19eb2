// Listing endpoints: /v2/ (version check), tags list, catalog, referrers.
import { RegistryError } from '../../errors/codes.js';
import { parseDigest } from '../../oci/digest.js';
import { MediaType } from '../../oci/manifest.js';
import { page, pagination, repoOf, sendJson, type Ctx } from '../context.js';

const CATALOG_DEFAULT_N = 100;
const CATALOG_MAX_N = 10_000;

export async function versionCheck(ctx: Ctx): Promise<void> {
  sendJson(ctx, 200, {});
}

export async function listTags(ctx: Ctx): Promise<void> {
  const repo = repoOf(ctx);
  const opts = pagination(ctx);
  const tags = await repo.tags.all();
  if (tags.length === 0 && !(await repo.exists())) {
    throw new RegistryError('NAME_UNKNOWN', { name: repo.name }, { message: `repository ${repo.name} is not known to the registry` });
  }
  const { entries, link } = page(ctx, tags, opts);
  sendJson(ctx, 200, { name: repo.name, tags: entries }, link ? { Link: link } : {});
}

export async function catalog(ctx: Ctx): Promise<void> {
  const opts = pagination(ctx);
  const n = Math.min(opts.n ?? CATALOG_DEFAULT_N, CATALOG_MAX_N);
  const { entries, link } = page(ctx, await ctx.registry.catalog(), { n, last: opts.last });
  sendJson(ctx, 200, { repositories: entries }, link ? { Link: link } : {});
}

export async function listReferrers(ctx: Ctx): Promise<void> {
  const repo = repoOf(ctx);
  const subject = parseDigest(ctx.params.digest);
  const artifactType = ctx.query.get('artifactType') ?? undefined;
  const manifests = await repo.referrers.list(subject, artifactType);
  const headers: Record<string, string> = {};
  if (artifactType !== undefined) headers['OCI-Filters-Applied'] = 'artifactType';
  const data = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests }));
  ctx.writeHead(200, { ...headers, 'Content-Type': MediaType.ociIndex, 'Content-Length': String(data.length) });
  ctx.res.end(data);
}
