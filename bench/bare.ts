// The reference servers the limits are measured against, run as a child process (so, like a
// registry, they have a process and a core of their own):
//  - a bare node:http server answering scenario 7's requests from constants: HEAD of a blob
//    (the headers a registry sends) and GET of a ~500-byte manifest;
//  - GET /blob/<bytes>: that many bytes from memory, for the verified-pull limit (what the
//    benchmark's client can receive and hash from a server that costs nothing);
//  - PUT /file/<name>: the least a push must do, with no registry around it: the body written
//    to a new file under the directory given as the first argument (gathered into writes of
//    ≥1 MiB, one in flight while the next gathers), fdatasync, 201 — no hashing, no rename, no
//    links. The parallel-push limit is this under scenario 5's load; the files stay until the
//    measurement removes them;
//  - a TCP sink for loopback throughput: a connection sends an 8-byte length, then that many
//    bytes; the sink answers one byte once it has them all.
// It prints one JSON line {"http":PORT,"sink":PORT} when ready and exits when stdin closes.
import { promises as fsp } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';

const fileDir = process.argv[2];

const MANIFEST = Buffer.from(
  JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: 'sha256:' + 'a'.repeat(64), size: 4096 },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: 'sha256:' + 'a'.repeat(64), size: 4096 }],
  }),
);
const DIGEST = 'sha256:' + 'b'.repeat(64);
const BLOCK = Buffer.alloc(1024 * 1024);
for (let i = 0; i < BLOCK.length; i += 4) BLOCK.writeUInt32LE((i * 2654435761) >>> 0, i);

function sendBlob(res: http.ServerResponse, size: number): void {
  res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(size) });
  let sent = 0;
  const pump = () => {
    while (sent < size) {
      const n = Math.min(BLOCK.length, size - sent);
      sent += n;
      if (!res.write(n === BLOCK.length ? BLOCK : BLOCK.subarray(0, n))) {
        res.once('drain', pump);
        return;
      }
    }
    res.end();
  };
  pump();
}

/** Writes the request body to `file`, fdatasyncs it and answers 201. */
async function receiveFile(req: http.IncomingMessage, res: http.ServerResponse, file: string): Promise<void> {
  const handle = await fsp.open(file, 'wx');
  try {
    let pending: Buffer[] = [];
    let bytes = 0;
    let inflight: Promise<void> = Promise.resolve();
    const flush = () => {
      const buffers = pending;
      const n = bytes;
      pending = [];
      bytes = 0;
      inflight = inflight.then(async () => {
        const { bytesWritten } = await handle.writev(buffers);
        if (bytesWritten !== n) throw new Error(`short write: ${bytesWritten} of ${n} bytes`);
      });
      inflight.catch(() => {}); // awaited before the next flush and at the end
    };
    for await (const chunk of req as AsyncIterable<Buffer>) {
      pending.push(chunk);
      bytes += chunk.length;
      if (bytes >= 1024 * 1024) {
        await inflight;
        flush();
      }
    }
    flush();
    await inflight;
    await handle.datasync();
  } finally {
    await handle.close();
  }
  res.writeHead(201, { 'Content-Length': '0' });
  res.end();
}

const server = http.createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
  res.setHeader('Docker-Distribution-API-Version', 'registry/2.0');
  const file = /^\/file\/([a-z0-9-]+)$/.exec(req.url ?? '');
  if (file && req.method === 'PUT' && fileDir) {
    receiveFile(req, res, join(fileDir, file[1])).catch((err: Error) => {
      res.writeHead(500, { 'Content-Type': 'text/plain' });
      res.end(String(err.message));
    });
    return;
  }
  const blob = /^\/blob\/(\d+)$/.exec(req.url ?? '');
  if (blob && req.method === 'GET') {
    sendBlob(res, Number(blob[1]));
    return;
  }
  if (req.method === 'HEAD') {
    res.writeHead(200, {
      'Docker-Content-Digest': DIGEST,
      ETag: `"${DIGEST}"`,
      'Accept-Ranges': 'bytes',
      'Cache-Control': 'max-age=31536000',
      'Content-Type': 'application/octet-stream',
      'Content-Length': '67108864',
    });
    res.end();
    return;
  }
  res.writeHead(200, {
    'Content-Type': 'application/vnd.oci.image.manifest.v1+json',
    'Content-Length': String(MANIFEST.length),
    'Docker-Content-Digest': DIGEST,
    ETag: `"${DIGEST}"`,
  });
  res.end(MANIFEST);
});

const sink = net.createServer((sock) => {
  let expected = -1;
  let got = 0;
  let head = Buffer.alloc(0);
  sock.on('data', (d: Buffer) => {
    if (expected < 0) {
      head = Buffer.concat([head, d]);
      if (head.length < 8) return;
      expected = Number(head.readBigUInt64BE(0));
      got = head.length - 8;
    } else {
      got += d.length;
    }
    if (got >= expected) sock.end('k');
  });
  sock.on('error', () => {});
});

await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
process.stdout.write(
  JSON.stringify({ http: (server.address() as net.AddressInfo).port, sink: (sink.address() as net.AddressInfo).port }) + '\n',
);
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
