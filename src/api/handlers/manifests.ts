// Manifest endpoints: GET/HEAD/PUT/DELETE /v2/<name>/manifests/<reference>.
import { RegistryError } from '../../errors/codes.js';
import { MAX_MANIFEST_SIZE } from '../../oci/manifest.js';
import { parseReference } from '../../oci/names.js';
import { assertDeletable, assertWritable, body as requestBody, repoOf, sendEmpty, urlFor, type Ctx } from '../context.js';

// Clients send the same few Accept headers over and over: each is parsed once.
const acceptParsed = new Map<string, readonly string[]>();

/** Media types listed in Accept (parameters dropped); empty when there is no Accept. */
function accepted(header: string | undefined): readonly string[] {
  if (!header) return [];
  let types = acceptParsed.get(header);
  if (!types) {
    types = header
      .split(',')
      .map((t) => t.split(';')[0]!.trim().toLowerCase())
      .filter(Boolean);
    if (acceptParsed.size >= 256) acceptParsed.clear();
    acceptParsed.set(header, types);
  }
  return types;
}

export async function getManifest(ctx: Ctx): Promise<void> {
  const repo = repoOf(ctx);
  const ref = parseReference(ctx.params.ref!);
  const m = await repo.manifests.get(ref);
  // Content negotiation as Distribution does it: a client that fetches by tag and lists what
  // it accepts is not handed a manifest type it cannot read. Fetches by digest always succeed.
  const accept = accepted(ctx.req.headers.accept);
  if (ref.kind === 'tag' && accept.length > 0 && !accept.includes(m.mediaType) && !accept.some((a) => a === '*/*' || a === 'application/*')) {
    throw new RegistryError('MANIFEST_UNKNOWN', { tag: ref.tag, mediaType: m.mediaType, accept }, {
      message: `manifest is ${m.mediaType}, which the Accept header does not list`,
    });
  }
  ctx.writeHead(200, {
    'Content-Type': m.mediaType,
    'Content-Length': String(m.content.length),
    'Docker-Content-Digest': m.digest.value,
    ETag: `"${m.digest.value}"`,
  });
  ctx.res.end(ctx.req.method === 'HEAD' ? undefined : m.content);
}

/** Reads the request body, refusing (413) anything over the manifest size limit. */
async function readManifestBody(ctx: Ctx): Promise<Buffer> {
  const tooLarge = () =>
    new RegistryError('MANIFEST_TOO_LARGE', { limit: MAX_MANIFEST_SIZE }, { message: `manifest is larger than ${MAX_MANIFEST_SIZE} bytes` });
  const declared = Number(ctx.req.headers['content-length'] ?? 0);
  if (declared > MAX_MANIFEST_SIZE) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of requestBody(ctx)) {
    size += chunk.length;
    if (size > MAX_MANIFEST_SIZE) throw tooLarge();
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

export async function putManifest(ctx: Ctx): Promise<void> {
  assertWritable(ctx);
  const repo = repoOf(ctx);
  const ref = parseReference(ctx.params.ref!);
  const body = await readManifestBody(ctx);
  const result = await repo.manifests.put(ref, body, ctx.req.headers['content-type']);
  const headers: Record<string, string> = {
    Location: urlFor(ctx, `/v2/${repo.name}/manifests/${result.digest.value}`),
    'Docker-Content-Digest': result.digest.value,
  };
  if (result.subject) headers['OCI-Subject'] = result.subject.value;
  sendEmpty(ctx, 201, headers);
}

export async function deleteManifest(ctx: Ctx): Promise<void> {
  assertDeletable(ctx);
  const repo = repoOf(ctx);
  const ref = parseReference(ctx.params.ref!);
  if (ref.kind === 'tag') await repo.tags.untag(ref.tag);
  else await repo.manifests.delete(ref.digest);
  sendEmpty(ctx, 202);
}
