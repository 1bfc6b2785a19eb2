// The storage drivers the API tests run against: filesystem and inmemory always; s3 against
// the S3 server named by S3_* (skipped, saying why, without one); azure against Azurite
// started from node_modules (once per test process); gcs against the firebase-tools Cloud
// Storage emulator started from node_modules (once per test process). Blob redirects are off,
// so every response comes from Berth itself (the e2e tests cover redirects).
import { createBucket, rawClient, s3FromEnv } from './s3.js';
import { containerName, startAzurite, type RunningAzurite } from './azurite.js';
import { NO_COMPOSE, bucketName, startGcsEmulator, type RunningGcsEmulator } from './gcs-emulator.js';

export type DriverName = 'filesystem' | 'inmemory' | 's3' | 'azure' | 'gcs';

export interface ApiDriver {
  driver: DriverName;
  /** Why the driver's API tests are skipped, or false. */
  skip: string | false;
  /**
   * Set (to the reason) when the backing server cannot append to a non-empty file: the tests
   * that send an upload in more than one request (PATCH after PATCH, PATCH then PUT with a
   * body) are skipped with it.
   */
  noAppendToNonEmpty?: string;
}

export function apiDrivers(): ApiDriver[] {
  return [
    { driver: 'filesystem', skip: false },
    { driver: 'inmemory', skip: false },
    { driver: 's3', skip: s3FromEnv().skip },
    { driver: 'azure', skip: false },
    { driver: 'gcs', skip: false, noAppendToNonEmpty: NO_COMPOSE },
  ];
}

let azurite: Promise<RunningAzurite> | undefined;
let gcsEmulator: Promise<RunningGcsEmulator> | undefined;

/**
 * The `storage` section for a driver, merged with `extra` (delete, maintenance, …). Each call
 * gets fresh, empty storage: a new bucket or container (filesystem: a temp root made by
 * startInProcess).
 */
export async function storageFor(driver: DriverName, extra: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
  switch (driver) {
    case 'filesystem':
      return { ...extra };
    case 'inmemory':
      return { inmemory: null, ...extra };
    case 's3': {
      const { s3 } = s3FromEnv();
      if (!s3) throw new Error('no S3 server');
      const bucket = await createBucket(rawClient(s3), 'api');
      return {
        s3: { region: s3.region, regionendpoint: s3.endpoint, bucket, accesskey: s3.accessKey, secretkey: s3.secretKey, forcepathstyle: true, secure: false },
        redirect: { disable: true },
        ...extra,
      };
    }
    case 'azure': {
      azurite ??= startAzurite();
      const a = await azurite;
      return {
        azure: { accountname: a.account, accountkey: a.key, container: containerName('api'), serviceurl: a.serviceUrl },
        redirect: { disable: true },
        ...extra,
      };
    }
    case 'gcs': {
      gcsEmulator ??= startGcsEmulator();
      const g = await gcsEmulator;
      // The emulator finalizes a resumable upload on its first PUT: chunks above every test blob.
      return { gcs: { bucket: bucketName('api'), endpoint: g.endpoint, chunksize: 64 * 1024 * 1024 }, redirect: { disable: true }, ...extra };
    }
  }
}

/** Stops what storageFor started (call from a file-level `after`). */
export async function stopDrivers(): Promise<void> {
  const a = azurite;
  azurite = undefined;
  if (a) await (await a).stop();
  const g = gcsEmulator;
  gcsEmulator = undefined;
  if (g) await (await g).stop();
}
