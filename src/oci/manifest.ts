// Manifest parsing and validation for the media types the registry stores: OCI image
// manifest and index (including artifacts), Docker schema2 manifest and manifest list.
// Parsing is pure: it says what a manifest references; the manifest service checks that
// those exist in the repository.
import { RegistryError } from '../errors/codes.js';
import { tryParseDigest, type Digest } from './digest.js';

export const MediaType = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  dockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
  ociEmpty: 'application/vnd.oci.empty.v1+json',
} as const;

export const MANIFEST_MEDIA_TYPES: ReadonlySet<string> = new Set([
  MediaType.ociManifest,
  MediaType.ociIndex,
  MediaType.dockerManifest,
  MediaType.dockerList,
]);
const INDEX_TYPES: ReadonlySet<string> = new Set([MediaType.ociIndex, MediaType.dockerList]);

// Layers that clients fetch from elsewhere (their `urls`), so they need not be in the registry.
const NON_DISTRIBUTABLE = /^application\/vnd\.(docker\.image\.rootfs\.foreign\.diff\.tar\.gzip|oci\.image\.layer\.nondistributable\.)/;

export const MAX_MANIFEST_SIZE = 4 * 1024 * 1024;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
  urls?: string[];
  platform?: unknown;
}

export interface ParsedManifest {
  mediaType: string;
  /** Blobs (config, layers) that must be linked in the repository. */
  blobs: Digest[];
  /** Child manifests (of an index) that must exist in the repository. */
  manifests: Digest[];
  subject?: { descriptor: Descriptor; digest: Digest };
  /** What the referrers API reports for this manifest. */
  artifactType?: string;
  annotations?: Record<string, string>;
}

function invalid(reason: string, detail?: unknown): RegistryError {
  return new RegistryError('MANIFEST_INVALID', detail ?? { reason }, { message: `manifest invalid: ${reason}` });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkAnnotations(v: unknown, where: string): Record<string, string> | undefined {
  if (v === undefined) return undefined;
  if (!isObject(v) || Object.values(v).some((x) => typeof x !== 'string')) throw invalid(`${where}.annotations must map strings to strings`);
  return v as Record<string, string>;
}

function descriptor(v: unknown, where: string): { descriptor: Descriptor; digest: Digest } {
  if (!isObject(v)) throw invalid(`${where} must be a descriptor object`);
  if (typeof v.mediaType !== 'string' || v.mediaType.length === 0) throw invalid(`${where}.mediaType is required`);
  const digest = tryParseDigest(v.digest as string);
  if (!digest) throw invalid(`${where}.digest is not a valid digest`, { where, digest: v.digest ?? null });
  if (typeof v.size !== 'number' || !Number.isSafeInteger(v.size) || v.size < 0) throw invalid(`${where}.size must be a non-negative integer`);
  if (v.urls !== undefined && (!Array.isArray(v.urls) || v.urls.some((u) => typeof u !== 'string'))) throw invalid(`${where}.urls must be strings`);
  if (v.artifactType !== undefined && typeof v.artifactType !== 'string') throw invalid(`${where}.artifactType must be a string`);
  checkAnnotations(v.annotations, where);
  return { descriptor: v as unknown as Descriptor, digest };
}

/**
 * Parses and validates a manifest. `contentType` is the request's Content-Type; the body's
 * own `mediaType` wins when present, and the two must agree when both name a manifest type.
 */
export function parseManifest(body: Buffer, contentType: string | undefined): ParsedManifest {
  let doc: unknown;
  try {
    doc = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw invalid(`not valid JSON: ${(err as Error).message}`);
  }
  if (!isObject(doc)) throw invalid('must be a JSON object');

  const header = contentType?.split(';')[0]?.trim().toLowerCase();
  if (header === MediaType.dockerSchema1 || header === MediaType.dockerSchema1Signed || doc.schemaVersion === 1) {
    throw invalid('Docker schema1 manifests are not supported; push schema2 or OCI');
  }
  if (doc.schemaVersion !== 2) throw invalid('schemaVersion must be 2');
  if (doc.mediaType !== undefined && typeof doc.mediaType !== 'string') throw invalid('mediaType must be a string');

  let mediaType = doc.mediaType as string | undefined;
  if (mediaType && header && MANIFEST_MEDIA_TYPES.has(header) && header !== mediaType) {
    throw invalid(`Content-Type ${header} does not match the manifest's mediaType ${mediaType}`);
  }
  if (!mediaType) {
    if (header && MANIFEST_MEDIA_TYPES.has(header)) mediaType = header;
    else if (Array.isArray(doc.manifests)) mediaType = MediaType.ociIndex;
    else if (doc.config !== undefined) mediaType = MediaType.ociManifest;
    else throw invalid('cannot tell the manifest type: no mediaType and no known Content-Type');
  }
  if (!MANIFEST_MEDIA_TYPES.has(mediaType)) throw invalid(`unsupported manifest media type ${mediaType}`);
  if ((mediaType === MediaType.dockerManifest || mediaType === MediaType.dockerList) && doc.mediaType === undefined) {
    throw invalid('Docker manifests must carry their mediaType');
  }

  const annotations = checkAnnotations(doc.annotations, 'manifest');
  if (doc.artifactType !== undefined && typeof doc.artifactType !== 'string') throw invalid('artifactType must be a string');
  const subject = doc.subject === undefined ? undefined : descriptor(doc.subject, 'subject');
  const out: ParsedManifest = { mediaType, blobs: [], manifests: [], subject, annotations };

  if (INDEX_TYPES.has(mediaType)) {
    if (!Array.isArray(doc.manifests)) throw invalid('an index needs a manifests array');
    doc.manifests.forEach((m, i) => out.manifests.push(descriptor(m, `manifests[${i}]`).digest));
    out.artifactType = doc.artifactType as string | undefined;
    return out;
  }

  const config = descriptor(doc.config, 'config');
  out.blobs.push(config.digest);
  if (!Array.isArray(doc.layers)) throw invalid('layers must be an array');
  doc.layers.forEach((l, i) => {
    const d = descriptor(l, `layers[${i}]`);
    if (!NON_DISTRIBUTABLE.test(d.descriptor.mediaType)) out.blobs.push(d.digest);
  });
  out.artifactType = (doc.artifactType as string | undefined) ?? config.descriptor.mediaType;
  return out;
}

/** The media type of a stored manifest, read from its bytes (no full validation). */
export function sniffMediaType(body: Buffer): string {
  try {
    const doc = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
    if (typeof doc.mediaType === 'string' && doc.mediaType) return doc.mediaType;
    if (doc.schemaVersion === 1) return doc.signatures ? MediaType.dockerSchema1Signed : MediaType.dockerSchema1;
    if (Array.isArray(doc.manifests)) return MediaType.ociIndex;
    return MediaType.ociManifest;
  } catch {
    return MediaType.ociManifest;
  }
}
