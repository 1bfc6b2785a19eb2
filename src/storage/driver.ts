// The StorageDriver interface: a small filesystem-like API that every backend implements.
// Paths are absolute, '/'-separated, and made of [A-Za-z0-9._:@-] segments (validated once by
// the base wrapper). Drivers know nothing of HTTP or of the registry's layout.
import type { Readable } from 'node:stream';

export interface FileInfo {
  path: string;
  size: number;
  modTime: Date;
  isDir: boolean;
}

export interface ListPage {
  /** Full paths of the direct children, sorted lexically. */
  entries: string[];
  /** Pass as `after` to get the next page; absent on the last page. */
  next?: string;
}

export interface OpOptions {
  signal?: AbortSignal;
}

export interface PutOptions extends OpOptions {
  /**
   * false: atomic, but need not survive a power cut (scratch state such as an upload's start
   * time), so a driver may skip its flushes. Default true.
   */
  durable?: boolean;
}

/**
 * A writer with two phases: bytes written are held (and survive `close`, so an append writer
 * can resume them later), but the write is final only after `commit`. Nothing is committed
 * implicitly on close or on stream end.
 */
export interface FileWriter {
  /** Bytes held so far, including what an append writer found. */
  readonly size: number;
  /**
   * Resolves when the writer can take more (backpressure); bytes may still be buffered. The
   * writer may keep a reference to `chunk` until it is flushed: callers must not reuse it.
   */
  write(chunk: Buffer): Promise<void>;
  /** Flush and release, keeping what was written for a later append writer. */
  close(): Promise<void>;
  /** Flush, make durable and final at the path. The writer is closed afterwards. */
  commit(): Promise<void>;
  /** Discard everything written at this path. */
  cancel(): Promise<void>;
}

/**
 * A file open for positional reads into the caller's buffers. Serving a blob through one
 * allocates nothing per chunk: a stream allocates a fresh buffer for every chunk, and at
 * hundreds of MiB/s V8 answers that external memory with a major GC every few tens of MiB.
 */
export interface OpenFile {
  readonly size: number;
  /** Reads up to `length` bytes at `position` into the start of `into`; 0 at the end. */
  read(into: Buffer, length: number, position: number): Promise<number>;
  close(): Promise<void>;
}

export interface StorageDriver {
  readonly name: string;
  getContent(path: string, opts?: OpOptions): Promise<Buffer>;
  /** Atomically replaces the file; durable when it resolves (unless `durable: false`). */
  putContent(path: string, content: Buffer | string, opts?: PutOptions): Promise<void>;
  /** A stream of the file's bytes from `offset`; InvalidOffset past the end. */
  reader(path: string, offset?: number, opts?: OpOptions): Promise<Readable>;
  /** Optional (local files): the file opened for positional reads; PathNotFound when missing. */
  open?(path: string): Promise<OpenFile>;
  writer(path: string, options: { append: boolean }, opts?: OpOptions): Promise<FileWriter>;
  stat(path: string, opts?: OpOptions): Promise<FileInfo>;
  /** Direct children of a directory, paginated; PathNotFound when it does not exist. */
  list(path: string, page?: { limit?: number; after?: string }, opts?: OpOptions): Promise<ListPage>;
  /** Moves a file, replacing any file at `dest` atomically. */
  move(source: string, dest: string, opts?: OpOptions): Promise<void>;
  /** Deletes a file or a whole directory tree; PathNotFound when nothing is there. */
  delete(path: string, opts?: OpOptions): Promise<void>;
  /**
   * Optional (cloud stores): a URL a client may fetch the file from directly, or null when
   * there is none for this file. Drivers that never redirect leave it out, so a blob request
   * on them skips the call.
   */
  redirectUrl?(path: string, opts?: { method?: string } & OpOptions): Promise<string | null>;
  /**
   * Visits every file and directory under `path` in lexical order. A directory's modTime may
   * be the epoch where the backend would need an extra request for it. Returning 'skip' from the
   * visitor for a directory skips its subtree; 'stop' ends the walk.
   */
  walk(path: string, visit: (info: FileInfo) => Promise<WalkControl> | WalkControl, opts?: OpOptions): Promise<void>;
}

export type WalkControl = void | 'skip' | 'stop';

export class StorageError extends Error {
  constructor(message: string, readonly path: string, readonly driver: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
export class PathNotFoundError extends StorageError {
  constructor(path: string, driver: string) {
    // An expected outcome on hot paths (every existence check of a new link or blob): a stack
    // trace would cost more than the check and say nothing.
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      super(`${driver}: path not found: ${path}`, path, driver);
    } finally {
      Error.stackTraceLimit = limit;
    }
    this.name = 'PathNotFoundError';
  }
}
export class InvalidPathError extends StorageError {
  override name = 'InvalidPathError';
  constructor(path: string, driver: string) {
    super(`${driver}: invalid path: ${JSON.stringify(path)}`, path, driver);
  }
}
export class InvalidOffsetError extends StorageError {
  override name = 'InvalidOffsetError';
  constructor(path: string, driver: string, readonly offset: number) {
    super(`${driver}: invalid offset ${offset} for ${path}`, path, driver);
  }
}
export class UnsupportedError extends StorageError {
  override name = 'UnsupportedError';
  constructor(what: string, driver: string) {
    super(`${driver}: unsupported: ${what}`, '', driver);
  }
}

export function isPathNotFound(err: unknown): err is PathNotFoundError {
  return err instanceof PathNotFoundError;
}

// Helpers shared by drivers (kept here so a driver imports only this file).

/** A name that can be a storage path segment; backend entries with other names are neither listed nor walked. */
export const VISIBLE_NAME = /^[A-Za-z0-9._:@-]+$/;

/** Pagination over a sorted list of names, shared by drivers that list a whole directory. */
export function paginate(sortedPaths: string[], page: { limit?: number; after?: string } = {}): ListPage {
  let start = 0;
  if (page.after !== undefined) {
    const after = page.after;
    // binary search for the first entry > after
    let lo = 0;
    let hi = sortedPaths.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (sortedPaths[mid]! <= after) lo = mid + 1;
      else hi = mid;
    }
    start = lo;
  }
  const end = page.limit ? Math.min(sortedPaths.length, start + page.limit) : sortedPaths.length;
  const entries = sortedPaths.slice(start, end);
  return end < sortedPaths.length ? { entries, next: entries[entries.length - 1] } : { entries };
}

