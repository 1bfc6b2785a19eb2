// The S3 driver's FileWriter. S3 objects cannot be appended to, so a writer builds a new
// object from what is at the path plus what it is given, and replaces the object when it
// closes or commits:
//
//  - the bytes written are cut into parts of `partSize` and sent as a multipart upload while
//    the caller keeps writing, with at most two parts in flight: memory per writer stays
//    below three parts (plus a carried tail below 5 MiB) whatever the object's size;
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
  private pending: Buffer[] = [];
  private pendingBytes = 0;
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
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    this.held += chunk.length;
    this.wrote = true;
    if (this.pendingBytes < this.t.partSize) return;
    await this.carryBase();
    while (this.pendingBytes >= this.t.partSize) await this.sendPart(this.take(this.t.partSize));
  }

  /** Removes exactly `n` pending bytes, as one buffer (copied only when they span chunks). */
  private take(n: number): Buffer {
    const parts: Buffer[] = [];
    let need = n;
    while (need > 0) {
      const head = this.pending[0]!;
      if (head.length <= need) {
        parts.push(head);
        this.pending.shift();
        need -= head.length;
      } else {
        parts.push(head.subarray(0, need));
        this.pending[0] = head.subarray(need);
        need = 0;
      }
    }
    this.pendingBytes -= n;
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, n);
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
   * the first parts when it is at least MIN_PART, else read back into the pending bytes.
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
    this.pending.unshift(Buffer.concat(chunks, n));
    this.pendingBytes += n;
  }

  /** Starts uploading one part once fewer than `maxInflight` are on their way. */
  private async sendPart(body: Buffer): Promise<void> {
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
        Body: body,
        ContentLength: body.length,
      }),
    ).then(
      (res) => {
        this.etags[number - 1] = res.ETag!;
        this.inflight.delete(p);
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
      // Everything fits in memory already (below one part plus a small base): one PutObject.
      const body = this.take(this.pendingBytes);
      await this.checkUnchanged();
      await this.send$(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentLength: body.length, ...object }));
      return;
    }
    if (this.pendingBytes > 0) await this.sendPart(this.take(this.pendingBytes));
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
    this.pending = [];
    this.pendingBytes = 0;
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
