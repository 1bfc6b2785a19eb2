// The S3 driver's FileWriter. S3 objects cannot be appended to, so a writer builds a new
// object from what is at the path plus what it is given, and replaces the object when it
// closes or commits:
//
//  - the bytes written are copied into part buffers of `partSize`, sent as a multipart upload
//    while the caller keeps writing, with at most two parts in flight; a buffer is reused once
//    its part is stored. Memory per writer stays at three parts whatever the object's size
//    (the caller's chunks are not kept, so they are garbage at once);
//  - an append writer starts its multipart upload with the bytes already held at the path:
//    an UploadPartCopy of the existing object when it is at least 5 MiB (S3's minimum part
//    size; split into `copyPartSize` pieces), else the object is read back and prepended to
//    the first part. Tails below 5 MiB are thus carried in storage between writers, never in
//    process memory;
//  - close() and commit() complete the multipart upload (or, for small content, PutObject):
//    the object at the path then holds every byte, so a closed writer's bytes are readable
//    and the next append writer continues from them. A writer given nothing keeps the object
//    as it is (or writes an empty one where there was none);
//  - an append writer checks, just before it replaces the object, that the object is still
//    the one it was opened on (the ETag; or still absent), so of two writers racing on one
//    path the later fails instead of dropping the other's bytes. (The copies are also
//    conditional on that ETag, but Ceph RGW ignores copy-source conditions.) A window of one
//    round trip remains between that check and the replacement;
//  - a failure, or close() after one, aborts the multipart upload: the object keeps the bytes
//    it held before this writer. A process that dies mid-write leaves its multipart upload
//    incomplete (the object is untouched); `purgeStaleWrites`/`delete` abort such uploads.
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  UploadPartCommand,
  UploadPartCopyCommand,
  type S3Client,
  type ServerSideEncryption,
  type StorageClass,
} from '@aws-sdk/client-s3';
import { runLimited, type FileWriter } from '../../driver.js';

const MiB = 1024 * 1024;
/** S3's minimum size of every part but the last. */
export const MIN_PART = 5 * MiB;
/** S3's maximum size of one part (and of one UploadPartCopy range). */
export const MAX_PART = 5 * 1024 * MiB;
/** S3's maximum number of parts per multipart upload. */
export const MAX_PARTS = 10_000;
/** Server-side copies in flight while a writer carries an existing object. */
const COPY_CONCURRENCY = 8;

/** What every object the driver writes is created with. */
export interface ObjectOptions {
  ContentType: string;
  ServerSideEncryption?: ServerSideEncryption;
  SSEKMSKeyId?: string;
  StorageClass?: StorageClass;
}

export interface WriterTarget {
  client: S3Client;
  bucket: string;
  key: string;
  /** The object to continue from (append writers), or null to start empty. */
  base: { size: number; etag: string } | null;
  /**
   * Append writers replace the object only while it is still `base` (or, for null, while
   * there is none): two writers racing on one path fail instead of losing bytes.
   */
  append: boolean;
  partSize: number;
  copyPartSize: number;
  object: ObjectOptions;
  /** `bucket/key` as CopySource wants it (URL-encoded). */
  copySource: string;
  driverName: string;
  path: string;
  signal?: AbortSignal;
}

/** Byte ranges [start, end) of `size` bytes cut into pieces of `piece`, none below MIN_PART. */
export function copyRanges(size: number, piece: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let start = 0; start < size; start += piece) out.push([start, Math.min(size, start + piece)]);
  // A last piece below the minimum joins the one before it (still far below MAX_PART).
  if (out.length > 1 && out[out.length - 1]![1] - out[out.length - 1]![0] < MIN_PART) {
    const last = out.pop()!;
    out[out.length - 1]![1] = last[1];
  }
  return out;
}

export class S3Writer implements FileWriter {
  /** The part being filled (allocated on first use), and how many bytes it holds. */
  private part: Buffer | null = null;
  private fill = 0;
  /** Part buffers whose upload finished, for reuse. */
  private readonly spare: Buffer[] = [];
  private readonly inflight = new Set<Promise<void>>();
  private failure: unknown = null;
  private closed = false;
  private held: number;
  /** Bytes given to this writer (beyond the base). */
  private wrote = false;
  /** Whether the base object's bytes are part of this writer's upload (copied or pending). */
  private baseCarried = false;
  private uploadId: string | undefined;
  private readonly etags: string[] = [];
  private nextPart = 1;
  private readonly maxInflight = 2;

