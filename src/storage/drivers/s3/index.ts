// Amazon S3 (and S3-compatible: Ceph RGW, MinIO, …) driver. Every storage path is an object
// named `<rootdirectory>/<path>` (no leading '/', as CNCF Distribution's s3 driver names
// them) in one bucket. Directories are not stored: a directory exists while some key starts
// with `<dir>/`, and is listed with the '/' delimiter.
//
//  - putContent is one PutObject: readers see the old content or the new, never a mix.
//  - writers send multipart uploads and replace the object on close/commit (see writer.ts);
//    an append writer carries the object's bytes into its upload (UploadPartCopy, or a read
//    for tails below S3's 5 MiB part minimum), so nothing is held in process memory between
//    writers and any process can continue an upload.
//  - move is a server-side copy (CopyObject, or UploadPartCopy parts above
//    `multipartcopythresholdsize`) conditional on the source's ETag, then a delete.
//  - delete is recursive: the object at the path, every object below it (DeleteObjects
//    batches of up to 1000), and the incomplete multipart uploads there.
//  - list pages through ListObjectsV2 (continuation tokens) and re-sorts byte-wise: S3
//    orders a directory `x` as `x/`, after `x-y` and `x.y`.
//  - redirectUrl is a presigned GET/HEAD URL of the object, valid for a short time.
// S3 has no modification time for a directory: it is reported as the epoch, as the azure
// driver does.
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCopyCommand,
  type S3ClientConfig,
  type ServerSideEncryption,
  type StorageClass,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { Readable } from 'node:stream';
import {
  InvalidOffsetError,
  PathNotFoundError,
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
  type StaleWritePurger,
  type StorageDriver,
  type WalkControl,
} from '../../driver.js';
import { MAX_PART, MAX_PARTS, MIN_PART, S3Writer, copyRanges, type ObjectOptions } from './writer.js';

const NAME = 's3';
const MiB = 1024 * 1024;
const EPOCH = new Date(0);
/** Keys per ListObjectsV2 / DeleteObjects request (the service's maximum). */
const PAGE = 1000;
/** Parallel requests of a multipart copy, a recursive delete, an abort sweep. */
const CONCURRENCY = 8;

/** Distribution's `storage.s3` keys (as validated by the config), plus test knobs. */
export interface S3Options {
  region: string;
  /** Endpoint of an S3-compatible service (with or without scheme). */
  regionendpoint?: string;
  bucket: string;
  /** Prefix of every key; '' or absent for the bucket's top. */
  rootdirectory?: string;
  /** Static credentials; when absent the SDK's default credential chain applies. */
  accesskey?: string;
  secretkey?: string;
  sessiontoken?: string;
  /** Path-style requests (`endpoint/bucket/key`) instead of virtual-hosted (`bucket.endpoint/key`). */
  forcepathstyle?: boolean;
  /** HTTPS (default) or HTTP, for endpoints given without a scheme. */
  secure?: boolean;
  /** Part size of writers (≥ 5 MiB); at most two parts are in flight per writer. */
  chunksize?: number;
  /** Part size of server-side multipart copies. */
  multipartcopychunksize?: number;
  /** Objects larger than this are moved with a multipart copy. */
  multipartcopythresholdsize?: number;
  /** Server-side encryption: AES256, or aws:kms with `keyid`. */
  encrypt?: boolean;
  keyid?: string;
  /** Storage class of every object written; 'NONE' sends none (the bucket's default applies). */
  storageclass?: string;
  /** How long a redirect URL stays valid. */
  redirectExpiryMs?: number;
  /** Keys per listing request (at most 1000, the default). */
  listPageSize?: number;
}

interface Entry {
  name: string;
  isDir: boolean;
  size: number;
  modTime: Date;
}

function status(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
}

function errName(err: unknown): string | undefined {
  return (err as { name?: string } | null)?.name;
}

/** A missing object (not a missing bucket or upload: those are configuration or logic errors). */
function isNotFound(err: unknown): boolean {
  const name = errName(err);
  if (name === 'NoSuchKey' || name === 'NotFound') return true;
  return status(err) === 404 && name !== 'NoSuchBucket' && name !== 'NoSuchUpload';
}

