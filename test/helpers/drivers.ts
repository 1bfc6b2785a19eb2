// The storage drivers the API tests run against: filesystem and inmemory always; s3 against
// the S3 server named by S3_* (skipped, saying why, without one); azure against Azurite
// started from node_modules (once per test process). Blob redirects are off, so every
// response comes from Berth itself (the e2e tests cover redirects).
import { createBucket, rawClient, s3FromEnv } from './s3.js';
import { containerName, startAzurite, type RunningAzurite } from './azurite.js';

export type DriverName = 'filesystem' | 'inmemory' | 's3' | 'azure';

export function apiDrivers(): { driver: DriverName; skip: string | false }[] {
  return [
    { driver: 'filesystem', skip: false },
    { driver: 'inmemory', skip: false },
    { driver: 's3', skip: s3FromEnv().skip },
    { driver: 'azure', skip: false },
  ];
}

let azurite: Promise<RunningAzurite> | undefined;

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
  }
}

/** Stops what storageFor started (call from a file-level `after`). */
export async function stopDrivers(): Promise<void> {
  const a = azurite;
  azurite = undefined;
  if (a) await (await a).stop();
}
