// Google Cloud Storage driver. Every storage path is an object named `<rootdirectory>/<path>`
// (no leading '/', as CNCF Distribution's gcs driver names them) in one bucket. Directories
// are not stored: a directory exists while some object's name starts with `<dir>/`, and is
// listed with the '/' delimiter.
//
//  - putContent is one multipart (non-resumable) upload: the object appears whole, readers see
//    the old content or the new, never a mix.
//  - writers stream resumable uploads in `chunksize` pieces; appends to a non-empty object
//    upload a part and compose [object, part] server-side (see writer.ts). An unfinished
//    upload never becomes an object.
//  - move is a rewrite (the SDK repeats the rewrite call with its rewriteToken until a large
//    object is done) of the source's generation, then a delete of that generation.
//  - delete is recursive: the object at the path and every object below it (listed page by
//    page, deleted in parallel).
//  - list pages through objects.list (prefix + '/' delimiter, pageToken) and re-sorts
//    byte-wise: GCS orders a directory `x` as `x/`, after `x-y` and `x.y`.
//  - redirectUrl is a V4 signed GET URL, valid for a short time, when the driver holds a
//    service account's private key (`keyfile` or `credentials`); otherwise null, and blobs
//    stream through Berth.
// GCS has no modification time for a directory: it is reported as the epoch, as the s3 and
// azure drivers do.
import { IdempotencyStrategy, Storage, type Bucket, type File, type StorageOptions } from '@google-cloud/storage';
import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import {
  InvalidOffsetError,
  ObjectNames,
  PathNotFoundError,
  ListedChildren,
  notFoundAs,
  paginate,
  runLimited,
  walkChildren,
  type FileInfo,
  type FileWriter,
  type ListPage,
  type OpOptions,
  type StaleWritePurger,
  type StorageDriver,
  type WalkControl,
} from '../../driver.js';
import { GcsWriter } from './writer.js';

const NAME = 'gcs';
const KiB = 1024;
const MiB = 1024 * KiB;
const EPOCH = new Date(0);
/** Resumable uploads take chunks in multiples of this. */
export const CHUNK_GRANULARITY = 256 * KiB;
/** Objects per listing request (the service's maximum). */
const PAGE = 1000;
/** Parallel deletions of a recursive delete or a purge. */
const CONCURRENCY = 16;
/** GCS refuses to compose an object of more than 1024 components; re-upload well before. */
const MAX_COMPONENTS = 1000;
/** Temporary part objects of appends live below this name (not a storage path: never listed). */
const PARTS = '~berth-parts/';

/** A service account key, as in its JSON key file. */
export interface ServiceAccountKey {
  type?: string;
  project_id?: string;
  private_key?: string;
  client_email?: string;
  [key: string]: unknown;
}

/** Distribution's `storage.gcs` keys (as validated by the config), plus `endpoint` and test knobs. */
export interface GcsOptions {
  bucket: string;
  /** Path of a service account's JSON key file. */
  keyfile?: string;
  /** The key itself (Distribution's inline `credentials`). */
  credentials?: ServiceAccountKey;
  /** Prefix of every object name; '' or absent for the bucket's top. */
  rootdirectory?: string;
  /** Resumable upload chunk size: a multiple of 256 KiB; one chunk is buffered per writer. */
  chunksize?: number;
  /**
   * API endpoint (private endpoints, emulators). Without credentials, requests to it carry no
   * authorization; without it, the SDK's default (Application Default Credentials) applies.
   */
  endpoint?: string;
  /** How long a redirect URL stays valid. */
  redirectExpiryMs?: number;
  /** Objects per listing request (at most 1000, the default). */
  listPageSize?: number;
  /**
   * An append to an object of this many components or more re-uploads it (streamed through)
   * instead of composing: GCS refuses compositions of more than 1024. Default 1000.
   */
  maxComponents?: number;
}

interface GcsMetadata {
  name?: string;
  size?: string | number;
  updated?: string;
  timeCreated?: string;
  generation?: string | number;
  componentCount?: number;
}

function code(err: unknown): number | undefined {
  const c = (err as { code?: unknown } | null)?.code;
  return typeof c === 'number' ? c : undefined;
}

