// auth.tokenserver: Berth's own /token endpoint (GET with Basic, POST with the OAuth2 password
// and refresh_token grants), the access policy (users, groups, globs, anonymous), the signing
// key generated on first start, and policy reloads.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import bcrypt from 'bcryptjs';
import { decodeJwt } from 'jose';
import { startInProcess, tempDir, type RunningBerth } from '../helpers/berth.js';
import { AuthClient, basic, burst, expect401, writeHtpasswd } from './util.js';
import { globToRegExp, Policy } from '../../src/auth/policy.js';

const POLICY = `
groups:
  team-a: [alice, bob]
access:
  - subjects: [group:team-a]
    repositories: ["team-a/**"]
    actions: [pull, push]
  - subjects: [user:alice]
    repositories: ["team-a/**"]
    actions: ["*"]
    catalog: true
  - subjects: [anonymous]
    repositories: ["public/*"]
    actions: [pull]
  - subjects: [authenticated]
    repositories: ["shared/*"]
    actions: [pull]
`;

describe('auth.tokenserver', () => {
  let berth: RunningBerth;
  let dir: string;
  const token = async (auth: string | undefined, scope: string[], extra = ''): Promise<{ status: number; body: Record<string, unknown> }> => {
    const q = new URLSearchParams({ service: 'berth-test' });
    for (const s of scope) q.append('scope', s);
    const res = await fetch(`${berth.url}/token?${q}${extra}`, { headers: auth ? { Authorization: auth } : {} });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const access = (t: unknown) => (decodeJwt(String(t)) as { access: unknown[] }).access;

  before(async () => {
    dir = tempDir('berth-tokenserver-');
    writeHtpasswd(join(dir, 'htpasswd'), { alice: 'alice-pw', bob: 'bob-pw', carol: 'carol-pw', dave: 'dave-pw' });
    writeFileSync(join(dir, 'policy.yml'), POLICY);
    berth = await startInProcess({
      storage: { delete: { enabled: true } },
      auth: {
        tokenserver: { service: 'berth-test', issuer: 'berth-test-issuer', key: join(dir, 'signing.pem'), htpasswd: join(dir, 'htpasswd'), policy: join(dir, 'policy.yml') },
        throttle: { maxfailures: 10_000 },
      },
    });
  });
  after(async () => {
    await berth.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the signing key is generated on first start, with the public key beside it', () => {
    assert.match(readFileSync(join(dir, 'signing.pem'), 'utf8'), /BEGIN PRIVATE KEY/);
    assert.match(readFileSync(join(dir, 'signing.pem.pub'), 'utf8'), /BEGIN PUBLIC KEY/);
    assert.ok(existsSync(join(dir, 'signing.pem.jwks.json')));
  });

  test('/v2/ challenges with the derived realm of /token', async () => {
    const p = await expect401(await fetch(`${berth.url}/v2/team-a/app/tags/list`), 'Bearer');
    assert.equal(p.realm, `${berth.url}/token`);
    assert.equal(p.service, 'berth-test');
    assert.equal(p.scope, 'repository:team-a/app:pull');
  });

  test('the derived realm ignores X-Forwarded-Host and X-Forwarded-Proto (a client could send them)', async () => {
    const res = await fetch(`${berth.url}/v2/`, { headers: { 'X-Forwarded-Host': 'evil.example', 'X-Forwarded-Proto': 'https' } });
    assert.equal((await expect401(res, 'Bearer')).realm, `${berth.url}/token`);
    const login = await fetch(`${berth.url}/token?service=berth-test`, { headers: { Authorization: basic('alice', 'nope'), 'X-Forwarded-Host': 'evil.example' } });
    assert.equal((await expect401(login, 'Basic')).realm, `${berth.url}/token`);
  });

  test('GET /token: policy narrows the requested scopes per user, group and glob', async () => {
    const scope = ['repository:team-a/x/y:pull,push,delete', 'repository:team-b/x:pull', 'repository:public/img:pull,push', 'registry:catalog:*'];
    const a = await token(basic('alice', 'alice-pw'), scope);
    assert.equal(a.status, 200);
    assert.equal(a.body.token, a.body.access_token);
    assert.ok(Number(a.body.expires_in) > 0 && typeof a.body.issued_at === 'string');
    assert.deepEqual(access(a.body.token), [
      { type: 'repository', name: 'team-a/x/y', actions: ['pull', 'push', 'delete'] },
      { type: 'repository', name: 'public/img', actions: ['pull'] },
      { type: 'registry', name: 'catalog', actions: ['*'] },
    ]);
    const b = await token(basic('bob', 'bob-pw'), scope);
    assert.deepEqual(access(b.body.token), [
      { type: 'repository', name: 'team-a/x/y', actions: ['pull', 'push'] },
      { type: 'repository', name: 'public/img', actions: ['pull'] },
    ]);
    const anon = await token(undefined, [...scope, 'repository:shared/x:pull']);
    assert.deepEqual(access(anon.body.token), [{ type: 'repository', name: 'public/img', actions: ['pull'] }]);
    const carol = await token(basic('carol', 'carol-pw'), ['repository:shared/x:pull', 'repository:public/a/b:pull']);
    assert.deepEqual(access(carol.body.token), [{ type: 'repository', name: 'shared/x', actions: ['pull'] }]);
  });

  test('GET /token refuses wrong passwords, unknown users and malformed headers', async () => {
    for (const h of [basic('alice', 'nope'), basic('mallory', 'alice-pw'), 'Basic !!', 'Bearer x.y.z']) {
      await expect401(await fetch(`${berth.url}/token?service=berth-test`, { headers: { Authorization: h } }), 'Basic');
    }
  });

  test('tokens work at the registry within their grants only', async () => {
    const bobT = (await token(basic('bob', 'bob-pw'), ['repository:team-a/app:pull,push,delete'])).body.token as string;
    const bob = new AuthClient(berth.url, `Bearer ${bobT}`);
    const img = await bob.pushImage('team-a/app', 'v1');
    const p = await expect401(await bob.fetch(`/v2/team-a/app/manifests/${img.digest}`, { method: 'DELETE' }), 'Bearer');
    assert.equal(p.error, 'insufficient_scope');
    const pub = (await token(undefined, ['repository:team-a/app:pull'])).body.token as string;
    await expect401(await new AuthClient(berth.url, `Bearer ${pub}`).fetch('/v2/team-a/app/manifests/v1'), 'Bearer');
  });

  test('POST /token: password grant with a refresh token, refresh grant, and the refresh token is no access token', async () => {
    const post = (form: Record<string, string>) =>
      fetch(`${berth.url}/token`, { method: 'POST', body: new URLSearchParams(form), headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
    const res = await post({ grant_type: 'password', username: 'alice', password: 'alice-pw', service: 'berth-test', client_id: 'test', access_type: 'offline', scope: 'repository:team-a/app:pull' });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { access_token: string; refresh_token: string };
    assert.ok(body.refresh_token);
    assert.deepEqual(access(body.access_token), [{ type: 'repository', name: 'team-a/app', actions: ['pull'] }]);
    const r2 = await post({ grant_type: 'refresh_token', refresh_token: body.refresh_token, service: 'berth-test', client_id: 'test', scope: 'repository:team-a/app:pull,push' });
    assert.equal(r2.status, 200);
    assert.deepEqual(access(((await r2.json()) as { access_token: string }).access_token), [{ type: 'repository', name: 'team-a/app', actions: ['pull', 'push'] }]);
    // The refresh token at the registry: wrong audience.
    const p = await expect401(await new AuthClient(berth.url, `Bearer ${body.refresh_token}`).fetch('/v2/'), 'Bearer');
    assert.equal(p.error, 'invalid_token');
    // An access token as a refresh token, a wrong password, an unknown grant.
    assert.equal((await post({ grant_type: 'refresh_token', refresh_token: body.access_token, service: 'berth-test' })).status, 401);
    assert.equal((await post({ grant_type: 'password', username: 'alice', password: 'x', service: 'berth-test' })).status, 401);
    assert.equal((await post({ grant_type: 'client_credentials', service: 'berth-test' })).status, 400);
  });

  test('a new password ends the refresh tokens issued before it; other changes to the file do not', async () => {
    const post = (form: Record<string, string>) =>
      fetch(`${berth.url}/token`, { method: 'POST', body: new URLSearchParams({ service: 'berth-test', ...form }), headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
    const login = async (password: string) => (await post({ grant_type: 'password', username: 'dave', password, access_type: 'offline' })).status;
    const res = await post({ grant_type: 'password', username: 'dave', password: 'dave-pw', access_type: 'offline' });
    const refresh = ((await res.json()) as { refresh_token: string }).refresh_token;
    const file = join(dir, 'htpasswd');
    const waitFor = async (what: string, done: () => Promise<boolean>) => {
      const deadline = Date.now() + 10_000;
      while (!(await done())) {
        assert.ok(Date.now() < deadline, `${what} not reloaded in 10 s`);
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    // Another user added: dave's entry is unchanged, so is his refresh token.
    writeFileSync(file, readFileSync(file, 'utf8') + `erin:${bcrypt.hashSync('erin-pw', 4)}\n`);
    await waitFor('erin', async () => (await post({ grant_type: 'password', username: 'erin', password: 'erin-pw' })).status === 200);
    assert.equal((await post({ grant_type: 'refresh_token', refresh_token: refresh })).status, 200);
    // Dave's new password: the old refresh token is refused.
    writeFileSync(file, readFileSync(file, 'utf8').replace(/^dave:.*$/m, `dave:${bcrypt.hashSync('dave-new-pw', 4)}`));
    await waitFor('dave', async () => (await login('dave-new-pw')) === 200);
    assert.equal((await post({ grant_type: 'refresh_token', refresh_token: refresh })).status, 401);
  });

  test('policy changes apply without restart', async () => {
    const scope = ['repository:team-b/app:pull'];
    assert.deepEqual(access((await token(basic('carol', 'carol-pw'), scope)).body.token), []);
    writeFileSync(join(dir, 'policy.yml'), POLICY + '  - subjects: [user:carol]\n    repositories: ["team-b/**"]\n    actions: [pull]\n');
    const deadline = Date.now() + 10_000;
    for (;;) {
      const got = access((await token(basic('carol', 'carol-pw'), scope)).body.token);
      if (got.length) break;
      assert.ok(Date.now() < deadline, 'policy not reloaded in 10 s');
      await new Promise((r) => setTimeout(r, 200));
    }
    // An invalid policy is not taken: the previous one stays.
    writeFileSync(join(dir, 'policy.yml'), 'access: [{subjects: [nobody]}]\n');
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal(access((await token(basic('carol', 'carol-pw'), scope)).body.token).length, 1);
  });
});

describe('access policy', () => {
  test('globs: * and ? within a segment, ** across segments', () => {
    assert.ok(globToRegExp('team-a/**').test('team-a/x/y'));
    assert.ok(!globToRegExp('team-a/**').test('team-ab/x'));
    assert.ok(globToRegExp('team-a/*').test('team-a/x'));
    assert.ok(!globToRegExp('team-a/*').test('team-a/x/y'));
    assert.ok(globToRegExp('a.b/?').test('a.b/c'));
    assert.ok(!globToRegExp('a.b/?').test('axb/c'));
  });

  test('invalid policies are refused with the file and key named', () => {
    assert.throws(() => Policy.parse('access: [{subjects: [bob]}]', 'p.yml'), /p\.yml: access\.0\.subjects\.0/);
    assert.throws(() => Policy.parse('access: [{subjects: [anonymous], actions: [write]}]', 'p.yml'), /actions/);
    assert.throws(() => Policy.parse('nope: 1', 'p.yml'), /p\.yml/);
  });
});

describe('auth.tokenserver throttling', () => {
  let berth: RunningBerth;
  let dir: string;
  const MAX = 5;
  const get = (auth: string) => fetch(`${berth.url}/token?service=berth-test`, { headers: { Authorization: auth } });
  const post = (form: Record<string, string>) =>
    fetch(`${berth.url}/token`, { method: 'POST', body: new URLSearchParams({ service: 'berth-test', ...form }), headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });

  before(async () => {
    dir = tempDir('berth-tokenserver-');
    // Cost 10 (~70 ms here): the checks of parallel requests overlap.
    writeFileSync(join(dir, 'htpasswd'), `alice:${bcrypt.hashSync('alice-pw', 10)}\n`);
    writeFileSync(join(dir, 'policy.yml'), POLICY);
    berth = await startInProcess({
      auth: {
        tokenserver: { service: 'berth-test', key: join(dir, 'signing.pem'), htpasswd: join(dir, 'htpasswd'), policy: join(dir, 'policy.yml') },
        throttle: { maxfailures: MAX, window: '1m', lockout: '1m' },
      },
    });
  });
  after(async () => {
    await berth.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('malformed headers, bad refresh tokens and bad Bearer tokens do not count toward the lockout', async () => {
    const ok = await post({ grant_type: 'password', username: 'alice', password: 'alice-pw', access_type: 'offline' });
    const { access_token: accessToken } = (await ok.json()) as { access_token: string };
    for (let i = 0; i < 3 * MAX; i++) {
      await expect401(await get('Basic !!'), 'Basic');
      assert.equal((await post({ grant_type: 'refresh_token', refresh_token: accessToken })).status, 401);
      assert.equal((await post({ grant_type: 'refresh_token', refresh_token: 'x.y.z' })).status, 401);
      await expect401(await fetch(`${berth.url}/v2/`, { headers: { Authorization: 'Bearer x.y.z' } }), 'Bearer');
    }
    assert.equal((await get(basic('alice', 'alice-pw'))).status, 200);
  });

  test('a burst of parallel wrong passwords gets no more checks than maxfailures, then the lockout', async () => {
    const answers = await burst(berth.url, '/token?service=berth-test', (i) => basic('alice', `guess-${i}`), 40);
    const checked = answers.filter((a) => a.status === 401).length;
    assert.ok(checked <= MAX, `${checked} passwords checked in the burst, limit ${MAX}`);
    assert.ok(answers.every((a) => a.status === 401 || (a.status === 429 && Number(a.retryAfter) > 0)), JSON.stringify(answers));
    // Locked out now: POST's password grant too, even with the right password.
    assert.equal((await post({ grant_type: 'password', username: 'alice', password: 'alice-pw' })).status, 429);
  });
});
