// A private Docker engine for end-to-end tests: its own data root, exec root, pid file,
// daemon.json and unix socket under a short /tmp directory, no networking set-up (no
// iptables, no bridge), the vfs storage driver (works on any filesystem, no overlay), and the
// containerd that dockerd starts and manages itself when given no --containerd (never the
// system's; its socket lives in the private exec root).
//
// dockerd starts that containerd in a process group of its own, and bind-mounts its data
// root onto itself. Stopping the engine is: SIGTERM to dockerd (it stops containerd and
// unmounts itself), SIGKILL to dockerd's group if it hangs and to the managed containerd if
// it is still there (found by its pid file), unmount what is left, then remove the dir.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { have, run, type RunResult } from './exec.js';

/** Why a private dockerd cannot be started here, or false when it can. */
export function dockerdUnavailable(): string | false {
  if (!have('dockerd')) return 'dockerd is not installed (Debian package docker.io)';
  if (!have('docker')) return 'the docker client is not installed';
  if (!have('containerd')) return 'containerd is not installed (dockerd needs it)';
  if (process.getuid?.() !== 0) return 'dockerd needs root (tests are not running as root)';
  return false;
}

export interface Dockerd {
  /** unix:///tmp/…/docker.sock, for `docker -H` or DOCKER_HOST. */
  host: string;
  /** The engine's private directory (data root, exec root, socket, client config). */
  dir: string;
  proc: ChildProcess;
  /** Everything dockerd (and its containerd) printed so far. */
  output(): string;
  /** Runs the docker client against this engine with a private client config. */
  docker(args: string[], opts?: { allowFail?: boolean; timeoutMs?: number; input?: string | Buffer }): Promise<RunResult>;
  stop(): Promise<void>;
}

function ping(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ socketPath, path: '/_ping', timeout: 1000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The pid in `file` if that process is alive and its command line mentions `marker`. */
function ownedPid(file: string, marker: string): number | null {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    if (!Number.isInteger(pid) || pid <= 1 || !alive(pid)) return null;
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes(marker) ? pid : null;
  } catch {
    return null;
  }
}

/** Mount points at or below `dir` (deepest first), from /proc/self/mountinfo. */
function mountsUnder(dir: string): string[] {
  let info: string;
  try {
    info = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const unescape = (p: string) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  return info
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => p !== undefined)
    .map(unescape)
    .filter((p) => p === dir || p.startsWith(dir + '/'))
    .sort((a, b) => b.length - a.length);
}

/** Starts a private dockerd and waits until its API answers /_ping. */
export async function startDockerd(opts: { timeoutMs?: number } = {}): Promise<Dockerd> {
  // Unix socket paths are limited to 108 bytes: stay directly under /tmp whatever TMPDIR says.
  const dir = mkdtempSync('/tmp/bd-');
  const dataRoot = join(dir, 'data');
  const execRoot = join(dir, 'x');
  const socket = join(dir, 'docker.sock');
  const clientConfig = join(dir, 'client');
  mkdirSync(clientConfig);
  const host = `unix://${socket}`;

  const args = [
    '--iptables=false',
    '--ip6tables=false',
    '--bridge=none',
    '--storage-driver=vfs',
    `--data-root=${dataRoot}`,
    `--exec-root=${execRoot}`,
    `--pidfile=${join(dir, 'docker.pid')}`,
    `--host=${host}`,
    // No default config file (/etc/docker/daemon.json) of the machine applies.
    `--config-file=${join(dir, 'daemon.json')}`,
  ];
  // An empty daemon.json: dockerd refuses a --config-file that does not exist.
  writeFileSync(join(dir, 'daemon.json'), '{}\n');

  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('DOCKER_')) env[k] = v;
  // runc, containerd and docker-init live in sbin directories on Debian.
  env.PATH = `${env.PATH ?? ''}:/usr/local/sbin:/usr/sbin:/sbin`;

  // detached: dockerd leads a process group of its own, so nothing of it outlives stop().
  const proc = spawn('dockerd', args, { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  let exitCode: number | null | undefined;
  const exited = new Promise<void>((res) => {
    proc.once('exit', (code) => {
      exitCode = code;
      res();
    });
    proc.once('error', (err) => {
      out += `spawn error: ${err.message}\n`;
      exitCode = null;
      res();
    });
  });

  // Should the test process exit without stop() (a crash, process.exit), take the engine along.
  const onExit = () => {
    for (const pid of [proc.pid, ownedPid(join(execRoot, 'containerd', 'containerd.pid'), dir)]) {
      if (!pid) continue;
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  };
  process.once('exit', onExit);

  const cleanup = async (): Promise<void> => {
    process.removeListener('exit', onExit);
    if (exitCode === undefined && proc.pid) {
      try {
        process.kill(proc.pid, 'SIGTERM');
      } catch {
        // already gone
      }
      await Promise.race([exited, new Promise((r) => setTimeout(r, 20_000).unref())]);
    }
    if (exitCode === undefined && proc.pid) {
      try {
        process.kill(-proc.pid, 'SIGKILL'); // dockerd did not stop in time: its whole group
      } catch {
        // no such group any more
      }
    }
    // Normally gone with dockerd; left behind only when dockerd was killed or hung.
    const containerd = ownedPid(join(execRoot, 'containerd', 'containerd.pid'), dir);
    if (containerd !== null) {
      for (const target of [-containerd, containerd]) {
        try {
          process.kill(target, 'SIGKILL'); // containerd leads a process group of its own
          break;
        } catch {
          // try the process itself
        }
      }
      for (let i = 0; i < 50 && alive(containerd); i++) await new Promise((r) => setTimeout(r, 100));
    }
    await exited;
    // dockerd bind-mounts its data root onto itself (and undoes it on a clean shutdown only).
    for (const mountpoint of mountsUnder(dir)) spawnSync('umount', ['--lazy', mountpoint], { stdio: 'ignore' });
    rmSync(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  while (!(await ping(socket))) {
    if (exitCode !== undefined || Date.now() > deadline) {
      const why = exitCode !== undefined ? `exited with ${exitCode}` : 'did not answer /_ping in time';
      await cleanup();
      const tail = out.split('\n').filter((l) => /level=(error|fatal)|failed|error/i.test(l)).slice(-15).join('\n');
      throw new Error(`dockerd ${why}:\n${tail || out.slice(-4000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }

  return {
    host,
    dir,
    proc,
    output: () => out,
    docker: (dargs, o = {}) =>
      run('docker', ['--host', host, ...dargs], {
        env: { DOCKER_CONFIG: clientConfig, DOCKER_CLI_HINTS: 'false', DOCKER_CLI_EXPERIMENTAL: 'enabled' },
        allowFail: o.allowFail,
        timeoutMs: o.timeoutMs ?? 120_000,
        input: o.input,
      }),
    stop: cleanup,
  };
}
