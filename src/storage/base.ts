// The one wrapper every driver is used through: it validates paths before a driver sees them,
// normalises listing/pagination arguments, and counts operations for metrics. Behaviour that
// all drivers share lives here, not in the drivers.
import type { Readable } from 'node:stream';
import {
  InvalidOffsetError,
  InvalidPathError,
  type FileInfo,
  type FileWriter,
  type ListPage,
  type OpenFile,
  type OpOptions,
  type PutOptions,
  type StorageDriver,
  type WalkControl,
} from './driver.js';

const PATH_RE = /^(\/[A-Za-z0-9._:@-]+)+$/;
/** A '.' or '..' segment. */
const DOT_SEGMENT = /\/\.{1,2}(?=\/|$)/;

export function isValidPath(path: string, allowRoot = false): boolean {
  if (allowRoot && path === '/') return true;
  return PATH_RE.test(path) && !DOT_SEGMENT.test(path);
}

export interface StorageMetrics {
  ops: Map<string, number>;
  errors: Map<string, number>;
}

export class BaseDriver implements StorageDriver {
  readonly metrics: StorageMetrics = { ops: new Map(), errors: new Map() };

  constructor(readonly inner: StorageDriver) {}

  get name(): string {
    return this.inner.name;
  }

  // Every method below is async, so a refused path or offset is a rejected promise like any
  // other storage error, never a synchronous throw out of a promise-returning call.
  private check(path: string, allowRoot = false): void {
    if (typeof path !== 'string' || !isValidPath(path, allowRoot)) throw new InvalidPathError(path, this.inner.name);
  }

  private async count<T>(op: string, fn: () => Promise<T>): Promise<T> {
    this.metrics.ops.set(op, (this.metrics.ops.get(op) ?? 0) + 1);
    try {
      return await fn();
    } catch (err) {
      this.metrics.errors.set(op, (this.metrics.errors.get(op) ?? 0) + 1);
      throw err;
    }
  }

  async getContent(path: string, opts?: OpOptions): Promise<Buffer> {
    this.check(path);
    return this.count('getContent', () => this.inner.getContent(path, opts));
  }

  async putContent(path: string, content: Buffer | string, opts?: PutOptions): Promise<void> {
    this.check(path);
    return this.count('putContent', () => this.inner.putContent(path, content, opts));
  }

  async reader(path: string, offset = 0, opts?: OpOptions): Promise<Readable> {
    this.check(path);
    if (!Number.isSafeInteger(offset) || offset < 0) throw new InvalidOffsetError(path, this.inner.name, offset);
    return this.count('reader', () => this.inner.reader(path, offset, opts));
  }

  /** The file opened for positional reads, or null when the driver streams only (use `reader`). */
  async openFile(path: string): Promise<OpenFile | null> {
    this.check(path);
    const inner = this.inner;
    if (!inner.open) return null;
    return this.count('open', () => inner.open!(path));
  }

  async writer(path: string, options: { append: boolean }, opts?: OpOptions): Promise<FileWriter> {
    this.check(path);
    return this.count('writer', () => this.inner.writer(path, options, opts));
  }

  async stat(path: string, opts?: OpOptions): Promise<FileInfo> {
    this.check(path, true);
    return this.count('stat', () => this.inner.stat(path, opts));
  }

  async list(path: string, page: { limit?: number; after?: string } = {}, opts?: OpOptions): Promise<ListPage> {
    this.check(path, true);
    const limit = page.limit !== undefined && page.limit > 0 ? Math.floor(page.limit) : undefined;
    return this.count('list', () => this.inner.list(path, { limit, after: page.after }, opts));
  }

  /** Every direct child of a directory (one unpaginated list; drivers page internally). */
  async listAll(path: string, opts?: OpOptions): Promise<string[]> {
    return (await this.list(path, {}, opts)).entries;
  }

  async move(source: string, dest: string, opts?: OpOptions): Promise<void> {
    this.check(source);
    this.check(dest);
    return this.count('move', () => this.inner.move(source, dest, opts));
  }

  async delete(path: string, opts?: OpOptions): Promise<void> {
    this.check(path);
    return this.count('delete', () => this.inner.delete(path, opts));
  }

  /** Whether the driver may hand out redirect URLs at all (see `redirectUrl`). */
  get redirects(): boolean {
    return typeof this.inner.redirectUrl === 'function';
  }

  /** A URL the client may fetch the file from directly; null where the driver has none. */
  async redirectUrl(path: string, opts?: { method?: string } & OpOptions): Promise<string | null> {
    this.check(path);
    const inner = this.inner;
    if (!inner.redirectUrl) return null;
    return this.count('redirectUrl', () => inner.redirectUrl!(path, opts));
  }

  async walk(path: string, visit: (info: FileInfo) => Promise<WalkControl> | WalkControl, opts?: OpOptions): Promise<void> {
    this.check(path, true);
    return this.count('walk', () => this.inner.walk(path, visit, opts));
  }
}
