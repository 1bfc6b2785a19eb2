// Sends a byte range of an open file as a response body through a few reused buffers: no
// allocation per chunk (see OpenFile for why that matters), at most DEPTH chunks in flight,
// the read of one chunk overlapping the socket write of the ones before it.
import type { ServerResponse } from 'node:http';
import type { OpenFile } from '../storage/driver.js';

const CHUNK = 256 * 1024;
const DEPTH = 4;
/** Buffers kept between responses (16 MiB at most). */
const POOL_MAX = 64;
const pool: Buffer[] = [];

/** Writes `length` bytes of `file` from `start`, ends the response and closes the file. */
export async function sendFile(res: ServerResponse, file: OpenFile, start: number, length: number): Promise<void> {
  const buffers: Buffer[] = [];
  for (let i = 0; i < DEPTH; i++) buffers.push(pool.pop() ?? Buffer.allocUnsafeSlow(CHUNK));
  const written: (Promise<void> | undefined)[] = [];
  // A client that goes away must not leave this loop waiting for a write that never completes.
  let abandon!: (err: Error) => void;
  const closed = new Promise<never>((_, reject) => (abandon = reject));
  closed.catch(() => {});
  const onClose = () => abandon(new Error('the connection closed before the body was sent'));
  res.once('close', onClose);
  let sent = false;
  try {
    const end = start + length;
    for (let pos = start, i = 0; pos < end; i = (i + 1) % DEPTH) {
      if (written[i]) await Promise.race([written[i], closed]);
      const buf = buffers[i]!;
      const n = await file.read(buf, Math.min(CHUNK, end - pos), pos);
      if (n === 0) throw new Error(`file ended ${end - pos} bytes before the announced length`);
      pos += n;
      const chunk = n === CHUNK ? buf : buf.subarray(0, n);
      written[i] = new Promise<void>((resolve, reject) => res.write(chunk, (err) => (err ? reject(err) : resolve())));
      written[i]!.catch(() => {});
    }
    await Promise.race([Promise.all(written), closed]);
    sent = true;
    res.end();
  } finally {
    res.off('close', onClose);
    await file.close();
    // Only buffers whose writes have completed are reused; after a failure the socket may
    // still hold one.
    if (sent) for (const b of buffers) if (pool.length < POOL_MAX) pool.push(b);
  }
}
