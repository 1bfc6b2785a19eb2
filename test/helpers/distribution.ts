// Starting CNCF Distribution 2.8 (Debian's `docker-registry`, the `registry:2` binary) for
// interoperability tests: a real process on a free loopback port, filesystem storage at a
// given root, deletes enabled.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const DISTRIBUTION_BIN = '/usr/bin/docker-registry';

/** Why Distribution cannot be started here, or false when it can. */
export function distributionUnavailable(): string | false {
  return existsSync(DISTRIBUTION_BIN) ? false : `${DISTRIBUTION_BIN} is not installed (Debian package docker-registry)`;
}

export interface DistributionProcess {
  /** http://127.0.0.1:PORT */
  url: string;
  /** 127.0.0.1:PORT, as clients name a registry */
  host: string;
  port: number;
  /** The storage root (kept on stop: it belongs to the caller). */
  root: string;
  proc: ChildProcess;
  /** Everything the process printed so far. */
  output(): string;
  /** Resolves with the exit code once the process has exited. */
  exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): void;
  /** SIGTERM (SIGKILL after 5 s), wait for the exit, remove the config directory. */
  stop(): Promise<void>;
}

/** A loopback TCP port that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

function configYaml(root: string, port: number): string {
  // JSON is YAML; quoting every value keeps paths with odd characters intact.
  return [
    'version: 0.1',
    'log:',
    '  level: warn',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${JSON.stringify(root)}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: ${JSON.stringify(`127.0.0.1:${port}`)}`,
    // A fixed secret silences the "No HTTP secret provided" warning.
    `  secret: ${JSON.stringify(randomBytes(16).toString('hex'))}`,
    '',
  ].join('\n');
}

async function waitReady(url: string, exited: () => boolean, deadline: number): Promise<boolean> {
  while (Date.now() < deadline) {
    if (exited()) return false;
    try {
      const res = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.status === 200) return true;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

/**
 * Starts `docker-registry serve CONFIG` with its storage at `root` on a free loopback port and
 * waits until `GET /v2/` answers 200. A port taken between choosing and binding is retried.
 */
export async function startDistribution(opts: { root: string; env?: Record<string, string> }): Promise<DistributionProcess> {
  const configDir = mkdtempSync(join(tmpdir(), 'berth-distribution-'));
  const configFile = join(configDir, 'config.yml');
  // Distribution reads REGISTRY_* variables as config overrides: none leak in from the test run.
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('REGISTRY_')) env[k] = v;
  Object.assign(env, opts.env);

  let lastOutput = '';
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    writeFileSync(configFile, configYaml(opts.root, port));
    const proc = spawn(DISTRIBUTION_BIN, ['serve', configFile], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    let done = false;
    const exited = new Promise<number | null>((res) => {
      proc.once('exit', (code) => {
        done = true;
        res(code);
      });
      proc.once('error', (err) => {
        out += `spawn error: ${err.message}\n`;
        done = true;
        res(null);
      });
    });
    const url = `http://127.0.0.1:${port}`;
    const ready = await waitReady(url, () => done, Date.now() + 15_000);
    if (ready) {
      const kill = (signal: NodeJS.Signals = 'SIGKILL') => {
        if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      };
      return {
        url,
        host: `127.0.0.1:${port}`,
        port,
        root: opts.root,
        proc,
        exited,
        output: () => out,
        kill,
        async stop() {
          if (proc.exitCode === null && proc.signalCode === null) {
            proc.kill('SIGTERM');
            const timer = setTimeout(() => kill('SIGKILL'), 5000);
            await exited;
            clearTimeout(timer);
          }
          rmSync(configDir, { recursive: true, force: true });
        },
      };
    }
    if (!done) {
      proc.kill('SIGKILL');
      await exited;
    }
    lastOutput = out;
    if (!/address already in use/i.test(out)) break;
  }
  rmSync(configDir, { recursive: true, force: true });
  throw new Error(`Distribution (${DISTRIBUTION_BIN}) did not answer GET /v2/:\n${lastOutput}`);
}
