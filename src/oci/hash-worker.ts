// The worker side of stream-hash.ts: keeps hash states by id, hashes the chunks it is
// handed, in order, and hands them back (transferred, not copied) to be written.
import { createHash, type Hash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';

export type ToWorker =
  | { op: 'update'; id: number; bufs: ArrayBuffer[]; lens: number[] }
  | { op: 'digest'; id: number; req: number }
  | { op: 'dispose'; id: number };

export type FromWorker = { op: 'hashed'; id: number; bufs: ArrayBuffer[]; lens: number[] } | { op: 'digest'; req: number; hex: string };

const hashes = new Map<number, Hash>();
const port = parentPort!;

function stateOf(id: number): Hash {
  let h = hashes.get(id);
  if (!h) hashes.set(id, (h = createHash('sha256')));
  return h;
}

port.on('message', (m: ToWorker) => {
  switch (m.op) {
    case 'update': {
      const h = stateOf(m.id);
      for (let i = 0; i < m.bufs.length; i++) h.update(new Uint8Array(m.bufs[i]!, 0, m.lens[i]!));
      const back: FromWorker = { op: 'hashed', id: m.id, bufs: m.bufs, lens: m.lens };
      port.postMessage(back, m.bufs);
      break;
    }
    case 'digest':
      port.postMessage({ op: 'digest', req: m.req, hex: stateOf(m.id).copy().digest('hex') } satisfies FromWorker);
      break;
    case 'dispose':
      hashes.delete(m.id);
      break;
  }
});
