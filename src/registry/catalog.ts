// The repository catalog: every directory under `repositories/` that holds a `_layers` or a
// `_manifests` directory is a repository (Distribution 2.8 lists a repository once it has
// `_layers`, i.e. blobs, even before any manifest). Directories starting with '_' are never
// descended into.
import type { BaseDriver } from '../storage/base.js';
import { isPathNotFound } from '../storage/driver.js';
import { REPOSITORIES } from './paths.js';
import { withName } from './sorted.js';

/**
 * Visits each repository name (in walk order) that has one of the `markers` directories:
 * `_layers`/`_manifests` for the catalog, `_uploads` for upload purging.
 */
export async function walkRepositories(
  driver: BaseDriver,
  visit: (name: string) => Promise<void> | void,
  markers: readonly string[] = ['_layers', '_manifests'],
): Promise<void> {
  const prefix = REPOSITORIES.length + 1;
  let last: string | undefined;
  try {
    await driver.walk(REPOSITORIES, async (info) => {
      if (!info.isDir) return;
      const base = info.path.slice(info.path.lastIndexOf('/') + 1);
      if (markers.includes(base)) {
        const name = info.path.slice(prefix, info.path.lastIndexOf('/'));
        // A repository's markers are siblings, visited one after the other.
        if (name !== last) await visit(name);
        last = name;
        return 'skip';
      }
      if (base.startsWith('_')) return 'skip';
    });
  } catch (err) {
    if (!isPathNotFound(err)) throw err;
  }
}

/** All repository names in lexical (byte) order. */
export async function listRepositories(driver: BaseDriver): Promise<string[]> {
  const names: string[] = [];
  await walkRepositories(driver, (name) => {
    names.push(name);
  });
  return names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * The catalog, kept sorted in memory so a page costs a binary search, not a walk of the
 * whole storage tree. The walk is redone when the copy is older than `ttlMs` (to see
 * repositories other processes created); repositories this process creates are added at
 * once. Concurrent refreshes share one walk.
 */
export class CatalogCache {
  private names: string[] | null = null;
  private at = 0;
  private loading: Promise<string[]> | null = null;

  constructor(
    private readonly driver: BaseDriver,
    private readonly ttlMs: number,
  ) {}

  async all(): Promise<string[]> {
    if (this.names && Date.now() - this.at < this.ttlMs) return this.names;
    this.loading ??= listRepositories(this.driver)
      .then((names) => {
        this.names = names;
        this.at = Date.now();
        return names;
      })
      .finally(() => {
        this.loading = null;
      });
    return this.loading;
  }

  /** Records a repository that now has manifests. */
  add(name: string): void {
    if (this.names) this.names = withName(this.names, name);
  }
}
