// Blob stores. The global store holds every blob once, by digest; a repository sees a blob
// only through a link in its `_layers` (CNCF Distribution's linked blob store).
import type { Readable } from 'node:stream';
import { RegistryError } from '../errors/codes.js';
import type { Digest } from '../oci/digest.js';
import type { BaseDriver } from '../storage/base.js';
import { isPathNotFound, type OpenFile } from '../storage/driver.js';
import type { TtlCache } from './cache.js';
import { paths } from './paths.js';

export interface BlobDescriptor {
  digest: Digest;
  size: number;
}

export function blobUnknown(digest: Digest): RegistryError {
  return new RegistryError('BLOB_UNKNOWN', { digest: digest.value });
}

/** Reads a link file; null when it is absent or does not hold the expected digest. */
export async function readLink(driver: BaseDriver, path: string): Promise<string | null> {
  try {
    return (await driver.getContent(path)).toString('utf8').trim();
  } catch (err) {
    if (isPathNotFound(err)) return null;
    throw err;
  }
}

export class GlobalBlobStore {
  constructor(private readonly driver: BaseDriver) {}

  /** Size of the blob, or null when it is not in the registry. */
  async size(digest: Digest): Promise<number | null> {
    try {
      const info = await this.driver.stat(paths.blobData(digest));
      return info.isDir ? null : info.size;
    } catch (err) {
      if (isPathNotFound(err)) return null;
      throw err;
    }
  }

  reader(digest: Digest, offset = 0): Promise<Readable> {
    return this.driver.reader(paths.blobData(digest), offset);
  }

  /** The blob's data opened for positional reads, or null where the driver only streams. */
  open(digest: Digest): Promise<OpenFile | null> {
    return this.driver.openFile(paths.blobData(digest));
  }

  getContent(digest: Digest): Promise<Buffer> {
    return this.driver.getContent(paths.blobData(digest));
  }

  /** False where the storage never redirects: blob requests need not ask. */
  get redirects(): boolean {
    return this.driver.redirects;
  }

  redirectUrl(digest: Digest, method: string): Promise<string | null> {
    return this.driver.redirectUrl(paths.blobData(digest), { method });
  }

  /** Stores small content (a manifest) under its digest; a no-op when already there. */
  async putContent(digest: Digest, content: Buffer): Promise<void> {
    if ((await this.size(digest)) === content.length) return;
    await this.driver.putContent(paths.blobData(digest), content);
  }

  /**
   * Moves verified, durable upload data into place under its digest. When the blob exists
   * already, the upload's copy is dropped instead: the bytes are the same.
   */
  async adopt(digest: Digest, uploadData: string): Promise<void> {
    if ((await this.size(digest)) === null) {
      await this.driver.move(uploadData, paths.blobData(digest));
    }
  }
}

/** The blobs one repository may serve: those linked under its `_layers`. */
export class LinkedBlobStore {
  constructor(
    private readonly driver: BaseDriver,
    private readonly global: GlobalBlobStore,
    readonly repo: string,
    /** Sizes of blobs known to be linked here, by `repo@digest`. */
    private readonly known: TtlCache<number>,
    /** Called after a blob is linked (the catalog learns of the repository). */
    private readonly onLinked: () => void = () => {},
  ) {}

  async isLinked(digest: Digest): Promise<boolean> {
    return (await readLink(this.driver, paths.layerLink(this.repo, digest))) === digest.value;
  }

  /** The blob's descriptor, or BLOB_UNKNOWN when it is not linked here or its data is gone. */
  async stat(digest: Digest): Promise<BlobDescriptor> {
    const key = `${this.repo}@${digest.value}`;
    const cached = this.known.get(key);
    if (cached !== undefined) return { digest, size: cached };
    const version = this.known.version;
    if (!(await this.isLinked(digest))) throw blobUnknown(digest);
    const size = await this.global.size(digest);
    if (size === null) throw blobUnknown(digest);
    this.known.fill(key, size, version);
    return { digest, size };
  }

  async exists(digest: Digest): Promise<boolean> {
    try {
      await this.stat(digest);
      return true;
    } catch (err) {
      if (err instanceof RegistryError && err.code === 'BLOB_UNKNOWN') return false;
      throw err;
    }
  }

  async link(digest: Digest): Promise<void> {
    await this.driver.putContent(paths.layerLink(this.repo, digest), digest.value);
    this.onLinked();
  }

  async unlink(digest: Digest): Promise<void> {
    const key = `${this.repo}@${digest.value}`;
    this.known.delete(key);
    if (!(await this.isLinked(digest))) throw blobUnknown(digest);
    await this.driver.delete(paths.layerLink(this.repo, digest));
    this.known.delete(key); // a read that overlapped the deletion may have cached the link
  }
}
