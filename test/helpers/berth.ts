// Starting Berth for tests: in-process on an ephemeral port (API tests), or as a real child
// process of the `berth` CLI (end-to-end, crash and CLI tests).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pino from 'pino';
import { buildConfig } from '../../src/config/config.js';
import { createApp } from '../../src/cli/app.js';

export const CLI = resolve(import.meta.dirname, '../../src/cli/main.js');

export function tempDir(prefix = 'berth-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export interface RunningBerth {
  /** http://127.0.0.1:PORT */
  url: string;
  /** 127.0.0.1:PORT, as clients name a registry */
  host: string;
  port: number;
  /** Storage root (filesystem driver), when there is one. */
  root?: string;
  stop(): Promise<void>;
}

/**
 * Starts the real server in this process. `raw` is a config object in config.yml shape;
 * storage defaults to a fresh filesystem root under the OS temp directory.
 */
export async function startInProcess(raw: Record<string, unknown> = {}): Promise<RunningBerth> {
  let root: string | undefined;
  const storage = { ...((raw.storage as Record<string, unknown>) ?? {}) };
  if (!['inmemory', 'filesystem', 's3', 'azure', 'gcs'].some((d) => d in storage)) {
    root = tempDir();
    storage.filesystem = { rootdirectory: root };
  } else if (storage.filesystem) {
    root = (storage.filesystem as { rootdirectory: string }).rootdirectory;
  }
  const config = buildConfig({ ...raw, storage, http: { addr: '127.0.0.1:0', ...((raw.http as object) ?? {}) } });
  const log = pino({ level: process.env.BERTH_TEST_LOG ? 'debug' : 'silent' });
  const { server, shutdown } = await createApp(config, log);
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    port,
    root,
    async stop() {
      await shutdown(1000);
      if (root && !raw.storage) rmSync(root, { recursive: true, force: true });
    },
  };
}

export interface BerthProcess extends RunningBerth {
  proc: ChildProcess;
  root: string;
  /** Everything the process printed so far. */
  output(): string;
  /** Resolves with the exit code once the process has exited. */
  exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): void;
}

/**
 * Runs `berth serve` as a child process on an ephemeral port. `config` is YAML text written
 * to a file (optional); `env` adds REGISTRY_* overrides. The storage root is kept on stop
 * unless the helper created it.
 */
export async function startProcess(opts: { root?: string; config?: string; env?: Record<string, string> } = {}): Promise<BerthProcess> {
  const ownRoot = !opts.root;
  const root = opts.root ?? tempDir();
  const args = [CLI, 'serve'];
  if (opts.config) {
    const file = join(tempDir('berth-config-'), 'config.yml');
    writeFileSync(file, opts.config);
    args.push(file);
  }
  const proc = spawn(process.execPath, args, {
    env: {
      ...process.env,
      REGISTRY_HTTP_ADDR: '127.0.0.1:0',
      REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: root,
      ...opts.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const exited = new Promise<number | null>((res) => proc.once('exit', (code) => res(code)));
  const port = await new Promise<number>((res, rej) => {
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = /"port":(\d+)[^\n]*"msg":"listening"/.exec(out);
      if (m) res(Number(m[1]));
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    void exited.then((code) => rej(new Error(`berth exited with ${code} before listening:\n${out}`)));
    setTimeout(() => rej(new Error(`berth did not start in 15 s:\n${out}`)), 15_000).unref();
  });
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    port,
    root,
    proc,
    exited,
    output: () => out,
    kill: (signal = 'SIGKILL') => proc.kill(signal),
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        await exited;
      }
      if (ownRoot) rmSync(root, { recursive: true, force: true });
    },
  };
}
