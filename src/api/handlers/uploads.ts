// Upload endpoints under /v2/<name>/blobs/uploads/: start (plain, monolithic with ?digest=,
// cross-repository mount), chunked or streamed PATCH, status, completing PUT, cancel.
import { RegistryError } from '../../errors/codes.js';
import { parseDigest, type Digest } from '../../oci/digest.js';
import { checkName } from '../../oci/names.js';
import type { BlobDescriptor } from '../../registry/blobs.js';
import { SMALL_BLOB_MAX, rangeHeader, type AppendOptions } from '../../registry/uploads.js';
import { assertWritable, body as requestBody, repoOf, sendEmpty, urlFor, type Ctx } from '../context.js';

/** Whether the request carries a body (Content-Length > 0 or chunked). */
function hasBody(ctx: Ctx): boolean {
  const h = ctx.req.headers;
  if (h['transfer-encoding'] !== undefined) return true;
  return h['content-length'] !== undefined && h['content-length'] !== '0';
}

/**
 * Reads Content-Range and Content-Length into append options. Content-Range is
 * `<start>-<end>` (Docker's form), also accepted as `bytes=<start>-<end>` or
 * `bytes <start>-<end>/<total>`.
 */
export function appendOptions(ctx: Ctx): AppendOptions {
  const h = ctx.req.headers;
  const opts: AppendOptions = {};
  const contentLength = h['content-length'] !== undefined ? Number(h['content-length']) : undefined;
  const cr = h['content-range'];
  if (cr !== undefined) {
    const m = /^(?:bytes[= ])?(\d+)-(\d+)(?:\/(?:\d+|\*))?$/.exec(cr.trim());
    if (!m) throw new RegistryError('BLOB_UPLOAD_INVALID', { 'content-range': cr }, { message: `malformed Content-Range ${JSON.stringify(cr)}` });
    const start = Number(m[1]);
    const end = Number(m[2]);
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || end < start) {
      throw new RegistryError('RANGE_INVALID', { 'content-range': cr }, { message: `invalid Content-Range ${JSON.stringify(cr)}` });
    }
    opts.start = start;
    opts.length = end - start + 1;
    if (contentLength !== undefined && contentLength !== opts.length) {
      throw new RegistryError('SIZE_INVALID', { 'content-range': cr, 'content-length': contentLength }, {
        message: `Content-Length ${contentLength} does not match Content-Range ${cr}`,
      });
    }
  } else if (contentLength !== undefined) {
    opts.length = contentLength;
  }
  return opts;
}

function uploadLocation(ctx: Ctx, uuid: string): string {
  // The query keeps the URL well-formed for clients that naively append `&digest=...`.
  return urlFor(ctx, `/v2/${ctx.params.name}/blobs/uploads/${uuid}?_state=${uuid}`);
}

function sessionHeaders(ctx: Ctx, uuid: string, size: number): Record<string, string> {
  return {
    Location: uploadLocation(ctx, uuid),
    Range: rangeHeader(size),
    'Docker-Upload-UUID': uuid,
  };
}

function created(ctx: Ctx, desc: BlobDescriptor): void {
  sendEmpty(ctx, 201, {
    Location: urlFor(ctx, `/v2/${ctx.params.name}/blobs/${desc.digest.value}`),
    'Docker-Content-Digest': desc.digest.value,
  });
}

export async function startUpload(ctx: Ctx): Promise<void> {
  assertWritable(ctx);
  const repo = repoOf(ctx);
  const mount = ctx.query.get('mount');
  if (mount !== null) {
    const digest = parseDigest(mount, 'mount digest');
    const from = ctx.query.get('from');
    if (from !== null) checkName(from);
    const desc = await repo.mount(digest, from ?? undefined);
    if (desc) return created(ctx, desc);
    // Not mountable: fall through to an ordinary upload session, as the spec asks.
  }
  const digestParam = ctx.query.get('digest');
  let digest: Digest | undefined;
  if (digestParam !== null) digest = parseDigest(digestParam);

  const announced = ctx.req.headers['content-length'];
  if (digest && announced !== undefined && ctx.req.headers['transfer-encoding'] === undefined && Number(announced) <= SMALL_BLOB_MAX) {
    return created(ctx, await ctx.registry.uploads.putWhole(digest, repo.blobs, requestBody(ctx), Number(announced)));
  }
  const session = ctx.registry.uploads.start(repo.name);
  if (digest) {
    // Monolithic upload: the client never learns this session, so it goes on any failure.
    let desc: BlobDescriptor;
    try {
      desc = await ctx.registry.uploads.complete(repo.name, session.uuid, digest, repo.blobs, requestBody(ctx), appendOptions(ctx));
    } catch (err) {
      await ctx.registry.uploads.discard(repo.name, session.uuid).catch(() => {});
      throw err;
    }
    return created(ctx, desc);
  }
  let size = 0;
  if (hasBody(ctx) && mount === null) {
    size = (await ctx.registry.uploads.append(repo.name, session.uuid, requestBody(ctx), appendOptions(ctx))).size;
  }
  sendEmpty(ctx, 202, sessionHeaders(ctx, session.uuid, size));
}

export async function uploadStatus(ctx: Ctx): Promise<void> {
  const repo = repoOf(ctx);
  const status = await ctx.registry.uploads.status(repo.name, ctx.params.uuid!);
  sendEmpty(ctx, 204, sessionHeaders(ctx, status.uuid, status.size));
}

export async function patchUpload(ctx: Ctx): Promise<void> {
  assertWritable(ctx);
  const repo = repoOf(ctx);
  const opts = appendOptions(ctx);
  const status = await ctx.registry.uploads.append(repo.name, ctx.params.uuid!, requestBody(ctx), opts);
  sendEmpty(ctx, 202, sessionHeaders(ctx, status.uuid, status.size));
}

export async function completeUpload(ctx: Ctx): Promise<void> {
  assertWritable(ctx);
  const repo = repoOf(ctx);
  const digestParam = ctx.query.get('digest');
  if (digestParam === null) throw new RegistryError('DIGEST_INVALID', { digest: null }, { message: 'the digest query parameter is required' });
  const digest = parseDigest(digestParam);
  const body = hasBody(ctx) ? requestBody(ctx) : undefined;
  const desc = await ctx.registry.uploads.complete(repo.name, ctx.params.uuid!, digest, repo.blobs, body, body ? appendOptions(ctx) : {});
  created(ctx, desc);
}

export async function cancelUpload(ctx: Ctx): Promise<void> {
  assertWritable(ctx);
  await ctx.registry.uploads.cancel(repoOf(ctx).name, ctx.params.uuid!);
  sendEmpty(ctx, 204);
}