/** A missing object (a missing bucket is a configuration error, not a missing path). */
function isNotFound(err: unknown): boolean {
  return code(err) === 404 && !/bucket does not exist/i.test((err as Error).message ?? '');
}

function loadKey(options: GcsOptions): ServiceAccountKey | undefined {
  if (options.credentials && options.keyfile) throw new Error(`${NAME}: give keyfile or credentials, not both`);
  if (options.credentials) return options.credentials;
  if (!options.keyfile) return undefined;
  try {
    return JSON.parse(readFileSync(options.keyfile, 'utf8')) as ServiceAccountKey;
  } catch (err) {
    throw new Error(`${NAME}: cannot read keyfile ${options.keyfile}: ${(err as Error).message}`);
  }
}

export class GcsDriver implements StorageDriver, StaleWritePurger {
  readonly name = NAME;
  readonly storage: Storage;
  readonly bucket: Bucket;
  private readonly names: ObjectNames;
  private readonly chunkSize: number;
  private readonly canSign: boolean;
  private readonly redirectExpiryMs: number;
  private readonly listPageSize: number;
  private readonly maxComponents: number;

  constructor(options: GcsOptions) {
    this.chunkSize = options.chunksize ?? 5 * MiB;
    if (this.chunkSize <= 0 || this.chunkSize % CHUNK_GRANULARITY !== 0) {
      throw new Error(`${NAME}: chunksize must be a positive multiple of 256 KiB (262144 bytes)`);
    }
    const key = loadKey(options);
    this.canSign = typeof key?.private_key === 'string' && typeof key.client_email === 'string';
    // Retry every request. Under the SDK's default strategy, an operation without a
    // precondition (a copy, a delete) turns retries off on the shared Storage object while it
    // runs, so requests made meanwhile get none (a stat failed on a dropped keep-alive
    // connection), and a File made then "restores" them to off for good. Berth's writes are
    // safe to repeat: copies go to content-addressed paths, saves write the same bytes again,
    // a delete repeated after a lost answer finds the object gone (and says so, as for any
    // missing path), composes carry a generation precondition.
    const config: StorageOptions = {
      retryOptions: { autoRetry: true, maxRetries: 4, idempotencyStrategy: IdempotencyStrategy.RetryAlways },
    };
    if (key) {
      config.credentials = key as StorageOptions['credentials'];
      if (key.project_id) config.projectId = key.project_id;
    }
    if (options.endpoint) {
      config.apiEndpoint = options.endpoint.replace(/\/+$/, '');
      // A custom endpoint is sent credentials only when some were configured.
      config.useAuthWithCustomEndpoint = key !== undefined;
    }
    this.storage = new Storage(config);
    this.bucket = this.storage.bucket(options.bucket);
    this.names = new ObjectNames(options.rootdirectory);
    this.redirectExpiryMs = options.redirectExpiryMs ?? 20 * 60_000;
    this.listPageSize = Math.min(PAGE, Math.max(1, options.listPageSize ?? PAGE));
    this.maxComponents = options.maxComponents ?? MAX_COMPONENTS;
  }

  private file(path: string): File {
    return this.bucket.file(this.names.key(path));
  }

  /** Runs fn; a missing object becomes PathNotFoundError for `path`. */
  private named<T>(path: string, fn: () => Promise<T>): Promise<T> {
    return notFoundAs(path, NAME, isNotFound, fn);
  }

  private async metadata(file: File, path: string, opts?: OpOptions): Promise<GcsMetadata> {
    opts?.signal?.throwIfAborted();
    const [meta] = await this.named(path, () => file.getMetadata());
    return meta as GcsMetadata;
  }

  /** The object's metadata, or null when there is none. */
  private async metadataOrNull(file: File, path: string, opts?: OpOptions): Promise<GcsMetadata | null> {
    try {
      return await this.metadata(file, path, opts);
    } catch (err) {
      if (err instanceof PathNotFoundError) return null;
      throw err;
    }
  }

  async getContent(path: string, opts?: OpOptions): Promise<Buffer> {
    opts?.signal?.throwIfAborted();
    const [content] = await this.named(path, () => this.file(path).download());
    return content;
  }

