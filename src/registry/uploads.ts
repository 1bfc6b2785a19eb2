// Upload sessions. A session's id is a random UUID and its start time, so any Berth process
// sharing the storage can judge an id without reading anything: a session holds storage only
// once bytes arrive. From then on every byte and the start time live under
// `_uploads/<uuid>/`, so it survives a restart (or `kill -9` mid-PATCH) and any process can
// continue it. A POST followed by a PUT of the whole blob (what oras and the benchmark's
// small objects do) thus creates and removes no session files at all. The running sha256 is
// kept in memory as a hint keyed by the bytes it covers; when it is missing or stale
// (another process, a restart, a failed write) it is rebuilt by re-reading the held bytes.
// Correctness never depends on the hint. Bodies that may end above SMALL_BLOB_MAX are hashed
// on a worker thread (oci/stream-hash.ts): each chunk is written once hashed.
import { createHash, randomUUID } from 'node:crypto';
import { RegistryError } from '../errors/codes.js';
import { newHash, type Algorithm, type Digest } from '../oci/digest.js';
import { hashWorkers, InlineHash, type StreamHash } from '../oci/stream-hash.js';
import type { BaseDriver } from '../storage/base.js';
import { isPathNotFound, type FileWriter } from '../storage/driver.js';
import { type BlobDescriptor, type GlobalBlobStore, type LinkedBlobStore } from './blobs.js';
import { paths } from './paths.js';

const UUID_RE = /^[A-Za-z0-9_-]{1,128}$/;
/**
 * Ids Berth hands out: a UUID, the start time in ms (base 36), and a check tying the two to
 * the repository (not a secret: push rights are checked per repository anyway; it makes an
 * id used with another repository, or mangled, unknown). Other ids (Distribution's plain
 * UUIDs) are known only from storage.
 */
const SESSION_ID_RE = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}-([0-9a-z]{1,10}))-([0-9a-f]{8})$/;
/** How far ahead of this clock another process's start time may be. */
const CLOCK_SKEW_MS = 60 * 60 * 1000;
const HASH_HINTS_MAX = 10_000;
/** Monolithic uploads up to this size are verified in memory and written once. */
export const SMALL_BLOB_MAX = 1024 * 1024;

export interface UploadStatus {
  uuid: string;
  /** Bytes held so far. */
  size: number;
}

/** What a lookup found: whether the session holds storage, and its start time when its id carries one. */
interface Session {
  stored: boolean;
  startedAt: number | null;
}

function idCheck(repo: string, body: string): string {
  return createHash('sha256').update(`${repo}\n${body}`).digest('hex').slice(0, 8);
}

function newSessionId(repo: string): string {
  const body = `${randomUUID()}-${Date.now().toString(36)}`;
  return `${body}-${idCheck(repo, body)}`;
}

/** The start time an id Berth handed out for `repo` carries, or null. */
function idStartedAt(repo: string, uuid: string): number | null {
  const m = SESSION_ID_RE.exec(uuid);
  return m && idCheck(repo, m[1]!) === m[3] ? parseInt(m[2]!, 36) : null;
}

export interface UploadOptions {
  /**
   * Sessions older than this are unknown (storage.maintenance.uploadpurging.age, which also
   * removes their files); null: ids never expire.
   */
  maxAgeMs: number | null;
  /** Running hashes kept between a session's requests (default HASH_HINTS_MAX); the oldest go first. */
  hashHintsMax?: number;
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

function digestInvalid(digest: Digest, actual: string): RegistryError {
  return new RegistryError('DIGEST_INVALID', { expected: digest.value, actual: `${digest.algorithm}:${actual}` }, {
    message: 'provided digest did not match uploaded content',
  });
}

/** `Range` header value for `size` bytes held, as Distribution writes it. */
export function rangeHeader(size: number): string {
  return `0-${Math.max(0, size - 1)}`;
}

export class UploadStore {
  /** key → running hash over the first `offset` bytes of the upload's data. */
  private hints = new Map<string, { hash: StreamHash; offset: number }>();
  private locks = new Map<string, Promise<unknown>>();

