// The referrers index: for each subject digest, one small file per referring manifest holding
// the descriptor the referrers API returns. Listing a subject's referrers reads one
// directory instead of scanning the repository's manifests.
import type { Digest } from '../oci/digest.js';
import { tryParseDigest } from '../oci/digest.js';
import type { Descriptor } from '../oci/manifest.js';
import type { BaseDriver } from '../storage/base.js';
import { isPathNotFound } from '../storage/driver.js';
import { readLink } from './blobs.js';
import { paths } from './paths.js';

export class ReferrersIndex {
  constructor(
    private readonly driver: BaseDriver,
    readonly repo: string,
  ) {}

  add(subject: Digest, referrer: Descriptor): Promise<void> {
    const digest = tryParseDigest(referrer.digest)!;
    return this.driver.putContent(paths.referrerEntry(this.repo, subject, digest), JSON.stringify(referrer));
  }

  async remove(subject: Digest, referrer: Digest): Promise<void> {
    try {
      await this.driver.delete(paths.referrerEntry(this.repo, subject, referrer));
    } catch (err) {
      if (!isPathNotFound(err)) throw err;
    }
  }

  /** Descriptors of the manifests referring to `subject` that still exist, by digest order. */
  async list(subject: Digest, artifactType?: string): Promise<Descriptor[]> {
    let entries: string[];
    try {
      entries = await this.driver.listAll(paths.referrersDir(this.repo, subject));
    } catch (err) {
      if (isPathNotFound(err)) return [];
      throw err;
    }
    const out: Descriptor[] = [];
    for (const entry of entries) {
      const digest = tryParseDigest(entry.slice(entry.lastIndexOf('/') + 1));
      if (!digest) continue;
      // A manifest deleted by another registry sharing this storage leaves a stale entry.
      if ((await readLink(this.driver, paths.revisionLink(this.repo, digest))) !== digest.value) continue;
      let desc: Descriptor;
      try {
        desc = JSON.parse((await this.driver.getContent(entry)).toString('utf8')) as Descriptor;
      } catch (err) {
        // Gone meanwhile, or not readable as JSON (a torn entry): skip it.
        if (isPathNotFound(err) || err instanceof SyntaxError) continue;
        throw err;
      }
      if (artifactType === undefined || desc.artifactType === artifactType) out.push(desc);
    }
    return out;
  }
}