  constructor(private readonly t: WriterTarget) {
    this.held = t.base?.size ?? 0;
  }

  get size(): number {
    return this.held;
  }

  private ensureOpen(): void {
    if (this.closed) throw new Error(`${this.t.driverName}: writer for ${this.t.path} already closed`);
  }

  private send$<T>(cmd: unknown): Promise<T> {
    return this.t.client.send(cmd as never, { abortSignal: this.t.signal }) as Promise<T>;
  }

  async write(chunk: Buffer): Promise<void> {
    this.ensureOpen();
    if (this.failure) throw this.failure;
    if (chunk.length === 0) return;
    this.held += chunk.length;
    this.wrote = true;
    try {
      // The held bytes go first: carried before any new byte takes its place in a part.
      await this.carryBase();
      await this.append(chunk);
    } catch (err) {
      // The writer's content is no longer known to be whole: close() must not store it.
      this.failure ??= err;
      throw err;
    }
  }

  /** Copies bytes into part buffers, sending each one that fills up. */
  private async append(bytes: Buffer): Promise<void> {
    const size = this.t.partSize;
    for (let off = 0; off < bytes.length; ) {
      // Uninitialised memory: pages are only resident once bytes are copied in.
      this.part ??= this.spare.pop() ?? Buffer.allocUnsafeSlow(size);
      const n = Math.min(bytes.length - off, size - this.fill);
      bytes.copy(this.part, this.fill, off, off + n);
      this.fill += n;
      off += n;
      if (this.fill === size) await this.flushPart();
    }
  }

  /** Sends the part being filled (if it holds anything). */
  private async flushPart(): Promise<void> {
    if (this.part === null || this.fill === 0) return;
    const part = this.part;
    const fill = this.fill;
    this.part = null;
    this.fill = 0;
    await this.sendPart(part, fill);
  }

  private async begin(): Promise<string> {
    if (this.uploadId === undefined) {
      const res = await this.send$<{ UploadId?: string }>(
        new CreateMultipartUploadCommand({ Bucket: this.t.bucket, Key: this.t.key, ...this.t.object }),
      );
      if (!res.UploadId) throw new Error(`${this.t.driverName}: CreateMultipartUpload for ${this.t.path} returned no upload id`);
      this.uploadId = res.UploadId;
    }
    return this.uploadId;
  }

  private allocatePart(): number {
    const n = this.nextPart++;
    if (n > MAX_PARTS) {
      throw new Error(`${this.t.driverName}: ${this.t.path} needs more than ${MAX_PARTS} parts; raise chunksize`);
    }
    return n;
  }

  /**
   * Makes the base object's bytes the start of this writer's content: copied server-side as
   * the first parts when it is at least MIN_PART, else read back into the first part.
   */
  private async carryBase(): Promise<void> {
    if (this.baseCarried) return;
    this.baseCarried = true;
    const base = this.t.base;
    if (!base || base.size === 0) return;
    if (base.size >= MIN_PART) {
      const uploadId = await this.begin();
      const ranges = copyRanges(base.size, Math.min(this.t.copyPartSize, MAX_PART));
      const numbers = ranges.map(() => this.allocatePart());
      await runLimited(ranges, COPY_CONCURRENCY, async ([start, end], i) => {
        const res = await this.send$<{ CopyPartResult?: { ETag?: string } }>(
          new UploadPartCopyCommand({
            Bucket: this.t.bucket,
            Key: this.t.key,
            UploadId: uploadId,
            PartNumber: numbers[i]!,
            CopySource: this.t.copySource,
            CopySourceRange: `bytes=${start}-${end - 1}`,
            // The bytes this writer was opened on, not a later replacement.
            CopySourceIfMatch: base.etag,
          }),
        );
        this.etags[numbers[i]! - 1] = res.CopyPartResult!.ETag!;
      });
      return;
    }
    const res = await this.send$<{ Body?: AsyncIterable<Buffer> }>(
      new GetObjectCommand({ Bucket: this.t.bucket, Key: this.t.key, IfMatch: base.etag }),
    );
    const chunks: Buffer[] = [];
    let n = 0;
    for await (const c of res.Body!) {
      chunks.push(c);
      n += c.length;
    }
    if (n !== base.size) throw new Error(`${this.t.driverName}: ${this.t.path} held ${n} bytes, expected ${base.size}`);
    // (MIN_PART ≤ partSize: the held bytes fit in the first part.)
    for (const c of chunks) await this.append(c);
  }

