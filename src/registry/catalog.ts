// The repository catalog: every directory under `repositories/` that holds a `_manifests`
// directory is a repository (Distribution's rule). Directories starting with '_' are never
// descended into.
import type { BaseDriver } from '../storage/base.js';
import { isPathNotFound } from '../storage/driver.js';
import { REPOSITORIES } from './paths.js';

/**
 * Visits each repository name (in walk order) that has a `marker` directory: `_manifests`
 * for the catalog, `_uploads` for upload purging.
 */
export async function walkRepositories(
  driver: BaseDriver,
  visit: (name: string) => Promise<void> | void,
  marker = '_manifests',
): Promise<void> {
  const prefix = REPOSITORIES.length + 1;
  try {
    await driver.walk(REPOSITORIES, async (info) => {
      if (!info.isDir) return;
      const base = info.path.slice(info.path.lastIndexOf('/') + 1);
      if (base === marker) {
        await visit(info.path.slice(prefix, info.path.lastIndexOf('/')));
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
