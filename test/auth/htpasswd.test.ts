// auth.htpasswd against a live server: the Basic challenge on every route, the refusals of the
// security list (each without side effects), $2y$/$2a$/$2b$ entries, throttling, and start-up
// errors for a missing or malformed file.
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { buildConfig, ConfigError } from '../../src/config/config.js';
import { createApp } from '../../src/cli/app.js';
import pino from 'pino';
import { random, sha256 } from '../helpers/client.js';
import { startInProcess, tempDir, type RunningBerth } from '../helpers/berth.js';
import { AuthClient, basic, expect401, writeHtpasswd } from './util.js';

const REALM = 'Berth test realm';

describe('auth.htpasswd', () => {
  let berth: RunningBerth;
  let dir: string;
  let ok: AuthClient;
  before(async () => {
    dir = tempDir('berth-htpasswd-');
    writeHtpasswd(join(dir, 'htpasswd'), { alice: 'correct horse', bob: 'b0b' });
    berth = await startInProcess({ auth: { htpasswd: { realm: REALM, path: join(dir, 'htpasswd') }, throttle: { maxfailures: 10_000 } }, storage: { delete: { enabled: true } } });
    ok = new AuthClient(berth.url, basic('alice', 'correct horse'));
  });
  after(async () => {
    await berth.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('/v2/ without credentials → 401 UNAUTHORIZED, JSON body, Basic challenge with the realm', async () => {
    for (const method of ['GET', 'HEAD']) {
      const params = await expect401(await new AuthClient(berth.url, undefined).fetch('/v2/', { method }), 'Basic');
      assert.equal(params.realm, REALM);
    }
  });

  test('valid credentials: /v2/ 200, push, pull, catalog, delete', async () => {
    assert.equal((await ok.fetch('/v2/')).status, 200);
    const img = await ok.pushImage('team/app', 'v1');
    const got = await ok.fetch(`/v2/team/app/manifests/v1`, { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } });
    assert.equal(got.status, 200);
    assert.equal(sha256(Buffer.from(await got.arrayBuffer())), img.digest);
    const cat = await ok.fetch('/v2/_catalog');
    assert.deepEqual(((await cat.json()) as { repositories: string[] }).repositories, ['team/app']);
    // $2y$ (htpasswd -B) entries work: the file above uses that prefix.
    assert.equal((await new AuthClient(berth.url, basic('bob', 'b0b')).fetch('/v2/')).status, 200);
  });

  test('every route needs credentials; wrong password and unknown user are refused, nothing is written', async () => {
    const pushed = await ok.pushImage('team/app', 'keep');
    const data = random(100);
    const d = sha256(data);
    const routes: [string, string][] = [
      ['GET', '/v2/_catalog'],
      ['GET', '/v2/team/app/tags/list'],
      ['GET', '/v2/team/app/manifests/keep'],
      ['HEAD', `/v2/team/app/blobs/${pushed.layers[0]}`],
      ['GET', `/v2/team/app/referrers/${pushed.digest}`],
      ['POST', `/v2/team/other/blobs/uploads/?digest=${d}`],
      ['PUT', '/v2/team/other/manifests/v1'],
      ['DELETE', `/v2/team/app/manifests/${pushed.digest}`],
      ['DELETE', `/v2/team/app/blobs/${pushed.layers[0]}`],
    ];
    for (const auth of [undefined, basic('alice', 'wrong'), basic('mallory', 'correct horse'), basic('alice', '')]) {
      const c = new AuthClient(berth.url, auth);
      for (const [method, path] of routes) {
        const body = method === 'POST' || method === 'PUT' ? data : undefined;
        try {
          await expect401(await c.fetch(path, { method, body }), 'Basic');
        } catch (err) {
          (err as Error).message = `${method} ${path} with ${auth}: ${(err as Error).message}`;
          throw err;
        }
      }
    }
    // No side effects: the blob was not stored, the manifest and its blobs are still there.
    assert.equal((await ok.fetch(`/v2/team/other/blobs/${d}`, { method: 'HEAD' })).status, 404);
    assert.equal((await ok.fetch(`/v2/team/app/manifests/${pushed.digest}`, { method: 'HEAD' })).status, 200);
    assert.equal((await ok.fetch(`/v2/team/app/blobs/${pushed.layers[0]}`, { method: 'HEAD' })).status, 200);
    const cat = (await (await ok.fetch('/v2/_catalog')).json()) as { repositories: string[] };
    assert.ok(!cat.repositories.includes('team/other'));
  });

  test('malformed Authorization headers are refused with 401', async () => {
    const headers = [
      'Basic',
      'Basic ',
      'Basic !!!notbase64!!!',
      'Basic ' + Buffer.from('no-colon').toString('base64'),
      'Basic ' + Buffer.from(':emptyuser').toString('base64'),
      'Basic YWxpY2U6Y29ycmVjdCBob3JzZQ', // valid credentials, but the padding is cut off
      'Bearer abc.def.ghi',
      'Digest username="alice"',
      'alice:correct horse',
      basic('alice', 'correct horse') + ' trailing',
    ];
    for (const h of headers) {
      await expect401(await new AuthClient(berth.url, h).fetch('/v2/'), 'Basic').catch((err: Error) => {
        err.message = `${JSON.stringify(h)}: ${err.message}`;
        throw err;
      });
    }
  });

  test('a cross-repository mount links the blob; an automatic mount (no from) uploads instead', async () => {
    const img = await ok.pushImage('mount/src', 'v1');
    const layer = img.layers[0]!;
    const m = await ok.fetch(`/v2/mount/dst/blobs/uploads/?mount=${layer}&from=mount/src`, { method: 'POST' });
    assert.equal(m.status, 201);
    // Without `from` the registry would search every repository: off under auth.
    const auto = await ok.fetch(`/v2/mount/auto/blobs/uploads/?mount=${layer}`, { method: 'POST' });
    assert.equal(auto.status, 202);
    assert.equal((await ok.fetch(`/v2/mount/auto/blobs/${layer}`, { method: 'HEAD' })).status, 404);
  });

  test('bcrypt prefixes $2a$ and $2b$ are accepted too', async () => {
    for (const prefix of ['$2a$', '$2b$'] as const) {
      const d = tempDir('berth-htpasswd-');
      writeHtpasswd(join(d, 'htpasswd'), { carol: 'pw' }, prefix);
      const b = await startInProcess({ auth: { htpasswd: { realm: 'r', path: join(d, 'htpasswd') } } });
      try {
        assert.equal((await new AuthClient(b.url, basic('carol', 'pw')).fetch('/v2/')).status, 200, prefix);
        await expect401(await new AuthClient(b.url, basic('carol', 'nope')).fetch('/v2/'), 'Basic');
      } finally {
        await b.stop();
        rmSync(d, { recursive: true, force: true });
      }
    }
  });
});

describe('auth.htpasswd throttling', () => {
  test('repeated failures from one client → 429 TOOMANYREQUESTS with Retry-After, even for the right password', async () => {
    const dir = tempDir('berth-htpasswd-');
    writeHtpasswd(join(dir, 'htpasswd'), { alice: 'pw' });
    const berth = await startInProcess({ auth: { htpasswd: { realm: 'r', path: join(dir, 'htpasswd') }, throttle: { maxfailures: 5, window: '1m', lockout: '30s' } } });
    try {
      const bad = new AuthClient(berth.url, basic('alice', 'guess'));
      let first429: Response | undefined;
      for (let i = 0; i < 6 && !first429; i++) {
        const res = await bad.fetch('/v2/');
        if (res.status === 429) first429 = res;
        else await expect401(res, 'Basic');
      }
      assert.ok(first429, 'never throttled');
      const body = (await first429.json()) as { errors: { code: string }[] };
      assert.equal(body.errors[0]!.code, 'TOOMANYREQUESTS');
      assert.ok(Number(first429.headers.get('retry-after')) > 0);
      // While locked out, even the right password is not checked.
      const good = await new AuthClient(berth.url, basic('alice', 'pw')).fetch('/v2/');
      assert.equal(good.status, 429);
    } finally {
      await berth.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('auth.htpasswd start-up errors', () => {
  const app = (path: string) => createApp(buildConfig({ storage: { inmemory: null }, auth: { htpasswd: { realm: 'r', path } } }), pino({ level: 'silent' }));

  test('a missing file is a ConfigError naming it', () => {
    assert.throws(() => app('/nonexistent/htpasswd'), (e: Error) => e instanceof ConfigError && /htpasswd/.test(e.message) && /nonexistent/.test(e.message));
  });

  test('malformed entries are a ConfigError naming the line', () => {
    const dir = tempDir('berth-htpasswd-');
    try {
      for (const text of ['alice\n', 'alice:plaintext\n', 'alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n', 'alice:$apr1$abc$def\n', ':$2y$04$' + 'a'.repeat(53) + '\n']) {
        writeFileSync(join(dir, 'htpasswd'), text);
        assert.throws(() => app(join(dir, 'htpasswd')), (e: Error) => e instanceof ConfigError && /htpasswd:1/.test(e.message), text);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('auth with no mode, or with two modes, is refused', () => {
    assert.throws(() => buildConfig({ auth: {} }), /config: auth: configure one of/);
    assert.throws(() => buildConfig({ auth: { htpasswd: { realm: 'r', path: 'p' }, token: { realm: 'http://x/t', service: 's', issuer: 'i', jwks: 'j' } } }), /only one mode/);
    assert.throws(() => buildConfig({ auth: { htpasswd: { realm: 'r', path: 'p', extra: 1 } } }), /config: auth\.htpasswd/);
  });
});
