// The processes under test: Berth (`berth serve`, filesystem driver on a fresh root, access
// log off), Debian's CNCF Distribution 2.8.2 (`docker-registry`, same disk), and the bare
// reference servers (bare.ts). Also the RSS sampler that reads /proc/<pid>/status.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const BERTH_CLI = resolve(import.meta.dirname, '../src/cli/main.js');
export const DISTRIBUTION_BIN = '/usr/bin/docker-registry';
const BARE = resolve(import.meta.dirname, 'bare.js');

export interface Target {
  /** 'berth' or 'distribution' */
  kind: 'berth' | 'distribution';
  url: string;
  /** The server's pid when the benchmark started it (RSS is read from /proc), else null. */
  pid: number | null;
  /** Whether the benchmark started it (and so owns a fresh storage root). */
  managed: boolean;
  stop(): Promise<void>;
  /** Everything the process printed (managed targets). */
  output(): string;
}

/** A temporary directory on the same disk as the storage roots (the OS temp directory). */
export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A loopback TCP port that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => res(port));
    });
  });
}

/** libuv's thread pool size variable; the benchmark raises it for itself only. */
export const POOL_ENV = 'UV_THREADPOOL_SIZE';
const ORIGINAL_POOL = process.env[POOL_ENV];

/**
 * The environment for a server: without REGISTRY_* variables (both registries read them as
 * config) and with the thread pool size the benchmark was started with, not its own.
 */
function cleanEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('REGISTRY_')) env[k] = v;
  delete env[POOL_ENV];
  if (ORIGINAL_POOL !== undefined) env[POOL_ENV] = ORIGINAL_POOL;
  return env;
}

async function waitReady(url: string, exited: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
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

interface Spawned {
  proc: ChildProcess;
  exited: Promise<void>;
  isExited(): boolean;
  output(): string;
}

function spawnLogged(cmd: string, args: string[], env: Record<string, string>): Spawned {
  const proc = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (d: Buffer) => {
    out += d.toString();
    if (out.length > 64 * 1024) out = out.slice(-32 * 1024);
  };
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  let exited = false;
  const done = new Promise<void>((res) => {
    proc.once('exit', () => {
      exited = true;
      res();
    });
    proc.once('error', (err) => {
      out += `spawn error: ${err.message}\n`;
      exited = true;
      res();
    });
  });
  return { proc, exited: done, isExited: () => exited, output: () => out };
}

async function stopProcess(s: Spawned): Promise<void> {
  if (s.isExited()) return;
  s.proc.kill('SIGTERM');
  const timer = setTimeout(() => {
    if (!s.isExited()) s.proc.kill('SIGKILL');
  }, 10_000);
  await s.exited;
  clearTimeout(timer);
}

/**
 * Starts a server on a free port chosen here (Berth logs its "listening" line only at info
 * level, and the benchmark runs it at warn), retrying when the port was taken meanwhile.
 */
async function startOnFreePort(
  name: string,
  launch: (port: number) => Spawned,
): Promise<{ s: Spawned; url: string }> {
  let last = '';
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const s = launch(port);
    const url = `http://127.0.0.1:${port}`;
    if (await waitReady(url, s.isExited, 20_000)) return { s, url };
    last = s.output();
    await stopProcess(s);
    if (!/address already in use|EADDRINUSE/i.test(last)) break;
  }
  throw new Error(`${name} did not answer GET /v2/:\n${last}`);
}

export interface BerthStartOptions {
  root: string;
  /** Extra environment (e.g. UV_THREADPOOL_SIZE or REGISTRY_* overrides for experiments). */
  env?: Record<string, string>;
  /** Write a V8 CPU profile of the process into this directory when it exits. */
  cpuProfDir?: string;
}

export async function startBerth(opts: BerthStartOptions): Promise<Target> {
  const nodeArgs = opts.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', opts.cpuProfDir] : [];
  const { s, url } = await startOnFreePort('berth', (port) =>
    spawnLogged(process.execPath, [...nodeArgs, BERTH_CLI, 'serve'], {
      ...cleanEnv(),
      REGISTRY_HTTP_ADDR: `127.0.0.1:${port}`,
      REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: opts.root,
      REGISTRY_LOG_ACCESSLOG_DISABLED: 'true',
      REGISTRY_LOG_LEVEL: 'warn',
      ...opts.env,
    }),
  );
  return {
    kind: 'berth',
    url,
    pid: s.proc.pid ?? null,
    managed: true,
    output: s.output,
    stop: () => stopProcess(s),
  };
}

export function distributionUnavailable(): string | null {
  return existsSync(DISTRIBUTION_BIN) ? null : `${DISTRIBUTION_BIN} is not installed (Debian package docker-registry)`;
}

