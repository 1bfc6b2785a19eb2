// Builds the configured driver, wrapped in the base driver. Each driver's module is loaded
// only when configured: the cloud SDKs weigh ~16 MiB of heap (~40 MiB of RSS) that a
// filesystem registry would otherwise carry, and every major GC would mark.
import { BaseDriver } from './base.js';
import { ConfigError, type StorageConfig } from '../config/config.js';

export async function createDriver(storage: StorageConfig): Promise<BaseDriver> {
  switch (storage.driver) {
    case 'filesystem': {
      const { FilesystemDriver } = await import('./drivers/filesystem/index.js');
      return new BaseDriver(new FilesystemDriver(storage.filesystem));
    }
    case 'inmemory': {
      const { InMemoryDriver } = await import('./drivers/inmemory/index.js');
      return new BaseDriver(new InMemoryDriver());
    }
    case 'azure': {
      const { AzureDriver } = await import('./drivers/azure/index.js');
      return new BaseDriver(new AzureDriver(storage.azure));
    }
    case 's3': {
      const { S3Driver } = await import('./drivers/s3/index.js');
      return new BaseDriver(new S3Driver(storage.s3));
    }
    case 'gcs':
      try {
        const { GcsDriver } = await import('./drivers/gcs/index.js');
        return new BaseDriver(new GcsDriver(storage.gcs));
      } catch (err) {
        // An unreadable key file: one line at start, naming the section.
        throw new ConfigError(`config: storage.gcs: ${(err as Error).message.replace(/^gcs: /, '')}`);
      }
  }
}
