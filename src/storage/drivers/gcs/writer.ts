// The GCS driver's FileWriter. A GCS object is immutable: it appears whole when its upload
// is finalized, and never partly. A writer therefore streams into a resumable upload (sent
// in `chunkSize` pieces, so memory per writer stays about one chunk whatever the object's
// size) and the object exists only once that upload completes:
//
//  - a non-append writer, or an append writer on a missing or empty object, uploads straight
//    to the object's name; close() and commit() finalize the upload, so a closed writer's
//    bytes are readable and the next append writer continues from them. A writer given
//    nothing writes an empty object (a non-append writer truncates);
//  - an append writer on a non-empty object uploads its bytes to a temporary part object
//    (below the driver's hidden parts prefix) and on close()/commit() composes
//    [object, part] into the object, server-side, then deletes the part. The compose is
//    conditional on the object's generation (and reads that generation), so of two writers
//    racing on one path the later fails instead of dropping the other's bytes;
//  - an object that already has close to GCS's 1024-component limit is not composed again:
//    the writer re-uploads it (streamed through, bounded memory) followed by the new bytes;
//  - a failure or cancel() destroys the upload stream: an upload that is never finalized
//    leaves no object (GCS discards unfinished resumable uploads after a week). A part left
//    by a process that died between its upload and the compose is removed by
//    `purgeStaleWrites`.
import type { Bucket, File } from '@google-cloud/storage';
import type { Readable, Writable } from 'node:stream';
import type { FileWriter } from '../../driver.js';

export interface WriterTarget {
  bucket: Bucket;
  /** The object at the path. */
  file: File;
  /**
   * The object to append to (its generation, size and component count), or null to write
   * the object whole (non-append writers; append writers on a missing or empty object).
   */
  base: { generation: string; size: number; componentCount: number } | null;
  /** Generation the direct upload must replace (0: the object must not exist), or undefined: any. */
  ifGenerationMatch?: number | string;
  /** Name of a fresh part object, for appends. */
  partName: string;
  chunkSize: number;
  /** Above this many components the object is re-uploaded instead of composed. */
  maxComponents: number;
  /** A reader of the base object's bytes (for a re-upload). */
  readBase: () => Promise<Readable>;
  driverName: string;
  path: string;
  signal?: AbortSignal;
}

export class GcsWriter implements FileWriter {
  private stream: Writable | null = null;
  private done: Promise<void> | null = null;
  private failure: unknown = null;
  private closed = false;
  private held: number;
  /** Whether bytes go to a part that is composed onto the base object. */
  private readonly composing: boolean;

  constructor(private readonly t: WriterTarget) {
    this.held = t.base?.size ?? 0;
    this.composing = t.base !== null && t.base.componentCount < t.maxComponents;
    // An aborted request abandons the upload at once: it never becomes an object.
    t.signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  private readonly onAbort = (): void => this.abandon(this.t.signal?.reason ?? new Error('aborted'));

  get size(): number {
    return this.held;
  }

  private ensureOpen(): void {
    if (this.closed) throw new Error(`${this.t.driverName}: writer for ${this.t.path} already closed`);
  }

  /** The object the bytes are uploaded to. */
  private uploadFile(): File {
    return this.composing ? this.t.bucket.file(this.t.partName) : this.t.file;
  }

  /** Opens the upload on first use (a re-upload starts with the base object's bytes). */
  private async open(): Promise<Writable> {
    if (this.stream) return this.stream;
    const precondition = this.composing ? 0 : this.t.base ? this.t.base.generation : this.t.ifGenerationMatch;
    const stream = this.uploadFile().createWriteStream({
      resumable: true,
      chunkSize: this.t.chunkSize,
      contentType: 'application/octet-stream',
      ...(precondition !== undefined ? { preconditionOpts: { ifGenerationMatch: Number(precondition) } } : {}),
    });
    this.stream = stream;
    this.done = new Promise<void>((resolve, reject) => {
      stream.once('finish', resolve);
      stream.once('error', reject);
    });
    this.done.catch((err: unknown) => {
      this.failure ??= err;
    });
    if (this.t.base && !this.composing) {
      for await (const chunk of await this.t.readBase()) await this.push(chunk as Buffer);
    }
    return stream;
  }

  /** Writes to the upload, waiting while it is full (backpressure). */
  private async push(chunk: Buffer): Promise<void> {
    const stream = this.stream!;
    if (stream.write(chunk)) return;
    await new Promise<void>((resolve) => {
      const go = () => {
        stream.off('drain', go);
        stream.off('close', go);
        resolve();
      };
      stream.on('drain', go);
      stream.on('close', go);
    });
    if (this.failure) throw this.failure;
  }

  async write(chunk: Buffer): Promise<void> {
    this.ensureOpen();
    if (this.failure) throw this.failure;
    if (chunk.length === 0) return;
    try {
      await this.open();
      this.held += chunk.length;
      await this.push(chunk);
    } catch (err) {
      this.abandon(err);
      throw err;
    }
  }

  /** Destroys the upload: nothing of it becomes an object. */
  private abandon(err: unknown): void {
    this.failure ??= err;
    this.stream?.destroy(err instanceof Error ? err : new Error(String(err)));
  }

  /** Finalizes the upload (and composes a part onto the base object). */
  private async finish(): Promise<void> {
    if (this.t.signal?.aborted) this.abandon(this.t.signal.reason ?? new Error('aborted'));
    if (this.failure) throw this.failure;
    if (!this.stream && this.t.base) return; // nothing appended: the object is as it was
    try {
      const stream = await this.open();
      stream.end();
      await this.done;
    } catch (err) {
      this.abandon(err);
      throw err;
    }
    if (!this.composing) return;
    const part = this.uploadFile();
    try {
      await this.t.bucket.combine([this.t.file, part], this.t.file, { ifGenerationMatch: Number(this.t.base!.generation) });
    } finally {
      // The part is garbage either way; one left behind (a failed delete) is purged later.
      await part.delete({ ignoreNotFound: true }).catch(() => {});
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.end();
  }

  async commit(): Promise<void> {
    this.ensureOpen();
    await this.end();
  }

  private async end(): Promise<void> {
    this.closed = true;
    try {
      await this.finish();
    } finally {
      this.t.signal?.removeEventListener('abort', this.onAbort);
    }
  }

  async cancel(): Promise<void> {
    this.closed = true;
    this.t.signal?.removeEventListener('abort', this.onAbort);
    if (this.stream) {
      this.abandon(new Error(`${this.t.driverName}: write to ${this.t.path} cancelled`));
      await this.done?.catch(() => {});
    }
    if (this.composing) await this.t.bucket.file(this.t.partName).delete({ ignoreNotFound: true });
    await this.t.file.delete({ ignoreNotFound: true });
  }
}