/** UTF-8 byte order, which is S3's key order. */
function byteCompare(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** CopySource of an object: `bucket/key`, each segment URL-encoded. */
function copySource(bucket: string, key: string): string {
  return `${bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;
}

export class S3Driver implements StorageDriver, StaleWritePurger {
  readonly name = NAME;
  readonly client: S3Client;
  readonly bucket: string;
  /** Key prefix of the root: '' or 'root/'. */
  private readonly prefix: string;
  private readonly partSize: number;
  private readonly copyPartSize: number;
  private readonly copyThreshold: number;
  private readonly object: ObjectOptions;
  private readonly redirectExpirySeconds: number;
  private readonly listPageSize: number;

  constructor(options: S3Options) {
    if ((options.accesskey === undefined) !== (options.secretkey === undefined)) {
      throw new Error(`${NAME}: accesskey and secretkey go together`);
    }
    this.partSize = options.chunksize ?? 10 * MiB;
    this.copyPartSize = options.multipartcopychunksize ?? 32 * MiB;
    this.copyThreshold = options.multipartcopythresholdsize ?? 32 * MiB;
    if (this.partSize < MIN_PART || this.partSize > MAX_PART) throw new Error(`${NAME}: chunksize must be between 5 MiB and 5 GiB`);
    if (this.copyPartSize < MIN_PART || this.copyPartSize > MAX_PART) {
      throw new Error(`${NAME}: multipartcopychunksize must be between 5 MiB and 5 GiB`);
    }
    if (this.copyThreshold < 0 || this.copyThreshold > MAX_PART) throw new Error(`${NAME}: multipartcopythresholdsize must be at most 5 GiB`);
    this.bucket = options.bucket;
    const root = (options.rootdirectory ?? '').replace(/^\/+|\/+$/g, '');
    this.prefix = root ? `${root}/` : '';
    this.listPageSize = Math.min(PAGE, Math.max(1, options.listPageSize ?? PAGE));
    this.redirectExpirySeconds = Math.max(1, Math.round((options.redirectExpiryMs ?? 20 * 60_000) / 1000));

    const storageClass = options.storageclass ?? 'STANDARD';
    this.object = {
      ContentType: 'application/octet-stream',
      ...(options.encrypt
        ? options.keyid
          ? { ServerSideEncryption: 'aws:kms' as ServerSideEncryption, SSEKMSKeyId: options.keyid }
          : { ServerSideEncryption: 'AES256' as ServerSideEncryption }
        : {}),
      ...(storageClass.toUpperCase() !== 'NONE' ? { StorageClass: storageClass as StorageClass } : {}),
    };

    const secure = options.secure ?? true;
    let endpoint: string | undefined;
    if (options.regionendpoint) {
      endpoint = /^https?:\/\//i.test(options.regionendpoint) ? options.regionendpoint : `${secure ? 'https' : 'http'}://${options.regionendpoint}`;
    } else if (!secure) {
      endpoint = `http://s3.${options.region}.amazonaws.com`;
    }
    // Berth pins an SDK release that supports Node 20; its notice about future releases
    // needing Node 22 is for the maintainers (docs/storage-s3.md), not for every start.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    const config: S3ClientConfig = {
      region: options.region,
      endpoint,
      forcePathStyle: options.forcepathstyle ?? false,
      // Checksums only where the API requires them: S3-compatible servers (Ceph RGW, MinIO,
      // older releases) reject or ignore the newer flexible-checksum headers.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: 5,
      requestHandler: {
        // Readers hold a connection while a client downloads: leave room beyond the default 50.
        httpAgent: new HttpAgent({ keepAlive: true, maxSockets: 256 }),
        httpsAgent: new HttpsAgent({ keepAlive: true, maxSockets: 256 }),
        connectionTimeout: 10_000,
      },
    };
    if (options.accesskey !== undefined && options.secretkey !== undefined) {
      config.credentials = { accessKeyId: options.accesskey, secretAccessKey: options.secretkey, sessionToken: options.sessiontoken };
    }
    this.client = new S3Client(config);
  }

  private send<T>(cmd: unknown, signal?: AbortSignal): Promise<T> {
    return this.client.send(cmd as never, { abortSignal: signal }) as Promise<T>;
  }

  /** Key of a storage path. */
  private key(path: string): string {
    return this.prefix + path.slice(1);
  }

  /** Key prefix of everything below a directory path. */
  private dirPrefix(path: string): string {
    return path === '/' ? this.prefix : `${this.key(path)}/`;
  }

  /** Runs fn; a missing object becomes PathNotFoundError for `path`. */
  private async named<T>(path: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (isNotFound(err)) throw new PathNotFoundError(path, NAME);
      throw err;
    }
  }

  private head(key: string, signal?: AbortSignal) {
    return this.send<{ ContentLength?: number; LastModified?: Date; ETag?: string }>(
      new HeadObjectCommand({ Bucket: this.bucket, Key: key }),
      signal,
    );
  }

  /** HeadObject, or null when there is no object at the key. */
  private async headOrNull(key: string, signal?: AbortSignal) {
    try {
      return await this.head(key, signal);
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  async getContent(path: string, opts?: OpOptions): Promise<Buffer> {
    return this.named(path, async () => {
      const res = await this.send<{ Body?: AsyncIterable<Buffer> }>(new GetObjectCommand({ Bucket: this.bucket, Key: this.key(path) }), opts?.signal);
      const chunks: Buffer[] = [];
      for await (const chunk of res.Body!) chunks.push(chunk);
      return Buffer.concat(chunks);
    });
  }

  async putContent(path: string, content: Buffer | string, opts?: OpOptions): Promise<void> {
    const body = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
    await this.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.key(path), Body: body, ContentLength: body.length, ...this.object }), opts?.signal);
  }

  async reader(path: string, offset = 0, opts?: OpOptions): Promise<Readable> {
    return this.named(path, async () => {
      const key = this.key(path);
      try {
        const res = await this.send<{ Body?: Readable }>(
          new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: offset > 0 ? `bytes=${offset}-` : undefined }),
          opts?.signal,
        );
        return res.Body!;
      } catch (err) {
        // 416 for an offset at or past the end: the end itself is an empty stream.
        if (status(err) !== 416) throw err;
        const head = await this.head(key, opts?.signal);
        if (offset === head.ContentLength) return Readable.from([]);
        throw new InvalidOffsetError(path, NAME, offset);
      }
    });
  }

  async writer(path: string, options: { append: boolean }, opts?: OpOptions): Promise<FileWriter> {
    const key = this.key(path);
    let base: { size: number; etag: string } | null = null;
    if (options.append) {
      const head = await this.headOrNull(key, opts?.signal);
      if (head) base = { size: head.ContentLength ?? 0, etag: head.ETag! };
    }
    // A non-append writer replaces the object when it closes or commits.
    return new S3Writer({
      client: this.client,
      bucket: this.bucket,
      key,
      base,
      append: options.append,
      partSize: this.partSize,
      copyPartSize: this.copyPartSize,
      object: this.object,
      copySource: copySource(this.bucket, key),
      driverName: NAME,
      path,
      signal: opts?.signal,
    });
  }

  async stat(path: string, opts?: OpOptions): Promise<FileInfo> {
    if (path === '/') return { path, size: 0, modTime: EPOCH, isDir: true };
    const head = await this.headOrNull(this.key(path), opts?.signal);
    if (head) return { path, size: head.ContentLength ?? 0, modTime: head.LastModified ?? EPOCH, isDir: false };
    if (await this.hasKeysBelow(path, opts?.signal)) return { path, size: 0, modTime: EPOCH, isDir: true };
    throw new PathNotFoundError(path, NAME);
  }

  private hasKeysBelow(path: string, signal?: AbortSignal): Promise<boolean> {
    return this.anyKey(this.dirPrefix(path), signal);
  }

  /**
   * Pages of a delimited listing below `prefix`, in S3's order, from after `startAfter` (a
   * key). `last` is the greatest key or common prefix of the page: every key up to it has
   * been seen.
   */
  private async *scan(
    prefix: string,
    startAfter: string | undefined,
    signal?: AbortSignal,
  ): AsyncGenerator<{ entries: Entry[]; last: string; done: boolean; any: boolean }> {
    let token: string | undefined;
    for (;;) {
      const res = await this.send<{
        CommonPrefixes?: { Prefix?: string }[];
        Contents?: { Key?: string; Size?: number; LastModified?: Date }[];
        IsTruncated?: boolean;
        NextContinuationToken?: string;
      }>(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: prefix,
          Delimiter: '/',
          MaxKeys: this.listPageSize,
          ContinuationToken: token,
          StartAfter: token === undefined ? startAfter : undefined,
        }),
        signal,
      );
      const entries: Entry[] = [];
      let last = '';
      let any = false;
      for (const cp of res.CommonPrefixes ?? []) {
        any = true;
        const p = cp.Prefix!;
        if (byteCompare(p, last) > 0) last = p;
        entries.push({ name: p.slice(prefix.length, -1), isDir: true, size: 0, modTime: EPOCH });
      }
      for (const o of res.Contents ?? []) {
        any = true;
        const k = o.Key!;
        if (byteCompare(k, last) > 0) last = k;
        // `<dir>/` itself (a directory marker object) is not a child.
        if (k.length === prefix.length) continue;
        entries.push({ name: k.slice(prefix.length), isDir: false, size: o.Size ?? 0, modTime: o.LastModified ?? EPOCH });
      }
      const done = !res.IsTruncated || !res.NextContinuationToken;
      yield { entries, last, done, any };
      if (done) return;
      token = res.NextContinuationToken;
    }
  }

  /**
   * The directories not listed yet (their `d/` sorts after `last`, S3 order) that could sort
   * before `name` in Berth's byte order: a directory `d` can only when it is a prefix of
   * `name` followed by '-' or '.' (the only name characters below '/').
   */
  private unsettled(name: string, prefix: string, last: string): string[] {
    const out: string[] = [];
    for (let i = 1; i < name.length; i++) {
      const c = name[i];
      if ((c === '-' || c === '.') && byteCompare(`${prefix}${name.slice(0, i)}/`, last) > 0) out.push(name.slice(0, i));
    }
    return out;
  }

  /** Whether some key starts with `keyPrefix`. */
  private async anyKey(keyPrefix: string, signal?: AbortSignal): Promise<boolean> {
    const res = await this.send<{ KeyCount?: number; Contents?: unknown[] }>(
      new ListObjectsV2Command({ Bucket: this.bucket, Prefix: keyPrefix, MaxKeys: 1 }),
      signal,
    );
    return (res.KeyCount ?? 0) > 0 || (res.Contents?.length ?? 0) > 0;
  }

  /**
   * Direct children after `after` (a full path), at most `limit`, byte-wise sorted. Reads only
   * as many listing pages as the page needs; where S3's order of `x/` could still put an
   * unlisted directory before the page's last entry, that one directory is probed.
   */
  async list(path: string, page: { limit?: number; after?: string } = {}, opts?: OpOptions): Promise<ListPage> {
    const signal = opts?.signal;
    const prefix = this.dirPrefix(path);
    const base = path === '/' ? '/' : `${path}/`;
    let afterName: string | undefined;
    if (page.after !== undefined) {
      if (page.after.startsWith(base)) afterName = page.after.slice(base.length);
      else if (byteCompare(page.after, base) > 0) {
        // Past every child of this directory.
        if (path !== '/' && !(await this.hasKeysBelow(path, signal))) throw new PathNotFoundError(path, NAME);
        return { entries: [] };
      }
    }
    const limit = page.limit;
    const found = new Map<string, boolean>();
    const wanted = (name: string) => VISIBLE_NAME.test(name) && (afterName === undefined || byteCompare(name, afterName) > 0);
    const probed = new Set<string>();
    let any = false;
    let done = false;
    scanning: for await (const batch of this.scan(prefix, afterName === undefined ? undefined : prefix + afterName, signal)) {
      any ||= batch.any;
      done = batch.done;
      for (const e of batch.entries) {
        // A file and a directory of one name cannot both exist on a filesystem; keep the directory.
        if (wanted(e.name)) found.set(e.name, (found.get(e.name) ?? false) || e.isDir);
      }
      if (done || limit === undefined || found.size < limit) continue;
      for (;;) {
        const names = [...found.keys()].sort(byteCompare);
        const unknown = this.unsettled(names[limit - 1]!, prefix, batch.last).filter((n) => !probed.has(n));
        if (unknown.length === 0) break scanning;
        for (const n of unknown) {
          probed.add(n);
          if (wanted(n) && (await this.anyKey(`${prefix}${n}/`, signal))) found.set(n, true);
        }
      }
    }
    if (!any && path !== '/') {
      // Nothing after `after`: the directory may still exist before it.
      if (afterName === undefined || !(await this.hasKeysBelow(path, signal))) throw new PathNotFoundError(path, NAME);
    }
    const sorted = [...found.keys()].sort(byteCompare).map((n) => childPath(path, n));
    if (limit === undefined || sorted.length <= limit) {
      return done || sorted.length === 0 ? { entries: sorted } : { entries: sorted, next: sorted[sorted.length - 1] };
    }
    return paginate(sorted, { limit });
  }

  /** Every direct child of a directory with its info, sorted byte-wise; PathNotFound when nothing is below. */
  private async children(path: string, signal?: AbortSignal): Promise<FileInfo[]> {
    const prefix = this.dirPrefix(path);
    const byName = new Map<string, FileInfo>();
    let any = false;
    for await (const batch of this.scan(prefix, undefined, signal)) {
      any ||= batch.any;
      for (const e of batch.entries) {
        if (!VISIBLE_NAME.test(e.name) || byName.get(e.name)?.isDir) continue;
        byName.set(e.name, { path: childPath(path, e.name), size: e.size, modTime: e.modTime, isDir: e.isDir });
      }
    }
    if (!any && path !== '/') throw new PathNotFoundError(path, NAME);
    return [...byName.values()].sort((a, b) => compareNames(a.path, b.path));
  }

  async move(source: string, dest: string, opts?: OpOptions): Promise<void> {
    const signal = opts?.signal;
    const from = this.key(source);
    const head = await this.named(source, () => this.head(from, signal));
    if (source === dest) return;
    const to = this.key(dest);
    const size = head.ContentLength ?? 0;
    const src = copySource(this.bucket, from);
    try {
      if (size <= this.copyThreshold) {
        await this.send(
          new CopyObjectCommand({ Bucket: this.bucket, Key: to, CopySource: src, CopySourceIfMatch: head.ETag, ...this.object }),
          signal,
        );
      } else {
        await this.multipartCopy(src, head.ETag!, size, to, signal);
      }
    } catch (err) {
      if (isNotFound(err) || status(err) === 412) {
        // The source went away (or changed) between the stat and the copy.
        if (!(await this.headOrNull(from, signal))) throw new PathNotFoundError(source, NAME);
      }
      throw err;
    }
    await this.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: from }), signal);
  }

  /** Copies an object larger than one CopyObject should take, as UploadPartCopy parts. */
  private async multipartCopy(src: string, etag: string, size: number, to: string, signal?: AbortSignal): Promise<void> {
    const ranges = copyRanges(size, this.copyPartSize);
    if (ranges.length > MAX_PARTS) throw new Error(`${NAME}: ${size} bytes need more than ${MAX_PARTS} copy parts; raise multipartcopychunksize`);
    const { UploadId } = await this.send<{ UploadId?: string }>(
      new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: to, ...this.object }),
      signal,
    );
    try {
      const etags: string[] = [];
      await runLimited(ranges, CONCURRENCY, async ([start, end], i) => {
        const res = await this.send<{ CopyPartResult?: { ETag?: string } }>(
          new UploadPartCopyCommand({
            Bucket: this.bucket,
            Key: to,
            UploadId,
            PartNumber: i + 1,
            CopySource: src,
            CopySourceRange: `bytes=${start}-${end - 1}`,
            CopySourceIfMatch: etag,
          }),
          signal,
        );
        etags[i] = res.CopyPartResult!.ETag!;
      });
      await this.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.bucket,
          Key: to,
          UploadId,
          MultipartUpload: { Parts: etags.map((ETag, i) => ({ PartNumber: i + 1, ETag })) },
        }),
        signal,
      );
    } catch (err) {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: to, UploadId })).catch(() => {});
      throw err;
    }
  }

  async delete(path: string, opts?: OpOptions): Promise<void> {
    const signal = opts?.signal;
    const key = this.key(path);
    // Uploads first, so a writer elsewhere cannot complete into the tree being removed.
    await this.abortUploads((k) => k === key || k.startsWith(`${key}/`), key, signal);
    const [file, below] = await Promise.all([
      this.headOrNull(key, signal).then(async (head) => {
        if (head) await this.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }), signal);
        return head !== null;
      }),
      this.deleteBelow(this.dirPrefix(path), signal),
    ]);
    if (!file && below === 0) throw new PathNotFoundError(path, NAME);
  }

  /** Deletes every object whose key starts with `prefix`, a listing page at a time; returns how many. */
  private async deleteBelow(prefix: string, signal?: AbortSignal): Promise<number> {
    let count = 0;
    let token: string | undefined;
    for (;;) {
      const res = await this.send<{ Contents?: { Key?: string }[]; IsTruncated?: boolean; NextContinuationToken?: string }>(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, MaxKeys: this.listPageSize, ContinuationToken: token }),
        signal,
      );
      const keys = (res.Contents ?? []).map((o) => o.Key!);
      if (keys.length > 0) {
        count += keys.length;
        const out = await this.send<{ Errors?: { Key?: string; Code?: string; Message?: string }[] }>(
          new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: keys.map((Key) => ({ Key })), Quiet: true } }),
          signal,
        );
        const failed = (out.Errors ?? []).filter((e) => e.Code !== 'NoSuchKey');
        if (failed.length > 0) {
          const f = failed[0]!;
          throw new Error(`${NAME}: DeleteObjects failed for ${failed.length} key(s), first: ${f.Key}: ${f.Code} ${f.Message ?? ''}`);
        }
      }
      if (!res.IsTruncated || !res.NextContinuationToken) return count;
      token = res.NextContinuationToken;
    }
  }

  /** Incomplete multipart uploads whose key starts with `prefix`, all pages. */
  private async *multipartUploads(prefix: string, signal?: AbortSignal): AsyncGenerator<{ Key: string; UploadId: string; Initiated?: Date }> {
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      const res = await this.send<{
        Uploads?: { Key?: string; UploadId?: string; Initiated?: Date }[];
        IsTruncated?: boolean;
        NextKeyMarker?: string;
        NextUploadIdMarker?: string;
      }>(
        new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: prefix, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }),
        signal,
      );
      for (const u of res.Uploads ?? []) if (u.Key && u.UploadId) yield { Key: u.Key, UploadId: u.UploadId, Initiated: u.Initiated };
      if (!res.IsTruncated || (res.NextKeyMarker === undefined && res.NextUploadIdMarker === undefined)) return;
      keyMarker = res.NextKeyMarker;
      uploadIdMarker = res.NextUploadIdMarker;
    }
  }

  private async abortUploads(match: (key: string) => boolean, prefix: string, signal?: AbortSignal): Promise<void> {
    const doomed: { Key: string; UploadId: string }[] = [];
    for await (const u of this.multipartUploads(prefix, signal)) if (match(u.Key)) doomed.push(u);
    await runLimited(doomed, CONCURRENCY, (u) => this.abortUpload(u, signal));
  }

  private async abortUpload(u: { Key: string; UploadId: string }, signal?: AbortSignal): Promise<void> {
    try {
      await this.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: u.Key, UploadId: u.UploadId }), signal);
    } catch (err) {
      // Completed or aborted meanwhile.
      if (errName(err) !== 'NoSuchUpload' && status(err) !== 404) throw err;
    }
  }

  /**
   * Aborts the incomplete multipart uploads below the root directory initiated more than
   * `olderThanMs` ago: what a process that died mid-write (or mid-move) left behind. Their
   * parts are invisible to listings but are stored (and billed) until aborted.
   */
  async purgeStaleWrites(olderThanMs: number, opts: { dryRun?: boolean } & OpOptions = {}): Promise<string[]> {
    const cutoff = Date.now() - olderThanMs;
    const stale: { Key: string; UploadId: string; Initiated?: Date }[] = [];
    for await (const u of this.multipartUploads(this.prefix, opts.signal)) {
      if (u.Initiated !== undefined && u.Initiated.getTime() <= cutoff) stale.push(u);
    }
    if (!opts.dryRun) await runLimited(stale, CONCURRENCY, (u) => this.abortUpload(u, opts.signal));
    return stale.map((u) => `multipart upload ${u.UploadId} of /${u.Key.slice(this.prefix.length)} initiated ${u.Initiated!.toISOString()}`);
  }

  async redirectUrl(path: string, opts?: { method?: string } & OpOptions): Promise<string | null> {
    const method = (opts?.method ?? 'GET').toUpperCase();
    const input = { Bucket: this.bucket, Key: this.key(path) };
    const command = method === 'GET' ? new GetObjectCommand(input) : method === 'HEAD' ? new HeadObjectCommand(input) : null;
    if (command === null) return null;
    return getSignedUrl(this.client, command as never, { expiresIn: this.redirectExpirySeconds });
  }

  /** Depth first, one listing per directory; no request per entry. */
  async walk(path: string, visit: (info: FileInfo) => Promise<WalkControl> | WalkControl, opts?: OpOptions): Promise<void> {
    await walkChildren((dir) => this.children(dir, opts?.signal), path, visit, opts);
  }
}
