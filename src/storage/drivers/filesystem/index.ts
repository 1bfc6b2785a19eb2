// Filesystem driver: files under a root directory, laid out exactly as the storage paths say
// (so a root written by CNCF Distribution's filesystem driver is read unchanged, and back).
// Whole-file writes go through a temporary file + fdatasync + rename + directory fsync, so a
// crash leaves either the old file or the new one. Temporary names contain '~', which no
// storage path may contain, so listings never show them.
import { randomBytes } from 'node:crypto';
import { close, constants, fdatasync, fstat, fsync, open, read, readFile, readdir, rename, writeFile, promises as fsp, type Dirent } from 'node:fs';
import { promisify } from 'node:util';
import type { FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import {
  InvalidOffsetError,
  PathNotFoundError,
  VISIBLE_NAME,
  childPath,
  compareNames,
  paginate,
  walkByListing,
  type FileInfo,
  type FileWriter,
  type ListPage,
  type OpenFile,
  type PutOptions,
  type StorageDriver,
  type WalkControl,
} from '../../driver.js';

const NAME = 'filesystem';
const EPOCH = new Date(0);
// Callback forms run as one thread-pool job each (the promise API makes several round trips),
// and plain descriptors cost less than FileHandle objects on the small-write path.
const readFileAsync = promisify(readFile);
const openAsync = promisify(open);
const closeAsync = promisify(close);
const fstatAsync = promisify(fstat);
const fsyncAsync = promisify(fsync);
const fdatasyncAsync = promisify(fdatasync);
const renameAsync = promisify(rename);
const writeFileAsync = promisify(writeFile) as (fd: number, data: Buffer | string) => Promise<void>;
const readdirAsync = promisify(readdir) as (path: string) => Promise<string[]>;
const readdirTypedAsync = promisify(readdir) as (path: string, o: { withFileTypes: true }) => Promise<Dirent[]>;
/** Bytes gathered before a write starts when none is running (see FilesystemWriter.write). */
const START_WRITE = 256 * 1024;
/** Written bytes after which a writer flushes to the device in the background. */
const SYNC_EVERY = 8 * 1024 * 1024;

export interface FilesystemOptions {
  rootdirectory: string;
  /** Bytes gathered before one write(v) call; larger means fewer syscalls. */
  writeBufferSize?: number;
  /** Read stream chunk size. */
  readChunkSize?: number;
}

function isNotFound(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

// Temporary names: a random per-process prefix and a counter (unique across processes
// sharing the storage, and cheaper than random bytes per write).
const TEMP_PREFIX = `.berth~${randomBytes(6).toString('hex')}`;
let tempCounter = 0;
function tempName(path: string): string {
  return `${path}${TEMP_PREFIX}${(++tempCounter).toString(36)}`;
}

/** Directories known to exist, so writes into them skip mkdir; bounded, forgotten on ENOENT. */
const KNOWN_DIRS_MAX = 10_000;

/** mkdir -p, with each directory created fsynced into its parent (so it survives a power cut). */
async function makeDirs(dir: string): Promise<void> {
  const first = await fsp.mkdir(dir, { recursive: true });
  if (!first) return;
  for (let d = dir; ; d = dirname(d)) {
    await syncDir(dirname(d));
    if (d === first) break;
  }
}

/** Removes a file or a directory tree: one readdir per directory, its entries in parallel. */
async function removeTree(path: string): Promise<void> {
  let entries: Dirent[];
  try {
    entries = await readdirTypedAsync(path, { withFileTypes: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTDIR') return fsp.unlink(path);
    if (code === 'ENOENT') return;
    throw err;
  }
  await Promise.all(entries.map((e) => (e.isDirectory() ? removeTree(join(path, e.name)) : fsp.unlink(join(path, e.name)))));
  await fsp.rmdir(path);
}

/** fsync a directory so a rename or create inside it survives a power cut. */
async function syncDir(dir: string): Promise<void> {
  const fd = await openAsync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await fsyncAsync(fd);
  } catch (err) {
    // Some filesystems refuse fsync on directories; the data itself is already synced.
    if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
  } finally {
    await closeAsync(fd);
  }
}

export class FilesystemDriver implements StorageDriver {
  readonly name = NAME;
  readonly root: string;
  private readonly writeBufferSize: number;
  private readonly readChunkSize: number;
  private readonly knownDirs = new Set<string>();

  constructor(options: FilesystemOptions) {
    this.root = options.rootdirectory;
    this.writeBufferSize = options.writeBufferSize ?? 4 * 1024 * 1024;
    this.readChunkSize = options.readChunkSize ?? 1024 * 1024;
  }

  private full(path: string): string {
    return join(this.root, path);
  }

  /**
   * Runs fn; when it fails because the parent directory is missing, creates it and retries.
   * Each directory created is fsynced into its parent, so what is written into it can
   * survive a power cut.
   */
  private async withParent<T>(file: string, fn: () => Promise<T>): Promise<T> {
    const dir = dirname(file);
    // Most writes go to a new directory (every link has its own): create it first rather
    // than fail, throw and retry. mkdir -p of an existing directory is one cheap native call.
    if (!this.knownDirs.has(dir)) await makeDirs(dir);
    let result: T;
    try {
      result = await fn();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      this.knownDirs.delete(dir); // removed meanwhile (a delete, another process)
      await makeDirs(dir);
      result = await fn();
    }
    if (this.knownDirs.size >= KNOWN_DIRS_MAX) this.knownDirs.clear();
    this.knownDirs.add(dir);
    return result;
  }

  async getContent(path: string): Promise<Buffer> {
    try {
      // One thread-pool job for open/fstat/read/close (measured: 57k vs 25k small reads/s).
      return await readFileAsync(this.full(path));
    } catch (err) {
      if (isNotFound(err) || (err as NodeJS.ErrnoException).code === 'EISDIR') throw new PathNotFoundError(path, NAME);
      throw err;
    }
  }

  async putContent(path: string, content: Buffer | string, opts?: PutOptions): Promise<void> {
    const durable = opts?.durable !== false;
    const file = this.full(path);
    const tmp = tempName(file);
    const fd = await this.withParent(file, () => openAsync(tmp, 'wx'));
    try {
      try {
        await writeFileAsync(fd, content);
        if (durable) await fdatasyncAsync(fd);
      } finally {
        await closeAsync(fd);
      }
      await renameAsync(tmp, file);
    } catch (err) {
      // Whatever failed (the write, or the rename, e.g. a directory in the way), the
      // temporary must not outlive the call.
      await fsp.rm(tmp, { force: true }).catch(() => {});
      throw err;
    }
    if (durable) await syncDir(dirname(file));
  }

  async reader(path: string, offset = 0): Promise<Readable> {
    let handle: FileHandle;
    try {
      handle = await fsp.open(this.full(path), 'r');
    } catch (err) {
      if (isNotFound(err) || (err as NodeJS.ErrnoException).code === 'EISDIR') throw new PathNotFoundError(path, NAME);
      throw err;
    }
    const st = await handle.stat();
    if (st.isDirectory()) {
      await handle.close();
      throw new PathNotFoundError(path, NAME);
    }
    if (offset > st.size) {
      await handle.close();
      throw new InvalidOffsetError(path, NAME, offset);
    }
    return handle.createReadStream({ start: offset, highWaterMark: this.readChunkSize, autoClose: true });
  }

  async open(path: string): Promise<OpenFile> {
    let fd: number;
    try {
      fd = await openAsync(this.full(path), 'r');
    } catch (err) {
      if (isNotFound(err)) throw new PathNotFoundError(path, NAME);
      throw err;
    }
    try {
      const st = await fstatAsync(fd);
      if (st.isDirectory()) throw new PathNotFoundError(path, NAME);
      return new FilesystemOpenFile(fd, st.size);
    } catch (err) {
      await closeAsync(fd);
      throw err;
    }
  }

  async writer(path: string, options: { append: boolean }): Promise<FileWriter> {
    const file = this.full(path);
    const handle = await this.withParent(file, () => fsp.open(file, options.append ? 'a' : 'w'));
    const size = options.append ? (await handle.stat()).size : 0;
    return new FilesystemWriter(handle, file, size, this.writeBufferSize, size === 0);
  }

  async stat(path: string): Promise<FileInfo> {
    try {
      const st = await fsp.stat(this.full(path));
      return { path, size: st.isDirectory() ? 0 : st.size, modTime: st.mtime, isDir: st.isDirectory() };
    } catch (err) {
      if (isNotFound(err)) throw new PathNotFoundError(path, NAME);
      throw err;
    }
  }

  async list(path: string, page?: { limit?: number; after?: string }): Promise<ListPage> {
    let names: string[];
    try {
      names = await readdirAsync(this.full(path));
    } catch (err) {
      if (isNotFound(err)) throw new PathNotFoundError(path, NAME);
      throw err;
    }
    const visible = names.filter((n) => VISIBLE_NAME.test(n)).sort(compareNames);
    return paginate(
      visible.map((n) => childPath(path, n)),
      page,
    );
  }

  async move(source: string, dest: string): Promise<void> {
    const from = this.full(source);
    const to = this.full(dest);
    const sourceMissing = (err: unknown) => (isNotFound(err) ? new PathNotFoundError(source, NAME) : err);
    try {
      await fsp.rename(from, to);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      // A missing source or a missing destination parent: create the parent only when the
      // source exists, so a failed move leaves no empty directories behind.
      await fsp.lstat(from).catch((e) => {
        throw sourceMissing(e);
      });
      await makeDirs(dirname(to));
      await fsp.rename(from, to).catch((e) => {
        throw sourceMissing(e);
      });
    }
    await syncDir(dirname(to));
  }

  async delete(path: string): Promise<void> {
    const target = this.full(path);
    // Rename first so the whole tree disappears at once, then remove it at leisure.
    const doomed = tempName(target);
    try {
      await fsp.rename(target, doomed);
    } catch (err) {
      if (isNotFound(err)) throw new PathNotFoundError(path, NAME);
      throw err;
    }
    await removeTree(doomed);
  }

  /**
   * One readdir per directory (with entry types, so directories need no stat); files are
   * stat'ed for their size. Directories are reported with the epoch as their time.
   */
  async walk(path: string, visit: (info: FileInfo) => Promise<WalkControl> | WalkControl): Promise<void> {
    const recurse = async (dir: string): Promise<boolean> => {
      let entries: Dirent[];
      try {
        entries = await readdirTypedAsync(this.full(dir), { withFileTypes: true });
      } catch (err) {
        if (isNotFound(err)) {
          if (dir === path) throw new PathNotFoundError(path, NAME);
          return true; // removed while walking
        }
        throw err;
      }
      const visible = entries.filter((e) => VISIBLE_NAME.test(e.name)).sort((a, b) => compareNames(a.name, b.name));
      for (const entry of visible) {
        const child = childPath(dir, entry.name);
        let info: FileInfo;
        if (entry.isDirectory()) info = { path: child, size: 0, modTime: EPOCH, isDir: true };
        else {
          try {
            const st = await fsp.stat(this.full(child));
            info = { path: child, size: st.size, modTime: st.mtime, isDir: st.isDirectory() };
          } catch (err) {
            if (isNotFound(err)) continue;
            throw err;
          }
        }
        const ctl = await visit(info);
        if (ctl === 'stop') return false;
        if (info.isDir && ctl !== 'skip' && !(await recurse(child))) return false;
      }
      return true;
    };
    const root = await this.stat(path);
    if (!root.isDir) return;
    await recurse(path);
  }
}

/** A plain descriptor: each read is one thread-pool job into the caller's buffer. */
class FilesystemOpenFile implements OpenFile {
  private closing: Promise<void> | null = null;

  constructor(
    private readonly fd: number,
    readonly size: number,
  ) {}

  read(into: Buffer, length: number, position: number): Promise<number> {
    return new Promise((resolve, reject) => read(this.fd, into, 0, length, position, (err, n) => (err ? reject(err) : resolve(n))));
  }

  close(): Promise<void> {
    return (this.closing ??= closeAsync(this.fd));
  }
}

/**
 * Gathers incoming chunks and writes them with one writev each time, keeping one write in
 * flight while the next gathers (from START_WRITE bytes when the disk is idle, up to
 * `bufferSize` while it is busy): receiving, hashing and disk I/O overlap, and memory per
 * writer stays below two buffers.
 */
class FilesystemWriter implements FileWriter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private inflight: Promise<void> | null = null;
  private failure: unknown = null;
  private closed = false;
  /** Bytes written since the last background fdatasync started. */
  private unsynced = 0;
  private syncing: Promise<void> | null = null;
  private held: number;

  constructor(
    private readonly handle: FileHandle,
    private readonly file: string,
    initialSize: number,
    private readonly bufferSize: number,
    private readonly created: boolean,
  ) {
    this.held = initialSize;
  }

  get size(): number {
    return this.held;
  }

  async write(chunk: Buffer): Promise<void> {
    if (this.closed) throw new Error(`${NAME}: writer for ${this.file} already closed`);
    if (this.failure) throw this.failure;
    if (chunk.length === 0) return;
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    this.held += chunk.length;
    if (this.pendingBytes >= this.bufferSize) {
      if (this.inflight) await this.inflight;
      if (this.failure) throw this.failure;
      this.startFlush();
    } else if (!this.inflight && this.pendingBytes >= START_WRITE) {
      // The disk is idle: give it what has arrived rather than wait for a full buffer. While
      // a write runs, the next one gathers up to a full buffer, so a disk slower than the
      // network still gets large writes, and a request's first bytes reach it at once.
      this.startFlush();
    }
  }

  private startFlush(): void {
    if (this.pendingBytes === 0) return;
    const buffers = this.pending;
    const bytes = this.pendingBytes;
    this.pending = [];
    this.pendingBytes = 0;
    this.inflight = writeAll(this.handle, buffers).then(
      () => {
        this.inflight = null;
        this.unsynced += bytes;
        this.maybeSync();
      },
      (err) => {
        this.failure = err;
        this.inflight = null;
      },
    );
  }

  /**
   * Flushes written data to the device in the background every SYNC_EVERY bytes, while
   * more arrives: the fdatasync at commit then has only the tail left, instead of the
   * whole blob while the client waits.
   */
  private maybeSync(): void {
    if (this.syncing || this.unsynced < SYNC_EVERY) return;
    this.unsynced = 0;
    this.syncing = this.handle.datasync().then(
      () => {
        this.syncing = null;
      },
      (err) => {
        this.failure = err;
        this.syncing = null;
      },
    );
  }

  /** Waits until every byte handed to write() is in the file (not necessarily on the device). */
  private async drain(): Promise<void> {
    if (this.inflight) await this.inflight;
    this.startFlush();
    if (this.inflight) await this.inflight;
    if (this.failure) throw this.failure;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.drain();
    } finally {
      // A FileHandle closes once its operations end. Nothing is promised durable before
      // commit, so a background flush still running does not delay the answer to a PATCH:
      // the handle closes when it ends (its result does not matter; commit flushes again and
      // reports errors).
      const closing = this.handle.close();
      if (this.syncing) closing.catch(() => {});
      else await closing;
    }
  }

  async commit(): Promise<void> {
    if (this.closed) throw new Error(`${NAME}: writer for ${this.file} already closed`);
    this.closed = true;
    try {
      await this.drain();
      if (this.syncing) await this.syncing;
      if (this.failure) throw this.failure;
      await this.handle.datasync();
    } finally {
      await this.handle.close();
    }
    if (this.created) await syncDir(dirname(this.file));
  }

  async cancel(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      if (this.inflight) await this.inflight.catch(() => {});
      if (this.syncing) await this.syncing;
      await this.handle.close();
    }
    await fsp.rm(this.file, { force: true });
  }
}

async function writeAll(handle: FileHandle, buffers: Buffer[]): Promise<void> {
  let rest = buffers;
  while (rest.length > 0) {
    const { bytesWritten } = await handle.writev(rest);
    // writev may write less than asked; drop what was written and go on.
    let skip = bytesWritten;
    const next: Buffer[] = [];
    for (const b of rest) {
      if (skip >= b.length) {
        skip -= b.length;
        continue;
      }
      next.push(skip > 0 ? b.subarray(skip) : b);
      skip = 0;
    }
    rest = next;
  }
}