/** Joins a directory path and a child name. */
export function childPath(dir: string, name: string): string {
  return dir === '/' ? `/${name}` : `${dir}/${name}`;
}

/** Byte-wise comparison, so every driver sorts the same way regardless of locale. */
export function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * A walk built from `list` and `stat`, for drivers without a faster native way. Visits
 * entries in lexical order, depth first.
 */
export async function walkByListing(
  driver: Pick<StorageDriver, 'list' | 'stat'>,
  path: string,
  visit: (info: FileInfo) => Promise<WalkControl> | WalkControl,
  opts?: OpOptions,
): Promise<void> {
  const recurse = async (dir: string): Promise<boolean> => {
    let after: string | undefined;
    for (;;) {
      const page = await driver.list(dir, { after, limit: 1000 }, opts);
      for (const entry of page.entries) {
        opts?.signal?.throwIfAborted();
        const info = await driver.stat(entry, opts);
        const ctl = await visit(info);
        if (ctl === 'stop') return false;
        if (info.isDir && ctl !== 'skip' && !(await recurse(entry))) return false;
      }
      if (!page.next) return true;
      after = page.next;
    }
  };
  await recurse(path);
}

/**
 * Object names of storage paths in a bucket or container, as CNCF Distribution's cloud
 * drivers name them: `<rootdirectory>/<path>` without a leading '/'.
 */
export class ObjectNames {
  /** Name prefix of the root: '' or 'root/'. */
  readonly prefix: string;

  constructor(rootdirectory = '') {
    const root = rootdirectory.replace(/^\/+|\/+$/g, '');
    this.prefix = root ? `${root}/` : '';
  }

  /** Object name of a storage path. */
  key(path: string): string {
    return this.prefix + path.slice(1);
  }

  /** Name prefix of everything below a directory path. */
  dirPrefix(path: string): string {
    return path === '/' ? this.prefix : `${this.key(path)}/`;
  }
}

/**
 * The children of one directory gathered from a delimited object listing, by name relative to
 * the directory: names that are not storage paths are hidden, a file and a directory of one
 * name (impossible on a filesystem) are kept as the directory, and the result is sorted
 * byte-wise by path. Directories have no size or time in object stores: 0 and the epoch.
 */
export class ListedChildren {
  private readonly byName = new Map<string, FileInfo>();
  /** Whether the listing returned anything at all (hidden names included). */
  seen = false;

  constructor(private readonly dir: string) {}

  addDir(name: string): void {
    this.seen = true;
    if (VISIBLE_NAME.test(name)) this.byName.set(name, { path: childPath(this.dir, name), size: 0, modTime: new Date(0), isDir: true });
  }

  addFile(name: string, size: number, modTime: Date): void {
    this.seen = true;
    if (!VISIBLE_NAME.test(name) || this.byName.get(name)?.isDir) return;
    this.byName.set(name, { path: childPath(this.dir, name), size, modTime, isDir: false });
  }

  sorted(): FileInfo[] {
    return [...this.byName.values()].sort((a, b) => compareNames(a.path, b.path));
  }
}

/** Runs fn; an error `isNotFound` recognises becomes PathNotFoundError for `path`. */
export async function notFoundAs<T>(path: string, driver: string, isNotFound: (err: unknown) => boolean, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (isNotFound(err)) throw new PathNotFoundError(path, driver);
    throw err;
  }
}

/**
 * A walk over a driver's own listing of a directory with each entry's info (sorted, as `list`
 * orders them): one listing per directory, no request per entry. Depth first.
 */
export async function walkChildren(
  children: (dir: string) => Promise<FileInfo[]>,
  path: string,
  visit: (info: FileInfo) => Promise<WalkControl> | WalkControl,
  opts?: OpOptions,
): Promise<void> {
  const recurse = async (dir: string): Promise<boolean> => {
    for (const info of await children(dir)) {
      opts?.signal?.throwIfAborted();
      const ctl = await visit(info);
      if (ctl === 'stop') return false;
      if (info.isDir && ctl !== 'skip' && !(await recurse(info.path))) return false;
    }
    return true;
  };
  await recurse(path);
}

/** Runs fn over items with at most `width` in flight; rejects with the first failure. */
export async function runLimited<T>(items: readonly T[], width: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const workers = Array.from({ length: Math.min(Math.max(1, width), items.length) }, async () => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        await fn(items[i]!, i);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  });
  await Promise.all(workers);
}

/**
 * Optional driver capability: removing what interrupted writes left behind in the backend
 * outside of any path (S3's incomplete multipart uploads). `olderThanMs` spares writes in
 * progress; returns a description of each item removed (or that would be, with `dryRun`).
 */
export interface StaleWritePurger {
  purgeStaleWrites(olderThanMs: number, opts?: { dryRun?: boolean } & OpOptions): Promise<string[]>;
}

/** Whether a driver (the inner driver, not the base wrapper) can purge stale writes. */
export function canPurgeStaleWrites(driver: unknown): driver is StaleWritePurger {
  return typeof (driver as Partial<StaleWritePurger> | null)?.purgeStaleWrites === 'function';
}
