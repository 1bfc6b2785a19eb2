// The S3 server for tests: given by the S3_* variables that `../shared/tools/ceph-s3.sh start`
// prints (a single-node Ceph cluster whose radosgw speaks S3 on loopback). Tests that need it
// skip, saying why, only when S3_ENDPOINT is absent; a set but unreachable endpoint fails.
import {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectsCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
} from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import type { S3Options } from '../../src/storage/drivers/s3/index.js';

export interface S3Server {
  endpoint: string;
  region: string;
  accessKey: string;
  secretKey: string;
}

export const S3_SKIP_REASON = 'S3_ENDPOINT not set: start ../shared/tools/ceph-s3.sh';

/** The server from the environment, or the reason to skip. */
export function s3FromEnv(): { s3: S3Server; skip: false } | { s3: undefined; skip: string } {
  const e = process.env;
  if (!e.S3_ENDPOINT) return { s3: undefined, skip: S3_SKIP_REASON };
  if (!e.S3_ACCESS_KEY || !e.S3_SECRET_KEY) throw new Error('S3_ENDPOINT is set but S3_ACCESS_KEY or S3_SECRET_KEY is not');
  return {
    s3: { endpoint: e.S3_ENDPOINT, region: e.S3_REGION || 'us-east-1', accessKey: e.S3_ACCESS_KEY, secretKey: e.S3_SECRET_KEY },
    skip: false,
  };
}

/** A client of the raw bucket, to look at what the driver stored (same settings as the driver's). */
export function rawClient(s3: S3Server): S3Client {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  return new S3Client({
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKey, secretAccessKey: s3.secretKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/** Driver options for the server and a bucket. */
export function driverOptions(s3: S3Server, bucket: string, extra: Partial<S3Options> = {}): S3Options {
  return {
    region: s3.region,
    regionendpoint: s3.endpoint,
    forcepathstyle: true,
    accesskey: s3.accessKey,
    secretkey: s3.secretKey,
    bucket,
    ...extra,
  };
}

/** Creates a fresh bucket (S3 naming: lower case, digits, '-'). */
export async function createBucket(client: S3Client, label: string): Promise<string> {
  const bucket = `berth-${label}-${randomBytes(5).toString('hex')}`;
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  return bucket;
}

/** Every key in the bucket (below `prefix`), in S3's order. */
export async function listKeys(client: S3Client, bucket: string, prefix = ''): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const res = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const o of res.Contents ?? []) keys.push(o.Key!);
    token = res.IsTruncated ? res.NextContinuationToken : undefined;
  } while (token);
  return keys;
}

/** Incomplete multipart uploads in the bucket (below `prefix`). */
export async function listUploads(client: S3Client, bucket: string, prefix = ''): Promise<{ Key: string; UploadId: string }[]> {
  const res = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix }));
  return (res.Uploads ?? []).map((u) => ({ Key: u.Key!, UploadId: u.UploadId! }));
}

/** Removes every object and incomplete upload, then the bucket. */
export async function destroyBucket(client: S3Client, bucket: string): Promise<void> {
  for (const u of await listUploads(client, bucket)) {
    await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: u.Key, UploadId: u.UploadId })).catch(() => {});
  }
  const keys = await listKeys(client, bucket);
  for (let i = 0; i < keys.length; i += 1000) {
    await client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys.slice(i, i + 1000).map((Key) => ({ Key })), Quiet: true } }));
  }
  await client.send(new DeleteBucketCommand({ Bucket: bucket }));
}
