// The `berth` command as a user runs it: help, version, configuration errors, environment
// overrides, graceful shutdown, and a TLS ClientHello on the plain-HTTP port.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { test } from 'node:test';
import { CLI, startProcess, tempDir } from './helpers/berth.js';
import { Client, random, sha256 } from './helpers/client.js';

const pkg = JSON.parse(readFileSync(join(import.meta.dirname, '../../package.json'), 'utf8')) as { version: string };

function berth(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 20_000 });
}

test('--version and --help', () => {
  const v = berth(['--version']);
  assert.equal(v.status, 0);
  assert.equal(v.stdout.trim(), pkg.version);
  const h = berth(['--help']);
  assert.equal(h.status, 0);
  assert.match(h.stdout, /serve/);
  assert.match(h.stdout, /purge-uploads/);
  const s = berth(['serve', '--help']);
  assert.match(s.stdout, /config/);
});

test('a bad config fails at start with one line naming the key', () => {
  const dir = tempDir();
  const cases: [string, RegExp][] = [
    ['version: 0.1\nlog:\n  level: loud\n', /^berth: config: log\.level: /],
    ['version: 0.1\nstorage:\n  delete:\n    enabled: maybe\n', /^berth: config: storage\.delete\.enabled: /],
    ['version: 0.1\nhttp:\n  addr: 5000\n', /^berth: config: http\.addr: /],
    ['version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /tmp/x\n  inmemory:\n', /^berth: config: storage: more than one driver/],
    ['version: 0.1\nauth:\n  htpasswd:\n    realm: r\n    path: /x\n', /^berth: config: cannot read htpasswd file \/x/],
    ['{ not yaml', /^berth: config: .* is not valid YAML/],
  ];
  for (const [yaml, re] of cases) {
    const file = join(dir, 'config.yml');
    writeFileSync(file, yaml);
    const r = berth(['serve', file]);
    assert.equal(r.status, 1, `${yaml} → ${r.stderr}`);
    assert.match(r.stderr, re);
    assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
  }
  const missing = berth(['serve', join(dir, 'nope.yml')]);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /cannot read/);
  const badEnv = berth(['serve'], { REGISTRY_HTTP_RELATIVEURLS: 'sometimes' });
  assert.equal(badEnv.status, 1);
  assert.match(badEnv.stderr, /http\.relativeurls/);
});

