// Blob content for the benchmark, generated without holding whole blobs in memory: every blob
// is a sequence of zero-copy views into one 2 MiB random pattern, at offsets that depend on the
// blob's seed and the chunk's position, with a 16-byte header carrying the seed so every blob
// (and so every digest) differs. The same seed and size always give the same bytes, so a
// digest can be computed ahead of a timed push and checked after a timed pull.
import { createHash, randomBytes } from 'node:crypto';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

const PATTERN_SIZE = 2 * MiB;
/** Blobs are made of blocks of this size (the last one shorter); each is one view. */
export const BLOCK = 256 * KiB;
const HEADER = 16;

let pattern: Buffer | null = null;

function getPattern(): Buffer {
  pattern ??= randomBytes(PATTERN_SIZE);
  return pattern;
}

/** A random base so seeds of one run differ from those of another (fresh blobs on a shared target). */
let nextSeed = randomBytes(4).readUInt32BE(0) >>> 1;

export function newSeed(): number {
  nextSeed = (nextSeed + 1) >>> 0;
  return nextSeed;
}

export interface BlobSpec {
  seed: number;
  size: number;
}

/** Block k of the blob: a view of the pattern (the first block is a copy carrying the header). */
function block(spec: BlobSpec, k: number): Buffer {
  const p = getPattern();
  const len = Math.min(BLOCK, spec.size - k * BLOCK);
  const start = ((Math.imul(spec.seed, 7919) + Math.imul(k, 104_729)) >>> 0) % (PATTERN_SIZE - BLOCK);
  if (k > 0) return p.subarray(start, start + len);
  const first = Buffer.allocUnsafe(len);
  const head = Buffer.alloc(HEADER);
  head.write('berth-bench', 0, 'latin1');
  head.writeUInt32BE(spec.seed >>> 0, 12);
  head.copy(first, 0, 0, Math.min(HEADER, len));
  if (len > HEADER) p.copy(first, HEADER, start, start + len - HEADER);
  return first;
}

/** The blob's bytes, as views of BLOCK bytes each. */
export function* blobChunks(spec: BlobSpec): Generator<Buffer> {
  const blocks = Math.ceil(spec.size / BLOCK);
  for (let k = 0; k < blocks; k++) yield block(spec, k);
}

/** Bytes [from, from+length) of the blob, as views. */
export function* blobRange(spec: BlobSpec, from: number, length: number): Generator<Buffer> {
  const end = Math.min(spec.size, from + length);
  for (let k = Math.floor(from / BLOCK); k * BLOCK < end; k++) {
    const b = block(spec, k);
    const pos = k * BLOCK;
    yield b.subarray(Math.max(0, from - pos), Math.min(b.length, end - pos));
  }
}

const digestCache = new Map<string, string>();

/** `sha256:<hex>` of the blob (cached). */
export function blobDigest(spec: BlobSpec): string {
  const key = `${spec.seed}/${spec.size}`;
  let d = digestCache.get(key);
  if (!d) {
    const h = createHash('sha256');
    for (const c of blobChunks(spec)) h.update(c);
    d = 'sha256:' + h.digest('hex');
    digestCache.set(key, d);
  }
  return d;
}

/** The blob as one buffer (small blobs only). */
export function blobBuffer(spec: BlobSpec): Buffer {
  if (spec.size > 16 * MiB) throw new Error('blobBuffer is for small blobs');
  return Buffer.concat([...blobChunks(spec)], spec.size);
}

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar';

/** An OCI image manifest whose config and single layer are the given blob. */
export function manifestFor(digest: string, size: number, annotation?: string): Buffer {
  const m: Record<string, unknown> = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: OCI_CONFIG, digest, size },
    layers: [{ mediaType: OCI_LAYER, digest, size }],
  };
  if (annotation !== undefined) m.annotations = { 'org.example.bench': annotation };
  return Buffer.from(JSON.stringify(m));
}

export function sha256Of(data: Buffer): string {
  return 'sha256:' + createHash('sha256').update(data).digest('hex');
}
