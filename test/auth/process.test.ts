// `berth serve` with auth and TLS as a real process: no credential in any log line, start-up
// errors for missing files, HTTPS with a test CA, mutual TLS, and SIGHUP reloading the policy.
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readFileSync } from 'node:fs';
import { startProcess, tempDir, type BerthProcess } from '../helpers/berth.js';
import { run } from '../helpers/exec.js';
import { CLI } from '../helpers/berth.js';
import { basic, makeCa, writeHtpasswd, type TestCa } from './util.js';

function get(url: string, opts: https.RequestOptions & { headers?: Record<string, string> }): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { ...opts, method: 'GET' }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('berth serve with auth', () => {
  let dir: string;
  before(() => {
    dir = tempDir('berth-auth-proc-');
    writeHtpasswd(join(dir, 'htpasswd'), { alice: 'S3cret-Pa55word' });
    writeFileSync(join(dir, 'policy.yml'), 'access:\n  - subjects: [user:alice]\n    repositories: ["a/**"]\n    actions: [pull]\n');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('no password, token or Authorization header appears in any log line (debug level)', async () => {
    const berth = await startProcess({
      config: `log:\n  level: debug\nauth:\n  tokenserver:\n    key: ${join(dir, 'k.pem')}\n    htpasswd: ${join(dir, 'htpasswd')}\n    policy: ${join(dir, 'policy.yml')}\n`,
    });
    try {
      const auth = basic('alice', 'S3cret-Pa55word');
      const t = await fetch(`${berth.url}/token?service=berth&scope=repository:a/b:pull`, { headers: { Authorization: auth } });
      const { token } = (await t.json()) as { token: string };
      const form = new URLSearchParams({ grant_type: 'password', username: 'alice', password: 'S3cret-Pa55word', service: 'berth', access_type: 'offline' });
      const p = await fetch(`${berth.url}/token`, { method: 'POST', body: form, headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
      const { refresh_token } = (await p.json()) as { refresh_token: string };
      await fetch(`${berth.url}/v2/a/b/tags/list`, { headers: { Authorization: `Bearer ${token}` } });
      await fetch(`${berth.url}/v2/a/b/tags/list`, { headers: { Authorization: `Bearer ${token}x` } });
      await fetch(`${berth.url}/token?service=berth`, { headers: { Authorization: basic('alice', 'S3cret-Pa55word-wrong') } });
      // SIGHUP reloads the policy (logged), so this also waits for the log to be written.
      berth.proc.kill('SIGHUP');
      const deadline = Date.now() + 5000;
      while (!/reloaded users and access policy/.test(berth.output()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      const out = berth.output();
      assert.match(out, /reloaded users and access policy/);
      assert.match(out, /"msg":"request"/);
      for (const secret of ['S3cret-Pa55word', auth.slice(6), token, token.split('.')[2]!, refresh_token, refresh_token.split('.')[2]!]) {
        assert.ok(!out.includes(secret), `log contains a secret: ${secret.slice(0, 12)}…`);
      }
      assert.doesNotMatch(out, /authorization/i);
    } finally {
      await berth.stop();
    }
  });

  test('a missing htpasswd file or policy stops start-up with one clear line', async () => {
    for (const [cfg, re] of [
      [`auth:\n  htpasswd:\n    realm: r\n    path: ${join(dir, 'missing')}\n`, /^berth: config: cannot read htpasswd file .*missing/],
      [`auth:\n  tokenserver:\n    key: ${join(dir, 'k2.pem')}\n    htpasswd: ${join(dir, 'htpasswd')}\n    policy: ${join(dir, 'nope.yml')}\n`, /^berth: config: cannot read access policy .*nope\.yml/],
      [`http:\n  tls:\n    certificate: ${join(dir, 'no.crt')}\n    key: ${join(dir, 'no.key')}\n`, /^berth: config: http\.tls\.certificate: cannot read/],
    ] as const) {
      const file = join(dir, 'bad.yml');
      writeFileSync(file, cfg);
      const r = await run(process.execPath, [CLI, 'serve', file], { allowFail: true, timeoutMs: 15_000, env: { REGISTRY_HTTP_ADDR: '127.0.0.1:0', REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: dir } });
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stderr, re);
    }
  });
});

describe('berth serve with http.tls', () => {
  let dir: string;
  let ca: TestCa;
  let berth: BerthProcess | undefined;
  before(() => {
    dir = tempDir('berth-tls-');
    ca = makeCa(dir);
  });
  after(async () => {
    await berth?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('HTTPS with a certificate of a test CA; clients that do not trust the CA fail', async () => {
    const server = ca.issue('server');
    berth = await startProcess({ config: `http:\n  tls:\n    certificate: ${server.cert}\n    key: ${server.key}\n    minimumtls: tls1.2\n` });
    const url = `https://127.0.0.1:${berth.port}/v2/`;
    const ok = await get(url, { ca: readFileSync(ca.caCert) });
    assert.equal(ok.status, 200);
    await assert.rejects(get(url, {}), /self-signed|unable to verify|certificate/i);
    await assert.rejects(get(url, { ca: readFileSync(ca.caCert), maxVersion: 'TLSv1.1', minVersion: 'TLSv1' }), /protocol|version|alert/i);
    await berth.stop();
    berth = undefined;
  });

  test('mutual TLS: clientcas requires a client certificate of that CA', async () => {
    const server = ca.issue('server2');
    const client = ca.issue('client', { client: true });
    const other = makeCa(dir, 'other').issue('intruder', { client: true });
    berth = await startProcess({ config: `http:\n  tls:\n    certificate: ${server.cert}\n    key: ${server.key}\n    clientcas:\n      - ${ca.caCert}\n` });
    const url = `https://127.0.0.1:${berth.port}/v2/`;
    const caPem = readFileSync(ca.caCert);
    assert.equal((await get(url, { ca: caPem, cert: readFileSync(client.cert), key: readFileSync(client.key) })).status, 200);
    await assert.rejects(get(url, { ca: caPem }));
    await assert.rejects(get(url, { ca: caPem, cert: readFileSync(other.cert), key: readFileSync(other.key) }));
  });
});
