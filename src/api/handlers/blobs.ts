// Blob endpoints: GET/HEAD (with single byte ranges) and DELETE of /v2/<name>/blobs/<digest>.
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { RegistryError } from '../../errors/codes.js';
import { parseDigest, type Digest } from '../../oci/digest.js';
import { isPathNotFound, type OpenFile } from '../../storage/driver.js';
import { sendFile } from '../send-file.js';
import { assertDeletable, repoOf, sendEmpty, type Ctx } from '../context.js';

/**
 * Parses a single `bytes=` range against `size`. Null when absent or not understood (another
 * unit, several ranges, malformed): RFC 9110 says such a Range is ignored and the whole
 * content sent. RANGE_INVALID for a range that cannot be satisfied or ends before it starts.
 */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | null {
  if (header === undefined) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return null;
  const unsatisfiable = () =>
    new RegistryError('RANGE_INVALID', { range: header, size }, { message: `range ${header} not satisfiable`, headers: { 'Content-Range': `bytes */${size}` } });
  let start: number;
  let end: number;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) throw unsatisfiable();
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Number(m[2]);
    if (end < start) throw unsatisfiable(); // an invalid range-spec may be rejected (RFC 9110 §14.2)
    end = Math.min(end, size - 1);
  }
  if (start >= size) throw unsatisfiable();
  return { start, end };
}

/** Passes on the first `length` bytes of a stream, then stops reading it. */
async function* take(source: Readable, length: number): AsyncGenerator<Buffer> {
  let left = length;
  for await (const chunk of source as AsyncIterable<Buffer>) {
    if (chunk.length >= left) {
      yield chunk.subarray(0, left);
      return;
    }
    left -= chunk.length;
    yield chunk;
  }
}

export async function getBlob(ctx: Ctx): Promise<void> {
  const digest = parseDigest(ctx.params.digest);
  const repo = repoOf(ctx);
  const desc = await repo.blobs.stat(digest);
  const head = ctx.req.method === 'HEAD';
  const headers: Record<string, string> = {
    'Docker-Content-Digest': digest.value,
    ETag: `"${digest.value}"`,
    'Accept-Ranges': 'bytes',
    'Cache-Control': 'max-age=31536000',
  };
  if (!ctx.options.redirectDisabled && ctx.registry.blobs.redirects) {
    const url = await ctx.registry.blobs.redirectUrl(digest, ctx.req.method!);
    if (url) {
      ctx.writeHead(307, { ...headers, Location: url, 'Content-Length': '0' });
      ctx.res.end();
      return;
    }
  }
  const range = parseRange(ctx.req.headers.range, desc.size);
  const start = range?.start ?? 0;
  const length = range ? range.end - range.start + 1 : desc.size;
  headers['Content-Type'] = 'application/octet-stream';
  headers['Content-Length'] = String(length);
  if (range) headers['Content-Range'] = `bytes ${range.start}-${range.end}/${desc.size}`;
  // Opened before the status is sent, so a blob deleted since the lookup is still a clean 404.
  const file = head || length === 0 ? null : await openBlob(ctx, digest);
  ctx.writeHead(range ? 206 : 200, headers);
  if (head || length === 0) {
    ctx.res.end();
    return;
  }
  if (file) return sendFile(ctx.res, file, start, length);
  const source = await ctx.registry.blobs.reader(digest, start);
  await pipeline(range && range.end < desc.size - 1 ? take(source, length) : source, ctx.res);
}

async function openBlob(ctx: Ctx, digest: Digest): Promise<OpenFile | null> {
  try {
    return await ctx.registry.blobs.open(digest);
  } catch (err) {
    if (isPathNotFound(err)) throw new RegistryError('BLOB_UNKNOWN', { digest: digest.value });
    throw err;
  }
}

export async function deleteBlob(ctx: Ctx): Promise<void> {
  assertDeletable(ctx);
  const digest = parseDigest(ctx.params.digest);
  await repoOf(ctx).blobs.unlink(digest);
  sendEmpty(ctx, 202, { 'Docker-Content-Digest': digest.value });
}
