// Azure Blob Storage driver. Every storage path is a blob named `<rootdirectory>/<path>`
// (no leading '/', as CNCF Distribution's azure driver names them), in one container.
// Directories are not stored: a directory exists while some blob's name starts with
// `<dir>/`, and is listed with the '/' delimiter.
//
//  - putContent is a single Put Blob: readers see the old content or the new, never a mix.
//  - writers stage blocks and commit the block list (see writer.ts); an append writer
//    continues a blob's committed block list.
//  - move is a server-side copy (Copy Blob From URL for block blobs up to 256 MiB, else Copy
//    Blob, polled until done), conditional on the source's ETag, then a delete of the source.
//  - delete is recursive: the blob at the path and every blob below it, in Blob Batch
//    requests of up to 256 deletions (one by one where batches are refused).
//  - redirectUrl is a read-only SAS URL of the blob, valid for a short time.
// Azure has no modification time for a directory: it is reported as the epoch, as
// Distribution's azure driver reports a zero time.
import {
  BlobSASPermissions,
  BlobServiceClient,
  RestError,
  StorageSharedKeyCredential,
  generateBlobSASQueryParameters,
  type BlobClient,
  type ContainerClient,
} from '@azure/storage-blob';
import { Readable } from 'node:stream';
import {
  InvalidOffsetError,
  PathNotFoundError,
  UnsupportedError,
  VISIBLE_NAME,
  childPath,
  compareNames,
  paginate,
  runLimited,
  walkChildren,
  type FileInfo,
  type FileWriter,
  type ListPage,
  type OpOptions,
  type StorageDriver,
  type WalkControl,
} from '../../driver.js';
import { AzureWriter, BLOCK_ID_LENGTH } from './writer.js';

const NAME = 'azure';
const MiB = 1024 * 1024;
/** Copy Blob From URL (synchronous) takes block blob sources up to this size. */
const SYNC_COPY_MAX = 256 * MiB;
/** Deletions per Blob Batch request (the service's maximum). */
const BATCH_MAX = 256;
const LIST_PAGE = 5000;
const EPOCH = new Date(0);

export interface AzureOptions {
  accountname: string;
  accountkey: string;
  container: string;
  /** Prefix of every blob name; '' or absent for the container's top. */
  rootdirectory?: string;
  /** Endpoint suffix: the service is https://<accountname>.blob.<realm>. */
  realm?: string;
  /** The service URL, overriding accountname + realm (Azurite, private endpoints). */
  serviceurl?: string;
  /** Block size of writers (bytes); at most two blocks are in flight per writer. */
  blockSize?: number;
  /** How long a redirect URL stays valid. */
  redirectExpiryMs?: number;
}

function isNotFound(err: unknown): boolean {
  return err instanceof RestError && err.statusCode === 404;
}

export class AzureDriver implements StorageDriver {
  readonly name = NAME;
  readonly container: ContainerClient;
  private readonly credential: StorageSharedKeyCredential;
  /** Blob name prefix of the root: '' or 'root/'. */
  private readonly prefix: string;
  private readonly blockSize: number;
  private readonly redirectExpiryMs: number;
  private containerReady: Promise<void> | undefined;
  private batchRefused = false;

  constructor(options: AzureOptions) {
    this.credential = new StorageSharedKeyCredential(options.accountname, options.accountkey);
    const url = options.serviceurl ?? `https://${options.accountname}.blob.${options.realm ?? 'core.windows.net'}`;
    const service = new BlobServiceClient(url, this.credential, { retryOptions: { maxTries: 4 } });
    this.container = service.getContainerClient(options.container);
    const root = (options.rootdirectory ?? '').replace(/^\/+|\/+$/g, '');
    this.prefix = root ? `${root}/` : '';
    this.blockSize = options.blockSize ?? 4 * MiB;
    this.redirectExpiryMs = options.redirectExpiryMs ?? 20 * 60_000;
  }

  /** Creates the container on first use (like Distribution's driver); retried after a failure. */
  private ready(): Promise<void> {
    this.containerReady ??= this.container.createIfNotExists().then(
      () => undefined,
      (err: unknown) => {
        this.containerReady = undefined;
        throw err;
      },
    );
    return this.containerReady;
  }