test('a Distribution config.yml starts Berth; unknown sections are warned about; env overrides keys', async () => {
  const root = tempDir();
  const other = tempDir();
  // the shape of Distribution's stock /etc/docker/registry/config.yml
  const config = `version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: ${other}
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
`;
  const p = await startProcess({ root, config, env: { REGISTRY_STORAGE_DELETE_ENABLED: 'true', REGISTRY_HTTP_RELATIVEURLS: 'true' } });
  try {
    const c = new Client(p.url);
    const digest = await c.pushBlob('cli/env', random(100));
    // the env root (REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY) overrode the file's
    assert.ok(readFileSync(join(root, 'docker/registry/v2/repositories/cli/env/_layers/sha256', digest.slice(7), 'link')));
    // relative URLs from the env
    const start = await c.fetch('/v2/cli/env/blobs/uploads/', { method: 'POST' });
    assert.match(start.headers.get('location')!, /^\/v2\/cli\/env\/blobs\/uploads\//);
    // deletes enabled from the env
    assert.equal((await c.fetch(`/v2/cli/env/blobs/${digest}`, { method: 'DELETE' })).status, 202);
    await new Promise((r) => setTimeout(r, 200));
    // `storage.cache.blobdescriptor: inmemory` is what Berth does: accepted without a warning
    assert.doesNotMatch(p.output(), /"level":40[^\n]*storage\.cache/);
    assert.match(p.output(), /"level":40[^\n]*health/);
    // access log line per request with method, path, status, bytes, duration, request id
    assert.match(p.output(), /"requestId":"[0-9a-f]+","method":"DELETE","path":"\/v2\/cli\/env\/blobs\/sha256:[0-9a-f]+","status":202,"bytes":0,"durationMs":[0-9.]+/);
  } finally {
    await p.stop();
  }
});

test('log.accesslog.disabled silences the access log', async () => {
  const p = await startProcess({ env: { REGISTRY_LOG_ACCESSLOG_DISABLED: 'true' } });
  try {
    await fetch(`${p.url}/v2/`);
    await new Promise((r) => setTimeout(r, 200));
    assert.doesNotMatch(p.output(), /"msg":"request"/);
  } finally {
    await p.stop();
  }
});

test('SIGTERM: stops accepting, finishes the in-flight upload, then exits 0', async () => {
  const p = await startProcess();
  const c = new Client(p.url);
  const loc = await c.startUpload('cli/drain');
  const data = random(4 * 1024 * 1024);
  const answered = new Promise<number>((resolve, reject) => {
    const req = request(p.url + loc, { method: 'PATCH', headers: { 'Content-Length': String(data.length) } }, (res) => {
      res.resume();
      resolve(res.statusCode!);
    });
    req.on('error', reject);
    // half now, half after the signal
    req.write(data.subarray(0, data.length / 2));
    setTimeout(() => {
      p.kill('SIGTERM');
      setTimeout(() => req.end(data.subarray(data.length / 2)), 300);
    }, 200);
  });
  assert.equal(await answered, 202);
  assert.equal(await p.exited, 0);
  assert.match(p.output(), /"msg":"shutting down"/);
  // the bytes of the finished request are all held: a restarted server completes the upload
  const again = await startProcess({ root: p.root });
  try {
    const c2 = new Client(again.url);
    const st = await c2.fetch(loc);
    assert.equal(st.headers.get('range'), `0-${data.length - 1}`);
    const done = await c2.fetch(Client.withParam(loc, `digest=${sha256(data)}`), { method: 'PUT' });
    assert.equal(done.status, 201);
  } finally {
    await again.stop();
    await p.stop();
  }
});

test('a TLS ClientHello on the plain-HTTP port is answered at once and the server keeps serving', async () => {
  const p = await startProcess();
  try {
    const started = Date.now();
    const outcome = await new Promise<string>((resolve) => {
      const s = connect({ host: '127.0.0.1', port: p.port, rejectUnauthorized: false });
      s.on('secureConnect', () => resolve('handshake'));
      s.on('error', (e) => resolve(`error: ${e.message}`));
      s.on('close', () => resolve('closed'));
    });
    assert.notEqual(outcome, 'handshake');
    assert.ok(Date.now() - started < 2000, `answered in ${Date.now() - started} ms`);
    const res = await fetch(`${p.url}/v2/`, { headers: { Connection: 'close' } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('docker-distribution-api-version'), 'registry/2.0');
  } finally {
    await p.stop();
  }
});

test('purge-uploads removes stale sessions only', async () => {
  const p = await startProcess({ root: tempDir() });
  const c = new Client(p.url);
  const loc = await c.startUpload('cli/purge');
  // A session holds storage once bytes arrive: one that never did has nothing to purge.
  await c.startUpload('cli/purge');
  assert.equal((await c.fetch(loc, { method: 'PATCH', body: Buffer.from('some bytes') })).status, 202);
  await p.stop();
  const env = { REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: p.root };
  const dry = berth(['purge-uploads', '--age', '1h'], env);
  assert.equal(dry.status, 0, dry.stderr);
  assert.match(dry.stdout, /^0 upload\(s\) purged/m);
  const now = berth(['purge-uploads', '--age', '0s', '--dry-run'], env);
  assert.match(now.stdout, /would remove cli\/purge /);
  const real = berth(['purge-uploads', '--age', '0s'], env);
  assert.match(real.stdout, /^1 upload\(s\) purged/m);
  const uuid = loc.split('/uploads/')[1]!.split('?')[0]!;
  assert.ok(!existsSync(join(p.root, 'docker/registry/v2/repositories/cli/purge/_uploads', uuid)));
  rmSync(p.root, { recursive: true, force: true });
});
