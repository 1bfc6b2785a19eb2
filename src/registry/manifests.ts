// Manifests: stored byte-exact as blobs, linked into a repository under
// `_manifests/revisions`, reachable by tag through the tag store.
import { RegistryError } from '../errors/codes.js';
import { digestOf, type Digest } from '../oci/digest.js';
import { parseManifest, sniffMediaType, type Descriptor } from '../oci/manifest.js';
import type { Reference } from '../oci/names.js';
import type { BaseDriver } from '../storage/base.js';
import { isPathNotFound } from '../storage/driver.js';
import { readLink, type GlobalBlobStore, type LinkedBlobStore } from './blobs.js';
import type { TtlCache } from './cache.js';
import { paths } from './paths.js';
import type { ReferrersIndex } from './referrers.js';
import type { TagStore } from './tags.js';

export interface StoredManifest {
  digest: Digest;
  mediaType: string;
  content: Buffer;
}

export interface PutResult {
  digest: Digest;
  subject?: Digest;
}

function manifestUnknown(ref: Reference | Digest): RegistryError {
  if ('kind' in ref) {
    return ref.kind === 'tag'
      ? new RegistryError('MANIFEST_UNKNOWN', { tag: ref.tag }, { message: `manifest unknown: tag ${ref.tag}` })
      : new RegistryError('MANIFEST_UNKNOWN', { digest: ref.digest.value });
  }
  return new RegistryError('MANIFEST_UNKNOWN', { digest: ref.value });
}

export class ManifestStore {
  constructor(
    private readonly driver: BaseDriver,
    private readonly global: GlobalBlobStore,
    private readonly blobs: LinkedBlobStore,
    private readonly tags: TagStore,
    private readonly referrers: ReferrersIndex,
    readonly repo: string,
    /** Called after a manifest is stored (the catalog learns of the repository). */
    private readonly onStored: () => void,
    /** Manifests known to be in this repository, by `repo@digest`, with their bytes. */
    private readonly known: TtlCache<{ content: Buffer; mediaType: string }>,
  ) {}

  async exists(digest: Digest): Promise<boolean> {
    if (this.known.get(`${this.repo}@${digest.value}`)) return true;
    return (await readLink(this.driver, paths.revisionLink(this.repo, digest))) === digest.value;
  }

  /** Resolves a reference to a digest held in this repository, or MANIFEST_UNKNOWN. */
  async resolve(ref: Reference): Promise<Digest> {
    const digest = ref.kind === 'digest' ? ref.digest : await this.tags.resolve(ref.tag);
    if (!digest || !(await this.exists(digest))) throw manifestUnknown(ref);
    return digest;
  }

  async get(ref: Reference): Promise<StoredManifest> {
    const version = this.known.version;
    const digest = ref.kind === 'digest' ? ref.digest : await this.tags.resolve(ref.tag);
    if (!digest) throw manifestUnknown(ref);
    const key = `${this.repo}@${digest.value}`;
    // Cached bytes mean the manifest is held by this repository: no further check.
    const cached = this.known.get(key);
    if (cached) return { digest, ...cached };
    if (!(await this.exists(digest))) throw manifestUnknown(ref);
    let content: Buffer;
    try {
      content = await this.global.getContent(digest);
    } catch (err) {
      if (isPathNotFound(err)) throw manifestUnknown(ref);
      throw err;
    }
    const mediaType = sniffMediaType(content);
    this.known.fill(key, { content, mediaType }, version, content.length);
    return { digest, mediaType, content };
  }


  async put(ref: Reference, content: Buffer, contentType: string | undefined): Promise<PutResult> {
    const digest = digestOf(content, ref.kind === 'digest' ? ref.digest.algorithm : 'sha256');
    if (ref.kind === 'digest' && ref.digest.value !== digest.value) {
      throw new RegistryError('DIGEST_INVALID', { expected: ref.digest.value, actual: digest.value }, {
        message: 'manifest digest does not match the reference',
      });
    }
    const parsed = parseManifest(content, contentType);

    const missing: string[] = [];
    await Promise.all([
      ...parsed.blobs.map(async (d) => {
        if (!(await this.blobs.exists(d))) missing.push(d.value);
      }),
      // An index's children are manifests (or, for artifact indexes, plain blobs).
      ...parsed.manifests.map(async (d) => {
        if (!(await this.exists(d)) && !(await this.blobs.exists(d))) missing.push(d.value);
      }),
    ]);
    if (missing.length > 0) {
      throw new RegistryError('MANIFEST_BLOB_UNKNOWN', { digests: [...new Set(missing)].sort() }, {
        message: `manifest references unknown blobs or manifests: ${[...new Set(missing)].sort().join(', ')}`,
      });
    }

    // Blob first, then the revision link and referrer entry, then the tag: each step makes
    // visible only what the previous ones made durable. Links already in place are not
    // rewritten (re-tagging a pushed manifest is common).
    await this.global.putContent(digest, content);
    const steps: Promise<void>[] = [];
    if (!(await this.exists(digest))) steps.push(this.driver.putContent(paths.revisionLink(this.repo, digest), digest.value));
    if (parsed.subject) {
      const descriptor: Descriptor = { mediaType: parsed.mediaType, digest: digest.value, size: content.length };
      if (parsed.artifactType !== undefined) descriptor.artifactType = parsed.artifactType;
      if (parsed.annotations !== undefined) descriptor.annotations = parsed.annotations;
      steps.push(this.referrers.add(parsed.subject.digest, descriptor));
    }
    await Promise.all(steps);
    if (ref.kind === 'tag') await this.tags.tag(ref.tag, digest);
    this.onStored();
    return { digest, subject: parsed.subject?.digest };
  }

  /** Deletes a manifest revision and every tag that points at it. */
  async delete(digest: Digest): Promise<void> {
    this.known.delete(`${this.repo}@${digest.value}`);
    if (!(await this.exists(digest))) throw manifestUnknown(digest);
    let subject: Digest | undefined;
    try {
      subject = parseManifest(await this.global.getContent(digest), undefined).subject?.digest;
    } catch {
      subject = undefined; // unreadable or invalid: it has no referrer entry we can find
    }
    for (const tag of await this.tags.pointingAt(digest)) {
      await this.tags.untag(tag).catch((err) => {
        if (!(err instanceof RegistryError)) throw err;
      });
    }
    if (subject) await this.referrers.remove(subject, digest);
    await this.driver.delete(paths.revisionLink(this.repo, digest));
    this.known.delete(`${this.repo}@${digest.value}`); // a read that overlapped the deletion may have cached it
  }
}