  /** Blob name of a storage path. */
  private key(path: string): string {
    return this.prefix + path.slice(1);
  }

  /** Blob name prefix of everything below a directory path. */
  private dirPrefix(path: string): string {
    return path === '/' ? this.prefix : `${this.key(path)}/`;
  }

  private blob(path: string): BlobClient {
    return this.container.getBlobClient(this.key(path));
  }

  /** Runs fn; an Azure 404 becomes PathNotFoundError for `path`. */
  private async named<T>(path: string, fn: () => Promise<T>): Promise<T> {
    await this.ready();
    try {
      return await fn();
    } catch (err) {
      if (isNotFound(err)) throw new PathNotFoundError(path, NAME);
      throw err;
    }
  }

  async getContent(path: string, opts?: OpOptions): Promise<Buffer> {
    return this.named(path, async () => {
      const res = await this.blob(path).download(0, undefined, { abortSignal: opts?.signal });
      const chunks: Buffer[] = [];
      for await (const chunk of res.readableStreamBody as AsyncIterable<Buffer>) chunks.push(chunk);
      return Buffer.concat(chunks);
    });
  }

  async putContent(path: string, content: Buffer | string, opts?: OpOptions): Promise<void> {
    await this.ready();
    const body = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
    await this.container.getBlockBlobClient(this.key(path)).upload(body, body.length, { abortSignal: opts?.signal });
  }

  async reader(path: string, offset = 0, opts?: OpOptions): Promise<Readable> {
    return this.named(path, async () => {
      const blob = this.blob(path);
      try {
        const res = await blob.download(offset, undefined, { abortSignal: opts?.signal, maxRetryRequests: 5 });
        return res.readableStreamBody as Readable;
      } catch (err) {
        // 416 for an offset at or past the end: the end itself is an empty stream.
        if (!(err instanceof RestError && err.statusCode === 416)) throw err;
        const { contentLength } = await blob.getProperties({ abortSignal: opts?.signal });
        if (offset === contentLength) return Readable.from([]);
        throw new InvalidOffsetError(path, NAME, offset);
      }
    });
  }

  async writer(path: string, options: { append: boolean }, opts?: OpOptions): Promise<FileWriter> {
    await this.ready();
    const signal = opts?.signal;
    const key = this.key(path);
    const block = this.container.getBlockBlobClient(key);
    const make = (blockIds: string[], etag: string | undefined, size: number) =>
      new AzureWriter({ kind: 'block', client: block, blockIds, etag }, path, size, this.blockSize, NAME, signal);

    if (!options.append) {
      // Truncate now, as opening a file for writing does: an empty block blob replaces any blob.
      const res = await block.upload(Buffer.alloc(0), 0, { abortSignal: signal });
      return make([], res.etag, 0);
    }
    let props;
    try {
      props = await block.getProperties({ abortSignal: signal });
    } catch (err) {
      if (isNotFound(err)) return make([], undefined, 0);
      throw err;
    }
    const size = props.contentLength ?? 0;
    const etag = props.etag!;
    if (props.blobType === 'AppendBlob') {
      const client = this.container.getAppendBlobClient(key);
      return new AzureWriter({ kind: 'append', client, etag }, path, size, Math.min(this.blockSize, 4 * MiB), NAME, signal);
    }
    if (props.blobType !== 'BlockBlob') throw new UnsupportedError(`appending to a ${props.blobType} (${path})`, NAME);
    // (A list newer than `etag` makes the conditional commit fail: nothing is lost.)
    const list = await block.getBlockList('committed', { abortSignal: signal });
    const blocks = list.committedBlocks ?? [];
    if (blocks.reduce((sum, b) => sum + b.size, 0) === size && blocks.every((b) => b.name.length === BLOCK_ID_LENGTH)) {
      return make(
        blocks.map((b) => b.name),
        etag,
        size,
      );
    }
    // A blob written whole (Put Blob) or with foreign block ids: restage its bytes as blocks of
    // this writer; the blob keeps its content until the writer commits the new list.
    const writer = make([], etag, 0);
    const res = await block.download(0, undefined, { abortSignal: signal, conditions: { ifMatch: etag } });
    for await (const chunk of res.readableStreamBody as AsyncIterable<Buffer>) await writer.write(chunk);
    return writer;
  }

