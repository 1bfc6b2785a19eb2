// Azurite (Microsoft's Azure Storage emulator, from npm) for tests: its blob service runs as a
// child process from node_modules on a free loopback port, with its data in a temp directory.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { startChildServer } from './child-server.js';

/** Azurite's built-in development account (documented, public; not a secret). */
export const AZURITE_ACCOUNT = 'devstoreaccount1';
export const AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface RunningAzurite {
  /** http://127.0.0.1:PORT/devstoreaccount1 — the `serviceurl` of the account. */
  serviceUrl: string;
  port: number;
  account: string;
  key: string;
  /** Everything Azurite printed so far. */
  output(): string;
  stop(): Promise<void>;
}

/** A fresh, valid container name (lower case letters, digits and '-'). */
export function containerName(label = 'berth'): string {
  return `${label}-${randomBytes(6).toString('hex')}`;
}

function blobMain(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('azurite/package.json')), 'dist', 'src', 'blob', 'main.js');
}

/** Starts Azurite's blob service; rejects (with its output) when it cannot start within `timeoutMs`. */
export async function startAzurite(timeoutMs = 30_000): Promise<RunningAzurite> {
  const main = blobMain();
  if (!existsSync(main)) throw new Error(`azurite is not installed (${main} is missing)`);
  const location = mkdtempSync(join(tmpdir(), 'berth-azurite-'));
  const args = [main, '--blobHost', '127.0.0.1', '--blobPort', '0', '--location', location];
  args.push('--skipApiVersionCheck', '--loose', '--silent', '--disableTelemetry');
  // Port 0: Azurite binds a free port and prints it ("... listens on http://127.0.0.1:PORT").
  const server = await startChildServer({ label: 'azurite', args, listening: /listens on http:\/\/127\.0\.0\.1:(\d+)/, scratch: location, timeoutMs });
  const out = server.output;
  try {
    // And it answers HTTP (any status: an unauthenticated request is refused, which is fine).
    const serviceUrl = `http://127.0.0.1:${server.port}/${AZURITE_ACCOUNT}`;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        await fetch(`${serviceUrl}?comp=list`);
        break;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`azurite does not answer on ${serviceUrl}: ${String(err)}\n${out()}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    return { serviceUrl, port: server.port, account: AZURITE_ACCOUNT, key: AZURITE_KEY, output: out, stop: server.stop };
  } catch (err) {
    await server.stop();
    throw err;
  }
}

/** startAzurite, or the reason it could not start (for a test's `skip`). */
export async function tryStartAzurite(): Promise<{ azurite: RunningAzurite; skip: false } | { azurite: undefined; skip: string }> {
  try {
    return { azurite: await startAzurite(), skip: false };
  } catch (err) {
    return { azurite: undefined, skip: `Azurite could not start: ${(err as Error).message.split('\n')[0]}` };
  }
}