  constructor(
    private readonly driver: BaseDriver,
    private readonly blobs: GlobalBlobStore,
    private readonly options: UploadOptions = { maxAgeMs: null },
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

  private setHint(key: string, hash: StreamHash, offset: number): void {
    const old = this.hints.get(key);
    if (old && old.hash !== hash) old.hash.dispose();
    this.hints.delete(key);
    this.hints.set(key, { hash, offset });
    if (this.hints.size > (this.options.hashHintsMax ?? HASH_HINTS_MAX)) this.dropHint(this.hints.keys().next().value!);
  }

  private dropHint(key: string): void {
    this.hints.get(key)?.hash.dispose();
    this.hints.delete(key);
  }

  /** A new session: its id only, nothing is stored until bytes arrive. */
  start(repo: string): UploadStatus {
    return { uuid: newSessionId(repo), size: 0 };
  }

  /**
   * Finds a session: one with files in storage (started by any process, Distribution's
   * included), else one whose id Berth handed out, not expired and not cancelled.
   */
  private async lookup(repo: string, uuid: string): Promise<Session> {
    if (!UUID_RE.test(uuid)) throw uploadUnknown(uuid);
    const startedAt = idStartedAt(repo, uuid);
    if (await this.exists(paths.uploadStartedAt(repo, uuid))) return { stored: true, startedAt };
    const now = Date.now();
    if (startedAt === null || startedAt > now + CLOCK_SKEW_MS) throw uploadUnknown(uuid);
    if (this.options.maxAgeMs !== null && now - startedAt >= this.options.maxAgeMs) throw uploadUnknown(uuid);
    if (await this.exists(paths.uploadCancelled(repo, uuid))) throw uploadUnknown(uuid);
    return { stored: false, startedAt };
  }

  private async exists(path: string): Promise<boolean> {
    try {
      await this.driver.stat(path);
      return true;
    } catch (err) {
      if (isPathNotFound(err)) return false;
      throw err;
    }
  }

  /**
   * Before a session's first bytes: its start time goes to storage, where purging and other
   * processes read it. Scratch state: a session lost to a power cut is started again by the client.
   * A chunk that cannot be the first (`start` past 0) is refused before anything is written.
   */
  private async materialize(repo: string, uuid: string, session: Session, start: number | undefined): Promise<void> {
    if (session.stored) return;
    checkStart(0, start);
    await this.driver.putContent(paths.uploadStartedAt(repo, uuid), new Date(session.startedAt!).toISOString(), { durable: false });
    session.stored = true;
  }

  private async heldSize(repo: string, uuid: string, session: Session): Promise<number> {
    if (!session.stored) return 0;
    try {
      return (await this.driver.stat(paths.uploadData(repo, uuid))).size;
    } catch (err) {
      if (isPathNotFound(err)) return 0;
      throw err;
    }
  }

  async status(repo: string, uuid: string): Promise<UploadStatus> {
    const session = await this.lookup(repo, uuid);
    return { uuid, size: await this.heldSize(repo, uuid, session) };
  }

  /**
   * Hash of the first `size` held bytes with `algorithm`, from the hint or by re-reading;
   * `more` is how many bytes will follow, when known: a sha256 that may end above
   * SMALL_BLOB_MAX is computed on a worker thread.
   */
  private async hashOf(repo: string, uuid: string, size: number, algorithm: Algorithm, more?: number): Promise<StreamHash> {
    const key = `${repo}/${uuid}`;
    const hint = this.hints.get(key);
    if (algorithm === 'sha256' && hint && hint.offset === size && !hint.hash.broken) {
      // Taken out while in use, so evicting hints cannot dispose of it; it goes back when
      // the request has handed its bytes to the writer.
      this.hints.delete(key);
      return hint.hash;
    }
    const large = algorithm === 'sha256' && (more === undefined || size + more > SMALL_BLOB_MAX);
    const hash = large ? hashWorkers.create() : new InlineHash(algorithm);
    try {
      if (size > 0) {
        let seen = 0;
        const stream = await this.driver.reader(paths.uploadData(repo, uuid), 0);
        for await (const chunk of stream as AsyncIterable<Buffer>) {
          const take = Math.min(chunk.length, size - seen);
          await hash.update(take === chunk.length ? chunk : chunk.subarray(0, take));
          hash.takeHashed();
          seen += take;
          if (seen >= size) break;
        }
        if (seen !== size) throw new Error(`upload ${uuid}: held ${seen} bytes, expected ${size}`);
        await hash.settle();
        hash.takeHashed();
      }
    } catch (err) {
      hash.dispose();
      throw err;
    }
    return hash;
  }

  /**
   * Streams `body` through the hash into the writer (each chunk is written once hashed);
   * keeps the hint true on every exit. The body's chunks are given up: their memory may move
   * to the hashing thread (request bodies are read once).
   */
  private async pump(key: string, writer: FileWriter, hash: StreamHash, body: AsyncIterable<Buffer>, length?: number): Promise<void> {
    let received = 0;
    let failure: unknown = null;
    try {
      for await (const chunk of body) {
        if (length !== undefined && received + chunk.length > length) {
          await hash.update(chunk.subarray(0, length - received), true);
          throw new RegistryError('SIZE_INVALID', { expected: length }, { message: `body is longer than the announced ${length} bytes` });
        }
        received += chunk.length;
        const behind = hash.update(chunk, true);
        if (behind) await behind;
        for (const b of hash.takeHashed()) await writer.write(b);
      }
      if (length !== undefined && received !== length) {
        throw new RegistryError('SIZE_INVALID', { expected: length, received }, { message: `body has ${received} bytes, ${length} were announced` });
      }
    } catch (err) {
      failure = err;
    }
    try {
      // Every byte the hash took goes to the writer, so the hash covers exactly the bytes
      // handed to it. Writes are append-only and in order, so if a storage write failed, the
      // size held differs from this offset and the next operation re-reads instead of
      // trusting the hint.
      await hash.settle();
      for (const b of hash.takeHashed()) await writer.write(b);
      this.setHint(key, hash, writer.size);
    } catch (err) {
      failure ??= err;
      hash.dispose();
    }
    if (failure) throw failure;
  }

  /** Appends `body` to the session; its chunks are given up (see pump). */
  async append(repo: string, uuid: string, body: AsyncIterable<Buffer>, opts: AppendOptions = {}): Promise<UploadStatus> {
    const key = `${repo}/${uuid}`;
    return this.locked(key, async () => {
      const session = await this.lookup(repo, uuid);
      await this.materialize(repo, uuid, session, opts.start);
      const writer = await this.driver.writer(paths.uploadData(repo, uuid), { append: true });
      try {
        checkStart(writer.size, opts.start);
        const hash = await this.hashOf(repo, uuid, writer.size, 'sha256', opts.length);
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
    const key = `${repo}/${uuid}`;
    return this.locked(key, async () => {
      const session = await this.lookup(repo, uuid);
      // POST then PUT with a small body (what many clients do for configs and small layers),
      // or a PUT without body on a session that holds nothing: verify in memory and write the
      // blob once, as putWhole does, instead of a session file.
      const small = body === undefined || (opts.length !== undefined && opts.length <= SMALL_BLOB_MAX);
      if (small && (opts.start ?? 0) === 0 && (await this.heldSize(repo, uuid, session)) === 0) {
        const data = body ? await readWhole(body, opts.length!) : Buffer.alloc(0);
        const actual = newHash(digest.algorithm).update(data).digest('hex');
        if (actual === digest.hex) {
          await this.blobs.putContent(digest, data);
          await linked.link(digest);
          this.dropHint(key);
          if (session.stored) await this.removeSession(repo, uuid);
          return { digest, size: data.length };
        }
        if (!body) throw digestInvalid(digest, actual);
        body = (async function* () {
          yield data; // a mismatch keeps the final chunk in the session, as below
        })();
      }
      await this.materialize(repo, uuid, session, opts.start);
      const writer = await this.driver.writer(paths.uploadData(repo, uuid), { append: true });
      let hash: StreamHash | undefined;
      let digesting: Promise<string>;
      try {
        checkStart(writer.size, opts.start);
        hash = await this.hashOf(repo, uuid, writer.size, 'sha256', body ? opts.length : 0);
        if (body) await this.pump(key, writer, hash, body, opts.length);
        // The digest is computed while the data is made durable.
        digesting = hash.digest();
        digesting.catch(() => {}); // awaited below, unless the commit fails first
        // Without a body the hash stays the hint, for a retry after a wrong digest.
        if (!body) this.setHint(key, hash, writer.size);
        await writer.commit();
      } catch (err) {
        await writer.close().catch(() => {});
        throw err;
      } finally {
        // A hash that did not become the hint (a PUT without body, re-hashed) ends here.
        if (hash && this.hints.get(key)?.hash !== hash) hash.dispose();
      }
      const size = writer.size;
      let actual = await digesting;
      if (digest.algorithm !== 'sha256') actual = await (await this.hashOf(repo, uuid, size, digest.algorithm)).digest();
      if (actual !== digest.hex) throw digestInvalid(digest, actual);
      await this.blobs.adopt(digest, paths.uploadData(repo, uuid));
      await linked.link(digest);
      this.dropHint(key);
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
    if (actual !== digest.hex) throw digestInvalid(digest, actual);
    await this.blobs.putContent(digest, data);
    await linked.link(digest);
    return { digest, size: length };
  }

  /**
   * Cancels a session: its files go, and an id Berth handed out is marked cancelled (it would
   * otherwise still be valid), until purging removes the mark with the id's expiry.
   */
  async cancel(repo: string, uuid: string): Promise<void> {
    const key = `${repo}/${uuid}`;
    await this.locked(key, async () => {
      const session = await this.lookup(repo, uuid);
      this.dropHint(key);
      if (session.stored) await this.removeSession(repo, uuid);
      if (session.startedAt !== null) {
        await this.driver.putContent(paths.uploadCancelled(repo, uuid), new Date(session.startedAt).toISOString(), { durable: false });
      }
    });
  }

  /** Removes what a session holds, for a session no client knows (a failed monolithic POST). */
  async discard(repo: string, uuid: string): Promise<void> {
    const key = `${repo}/${uuid}`;
    await this.locked(key, async () => {
      this.dropHint(key);
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
      // A session's start time, or a cancelled one's (its mark goes when the id expires).
      let started = NaN;
      for (const file of [paths.uploadStartedAt(repo, uuid), paths.uploadCancelled(repo, uuid)]) {
        try {
          started = Date.parse((await this.driver.getContent(file)).toString('utf8').trim());
          break;
        } catch (err) {
          if (!isPathNotFound(err)) throw err;
        }
      }
      // No readable start time (a torn session): fall back to the directory's time, which object
      // stores report as the epoch, so such debris is purged at the first run.
      if (Number.isNaN(started)) started = (await this.driver.stat(dir)).modTime.getTime();
      if (now - started < ageMs) continue;
      removed.push(uuid);
      if (!dryRun) {
        this.dropHint(`${repo}/${uuid}`);
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
