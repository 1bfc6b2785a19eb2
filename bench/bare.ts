// The reference servers the limits are measured against, run as a child process (so, like a
// registry, they have a process and a core of their own):
//  - a bare node:http server answering scenario 7's requests from constants: HEAD of a blob
//    (the headers a registry sends) and GET of a ~500-byte manifest;
//  - GET /blob/<bytes>: that many bytes from memory, for the verified-pull limit (what the
//    benchmark's client can receive and hash from a server that costs nothing);
//  - a TCP sink for loopback throughput: a connection sends an 8-byte length, then that many
//    bytes; the sink answers one byte once it has them all.
// It prints one JSON line {"http":PORT,"sink":PORT} when ready and exits when stdin closes.
import http from 'node:http';
import net from 'node:net';

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

const server = http.createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
  res.setHeader('Docker-Distribution-API-Version', 'registry/2.0');
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
