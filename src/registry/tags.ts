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
import { withName, withoutName } from './sorted.js';

/**
 * A directory changed within the timestamp granularity of the filesystem could keep its time
 * across two changes, so a list read sooner than this after the directory's time is not
 * trusted on that time alone.
 */
const SETTLED_MS = 1000;

/**
 * Each repository's sorted tag names, so a page of a long tag list costs a binary search
 * instead of reading and sorting the whole tags directory. A list is trusted for `ttlMs`
 * after it was read (like the other cached facts: another process's tag changes are seen
 * within that time), and after that for as long as the tags directory's time is unchanged
 * (where the backend keeps directory times and the time had settled when the list was read).
 * This process's own tag additions and removals update the cached list at once; a read that
 * overlaps one of them is not kept.
 */
export class TagListCache {
  private readonly lists = new Map<string, { tags: string[]; modTime: number; expires: number }>();
  private changes = 0;

  constructor(private readonly ttlMs: number) {}

  async all(driver: BaseDriver, repo: string): Promise<string[]> {
    const cached = this.lists.get(repo);
    if (cached && Date.now() < cached.expires) return cached.tags;
    const version = this.changes;
    const dir = paths.tags(repo);
    try {
      const modTime = (await driver.stat(dir)).modTime.getTime();
      if (cached && cached.modTime > 0 && cached.modTime === modTime) {
        cached.expires = Date.now() + this.ttlMs;
        return cached.tags;
      }
      const readAt = Date.now();
      const tags = (await driver.listAll(dir)).map((d) => d.slice(d.lastIndexOf('/') + 1));
      if (version === this.changes) {
        if (this.lists.size >= 10_000) this.lists.clear();
        const settled = modTime > 0 && readAt - modTime >= SETTLED_MS;
        this.lists.set(repo, { tags, modTime: settled ? modTime : 0, expires: Date.now() + this.ttlMs });
      }
      return tags;
    } catch (err) {
      if (isPathNotFound(err)) return [];
      throw err;
    }
  }

  /** This process created or removed a tag: the cached list changes with it. */
  changed(repo: string, tag: string, present: boolean): void {
    this.changes++;
    const cached = this.lists.get(repo);
    if (!cached) return;
    cached.tags = present ? withName(cached.tags, tag) : withoutName(cached.tags, tag);
    // The directory's new time is not known: from now on only the age bound vouches for the list.
    cached.modTime = 0;
  }
}

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
    let created = false;
    try {
      await Promise.all([
        readLink(this.driver, index).then((v) => (v === digest.value ? undefined : this.driver.putContent(index, digest.value))),
        readLink(this.driver, paths.tagCurrentLink(this.repo, tag)).then((v) => {
          if (v === digest.value) return undefined;
          created = v === null;
          return this.driver.putContent(paths.tagCurrentLink(this.repo, tag), digest.value);
        }),
      ]);
    } finally {
      // Even a failed write may have created the tag's directory, which a listing shows.
      if (created) this.lists.changed(this.repo, tag, true);
    }
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
      this.lists.changed(this.repo, tag, false);
    }
  }

  /** All tags, sorted lexically (byte order); see TagListCache for freshness. */
  all(): Promise<string[]> {
    return this.lists.all(this.driver, this.repo);
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