  async stat(path: string, opts?: OpOptions): Promise<FileInfo> {
    await this.ready();
    if (path === '/') return { path, size: 0, modTime: EPOCH, isDir: true };
    try {
      const props = await this.blob(path).getProperties({ abortSignal: opts?.signal });
      return { path, size: props.contentLength ?? 0, modTime: props.lastModified ?? EPOCH, isDir: false };
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    if (await this.hasBlobsBelow(path, opts)) return { path, size: 0, modTime: EPOCH, isDir: true };
    throw new PathNotFoundError(path, NAME);
  }

  private async hasBlobsBelow(path: string, opts?: OpOptions): Promise<boolean> {
    const pages = this.container
      .listBlobsFlat({ prefix: this.dirPrefix(path), abortSignal: opts?.signal })
      .byPage({ maxPageSize: 1 });
    for await (const page of pages) {
      if (page.segment.blobItems.length > 0) return true;
      if (!page.continuationToken) break;
    }
    return false;
  }

  /**
   * Every direct child of a directory, sorted byte-wise by path. Azure orders a directory as
   * `name/`, which sorts after `name-x` and `name.x`; Berth orders it as `name`, so the whole
   * directory is read and sorted. PathNotFound when nothing is below the path.
   */
  private async children(path: string, opts?: OpOptions): Promise<FileInfo[]> {
    await this.ready();
    const prefix = this.dirPrefix(path);
    const byName = new Map<string, FileInfo>();
    let seen = false;
    const pages = this.container
      .listBlobsByHierarchy('/', { prefix, abortSignal: opts?.signal })
      .byPage({ maxPageSize: LIST_PAGE });
    for await (const page of pages) {
      for (const dir of page.segment.blobPrefixes ?? []) {
        seen = true;
        const name = dir.name.slice(prefix.length, -1);
        if (VISIBLE_NAME.test(name)) byName.set(name, { path: childPath(path, name), size: 0, modTime: EPOCH, isDir: true });
      }
      for (const item of page.segment.blobItems) {
        seen = true;
        const name = item.name.slice(prefix.length);
        // A file and a directory of one name cannot both exist on a filesystem; keep the directory.
        if (!VISIBLE_NAME.test(name) || byName.get(name)?.isDir) continue;
        const p = item.properties;
        byName.set(name, { path: childPath(path, name), size: p.contentLength ?? 0, modTime: p.lastModified ?? EPOCH, isDir: false });
      }
    }
    if (!seen && path !== '/') throw new PathNotFoundError(path, NAME);
    return [...byName.values()].sort((a, b) => compareNames(a.path, b.path));
  }

  async list(path: string, page?: { limit?: number; after?: string }, opts?: OpOptions): Promise<ListPage> {
    const entries = await this.children(path, opts);
    return paginate(
      entries.map((e) => e.path),
      page,
    );
  }

  async move(source: string, dest: string, opts?: OpOptions): Promise<void> {
    const from = this.blob(source);
    const props = await this.named(source, () => from.getProperties({ abortSignal: opts?.signal }));
    if (source === dest) return;
    const to = this.blob(dest);
    const sourceConditions = { ifMatch: props.etag };
    try {
      if (props.blobType === 'BlockBlob' && (props.contentLength ?? 0) <= SYNC_COPY_MAX) {
        // Copy Blob From URL reads its source like any client: it needs a SAS, same account or not.
        await to.syncCopyFromURL(this.sasUrl(from, 'r', 60 * 60_000), { abortSignal: opts?.signal, sourceConditions });
      } else {
        // Copy Blob within the account is authorized by this request's Shared Key. It keeps the
        // source's type: an append blob stays an append blob.
        const poller = await to.beginCopyFromURL(from.url, { abortSignal: opts?.signal, sourceConditions, intervalInMs: 200 });
        const done = await poller.pollUntilDone();
        if (done.copyStatus !== 'success') throw new Error(`${NAME}: copy of ${source} to ${dest} ended ${done.copyStatus}`);
      }
    } catch (err) {
      if (isNotFound(err) || (err instanceof RestError && err.statusCode === 412)) {
        // The source went away (or changed) between the stat and the copy.
        await from.getProperties({ abortSignal: opts?.signal }).catch((e: unknown) => {
          throw isNotFound(e) ? new PathNotFoundError(source, NAME) : e;
        });
      }
      throw err;
    }
    await from.deleteIfExists({ deleteSnapshots: 'include', abortSignal: opts?.signal });
  }

  async delete(path: string, opts?: OpOptions): Promise<void> {
    await this.ready();
    const signal = opts?.signal;
    const [file, below] = await Promise.all([
      this.blob(path)
        .deleteIfExists({ deleteSnapshots: 'include', abortSignal: signal })
        .then((r) => r.succeeded),
      this.deleteBelow(path, signal),
    ]);
    if (!file && below === 0) throw new PathNotFoundError(path, NAME);
  }

  /** Deletes every blob below a directory path, a listing page at a time; returns how many. */
  private async deleteBelow(path: string, signal?: AbortSignal): Promise<number> {
    let count = 0;
    const pages = this.container.listBlobsFlat({ prefix: this.dirPrefix(path), abortSignal: signal }).byPage({ maxPageSize: LIST_PAGE });
    for await (const page of pages) {
      const names = page.segment.blobItems.map((b) => b.name);
      count += names.length;
      const batches: string[][] = [];
      for (let i = 0; i < names.length; i += BATCH_MAX) batches.push(names.slice(i, i + BATCH_MAX));
      await runLimited(batches, 4, (batch) => this.deleteBlobs(batch, signal));
    }
    return count;
  }

  private async deleteBlobs(names: string[], signal?: AbortSignal): Promise<void> {
    const one = (name: string) =>
      this.container.getBlobClient(name).deleteIfExists({ deleteSnapshots: 'include', abortSignal: signal }).then(() => undefined);
    if (names.length === 1 || this.batchRefused) {
      await runLimited(names, 16, one);
      return;
    }
    let res;
    try {
      res = await this.container
        .getBlobBatchClient()
        .deleteBlobs(names.map((n) => this.container.getBlobClient(n)), { deleteSnapshots: 'include', abortSignal: signal });
    } catch (err) {
      // Accounts with a hierarchical namespace, among others, do not take batches.
      if (!(err instanceof RestError) || err.statusCode === undefined || ![400, 403, 404, 405, 501].includes(err.statusCode)) throw err;
      this.batchRefused = true;
      await runLimited(names, 16, one);
      return;
    }
    const failed = res.subResponses.filter((r) => r.status >= 300 && r.status !== 404);
    if (failed.length > 0) {
      const f = failed[0]!;
      throw new Error(`${NAME}: batch delete failed for ${failed.length} blob(s), first: ${f.status} ${f.errorCode ?? f.statusMessage}`);
    }
  }

  /** A URL of the blob carrying a SAS with `permissions`, valid for `ttlMs`. */
  private sasUrl(blob: BlobClient, permissions: string, ttlMs: number): string {
    const sas = generateBlobSASQueryParameters(
      {
        containerName: this.container.containerName,
        blobName: blob.name,
        permissions: BlobSASPermissions.parse(permissions),
        // No start time: a start in the future (clock skew) would make the URL fail at once.
        expiresOn: new Date(Date.now() + ttlMs),
      },
      this.credential,
    );
    return `${blob.url}?${sas.toString()}`;
  }

  async redirectUrl(path: string, opts?: { method?: string } & OpOptions): Promise<string | null> {
    const method = (opts?.method ?? 'GET').toUpperCase();
    if (method !== 'GET' && method !== 'HEAD') return null;
    return this.sasUrl(this.blob(path), 'r', this.redirectExpiryMs);
  }

  /** Depth first, one hierarchical listing per directory; no request per entry. */
  async walk(path: string, visit: (info: FileInfo) => Promise<WalkControl> | WalkControl, opts?: OpOptions): Promise<void> {
    await walkChildren((dir) => this.children(dir, opts), path, visit, opts);
  }
}