export async function startDistribution(root: string): Promise<Target> {
  const configDir = tempDir('berth-bench-distribution-');
  const configFile = join(configDir, 'config.yml');
  try {
    const { s, url } = await startOnFreePort('docker-registry', (port) => {
      writeFileSync(
        configFile,
        [
          'version: 0.1',
          'log:',
          '  level: warn',
          '  accesslog:',
          '    disabled: true',
          'storage:',
          '  filesystem:',
          `    rootdirectory: ${JSON.stringify(root)}`,
          'http:',
          `  addr: ${JSON.stringify(`127.0.0.1:${port}`)}`,
          `  secret: ${JSON.stringify(randomBytes(16).toString('hex'))}`,
          '',
        ].join('\n'),
      );
      return spawnLogged(DISTRIBUTION_BIN, ['serve', configFile], cleanEnv());
    });
    return {
      kind: 'distribution',
      url,
      pid: s.proc.pid ?? null,
      managed: true,
      output: s.output,
      async stop() {
        await stopProcess(s);
        rmSync(configDir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    rmSync(configDir, { recursive: true, force: true });
    throw err;
  }
}

/** A registry the benchmark did not start (--target / --compare). */
export function externalTarget(kind: Target['kind'], url: string): Target {
  return { kind, url: url.replace(/\/+$/, ''), pid: null, managed: false, output: () => '', stop: async () => {} };
}

export interface BareServers {
  httpPort: number;
  sinkPort: number;
  pid: number;
  stop(): Promise<void>;
}

/** Starts bare.ts as a child process and waits for its ports; its PUT /file/ writes under `fileDir`. */
export async function startBare(fileDir: string): Promise<BareServers> {
  const proc = spawn(process.execPath, [BARE, fileDir], { stdio: ['pipe', 'pipe', 'pipe'], env: cleanEnv() });
  let out = '';
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((res) => proc.once('exit', () => res()));
  const ports = await new Promise<{ http: number; sink: number }>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`bare servers did not start: ${err}`)), 15_000);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        res(JSON.parse(out.slice(0, nl)) as { http: number; sink: number });
      }
    });
    void exited.then(() => rej(new Error(`bare servers exited: ${err}`)));
  });
  return {
    httpPort: ports.http,
    sinkPort: ports.sink,
    pid: proc.pid!,
    async stop() {
      proc.stdin!.end();
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

function readStatusKiB(pid: number, field: 'VmRSS' | 'VmHWM'): number | null {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'latin1');
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

export interface RssSample {
  /** RSS when sampling started, MiB. */
  startMiB: number;
  /** Highest RSS seen (polled, and the kernel's high-water mark when it could be reset), MiB. */
  peakMiB: number;
  /** peak − start, MiB. */
  growthMiB: number;
}

/**
 * Polls VmRSS every `intervalMs`. When the kernel lets us reset the process's VmHWM
 * (writing 5 to /proc/<pid>/clear_refs), the high-water mark catches peaks between polls.
 */
export class RssSampler {
  private timer: NodeJS.Timeout | null = null;
  private start = 0;
  private peak = 0;
  private hwmReset = false;

  constructor(
    private readonly pid: number,
    private readonly intervalMs = 20,
  ) {}

  begin(): void {
    try {
      writeFileSync(`/proc/${this.pid}/clear_refs`, '5');
      this.hwmReset = true;
    } catch {
      this.hwmReset = false;
    }
    this.start = readStatusKiB(this.pid, 'VmRSS') ?? 0;
    this.peak = this.start;
    this.timer = setInterval(() => this.poll(), this.intervalMs);
  }

  private poll(): void {
    const rss = readStatusKiB(this.pid, 'VmRSS');
    if (rss !== null && rss > this.peak) this.peak = rss;
  }

  end(): RssSample {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.poll();
    if (this.hwmReset) {
      const hwm = readStatusKiB(this.pid, 'VmHWM');
      if (hwm !== null && hwm > this.peak) this.peak = hwm;
    }
    const mib = (k: number) => k / 1024;
    return { startMiB: mib(this.start), peakMiB: mib(this.peak), growthMiB: mib(this.peak - this.start) };
  }
}

/** CPU seconds (user + system, all threads) the process has used, from /proc/<pid>/stat. */
export function cpuSeconds(pid: number): number | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    // fields[0] is the state (field 3 of proc(5)); utime and stime are fields 14 and 15.
    return (Number(fields[11]) + Number(fields[12])) / 100; // USER_HZ is 100 on Linux
  } catch {
    return null;
  }
}
