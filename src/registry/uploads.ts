// Upload sessions. Every byte and the session's start time live in storage under
// `_uploads/<uuid>/`, so a session survives a restart (or `kill -9` mid-PATCH) and any Berth
// process sharing the storage can continue it. The running sha256 is kept in memory as a
// hint keyed by the bytes it covers; when it is missing or stale (another process, a
// restart, a failed write) it is rebuilt by re-reading the held bytes. Correctness never
// depends on the hint.
import { randomUUID, type Hash } from 'node:crypto';
import { RegistryError } from '../errors/codes.js';
import { newHash, type Algorithm, type Digest } from '../oci/digest.js';
import type { BaseDriver } from '../storage/base.js';
import { isPathNotFound, type FileWriter } from '../storage/driver.js';
import { type BlobDescriptor, type GlobalBlobStore, type LinkedBlobStore } from './blobs.js';
import { paths } from './paths.js';

const UUID_RE = /^[A-Za-z0-9_-]{1,128}$/;
const HASH_HINTS_MAX = 10_000;
/** Monolithic uploads up to this size are verified in memory and written once. */
export const SMALL_BLOB_MAX = 1024 * 1024;

export interface UploadStatus {
  uuid: string;
  /** Bytes held so far. */
  size: number;
}

export interface AppendOptions {
  /** Content-Range start: must equal the bytes held, else RANGE_INVALID (416). */
  start?: number;
  /** Exact length the body must have (from Content-Range or Content-Length). */
  length?: number;
}

/** A body of exactly `length` bytes (bounded by the caller), else SIZE_INVALID. */
async function readWhole(body: AsyncIterable<Buffer>, length: number): Promise<Buffer> {
  const data = Buffer.allocUnsafe(length);
  let received = 0;
  for await (const chunk of body) {
    if (received + chunk.length > length) {
      throw new RegistryError('SIZE_INVALID', { expected: length }, { message: `body is longer than the announced ${length} bytes` });
    }
    chunk.copy(data, received);
    received += chunk.length;
  }
  if (received !== length) {
    throw new RegistryError('SIZE_INVALID', { expected: length, received }, { message: `body has ${received} bytes, ${length} were announced` });
  }
  return data;
}

function uploadUnknown(uuid: string): RegistryError {
  return new RegistryError('BLOB_UPLOAD_UNKNOWN', { uuid });
}

/** `Range` header value for `size` bytes held, as Distribution writes it. */
export function rangeHeader(size: number): string {
  return `0-${Math.max(0, size - 1)}`;
}

export class UploadStore {
  /** key → running hash over the first `offset` bytes of the upload's data. */
  private hints = new Map<string, { hash: Hash; offset: number }>();
  private locks = new Map<string, Promise<unknown>>();

  constructor(
    private readonly driver: BaseDriver,
    private readonly blobs: GlobalBlobStore,
  ) {}