  /** Starts uploading the first `length` bytes of `buffer` as a part once fewer than `maxInflight` are on their way. */
  private async sendPart(buffer: Buffer, length: number): Promise<void> {
    while (this.inflight.size >= this.maxInflight) await Promise.race(this.inflight);
    if (this.failure) throw this.failure;
    const uploadId = await this.begin();
    const number = this.allocatePart();
    const p: Promise<void> = this.send$<{ ETag?: string }>(
      new UploadPartCommand({
        Bucket: this.t.bucket,
        Key: this.t.key,
        UploadId: uploadId,
        PartNumber: number,
        Body: buffer.subarray(0, length),
        ContentLength: length,
      }),
    ).then(
      (res) => {
        this.etags[number - 1] = res.ETag!;
        this.inflight.delete(p);
        // The request is over (retries included): the buffer can take the next part.
        if (!this.closed) this.spare.push(buffer);
      },
      (err: unknown) => {
        this.failure ??= err;
        this.inflight.delete(p);
      },
    );
    this.inflight.add(p);
  }

  /** For append writers: fails unless the object is still the one this writer was opened on. */
  private async checkUnchanged(): Promise<void> {
    if (!this.t.append) return;
    let etag: string | null;
    try {
      etag = (await this.send$<{ ETag?: string }>(new HeadObjectCommand({ Bucket: this.t.bucket, Key: this.t.key }))).ETag ?? '';
    } catch (err) {
      const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
      if (e?.name !== 'NotFound' && e?.$metadata?.httpStatusCode !== 404) throw err;
      etag = null;
    }
    if (etag !== (this.t.base?.etag ?? null)) {
      throw new Error(`${this.t.driverName}: ${this.t.path} was replaced by another writer while this one was open`);
    }
  }

  /** Makes the object at the path hold every byte of this writer. */
  private async finish(): Promise<void> {
    if (this.failure) throw this.failure;
    const { bucket, key, object } = this.t;
    if (!this.wrote) {
      // Nothing new: the object keeps what it holds; where there was none, an empty one.
      if (this.t.base === null) {
        await this.checkUnchanged();
        await this.send$(new PutObjectCommand({ Bucket: bucket, Key: key, Body: Buffer.alloc(0), ContentLength: 0, ...object }));
      }
      return;
    }
    await this.carryBase();
    if (this.uploadId === undefined) {
      // Everything is in the one part buffer (less than a part, with a small base): one PutObject.
      const body = this.part === null ? Buffer.alloc(0) : this.part.subarray(0, this.fill);
      await this.checkUnchanged();
      await this.send$(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentLength: body.length, ...object }));
      return;
    }
    await this.flushPart();
    await Promise.all(this.inflight);
    if (this.failure) throw this.failure;
    await this.checkUnchanged();
    const parts = this.etags.map((ETag, i) => ({ PartNumber: i + 1, ETag }));
    if (parts.length !== this.nextPart - 1 || parts.some((p) => !p.ETag)) {
      throw new Error(`${this.t.driverName}: ${this.t.path}: a part of the upload is missing`);
    }
    await this.send$(
      new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: this.uploadId, MultipartUpload: { Parts: parts } }),
    );
    this.uploadId = undefined;
  }

  /** Aborts the multipart upload, if any (best effort: purging catches what this misses). */
  private async abort(): Promise<void> {
    this.part = null;
    this.fill = 0;
    await Promise.all(this.inflight);
    const uploadId = this.uploadId;
    this.uploadId = undefined;
    if (uploadId === undefined) return;
    await this.t.client
      .send(new AbortMultipartUploadCommand({ Bucket: this.t.bucket, Key: this.t.key, UploadId: uploadId }))
      .catch(() => {});
  }

  private async finishOrAbort(): Promise<void> {
    try {
      await this.finish();
    } catch (err) {
      await this.abort();
      throw err;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.finishOrAbort();
  }

  async commit(): Promise<void> {
    this.ensureOpen();
    this.closed = true;
    await this.finishOrAbort();
  }

  async cancel(): Promise<void> {
    this.closed = true;
    await this.abort();
    await this.send$(new DeleteObjectCommand({ Bucket: this.t.bucket, Key: this.t.key }));
  }
}
