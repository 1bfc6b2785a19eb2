// The machine's limits, measured by the same command on the same machine:
//  - sha256: single-core node:crypto throughput (what a registry and a verifying client pay);
//  - disk: buffered writes then fdatasync into the storage directory's filesystem;
//  - fsync: 4 KiB file writes + fdatasync at the small-object concurrency (what durable small
//    writes can reach at most);
//  - loopback: one TCP stream to another process (bare.ts's sink);
//  - verified pull: this benchmark's client GETting from bare.ts (bytes from memory) and
//    hashing them, one stream and `parallel` streams — what any registry's pull is bound by;
//  - parallel push: scenario 5's load (`parallel` PUTs of `parallelSize` at once, bodies made
//    as the scenario makes them) against bare.ts writing each body to a file and fdatasync-ing
//    it — what the machine allows a push through the page cache before any registry work
//    (hashing, renames, links);
//  - bare node:http requests/s under scenario 7's load (bare.ts), per request kind.
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { blobChunks, MiB, newSeed } from './data.js';
import { Client } from './http.js';
import { runLoad, type LoadResult } from './load.js';
import type { BareServers } from './servers.js';
import type { Sizes } from './options.js';
import { HEAD_PATH_SHAPE, MANIFEST_ACCEPT } from './scenarios.js';

/** MiB/s of sha256 over `bytes`: the best of three runs of a third each (a limit is a best case). */
let aborted = false;

/** Makes the file-writing measurements stop early (the benchmark is being interrupted). */
export function abortLimits(): void {
  aborted = true;
}

export function sha256Throughput(bytes: number): number {
  const buf = Buffer.alloc(MiB, 0x5a);
  for (let i = 0; i < buf.length; i += 4) buf.writeUInt32LE((i * 2654435761) >>> 0, i);
  let best = 0;
  for (let run = 0; run < 3; run++) {
    const h = createHash('sha256');
    h.update(buf); // warm
    const t0 = performance.now();
    let done = 0;
    while (done < bytes / 3) {
      h.update(buf);
      done += buf.length;
    }
    h.digest();
    best = Math.max(best, done / MiB / ((performance.now() - t0) / 1000));
  }
  return best;
}

/** MiB/s of writing `bytes` in 4 MiB writes and fdatasync-ing, into a file under `dir`. */
export async function diskThroughput(dir: string, bytes: number): Promise<number> {
  const file = join(dir, `disk-limit-${process.pid}`);
  const buf = Buffer.alloc(4 * MiB);
  for (let i = 0; i < buf.length; i += 4) buf.writeUInt32LE((i * 2246822519) >>> 0, i);
  const t0 = performance.now();
  const h = await fsp.open(file, 'w');
  try {
    let done = 0;
    while (done < bytes && !aborted) {
      const n = Math.min(buf.length, bytes - done);
      await h.write(buf, 0, n);
      done += n;
    }
    await h.datasync();
  } finally {
    await h.close();
  }
  const secs = (performance.now() - t0) / 1000;
  await fsp.rm(file, { force: true });
  return bytes / MiB / secs;
}

/** 4 KiB writes + fdatasync per second, `concurrency` files at a time, for about `ms`. */
export async function fsyncRate(dir: string, concurrency: number, ms: number): Promise<number> {
  const sub = await fsp.mkdtemp(join(dir, 'fsync-limit-'));
  const buf = Buffer.alloc(4096, 0x33);
  let ops = 0;
  const t0 = performance.now();
  const deadline = t0 + ms;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      for (let i = 0; performance.now() < deadline && i < 100_000 && !aborted; i++) {
        const h = await fsp.open(join(sub, `f${w}-${i}`), 'w');
        try {
          await h.write(buf);
          await h.datasync();
        } finally {
          await h.close();
        }
        ops++;
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  await fsp.rm(sub, { recursive: true, force: true });
  return ops / secs;
}

/** MiB/s of one loopback TCP stream into the sink of bare.ts. */
export async function loopbackThroughput(port: number, bytes: number): Promise<number> {
  const chunk = Buffer.alloc(MiB, 0x77);
  return new Promise<number>((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let t0 = 0;
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error('loopback measurement timed out'));
    }, 120_000);
    sock.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    sock.once('data', () => {
      const secs = (performance.now() - t0) / 1000;
      clearTimeout(timer);
      sock.destroy();
      resolve(bytes / MiB / secs);
    });
    sock.once('connect', () => {
      t0 = performance.now();
      const head = Buffer.alloc(8);
      head.writeBigUInt64BE(BigInt(bytes));
      sock.write(head);
      let sent = 0;
      const pump = () => {
        while (sent < bytes) {
          const n = Math.min(chunk.length, bytes - sent);
          sent += n;
          if (!sock.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
            sock.once('drain', pump);
            return;
          }
        }
      };
      pump();
    });
  });
}