  /** Serialises operations on one upload within this process. */
  private async locked<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(key) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => {});
    this.locks.set(key, tail);
    try {
      return await run;
    } finally {
      if (this.locks.get(key) === tail) this.locks.delete(key);
    }
  }

  private setHint(key: string, hash: Hash, offset: number): void {
    this.hints.delete(key);
    this.hints.set(key, { hash, offset });
    if (this.hints.size > HASH_HINTS_MAX) this.hints.delete(this.hints.keys().next().value!);
  }

  async start(repo: string): Promise<UploadStatus> {
    const uuid = randomUUID();
    // Scratch state: a session lost to a power cut is simply started again by the client.
    await this.driver.putContent(paths.uploadStartedAt(repo, uuid), new Date().toISOString(), { durable: false });
    return { uuid, size: 0 };
  }

  private async checkExists(repo: string, uuid: string): Promise<void> {
    if (!UUID_RE.test(uuid)) throw uploadUnknown(uuid);
    try {
      await this.driver.stat(paths.uploadStartedAt(repo, uuid));
    } catch (err) {
      if (isPathNotFound(err)) throw uploadUnknown(uuid);
      throw err;
    }
  }

  private async heldSize(repo: string, uuid: string): Promise<number> {
    try {
      return (await this.driver.stat(paths.uploadData(repo, uuid))).size;
    } catch (err) {
      if (isPathNotFound(err)) return 0;
      throw err;
    }
  }

  async status(repo: string, uuid: string): Promise<UploadStatus> {
    await this.checkExists(repo, uuid);
    return { uuid, size: await this.heldSize(repo, uuid) };
  }

  /** Hash of the first `size` held bytes with `algorithm`, from the hint or by re-reading. */
  private async hashOf(repo: string, uuid: string, size: number, algorithm: Algorithm): Promise<Hash> {
    const key = `${repo}/${uuid}`;
    const hint = this.hints.get(key);
    if (algorithm === 'sha256' && hint && hint.offset === size) return hint.hash;
    const hash = newHash(algorithm);
    if (size > 0) {
      let seen = 0;
      const stream = await this.driver.reader(paths.uploadData(repo, uuid), 0);
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        const take = Math.min(chunk.length, size - seen);
        hash.update(take === chunk.length ? chunk : chunk.subarray(0, take));
        seen += take;
        if (seen >= size) break;
      }
      if (seen !== size) throw new Error(`upload ${uuid}: held ${seen} bytes, expected ${size}`);
    }
    return hash;
  }

  /** Streams `body` into the writer, hashing as it goes; keeps the hint true on every exit. */
  private async pump(key: string, writer: FileWriter, hash: Hash, body: AsyncIterable<Buffer>, length?: number): Promise<void> {
    const startSize = writer.size;
    try {
      for await (const chunk of body) {
        const received = writer.size - startSize;
        if (length !== undefined && received + chunk.length > length) {
          const fit = chunk.subarray(0, length - received);
          hash.update(fit);
          await writer.write(fit);
          throw new RegistryError('SIZE_INVALID', { expected: length }, { message: `body is longer than the announced ${length} bytes` });
        }
        hash.update(chunk);
        await writer.write(chunk);
      }
      const received = writer.size - startSize;
      if (length !== undefined && received !== length) {
        throw new RegistryError('SIZE_INVALID', { expected: length, received }, { message: `body has ${received} bytes, ${length} were announced` });
      }
    } finally {
      // The hash covers exactly the bytes handed to the writer. Writes are append-only and in
      // order, so if a storage write failed, the size held differs from this offset and the
      // next operation re-reads instead of trusting the hint.
      this.setHint(key, hash, writer.size);
    }
  }

  async append(repo: string, uuid: string, body: AsyncIterable<Buffer>, opts: AppendOptions = {}): Promise<UploadStatus> {
    await this.checkExists(repo, uuid);
    const key = `${repo}/${uuid}`;
    return this.locked(key, async () => {
      const writer = await this.driver.writer(paths.uploadData(repo, uuid), { append: true });
      try {
        checkStart(writer.size, opts.start);
        const hash = await this.hashOf(repo, uuid, writer.size, 'sha256');
        await this.pump(key, writer, hash, body, opts.length);
      } catch (err) {
        await writer.close().catch(() => {});
        throw err;
      }
      await writer.close();
      return { uuid, size: writer.size };
    });
  }

  /**
   * Appends an optional final chunk, verifies the digest, makes the data durable and moves it
   * into the blob store, links it into the repository and removes the session. On a digest
   * mismatch the session stays as it was (with the final chunk) and nothing becomes visible.
   */
  async complete(
    repo: string,
    uuid: string,
    digest: Digest,
    linked: LinkedBlobStore,
    body?: AsyncIterable<Buffer>,
    opts: AppendOptions = {},
  ): Promise<BlobDescriptor> {
    await this.checkExists(repo, uuid);
    const key = `${repo}/${uuid}`;
    return this.locked(key, async () => {
      // POST then PUT with a small body (what most clients do for configs and small layers):
      // verify in memory and write the blob once, as putWhole does, instead of a session file.
      if (body && opts.length !== undefined && opts.length <= SMALL_BLOB_MAX && (opts.start ?? 0) === 0 && (await this.heldSize(repo, uuid)) === 0) {
        const data = await readWhole(body, opts.length);
        if (newHash(digest.algorithm).update(data).digest('hex') === digest.hex) {
          await this.blobs.putContent(digest, data);
          await linked.link(digest);
          this.hints.delete(key);
          await this.removeSession(repo, uuid);
          return { digest, size: data.length };
        }
        body = (async function* () {
          yield data; // a mismatch keeps the final chunk in the session, as below
        })();
      }
      const writer = await this.driver.writer(paths.uploadData(repo, uuid), { append: true });
      let hash: Hash;
      try {
        checkStart(writer.size, opts.start);
        hash = await this.hashOf(repo, uuid, writer.size, 'sha256');
        if (body) await this.pump(key, writer, hash, body, opts.length);
        await writer.commit();
      } catch (err) {
        await writer.close().catch(() => {});
        throw err;
      }
      const size = writer.size;
      const actual =
        digest.algorithm === 'sha256' ? hash.copy().digest('hex') : (await this.hashOf(repo, uuid, size, digest.algorithm)).digest('hex');
      if (actual !== digest.hex) {
        throw new RegistryError('DIGEST_INVALID', { expected: digest.value, actual: `${digest.algorithm}:${actual}` }, {
          message: 'provided digest did not match uploaded content',
        });
      }
      await this.blobs.adopt(digest, paths.uploadData(repo, uuid));
      await linked.link(digest);
      this.hints.delete(key);
      await this.removeSession(repo, uuid);
      return { digest, size };
    });
  }

  /**
   * A whole small blob in one request (a monolithic upload announcing at most
   * SMALL_BLOB_MAX bytes): read into memory (bounded), verified, then written once,
   * atomically and durably, under its digest — no session directory, no rename.
   */
  async putWhole(digest: Digest, linked: LinkedBlobStore, body: AsyncIterable<Buffer>, length: number): Promise<BlobDescriptor> {
    if (length > SMALL_BLOB_MAX) throw new Error(`putWhole takes at most ${SMALL_BLOB_MAX} bytes`);
    const data = await readWhole(body, length);
    const actual = newHash(digest.algorithm).update(data).digest('hex');
    if (actual !== digest.hex) {
      throw new RegistryError('DIGEST_INVALID', { expected: digest.value, actual: `${digest.algorithm}:${actual}` }, {
        message: 'provided digest did not match uploaded content',
      });
    }
    await this.blobs.putContent(digest, data);
    await linked.link(digest);
    return { digest, size: length };
  }

  async cancel(repo: string, uuid: string): Promise<void> {
    await this.checkExists(repo, uuid);
    const key = `${repo}/${uuid}`;
    await this.locked(key, async () => {
      this.hints.delete(key);
      await this.removeSession(repo, uuid);
    });
  }

  private async removeSession(repo: string, uuid: string): Promise<void> {
    try {
      await this.driver.delete(paths.uploadDir(repo, uuid));
    } catch (err) {
      if (!isPathNotFound(err)) throw err;
    }
  }

  /** Removes sessions of `repo` started more than `ageMs` ago; returns the uuids removed. */
  async purge(repo: string, ageMs: number, dryRun: boolean, now = Date.now()): Promise<string[]> {
    let dirs: string[];
    try {
      dirs = await this.driver.listAll(paths.uploads(repo));
    } catch (err) {
      if (isPathNotFound(err)) return [];
      throw err;
    }
    const removed: string[] = [];
    for (const dir of dirs) {
      const uuid = dir.slice(dir.lastIndexOf('/') + 1);
      let started: number;
      try {
        started = Date.parse((await this.driver.getContent(paths.uploadStartedAt(repo, uuid))).toString('utf8').trim());
      } catch (err) {
        if (!isPathNotFound(err)) throw err;
        started = NaN;
      }
      // No readable start time (a torn session): fall back to the directory's time, which object
      // stores report as the epoch, so such debris is purged at the first run.
      if (Number.isNaN(started)) started = (await this.driver.stat(dir)).modTime.getTime();
      if (now - started < ageMs) continue;
      removed.push(uuid);
      if (!dryRun) {
        this.hints.delete(`${repo}/${uuid}`);
        await this.removeSession(repo, uuid);
      }
    }
    return removed;
  }
}

function checkStart(held: number, start: number | undefined): void {
  if (start !== undefined && start !== held) {
    throw new RegistryError('RANGE_INVALID', { held, start }, {
      message: `chunk starts at ${start} but the upload holds ${held} bytes`,
      headers: { Range: rangeHeader(held) },
    });
  }
}
