// Google's Cloud Storage emulator (the one in the npm package firebase-tools, pinned in
// devDependencies) for tests: it runs as a child process from node_modules on a free loopback
// port, with its data in a temp directory.
//
// firebase-tools normally starts it through `firebase emulators:start`, which first downloads
// a Java runtime for Firebase security rules; this closed network cannot fetch that, and the
// GCS JSON API endpoints do not need it (they use the emulator's admin storage layer, which
// skips rules). So this file builds the emulator's own express app (StorageEmulator +
// createApp from lib/emulator/storage) without starting the rules runtime, and listens on it.
//
// One adjustment, of the URL only: the emulator serves the JSON API at `/b/...` (the SDK's
// STORAGE_EMULATOR_HOST convention), while @google-cloud/storage given an `apiEndpoint` —
// what Berth's `endpoint` key sets, as for a real private endpoint — asks for
// `/storage/v1/b/...`. The prefix is stripped before the emulator sees the request.
// Upload (`/upload/storage/v1/...`) and download URLs are passed as they are.
//
// What the emulator does not implement: objects.compose and rewrite calls that continue with
// a rewriteToken (answered 501; it copies in one call), and generation preconditions
// (ifGenerationMatch is ignored). Request bodies are limited to 130 MB.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startChildServer } from './child-server.js';

export interface RunningGcsEmulator {
  /** http://127.0.0.1:PORT — the driver's `endpoint`. */
  endpoint: string;
  port: number;
  /** Everything the emulator printed so far. */
  output(): string;
  stop(): Promise<void>;
}

/** Why tests that need GCS's compose are skipped here. */
export const NO_COMPOSE = 'the firebase-tools storage emulator has no compose (appends to a non-empty GCS object use compose)';

/** Why tests of generation preconditions (two writers racing on one path) are skipped here. */
export const NO_PRECONDITIONS = 'the firebase-tools storage emulator ignores ifGenerationMatch preconditions';

/** A fresh bucket name (the emulator creates buckets on first use). */
export function bucketName(label = 'berth'): string {
  return `${label}-${randomBytes(6).toString('hex')}`;
}

function storageDir(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('firebase-tools/package.json')), 'lib', 'emulator', 'storage');
}

/** In the child process: build the emulator's app and listen on 127.0.0.1, port 0. */
async function serve(): Promise<void> {
  const require = createRequire(import.meta.url);
  const dir = storageDir();
  const { StorageEmulator } = require(join(dir, 'index.js')) as {
    StorageEmulator: new (args: Record<string, unknown>) => { args: { port: number } };
  };
  const { createApp } = require(join(dir, 'server.js')) as {
    createApp: (projectId: string, emulator: unknown) => Promise<(req: IncomingMessage, res: ServerResponse) => void>;
  };
  const { EmulatorRegistry } = require(join(dir, '..', 'registry.js')) as { EmulatorRegistry: { set(name: string, instance: unknown): void } };
  const emulator = new StorageEmulator({ projectId: 'berth-test', host: '127.0.0.1', port: 0, rules: [], auto_download: false });
  const app = await createApp('berth-test', emulator);
  const server = createServer((req, res) => {
    if (req.url?.startsWith('/storage/v1/')) req.url = req.url.slice('/storage/v1'.length);
    app(req, res);
  });
  server.requestTimeout = 0;
  server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    // Bucket metadata names the emulator's own address, which it looks up in its registry.
    emulator.args.port = port;
    EmulatorRegistry.set('storage', emulator);
    process.stdout.write(`gcs emulator listening on http://127.0.0.1:${port}\n`);
  });
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
}

/** Starts the emulator; rejects (with its output) when it cannot start within `timeoutMs`. */
export async function startGcsEmulator(timeoutMs = 30_000): Promise<RunningGcsEmulator> {
  if (!existsSync(join(storageDir(), 'apis', 'gcloud.js'))) throw new Error('firebase-tools is not installed (its storage emulator is missing)');
  // The emulator keeps object bytes in files under os.tmpdir(): give each one its own.
  const tmp = mkdtempSync(join(tmpdir(), 'berth-gcs-emulator-'));
  const server = await startChildServer({
    label: 'the gcs emulator',
    args: [fileURLToPath(import.meta.url), '--serve'],
    env: { ...process.env, TMPDIR: tmp },
    listening: /listening on http:\/\/127\.0\.0\.1:(\d+)/,
    scratch: tmp,
    timeoutMs,
  });
  return { ...server, endpoint: `http://127.0.0.1:${server.port}` };
}

/** startGcsEmulator, or the reason it could not start (for a test's `skip`). */
export async function tryStartGcsEmulator(): Promise<{ emulator: RunningGcsEmulator; skip: false } | { emulator: undefined; skip: string }> {
  try {
    return { emulator: await startGcsEmulator(), skip: false };
  } catch (err) {
    return { emulator: undefined, skip: `the gcs emulator could not start: ${(err as Error).message.split('\n')[0]}` };
  }
}

if (process.argv[2] === '--serve' && process.argv[1] === fileURLToPath(import.meta.url)) {
  serve().catch((err: unknown) => {
    process.stderr.write(`gcs emulator: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
