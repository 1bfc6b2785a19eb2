// auth.htpasswd against a live server: the Basic challenge on every route, the refusals of the
// security list (each without side effects), $2y$/$2a$/$2b$ entries, throttling, and start-up
// errors for a missing or malformed file.
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import bcrypt from 'bcryptjs';
import type { Logger } from 'pino';
import { buildConfig, ConfigError } from '../../src/config/config.js';
import { parseHtpasswd, Users } from '../../src/auth/htpasswd.js';
import { createApp } from '../../src/cli/app.js';
import pino from 'pino';
import { random, sha256 } from '../helpers/client.js';
import { startInProcess, tempDir, type RunningBerth } from '../helpers/berth.js';
import { AuthClient, basic, burst, expect401, writeHtpasswd } from './util.js';

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

describe('auth.htpasswd throttling of bursts and malformed headers', () => {
  const MAX = 5;
  let berth: RunningBerth;
  let dir: string;
  before(async () => {
    dir = tempDir('berth-htpasswd-');
    // Cost 10 (~70 ms here): the checks of parallel requests overlap.
    writeFileSync(join(dir, 'htpasswd'), `alice:${bcrypt.hashSync('pw', 10)}\n`);
    berth = await startInProcess({ auth: { htpasswd: { realm: 'r', path: join(dir, 'htpasswd') }, throttle: { maxfailures: MAX, window: '1m', lockout: '1m' } } });
  });
  after(async () => {
    await berth.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('malformed Authorization headers check no password and do not count toward the lockout', async () => {
    for (let i = 0; i < 3 * MAX; i++) {
      for (const h of ['Basic !!', 'Basic ' + Buffer.from('no-colon').toString('base64'), 'Bearer x.y.z']) {
        await expect401(await new AuthClient(berth.url, h).fetch('/v2/'), 'Basic');
      }
    }
    assert.equal((await new AuthClient(berth.url, basic('alice', 'pw')).fetch('/v2/')).status, 200);
  });

  test('a burst of parallel wrong passwords gets no more checks than maxfailures', async () => {
    const answers = await burst(berth.url, '/v2/', (i) => basic('alice', `guess-${i}`), 40);
    const checked = answers.filter((a) => a.status === 401).length;
    assert.ok(checked <= MAX, `${checked} passwords checked in the burst, limit ${MAX}`);
    assert.ok(answers.every((a) => a.status === 401 || (a.status === 429 && Number(a.retryAfter) > 0)), JSON.stringify(answers));
    // Locked out for further guesses; credentials verified recently need no check and still work.
    assert.equal((await new AuthClient(berth.url, basic('alice', 'another-guess')).fetch('/v2/')).status, 429);
    assert.equal((await new AuthClient(berth.url, basic('alice', 'pw')).fetch('/v2/')).status, 200);
  });
});

describe('auth.htpasswd users', () => {
  test('unknown users are checked against a dummy of the highest cost in the file, with a warning when costs differ', () => {
    const dir = tempDir('berth-htpasswd-');
    try {
      const file = join(dir, 'htpasswd');
      writeFileSync(file, `low:${bcrypt.hashSync('a', 4)}\nhigh:${bcrypt.hashSync('b', 9)}\nmid:${bcrypt.hashSync('c', 5)}\n`);
      const warnings: string[] = [];
      const log = { warn: (_: unknown, msg: string) => warnings.push(msg) } as unknown as Logger;
      const users = new Users(file, log);
      // The dummy is private: its cost is what makes unknown users as slow as the slowest real one.
      assert.equal(bcrypt.getRounds(users['dummy']), 9);
      assert.equal(warnings.length, 1);
      assert.match(warnings[0]!, /different bcrypt costs/);
      writeFileSync(file, `only:${bcrypt.hashSync('a', 6)}\n`);
      users.reload();
      assert.equal(bcrypt.getRounds(users['dummy']), 6);
      assert.equal(warnings.length, 1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a compare that throws is a failed check, not an error', async () => {
    const dir = tempDir('berth-htpasswd-');
    const compare = bcrypt.compare;
    try {
      writeHtpasswd(join(dir, 'htpasswd'), { alice: 'pw' });
      const users = new Users(join(dir, 'htpasswd'));
      bcrypt.compare = (() => Promise.reject(new Error('Illegal number of rounds (4-31): 3'))) as typeof bcrypt.compare;
      assert.equal(await users.verify('alice', 'pw'), false);
      assert.equal(await users.verify('nobody', 'pw'), false);
    } finally {
      bcrypt.compare = compare;
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('bcrypt entries: costs 04-31 are accepted, others refused naming the file and line', () => {
    const salted = 'a'.repeat(53);
    const ok = [
      `x:$2y$04$${salted}`,
      `x:$2a$10$${salted}`,
      `x:$2b$31$${salted}`,
      // htpasswd -nbB -C 5 (Apache 2.4.71) and glibc crypt(3) output.
      'testuser:$2y$05$GVp.qRyA9uOJqtIuX/or5e9l.rVi/UvyFusWJSs.dzj8Oz6bQW7RO',
      'x:$2b$12$zgoUiGbISyMs0w1fkm8VNujPYlnssG8kMA9Gi0ouvmArcjaikc1P.',
    ];
    for (const line of ok) assert.equal(parseHtpasswd(`${line}\n`, 'f').size, 1, line);
    for (const cost of ['00', '03', '32', '99']) {
      assert.throws(() => parseHtpasswd(`# comment\nx:$2y$${cost}$${salted}\n`, 'the-file'), (e: Error) => e instanceof ConfigError && /the-file:2/.test(e.message), cost);
    }
  });
});

describe('auth.htpasswd start-up errors', () => {
  const app = (path: string) => createApp(buildConfig({ storage: { inmemory: null }, auth: { htpasswd: { realm: 'r', path } } }), pino({ level: 'silent' }));

  test('a missing file is a ConfigError naming it', async () => {
    await assert.rejects(app('/nonexistent/htpasswd'), (e: Error) => e instanceof ConfigError && /htpasswd/.test(e.message) && /nonexistent/.test(e.message));
  });

  test('malformed entries are a ConfigError naming the line', async () => {
    const dir = tempDir('berth-htpasswd-');
    try {
      for (const text of ['alice\n', 'alice:plaintext\n', 'alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n', 'alice:$apr1$abc$def\n', ':$2y$04$' + 'a'.repeat(53) + '\n']) {
        writeFileSync(join(dir, 'htpasswd'), text);
        await assert.rejects(app(join(dir, 'htpasswd')), (e: Error) => e instanceof ConfigError && /htpasswd:1/.test(e.message), text);
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