/**
 * MiB/s the client pulls and hashes from bare.ts: `streams` GETs of `bytes` each, at once;
 * the best of three runs after a warm-up (a limit is a best case).
 */
export async function verifiedPullThroughput(port: number, bytes: number, streams: number): Promise<number> {
  const c = new Client(`http://127.0.0.1:${port}`);
  try {
    await c.expect(200, 'GET', `/blob/${Math.min(bytes, 64 * MiB)}`, { consume: 'sha256' }); // warm up
    let best = 0;
    for (let run = 0; run < 3; run++) {
      const t0 = performance.now();
      await Promise.all(Array.from({ length: streams }, () => c.expect(200, 'GET', `/blob/${bytes}`, { consume: 'sha256' })));
      best = Math.max(best, (streams * bytes) / MiB / ((performance.now() - t0) / 1000));
    }
    return best;
  } finally {
    c.close();
  }
}

/**
 * MiB/s of `streams` PUTs of `bytes` each, at once, to bare.ts, which writes them to files
 * under `dir` and fdatasyncs them; the best of three runs (a limit is a best case). The files
 * of all runs are removed only at the end, so no run writes into pages the run before it
 * freed (a registry's pushes write new files too). Pages freed just before by the other
 * limits can still make the first run faster: on a VM that hands freed pages back to its
 * host, writing into pages not touched recently costs far more (docs/performance.md).
 */
export async function parallelPushThroughput(port: number, dir: string, bytes: number, streams: number): Promise<number> {
  const c = new Client(`http://127.0.0.1:${port}`);
  const names: string[] = [];
  try {
    let best = 0;
    for (let run = 0; run < 3 && !aborted; run++) {
      const specs = Array.from({ length: streams }, () => ({ seed: newSeed(), size: bytes }));
      const t0 = performance.now();
      await Promise.all(
        specs.map((spec) => {
          const name = `push-limit-${process.pid}-${spec.seed}`;
          names.push(name);
          return c.expect(201, 'PUT', `/file/${name}`, { headers: { 'Content-Length': String(bytes) }, body: blobChunks(spec) });
        }),
      );
      best = Math.max(best, (streams * bytes) / MiB / ((performance.now() - t0) / 1000));
    }
    return best;
  } finally {
    c.close();
    await Promise.all(names.map((n) => fsp.rm(join(dir, n), { force: true })));
  }
}

export interface Limits {
  pullMiBs: number;
  parallelPullMiBs: number;
  parallelPushMiBs: number;
  sha256MiBs: number;
  diskMiBs: number;
  fsyncOps: number;
  loopbackMiBs: number;
  bareHead: LoadResult;
  bareGet: LoadResult;
}

export async function measureLimits(sizes: Sizes, storageDir: string, bare: BareServers): Promise<Limits> {
  const sha256MiBs = sha256Throughput(sizes.shaBytes);
  const diskMiBs = await diskThroughput(storageDir, sizes.diskBytes);
  const fsyncOps = await fsyncRate(storageDir, sizes.smallConcurrency, Math.max(200, Math.min(2000, sizes.loadMs / 5)));
  const loopbackMiBs = await loopbackThroughput(bare.sinkPort, sizes.loopbackBytes);
  const pullMiBs = await verifiedPullThroughput(bare.httpPort, sizes.bigSize * Math.min(4, sizes.bigCount), 1);
  const parallelPullMiBs = await verifiedPullThroughput(bare.httpPort, sizes.parallelSize, sizes.parallel);
  const parallelPushMiBs = await parallelPushThroughput(bare.httpPort, storageDir, sizes.parallelSize, sizes.parallel);
  const load = (method: 'GET' | 'HEAD', path: string, headers?: Record<string, string>) =>
    runLoad({
      host: '127.0.0.1',
      port: bare.httpPort,
      method,
      path,
      headers,
      connections: sizes.loadConnections,
      durationMs: sizes.loadMs,
      warmupMs: sizes.loadWarmupMs,
    });
  const bareHead = await load('HEAD', HEAD_PATH_SHAPE);
  const bareGet = await load('GET', '/v2/bench/small/r00000/manifests/v1', { Accept: MANIFEST_ACCEPT });
  return { sha256MiBs, diskMiBs, fsyncOps, loopbackMiBs, pullMiBs, parallelPullMiBs, parallelPushMiBs, bareHead, bareGet };
}
