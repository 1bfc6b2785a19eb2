// The Azure driver's FileWriter. Bytes are cut into blocks of `blockSize` and sent while the
// caller keeps writing, with a bounded number of blocks in flight: memory per writer stays
// below (inflight + 1) blocks whatever the blob's size.
//
// Two ways to hold bytes, chosen by what is at the path when the writer opens:
//  - block blob (Berth's own writers): blocks are staged (Put Block, up to two in parallel)
//    and the block list is committed (Put Block List) on close() and on commit(), so what a
//    closed writer held is readable at the path and the next append writer continues from the
//    committed list. Every commit is conditional on the ETag this writer last saw, so two
//    writers racing on one path (two processes) fail instead of losing each other's bytes.
//  - append blob (an upload started by CNCF Distribution's azure driver, which uses append
//    blobs): blocks are appended in order (Append Block, one in flight, each conditional on
//    its append position); what is appended is readable at once.
import type { AppendBlobClient, BlockBlobClient } from '@azure/storage-blob';
import { randomBytes } from 'node:crypto';
import type { FileWriter } from '../../driver.js';

/** Length of every block id Berth writes (base64 of a 23-byte ASCII id). */
export const BLOCK_ID_LENGTH = 32;

export type WriterTarget =
  | {
      kind: 'block';
      client: BlockBlobClient;
      /** The committed block list to continue from. */
      blockIds: string[];
      /** ETag of the blob this list belongs to; undefined when no blob exists at the path. */
      etag: string | undefined;
    }
  | { kind: 'append'; client: AppendBlobClient; etag: string };

export class AzureWriter implements FileWriter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private readonly inflight = new Set<Promise<void>>();
  private failure: unknown = null;
  private closed = false;
  private held: number;
  /** Blocks staged since the last committed block list. */
  private dirty = false;
  private appendPosition: number;
  private seq = 0;
  private readonly nonce = randomBytes(6).toString('hex');
  private readonly maxInflight: number;

  constructor(
    private readonly target: WriterTarget,
    private readonly path: string,
    initialSize: number,
    private readonly blockSize: number,
    private readonly driverName: string,
    private readonly signal?: AbortSignal,
  ) {
    this.held = initialSize;
    this.appendPosition = initialSize;
    // Appended blocks must arrive in order; staged blocks are ordered by the block list.
    this.maxInflight = target.kind === 'append' ? 1 : 2;
  }

  get size(): number {
    return this.held;
  }

  private ensureOpen(): void {
    if (this.closed) throw new Error(`${this.driverName}: writer for ${this.path} already closed`);
  }

  async write(chunk: Buffer): Promise<void> {
    this.ensureOpen();
    if (this.failure) throw this.failure;
    if (chunk.length === 0) return;
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    this.held += chunk.length;
    while (this.pendingBytes >= this.blockSize) await this.send(this.take(this.blockSize));
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

  /** Starts sending one block once fewer than `maxInflight` are on their way. */
  private async send(block: Buffer): Promise<void> {
    while (this.inflight.size >= this.maxInflight) await Promise.race(this.inflight);
    if (this.failure) throw this.failure;
    const p: Promise<void> = this.upload(block).then(
      () => {
        this.inflight.delete(p);
      },
      (err: unknown) => {
        this.failure ??= err;
        this.inflight.delete(p);
      },
    );
    this.inflight.add(p);
  }

  private upload(block: Buffer): Promise<unknown> {
    const t = this.target;
    if (t.kind === 'block') {
      // The id takes its place in the list now, so blocks staged in parallel keep their order.
      const id = Buffer.from(`${this.nonce}-${String(this.seq++).padStart(10, '0')}`).toString('base64');
      t.blockIds.push(id);
      this.dirty = true;
      return t.client.stageBlock(id, block, block.length, { abortSignal: this.signal });
    }
    const position = this.appendPosition;
    this.appendPosition += block.length;
    return t.client.appendBlock(block, block.length, {
      abortSignal: this.signal,
      conditions: { appendPosition: position, ifMatch: t.etag },
    }).then((res) => {
      t.etag = res.etag!;
    });
  }

  private async drain(): Promise<void> {
    if (this.pendingBytes > 0 && !this.failure) await this.send(this.take(this.pendingBytes));
    await Promise.all(this.inflight);
    if (this.failure) throw this.failure;
  }

  /** Flushes and, for a block blob, commits the block list: the bytes are then held at the path. */
  private async finish(): Promise<void> {
    await this.drain();
    const t = this.target;
    if (t.kind !== 'block' || (!this.dirty && t.etag !== undefined)) return;
    const res = await t.client.commitBlockList(t.blockIds, {
      abortSignal: this.signal,
      conditions: t.etag !== undefined ? { ifMatch: t.etag } : { ifNoneMatch: '*' },
    });
    t.etag = res.etag;
    this.dirty = false;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.finish();
  }

  async commit(): Promise<void> {
    this.ensureOpen();
    this.closed = true;
    await this.finish();
  }

  async cancel(): Promise<void> {
    this.closed = true;
    this.pending = [];
    this.pendingBytes = 0;
    await Promise.all(this.inflight);
    // Staged blocks that were never committed are discarded by the service with the blob.
    await this.target.client.deleteIfExists({ deleteSnapshots: 'include', abortSignal: this.signal });
  }
}
