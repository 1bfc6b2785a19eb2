// A test server run as a child process from node_modules (Azurite, the GCS emulator): started
// with `node <args>`, ready once its output matches `listening` (whose first group is the
// port), stopped with SIGTERM (SIGKILL after 5 s), its scratch directory removed on stop.
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';

export interface ChildServer {
  port: number;
  /** Everything the server printed so far. */
  output(): string;
  stop(): Promise<void>;
}

export async function startChildServer(opts: {
  label: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  listening: RegExp;
  /** Removed on stop (and when the start fails). */
  scratch: string;
  timeoutMs: number;
}): Promise<ChildServer> {
  const proc: ChildProcess = spawn(process.execPath, opts.args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((res) => proc.once('exit', () => res()));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      const killed = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(killed);
    }
    rmSync(opts.scratch, { recursive: true, force: true });
  };
  try {
    const port = await new Promise<number>((res, rej) => {
      const timer = setTimeout(() => rej(new Error(`${opts.label} did not listen within ${opts.timeoutMs} ms:\n${out}`)), opts.timeoutMs);
      const check = () => {
        const m = opts.listening.exec(out);
        if (m) {
          clearTimeout(timer);
          res(Number(m[1]));
        }
      };
      proc.stdout!.on('data', check);
      proc.once('error', (err) => {
        clearTimeout(timer);
        rej(err);
      });
      void exited.then(() => {
        clearTimeout(timer);
        rej(new Error(`${opts.label} exited before listening:\n${out}`));
      });
    });
    return { port, output: () => out, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
