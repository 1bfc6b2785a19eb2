// Builds the configured driver, wrapped in the base driver.
import { BaseDriver } from './base.js';
import { AzureDriver } from './drivers/azure/index.js';
import { GcsDriver } from './drivers/gcs/index.js';
import { FilesystemDriver } from './drivers/filesystem/index.js';
import { InMemoryDriver } from './drivers/inmemory/index.js';
import { S3Driver } from './drivers/s3/index.js';
import { ConfigError, type StorageConfig } from '../config/config.js';

export function createDriver(storage: StorageConfig): BaseDriver {
  switch (storage.driver) {
    case 'filesystem':
      return new BaseDriver(new FilesystemDriver(storage.filesystem));
    case 'inmemory':
      return new BaseDriver(new InMemoryDriver());
    case 'azure':
      return new BaseDriver(new AzureDriver(storage.azure));
    case 's3':
      return new BaseDriver(new S3Driver(storage.s3));
    case 'gcs':
      try {
        return new BaseDriver(new GcsDriver(storage.gcs));
      } catch (err) {
        // An unreadable key file: one line at start, naming the section.
        throw new ConfigError(`config: storage.gcs: ${(err as Error).message.replace(/^gcs: /, '')}`);
      }
  }
}
