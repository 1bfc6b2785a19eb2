// The registry's services, built on one storage driver: Registry (the namespace) hands out
// Repository objects that group a repository's blob, upload, manifest, tag and referrer stores.
import { type Digest } from '../oci/digest.js';
import { checkName } from '../oci/names.js';
import type { BaseDriver } from '../storage/base.js';
import { canPurgeStaleWrites, isPathNotFound } from '../storage/driver.js';
import { GlobalBlobStore, LinkedBlobStore, type BlobDescriptor } from './blobs.js';
import { TtlCache } from './cache.js';
import { CatalogCache, walkRepositories } from './catalog.js';
import { ManifestStore } from './manifests.js';
import { paths } from './paths.js';
import { ReferrersIndex } from './referrers.js';
import { TagListCache, TagStore } from './tags.js';
import { UploadStore } from './uploads.js';

export interface RegistryOptions {
  deleteEnabled: boolean;
  readOnly: boolean;
  redirectDisabled: boolean;
  /** storage.cache.ttl: see DEFAULT_CACHE_TTL_MS; 0 turns the in-memory caches off. */
  cacheTtlMs?: number;
  /** Upload sessions older than this are unknown (the purge age when purging is on). */
  uploadMaxAgeMs?: number | null;
}

export class Repository {
  readonly blobs: LinkedBlobStore;
  readonly tags: TagStore;
  readonly referrers: ReferrersIndex;
  readonly manifests: ManifestStore;

  constructor(
    readonly registry: Registry,
    readonly name: string,
  ) {
    const driver = registry.driver;
    this.blobs = new LinkedBlobStore(driver, registry.blobs, name, registry.linkedBlobs, () => registry.catalogCache.add(name));
    this.tags = new TagStore(driver, name, registry.tagLists, registry.tagCache);
    this.referrers = new ReferrersIndex(driver, name);
    this.manifests = new ManifestStore(
      driver,
      registry.blobs,
      this.blobs,
      this.tags,
      this.referrers,
      name,
      () => registry.catalogCache.add(name),
      registry.manifestCache,
    );
  }

  /** Whether anything of this repository is in storage. */
  async exists(): Promise<boolean> {
    try {
      return (await this.registry.driver.stat(paths.repo(this.name))).isDir;
    } catch (err) {
      if (isPathNotFound(err)) return false;
      throw err;
    }
  }

  /**
   * Links a blob that exists elsewhere into this repository: from `from` when given (the
   * blob must be linked there), else from anywhere in the registry. Null when not mountable.
   */
  async mount(digest: Digest, from?: string): Promise<BlobDescriptor | null> {
    let size: number | null;
    if (from !== undefined) {
      const source = this.registry.repository(from);
      size = (await source.blobs.exists(digest)) ? await this.registry.blobs.size(digest) : null;
    } else {
      size = await this.registry.blobs.size(digest);
    }
    if (size === null) return null;
    await this.blobs.link(digest);
    return { digest, size };
  }
}

/**
 * How long facts read from storage are trusted in memory by default: the catalog, blobs
 * linked into a repository, manifests held by a repository, what a tag points at. Another
 * process sharing the storage sees this process's changes (a deletion, a tag moved) within
 * this time; this process sees its own at once.
 */
export const DEFAULT_CACHE_TTL_MS = 5_000;

export class Registry {
  readonly blobs: GlobalBlobStore;
  readonly uploads: UploadStore;
  readonly catalogCache: CatalogCache;
  readonly linkedBlobs: TtlCache<number>;
  readonly tagLists: TagListCache;
  readonly tagCache: TtlCache<Digest>;
  /** Weighed by bytes: at most 32 MiB of manifests. */
  readonly manifestCache: TtlCache<{ content: Buffer; mediaType: string }>;

  constructor(
    readonly driver: BaseDriver,
    readonly options: RegistryOptions,
  ) {
    const ttl = options.cacheTtlMs ?? DEFAULT_CACHE_TTL_MS;
    this.linkedBlobs = new TtlCache(ttl, 100_000);
    this.tagCache = new TtlCache(ttl, 100_000);
    this.tagLists = new TagListCache(ttl);
    this.manifestCache = new TtlCache(ttl, 32 * 1024 * 1024);
    this.blobs = new GlobalBlobStore(driver);
    this.uploads = new UploadStore(driver, this.blobs, { maxAgeMs: options.uploadMaxAgeMs ?? null });
    this.catalogCache = new CatalogCache(driver, ttl);
  }

  /** Handles are stateless, so hot repositories reuse theirs instead of rebuilding five stores per request. */
  private readonly handles = new Map<string, Repository>();

  /** A repository handle; validates the name (NAME_INVALID). */
  repository(name: string): Repository {
    let repo = this.handles.get(name);
    if (!repo) {
      repo = new Repository(this, checkName(name));
      if (this.handles.size >= 10_000) this.handles.clear();
      this.handles.set(name, repo);
    }
    return repo;
  }

  /** Every repository name, sorted (see CatalogCache for freshness). */
  catalog(): Promise<string[]> {
    return this.catalogCache.all();
  }

  /**
   * Removes upload sessions older than `ageMs` in every repository, and what interrupted
   * writes left in the backend outside any path (S3's incomplete multipart uploads).
   */
  async purgeUploads(ageMs: number, dryRun: boolean): Promise<{ repo: string; uuid: string }[]> {
    const removed: { repo: string; uuid: string }[] = [];
    await walkRepositories(this.driver, async (repo) => {
      for (const uuid of await this.uploads.purge(repo, ageMs, dryRun)) removed.push({ repo, uuid });
    }, ['_uploads']);
    const inner = this.driver.inner;
    if (canPurgeStaleWrites(inner)) {
      for (const item of await inner.purgeStaleWrites(ageMs, { dryRun })) removed.push({ repo: '(storage)', uuid: item });
    }
    return removed;
  }
}
