// Streaming hashes for uploads. A large body's sha256 is computed on a worker thread: the
// event loop hands each received chunk over (its memory is transferred, not copied), the
// worker hashes it and hands it back, and only then is it written. Hashing was half of the
// event loop's work in a push (sha256 runs at ~1.7 GB/s per core, and one event loop serves
// every client); on a worker it runs beside receiving and writing instead of between them.
// Chunks travel in batches of BATCH bytes, at most MAX_AWAY bytes per hash away at once, so
// memory per upload stays small. A worker that fails makes every hash it owed fail (the
// request fails, the session keeps what was written); nothing is guessed.
import { createHash, type Hash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { FromWorker, ToWorker } from './hash-worker.js';

/**
 * A running hash that takes ownership of the chunks it is given and gives them back, in
 * order, once hashed: the caller writes only what `takeHashed` returns.
 */
export interface StreamHash {
  /**
   * Hands `chunk` over; await the result (when there is one) for backpressure. With
   * `movable`, the caller gives the chunk's memory up (it must not touch the chunk again) and
   * a chunk that owns its memory is moved to the hashing thread instead of copied.
   */
  update(chunk: Buffer, movable?: boolean): Promise<void> | undefined;
  /** The chunks hashed since the last call, in order. */
  takeHashed(): Buffer[];
  /** Waits until every chunk handed over is hashed (then `takeHashed` returns the rest). */
  settle(): Promise<void>;
  /** Hex digest of everything handed over so far; more may follow. */
  digest(): Promise<string>;
  /** Releases the state. */
  dispose(): void;
  /** True once the hash can no longer be trusted (its worker failed). */
  readonly broken: boolean;
}

export class InlineHash implements StreamHash {
  private readonly hash: Hash;
  private hashed: Buffer[] = [];

  constructor(algorithm: string) {
    this.hash = createHash(algorithm);
  }

  update(chunk: Buffer): undefined {
    this.hash.update(chunk);
    this.hashed.push(chunk);
    return undefined;
  }

  takeHashed(): Buffer[] {
    const out = this.hashed;
    this.hashed = [];
    return out;
  }

  settle(): Promise<void> {
    return Promise.resolve();
  }

  digest(): Promise<string> {
    return Promise.resolve(this.hash.copy().digest('hex'));
  }

  dispose(): void {}

  readonly broken = false;
}

/** Bytes gathered before they are sent to the worker in one message. */
const BATCH = 256 * 1024;
/**
 * Bytes of one hash handed over and not yet back, above which update() asks the caller to
 * wait. Small, so the chunks in flight are few and their memory is reused while still warm
 * (measured: 8 MiB lost to 2 MiB when freshly mapped pages are dear).
 */
const MAX_AWAY = 2 * 1024 * 1024;

type Waiter = { resolve: () => void; reject: (err: Error) => void };

/** One worker thread and what it owes. */
class Lane {
  private readonly worker: Worker;
  private readonly hashes = new Map<number, WorkerHash>();
  private readonly digests = new Map<number, { resolve: (hex: string) => void; reject: (err: Error) => void }>();
  private nextReq = 1;
  failure: Error | null = null;
  /** Messages the worker still owes an answer for; while any, it keeps the process alive. */
  private owed = 0;

  constructor() {
    this.worker = new Worker(new URL('./hash-worker.js', import.meta.url));
    this.worker.on('message', (m: FromWorker) => this.onMessage(m));
    this.worker.on('error', (err) => this.fail(err));
    this.worker.on('exit', (code) => this.fail(new Error(`hash worker exited (code ${code})`)));
    // An idle hashing thread does not keep the process alive; one that owes answers does
    // (see owe()). unref() after the listeners: attaching one refs the port again.
    this.worker.unref();
  }

  register(h: WorkerHash): void {
    this.hashes.set(h.id, h);
  }

  send(id: number, bufs: ArrayBuffer[], lens: number[]): void {
    this.owe();
    this.worker.postMessage({ op: 'update', id, bufs, lens } satisfies ToWorker, bufs);
  }

  digest(id: number): Promise<string> {
    if (this.failure) return Promise.reject(this.failure);
    const req = this.nextReq++;
    return new Promise((resolve, reject) => {
      this.digests.set(req, { resolve, reject });
      this.owe();
      this.worker.postMessage({ op: 'digest', id, req } satisfies ToWorker);
    });
  }

  dispose(id: number): void {
    this.hashes.delete(id);
    if (!this.failure) this.worker.postMessage({ op: 'dispose', id } satisfies ToWorker);
  }

  terminate(): Promise<number> {
    this.fail(new Error('hash worker stopped'));
    return this.worker.terminate();
  }

  private owe(): void {
    if (this.owed++ === 0) this.worker.ref();
  }

  private onMessage(m: FromWorker): void {
    if (--this.owed === 0) this.worker.unref();
    if (m.op === 'hashed') {
      this.hashes.get(m.id)?.returned(m.bufs, m.lens);
      return;
    }
    const d = this.digests.get(m.req);
    this.digests.delete(m.req);
    d?.resolve(m.hex);
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    for (const d of this.digests.values()) d.reject(err);
    this.digests.clear();
    for (const h of this.hashes.values()) h.failed(err);
  }
}

class WorkerHash implements StreamHash {
  private batch: ArrayBuffer[] = [];
  private lens: number[] = [];
  private batchBytes = 0;
  private away = 0;
  private hashed: Buffer[] = [];
  private waiters: Waiter[] = [];
  private failure: Error | null = null;

  constructor(
    private readonly lane: Lane,
    readonly id: number,
  ) {
    lane.register(this);
  }

  update(chunk: Buffer, movable = false): Promise<void> | undefined {
    if (this.failure) return Promise.reject(this.failure);
    if (chunk.length === 0) return undefined;
    // A chunk given up that owns its memory exactly (as node:http's body chunks do) is
    // transferred; any other (a slice, a pooled buffer, a driver's) is copied first.
    const own = movable && chunk.byteOffset === 0 && chunk.buffer.byteLength === chunk.length && chunk.buffer instanceof ArrayBuffer;
    const ab = own ? (chunk.buffer as ArrayBuffer) : copyOf(chunk);
    this.batch.push(ab);
    this.lens.push(chunk.length);
    this.batchBytes += chunk.length;
    this.away += chunk.length;
    if (this.batchBytes >= BATCH) this.flush();
    return this.away > MAX_AWAY ? this.wait() : undefined;
  }

  takeHashed(): Buffer[] {
    const out = this.hashed;
    this.hashed = [];
    return out;
  }

  get broken(): boolean {
    return this.failure !== null || this.lane.failure !== null;
  }

  async settle(): Promise<void> {
    this.flush();
    while (this.away > 0) await this.wait();
    if (this.failure) throw this.failure;
  }

  digest(): Promise<string> {
    if (this.failure) return Promise.reject(this.failure);
    this.flush();
    return this.lane.digest(this.id);
  }

  dispose(): void {
    // The thread forgets the state; a later use must fail, not start over from nothing.
    this.failure ??= new Error('hash already disposed');
    this.lane.dispose(this.id);
  }

  returned(bufs: ArrayBuffer[], lens: number[]): void {
    for (let i = 0; i < bufs.length; i++) {
      this.hashed.push(Buffer.from(bufs[i]!, 0, lens[i]!));
      this.away -= lens[i]!;
    }
    this.wake();
  }

  failed(err: Error): void {
    this.failure = err;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.reject(err);
  }

  private flush(): void {
    if (this.batch.length === 0) return;
    if (this.lane.failure) return this.failed(this.lane.failure);
    this.lane.send(this.id, this.batch, this.lens);
    this.batch = [];
    this.lens = [];
    this.batchBytes = 0;
  }

  private wait(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.resolve();
  }
}

function copyOf(chunk: Buffer): ArrayBuffer {
  const ab = new ArrayBuffer(chunk.length);
  new Uint8Array(ab).set(chunk);
  return ab;
}

/** Worker threads for sha256, started on first use; hashes are spread over them in turn. */
export class HashWorkers {
  private lanes: (Lane | undefined)[];
  private turn = 0;
  private nextId = 1;

  constructor(readonly count = Math.min(4, Math.max(1, availableParallelism() - 1))) {
    this.lanes = new Array<Lane | undefined>(count);
  }

  create(): StreamHash {
    const i = this.turn++ % this.count;
    let lane = this.lanes[i];
    if (!lane || lane.failure) this.lanes[i] = lane = new Lane();
    return new WorkerHash(lane, this.nextId++);
  }

  async close(): Promise<void> {
    const lanes = this.lanes.filter((l): l is Lane => l !== undefined);
    this.lanes = new Array<Lane | undefined>(this.count);
    await Promise.all(lanes.map((l) => l.terminate()));
  }
}

export const hashWorkers = new HashWorkers();
