// Tags: `_manifests/tags/<tag>/current/link` names the manifest a tag points at, and
// `_manifests/tags/<tag>/index/<alg>/<hex>/link` records every manifest it has pointed at
// (Distribution's layout; its garbage collector reads both).
import { RegistryError } from '../errors/codes.js';
import { tryParseDigest, type Digest } from '../oci/digest.js';
import type { BaseDriver } from '../storage/base.js';
import { isPathNotFound } from '../storage/driver.js';
import { readLink } from './blobs.js';
import type { TtlCache } from './cache.js';
import { paths } from './paths.js';

/** A repository's sorted tag names, with the tags directory's time when they were read. */
export type TagListCache = Map<string, { modTime: number; tags: string[] }>;

/**
 * A cached list is trusted only while the directory's time is unchanged and the list was
 * read at least this long after that time: a directory changed within the timestamp
 * granularity of the filesystem could otherwise keep its time across two changes.
 */
const SETTLED_MS = 1000;

export class TagStore {
  constructor(
    private readonly driver: BaseDriver,
    readonly repo: string,
    private readonly lists: TagListCache,
    /** What existing tags point at, by `repo:tag`; this process's tag writes update it at once. */
    private readonly current: TtlCache<Digest>,
  ) {}

  /** The digest a tag points at, or null when the tag does not exist. */
  async resolve(tag: string): Promise<Digest | null> {
    const key = `${this.repo}:${tag}`;
    const cached = this.current.get(key);
    if (cached) return cached;
    const version = this.current.version;
    const link = await readLink(this.driver, paths.tagCurrentLink(this.repo, tag));
    const digest = link === null ? null : tryParseDigest(link);
    if (digest) this.current.fill(key, digest, version);
    return digest;
  }

  async tag(tag: string, digest: Digest): Promise<void> {
    // The index entry records history for garbage collection; both may be written at once.
    const index = paths.tagIndexLink(this.repo, tag, digest);
    await Promise.all([
      readLink(this.driver, index).then((v) => (v === digest.value ? undefined : this.driver.putContent(index, digest.value))),
      readLink(this.driver, paths.tagCurrentLink(this.repo, tag)).then((v) =>
        v === digest.value ? undefined : this.driver.putContent(paths.tagCurrentLink(this.repo, tag), digest.value),
      ),
    ]);
    this.current.set(`${this.repo}:${tag}`, digest);
  }

  async untag(tag: string): Promise<void> {
    const key = `${this.repo}:${tag}`;
    this.current.delete(key);
    try {
      await this.driver.delete(paths.tagDir(this.repo, tag));
    } catch (err) {
      if (isPathNotFound(err)) throw new RegistryError('MANIFEST_UNKNOWN', { tag }, { message: `tag ${tag} is unknown` });
      throw err;
    } finally {
      this.current.delete(key); // a read that overlapped the deletion may have cached the tag
    }
  }

  /**
   * All tags, sorted lexically (byte order). Where the backend keeps directory times (the
   * filesystem), an unchanged tags directory is answered from memory, so a page of a long
   * tag list costs one stat instead of reading and sorting the whole directory.
   */
  async all(): Promise<string[]> {
    const dir = paths.tags(this.repo);
    try {
      const modTime = (await this.driver.stat(dir)).modTime.getTime();
      const cached = this.lists.get(this.repo);
      if (cached && modTime > 0 && cached.modTime === modTime) return cached.tags;
      const readAt = Date.now();
      const tags = (await this.driver.listAll(dir)).map((d) => d.slice(d.lastIndexOf('/') + 1));
      if (modTime > 0 && readAt - modTime >= SETTLED_MS) {
        if (this.lists.size >= 10_000) this.lists.clear();
        this.lists.set(this.repo, { modTime, tags });
      }
      return tags;
    } catch (err) {
      if (isPathNotFound(err)) return [];
      throw err;
    }
  }

  /** Tags whose current link points at `digest`. */
  async pointingAt(digest: Digest): Promise<string[]> {
    const out: string[] = [];
    for (const tag of await this.all()) {
      if ((await this.resolve(tag))?.value === digest.value) out.push(tag);
    }
    return out;
  }
}