  async putContent(path: string, content: Buffer | string, opts?: OpOptions): Promise<void> {
    opts?.signal?.throwIfAborted();
    const body = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
    await this.file(path).save(body, { resumable: false, contentType: 'application/octet-stream' });
  }

  async reader(path: string, offset = 0, opts?: OpOptions): Promise<Readable> {
    const meta = await this.metadata(this.file(path), path, opts);
    const size = Number(meta.size ?? 0);
    if (offset > size) throw new InvalidOffsetError(path, NAME, offset);
    if (offset === size) return Readable.from([]);
    // The generation just seen: a concurrent replacement fails the read instead of mixing.
    const file = this.bucket.file(this.names.key(path), { generation: meta.generation });
    // A whole object is checked against its CRC32C; a range cannot be.
    const stream = file.createReadStream(offset > 0 ? { start: offset, validation: false } : { validation: 'crc32c' });
    opts?.signal?.addEventListener('abort', () => stream.destroy(opts.signal!.reason as Error), { once: true });
    return stream;
  }

  async writer(path: string, options: { append: boolean }, opts?: OpOptions): Promise<FileWriter> {
    const file = this.file(path);
    let base: { generation: string; size: number; componentCount: number } | null = null;
    let ifGenerationMatch: number | string | undefined;
    if (options.append) {
      const meta = await this.metadataOrNull(file, path, opts);
      const size = Number(meta?.size ?? 0);
      if (meta && size > 0) base = { generation: String(meta.generation), size, componentCount: meta.componentCount ?? 1 };
      // An empty or missing object is written whole, replacing only what was seen.
      else ifGenerationMatch = meta ? String(meta.generation) : 0;
    }
    return new GcsWriter({
      bucket: this.bucket,
      file,
      base,
      ifGenerationMatch,
      partName: `${this.names.prefix}${PARTS}${Date.now()}-${randomBytes(8).toString('hex')}`,
      chunkSize: this.chunkSize,
      maxComponents: this.maxComponents,
      readBase: () => this.reader(path, 0, opts),
      driverName: NAME,
      path,
      signal: opts?.signal,
    });
  }

  async stat(path: string, opts?: OpOptions): Promise<FileInfo> {
    if (path === '/') return { path, size: 0, modTime: EPOCH, isDir: true };
    const meta = await this.metadataOrNull(this.file(path), path, opts);
    if (meta) return { path, size: Number(meta.size ?? 0), modTime: meta.updated ? new Date(meta.updated) : EPOCH, isDir: false };
    if (await this.anyObject(this.names.dirPrefix(path))) return { path, size: 0, modTime: EPOCH, isDir: true };
    throw new PathNotFoundError(path, NAME);
  }

  /** Whether some object's name starts with `namePrefix`. */
  private async anyObject(namePrefix: string): Promise<boolean> {
    const [files] = await this.bucket.getFiles({ prefix: namePrefix, maxResults: 1, autoPaginate: false });
    return files.length > 0;
  }

  /** Pages of objects.list below `prefix` (with the '/' delimiter when `delimited`). */
  private async *pages(prefix: string, delimited: boolean, opts?: OpOptions): AsyncGenerator<{ files: File[]; prefixes: string[] }> {
    let pageToken: string | undefined;
    for (;;) {
      opts?.signal?.throwIfAborted();
      const [files, next, res] = await this.bucket.getFiles({
        prefix,
        ...(delimited ? { delimiter: '/' } : {}),
        maxResults: this.listPageSize,
        autoPaginate: false,
        pageToken,
      });
      yield { files, prefixes: ((res as { prefixes?: string[] } | undefined)?.prefixes ?? []) };
      pageToken = (next as { pageToken?: string } | null)?.pageToken;
      if (!pageToken) return;
    }
  }

  /**
   * Every direct child of a directory with its info, sorted byte-wise by path (the whole
   * directory is read: GCS's order of `x/` differs from Berth's). PathNotFound when nothing
   * is below the path.
   */
  private async children(path: string, opts?: OpOptions): Promise<FileInfo[]> {
    const prefix = this.names.dirPrefix(path);
    const found = new ListedChildren(path);
    for await (const page of this.pages(prefix, true, opts)) {
      for (const p of page.prefixes) found.addDir(p.slice(prefix.length, -1));
      for (const f of page.files) {
        const m = f.metadata as GcsMetadata;
        found.addFile(f.name.slice(prefix.length), Number(m.size ?? 0), m.updated ? new Date(m.updated) : EPOCH);
      }
    }
    if (!found.seen && path !== '/') throw new PathNotFoundError(path, NAME);
    return found.sorted();
  }

  async list(path: string, page?: { limit?: number; after?: string }, opts?: OpOptions): Promise<ListPage> {
    return paginate((await this.children(path, opts)).map((e) => e.path), page);
  }

  async move(source: string, dest: string, opts?: OpOptions): Promise<void> {
    const from = this.file(source);
    const meta = await this.metadata(from, source, opts);
    if (source === dest) return;
    const generation = String(meta.generation);
    const pinned = this.bucket.file(from.name, { generation });
    try {
      await pinned.copy(this.file(dest));
    } catch (err) {
      // The source went away (or was replaced) between the stat and the copy.
      if (isNotFound(err) && !(await this.metadataOrNull(from, source, opts))) throw new PathNotFoundError(source, NAME);
      throw err;
    }
    try {
      await from.delete({ ifGenerationMatch: Number(generation), ignoreNotFound: true });
    } catch (err) {
      // 412: a newer object took the source's name meanwhile; it is not the one moved.
      if (code(err) !== 412) throw err;
    }
  }

  async delete(path: string, opts?: OpOptions): Promise<void> {
    opts?.signal?.throwIfAborted();
    const [file, below] = await Promise.all([
      this.file(path)
        .delete()
        .then(
          () => true,
          (err: unknown) => {
            if (isNotFound(err)) return false;
            throw err;
          },
        ),
      this.deleteBelow(this.names.dirPrefix(path), opts),
    ]);
    if (!file && below === 0) throw new PathNotFoundError(path, NAME);
  }

  /** Deletes every object whose name starts with `prefix`, a listing page at a time; returns how many. */
  private async deleteBelow(prefix: string, opts?: OpOptions): Promise<number> {
    let count = 0;
    for await (const page of this.pages(prefix, false, opts)) {
      count += page.files.length;
      await runLimited(page.files, CONCURRENCY, (f) => f.delete({ ignoreNotFound: true }).then(() => undefined));
    }
    return count;
  }

  /**
   * Deletes the part objects of appends created more than `olderThanMs` ago: what a process
   * that died between a part's upload and its compose left behind. (Unfinished resumable
   * uploads are not objects; GCS discards them after a week.)
   */
  async purgeStaleWrites(olderThanMs: number, opts: { dryRun?: boolean } & OpOptions = {}): Promise<string[]> {
    const cutoff = Date.now() - olderThanMs;
    const stale: File[] = [];
    for await (const page of this.pages(this.names.prefix + PARTS, false, opts)) {
      for (const f of page.files) {
        const created = (f.metadata as GcsMetadata).timeCreated;
        if (created !== undefined && new Date(created).getTime() <= cutoff) stale.push(f);
      }
    }
    if (!opts.dryRun) await runLimited(stale, CONCURRENCY, (f) => f.delete({ ignoreNotFound: true }).then(() => undefined));
    return stale.map((f) => `append part ${f.name} created ${(f.metadata as GcsMetadata).timeCreated}`);
  }

  async redirectUrl(path: string, opts?: { method?: string } & OpOptions): Promise<string | null> {
    // A V4 signature covers the method: a GET URL is refused for HEAD, which Berth answers itself.
    if ((opts?.method ?? 'GET').toUpperCase() !== 'GET' || !this.canSign) return null;
    const [url] = await this.file(path).getSignedUrl({ version: 'v4', action: 'read', expires: Date.now() + this.redirectExpiryMs });
    return url;
  }

  /** Depth first, one delimited listing per directory; no request per entry. */
  async walk(path: string, visit: (info: FileInfo) => Promise<WalkControl> | WalkControl, opts?: OpOptions): Promise<void> {
    await walkChildren((dir) => this.children(dir, opts), path, visit, opts);
  }
}
