// auth.token against a live server: tokens from an external issuer, verified against a JWKS
// and a root certificate bundle. Every refusal of the security list is a test here: each
// would pass a request through if its check were removed.
import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey, createSign } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SignJWT } from 'jose';
import { random, sha256 } from '../helpers/client.js';
import { startInProcess, tempDir, type RunningBerth } from '../helpers/berth.js';
import { AuthClient, b64url, certificate, expect401, makeCa, mint, newKey, now, pemToDerBase64, writeJwks, type Claims, type TestKey } from './util.js';
import { libtrustKid, TokenVerifier } from '../../src/auth/token.js';

const REALM = 'https://auth.example.test/token';
const all = (name: string, actions = ['pull', 'push', 'delete', '*']) => [{ type: 'repository', name, actions }];

describe('auth.token', () => {
  let berth: RunningBerth;
  let dir: string;
  const keys = { rs: newKey('RS256'), es: newKey('ES256'), ed: newKey('EdDSA') };
  let untrusted: TestKey;
  let ca: ReturnType<typeof makeCa>;
  let leaf: { cert: string; key: string };
  const bearer = (t: string) => new AuthClient(berth.url, `Bearer ${t}`);
  const tokenFor = (claims: Claims, key: TestKey = keys.es) => mint(key, claims);

  before(async () => {
    dir = tempDir('berth-token-');
    writeJwks(join(dir, 'jwks.json'), Object.values(keys));
    untrusted = newKey('ES256');
    ca = makeCa(dir);
    leaf = ca.issue('token-signer');
    berth = await startInProcess({
      storage: { delete: { enabled: true } },
      auth: {
        token: { realm: REALM, service: 'test-registry', issuer: 'test-issuer', jwks: join(dir, 'jwks.json'), rootcertbundle: ca.caCert },
        throttle: { maxfailures: 10_000 },
      },
    });
  });
  after(async () => {
    await berth.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('no token → 401 with the Bearer challenge naming exactly the scope the request needs', async () => {
    const anon = new AuthClient(berth.url, undefined);
    const cases: [string, string, string | undefined][] = [
      ['GET', '/v2/', undefined],
      ['GET', '/v2/a/b/manifests/v1', 'repository:a/b:pull'],
      ['HEAD', `/v2/a/blobs/${sha256('x')}`, 'repository:a:pull'],
      ['POST', '/v2/a/blobs/uploads/', 'repository:a:pull,push'],
      ['PUT', '/v2/a/manifests/v1', 'repository:a:pull,push'],
      ['DELETE', '/v2/a/manifests/v1', 'repository:a:delete'],
      ['GET', '/v2/_catalog', 'registry:catalog:*'],
      ['POST', `/v2/a/blobs/uploads/?mount=${sha256('x')}&from=b`, 'repository:a:pull,push repository:b:pull'],
    ];
    for (const [method, path, scope] of cases) {
      const p = await expect401(await anon.fetch(path, { method }), 'Bearer');
      assert.equal(p.realm, REALM);
      assert.equal(p.service, 'test-registry');
      assert.equal(p.scope, scope, `${method} ${path}`);
      assert.equal(p.error, undefined);
    }
  });

  test('valid tokens (RS256, ES256, EdDSA by kid; x5c chain to the bundle) push, pull and delete', async () => {
    for (const [i, key] of Object.values(keys).entries()) {
      const c = bearer(await tokenFor({ access: all(`t/k${i}`) }, key));
      assert.equal((await c.fetch('/v2/')).status, 200, key.alg);
      const img = await c.pushImage(`t/k${i}`, 'v1');
      assert.equal((await c.fetch(`/v2/t/k${i}/manifests/${img.digest}`, { method: 'HEAD' })).status, 200);
      assert.equal((await c.fetch(`/v2/t/k${i}/manifests/${img.digest}`, { method: 'DELETE' })).status, 202);
    }
    // Distribution's libtrust key ids name keys of the bundle.
    const leafKey = { privateKey: createPrivateKey(readFileSync(leaf.key)), publicKey: null!, alg: 'ES256' as const, kid: '' };
    const x5c = await mint(leafKey, { access: all('t/x5c') }, { header: { kid: undefined, x5c: [pemToDerBase64(leaf.cert)] } });
    assert.equal((await bearer(x5c).fetch('/v2/t/x5c/tags/list')).status, 404); // authorized; repository unknown
    const caKid = libtrustKid(createPublicKey(createPrivateKey(readFileSync(ca.caKey))));
    const byCaKid = await mint({ ...leafKey, privateKey: createPrivateKey(readFileSync(ca.caKey)), kid: caKid }, { access: all('t/x5c') });
    assert.equal((await bearer(byCaKid).fetch('/v2/t/x5c/tags/list')).status, 404);
  });

  const refusedTokens: [string, () => Promise<string>][] = [
    ['forged signature', async () => {
      const t = await tokenFor({ access: all('t/r') });
      const [h, p, s] = t.split('.');
      const sig = Buffer.from(s!, 'base64url');
      sig[5] ^= 0xff;
      return `${h}.${p}.${sig.toString('base64url')}`;
    }],
    ['payload changed after signing', async () => {
      const t = await tokenFor({ access: all('t/other') });
      const [h, , s] = t.split('.');
      return `${h}.${b64url({ iss: 'test-issuer', aud: 'test-registry', sub: 'alice', exp: now() + 300, access: all('t/r') })}.${s}`;
    }],
    ['alg none', async () => `${b64url({ alg: 'none', typ: 'JWT', kid: keys.es.kid })}.${b64url({ iss: 'test-issuer', aud: 'test-registry', exp: now() + 300, access: all('t/r') })}.`],
    ['HS256 signed with the public key (key confusion)', async () => {
      const secret = Buffer.from(keys.rs.publicKey.export({ type: 'spki', format: 'pem' }));
      return new SignJWT({ iss: 'test-issuer', aud: 'test-registry', exp: now() + 300, access: all('t/r') })
        .setProtectedHeader({ alg: 'HS256', kid: keys.rs.kid })
        .sign(secret);
    }],
    ['RS512 (an algorithm not allowed)', async () => {
      const header = b64url({ alg: 'RS512', kid: keys.rs.kid });
      const payload = b64url({ iss: 'test-issuer', aud: 'test-registry', exp: now() + 300, access: all('t/r') });
      const sig = createSign('RSA-SHA512').update(`${header}.${payload}`).sign(keys.rs.privateKey).toString('base64url');
      return `${header}.${payload}.${sig}`;
    }],
    ['expired', () => tokenFor({ access: all('t/r'), iat: now() - 900, nbf: now() - 900, exp: now() - 600 })],
    ['not yet valid', () => tokenFor({ access: all('t/r'), nbf: now() + 600, exp: now() + 900 })],
    ['no exp', () => new SignJWT({ iss: 'test-issuer', aud: 'test-registry', access: all('t/r') }).setProtectedHeader({ alg: 'ES256', kid: keys.es.kid }).sign(keys.es.privateKey)],
    ['wrong aud', () => tokenFor({ access: all('t/r'), aud: 'another-registry' })],
    ['wrong iss', () => mint(keys.es, { access: all('t/r') }, { issuer: 'evil-issuer' })],
    ['signed by an untrusted key (its own kid)', () => tokenFor({ access: all('t/r') }, untrusted)],
    ['signed by an untrusted key claiming a trusted kid', () => mint({ ...untrusted, kid: keys.es.kid }, { access: all('t/r') })],
    ['no kid and no x5c', () => mint(keys.es, { access: all('t/r') }, { header: { kid: undefined } })],
    ['x5c from an untrusted CA', async () => {
      const other = makeCa(dir, 'other-ca').issue('other-signer');
      return mint({ ...keys.es, privateKey: createPrivateKey(readFileSync(other.key)) }, { access: all('t/r') }, { header: { kid: undefined, x5c: [pemToDerBase64(other.cert)] } });
    }],
    ['x5c of a trusted chain, signed by another key', () =>
      mint(untrusted, { access: all('t/r') }, { header: { kid: undefined, x5c: [pemToDerBase64(leaf.cert)] } })],
    ['not a JWT', async () => 'abc.def.ghi'],
  ];

  for (const [name, make] of refusedTokens) {
    test(`refused: ${name} → 401 invalid_token, nothing pushed`, async () => {
      const c = bearer(await make());
      const data = random(64);
      const res = await c.fetch(`/v2/t/r/blobs/uploads/?digest=${sha256(data)}`, { method: 'POST', body: data });
      const p = await expect401(res, 'Bearer');
      assert.equal(p.error, 'invalid_token');
      assert.equal((await c.fetch('/v2/')).status, 401);
      const admin = bearer(await tokenFor({ access: all('t/r') }));
      assert.equal((await admin.fetch(`/v2/t/r/blobs/${sha256(data)}`, { method: 'HEAD' })).status, 404);
    });
  }

  test('malformed Authorization headers → 401', async () => {
    const good = await tokenFor({ access: all('t/r') });
    for (const h of ['Bearer', 'Bearer ', `Bearer ${good} extra`, `Bearer ${good.replace(/\./g, '')}`, 'Bearer a.b', `Bearer\t${good}`, `Token ${good}`]) {
      await expect401(await new AuthClient(berth.url, h).fetch('/v2/t/r/tags/list'), 'Bearer').catch((err: Error) => {
        err.message = `${JSON.stringify(h)}: ${err.message}`;
        throw err;
      });
    }
  });

  test('a token for repository A is refused on B → 401 insufficient_scope', async () => {
    const c = bearer(await tokenFor({ access: all('team/a') }));
    await c.pushImage('team/a', 'v1');
    for (const [method, path] of [['GET', '/v2/team/b/tags/list'], ['GET', '/v2/team/a-b/tags/list'], ['GET', '/v2/team/a/x/tags/list'], ['POST', '/v2/team/b/blobs/uploads/']]) {
      const p = await expect401(await c.fetch(path!, { method }), 'Bearer');
      assert.equal(p.error, 'insufficient_scope', path);
    }
  });

  test('push with a pull-only grant is refused; pull works', async () => {
    const admin = bearer(await tokenFor({ access: all('team/ro') }));
    const img = await admin.pushImage('team/ro', 'v1');
    const ro = bearer(await tokenFor({ access: all('team/ro', ['pull']) }));
    assert.equal((await ro.fetch('/v2/team/ro/manifests/v1', { method: 'HEAD', headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } })).status, 200);
    const data = random(32);
    for (const [method, path, body] of [
      ['POST', `/v2/team/ro/blobs/uploads/?digest=${sha256(data)}`, data],
      ['PUT', '/v2/team/ro/manifests/v2', img.body],
    ] as const) {
      const p = await expect401(await ro.fetch(path, { method, body, headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' } }), 'Bearer');
      assert.equal(p.error, 'insufficient_scope');
      assert.equal(p.scope, 'repository:team/ro:pull,push');
    }
    assert.equal((await admin.fetch('/v2/team/ro/manifests/v2', { method: 'HEAD' })).status, 404);
    // Upload sessions opened by someone with push cannot be continued by a pull-only token.
    const loc = await admin.startUpload('team/ro');
    await expect401(await ro.fetch(loc, { method: 'PATCH', body: data }), 'Bearer');
    await expect401(await ro.fetch(loc, { method: 'DELETE' }), 'Bearer');
  });

  test('delete needs delete (or *): pull,push is not enough', async () => {
    const admin = bearer(await tokenFor({ access: all('team/del') }));
    const img = await admin.pushImage('team/del', 'v1');
    const pp = bearer(await tokenFor({ access: all('team/del', ['pull', 'push']) }));
    for (const path of [`/v2/team/del/manifests/${img.digest}`, `/v2/team/del/blobs/${img.layers[0]}`]) {
      const p = await expect401(await pp.fetch(path, { method: 'DELETE' }), 'Bearer');
      assert.equal(p.error, 'insufficient_scope');
      assert.equal(p.scope, 'repository:team/del:delete');
    }
    assert.equal((await admin.fetch(`/v2/team/del/manifests/${img.digest}`, { method: 'HEAD' })).status, 200);
    assert.equal((await bearer(await tokenFor({ access: all('team/del', ['*']) })).fetch(`/v2/team/del/blobs/${img.layers[0]}`, { method: 'DELETE' })).status, 202);
    assert.equal((await bearer(await tokenFor({ access: all('team/del', ['delete']) })).fetch(`/v2/team/del/manifests/${img.digest}`, { method: 'DELETE' })).status, 202);
  });

  test('the catalog needs registry:catalog:*', async () => {
    const repoAll = bearer(await tokenFor({ access: [...all('team/a'), { type: 'registry', name: 'catalog', actions: ['pull'] }] }));
    const p = await expect401(await repoAll.fetch('/v2/_catalog'), 'Bearer');
    assert.equal(p.error, 'insufficient_scope');
    assert.equal(p.scope, 'registry:catalog:*');
    const cat = bearer(await tokenFor({ access: [{ type: 'registry', name: 'catalog', actions: ['*'] }] }));
    assert.equal((await cat.fetch('/v2/_catalog')).status, 200);
  });

  test('a mount from a repository the token cannot pull is not done: the blob is uploaded instead', async () => {
    const admin = bearer(await tokenFor({ access: all('secret/src') }));
    const img = await admin.pushImage('secret/src', 'v1');
    const layer = img.layers[0]!;
    const c = bearer(await tokenFor({ access: all('mine/dst', ['pull', 'push']) }));
    const res = await c.fetch(`/v2/mine/dst/blobs/uploads/?mount=${layer}&from=secret/src`, { method: 'POST' });
    assert.equal(res.status, 202, 'mounted a blob from a repository the caller may not pull');
    const auto = await c.fetch(`/v2/mine/dst/blobs/uploads/?mount=${layer}`, { method: 'POST' });
    assert.equal(auto.status, 202, 'automatic mount across repositories under auth');
    assert.equal((await c.fetch(`/v2/mine/dst/blobs/${layer}`, { method: 'HEAD' })).status, 404);
    // With pull on the source the mount happens.
    const both = bearer(await tokenFor({ access: [...all('mine/dst', ['pull', 'push']), ...all('secret/src', ['pull'])] }));
    assert.equal((await both.fetch(`/v2/mine/dst/blobs/uploads/?mount=${layer}&from=secret/src`, { method: 'POST' })).status, 201);
  });

  test('a grant for an invalid repository name grants nothing', async () => {
    // The name is checked before any grant is looked at: 400 NAME_INVALID, never a listing.
    const c = bearer(await tokenFor({ access: all('Team/A') }));
    const res = await c.fetch('/v2/Team/A/tags/list');
    assert.equal(res.status, 400);
    assert.equal(((await res.json()) as { errors: { code: string }[] }).errors[0]!.code, 'NAME_INVALID');
  });
});

describe('auth.token x5c chains', () => {
  let dir: string;
  let root: { cert: string; key: string };
  before(() => {
    dir = tempDir('berth-x5c-');
    root = certificate(dir, 'root', { ca: true });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** Verifies a token signed by chain[0]'s key with `chain` as x5c, against `bundle`. */
  const verify = async (bundle: string, chain: { cert: string; key: string }[]) => {
    const signer = { privateKey: createPrivateKey(readFileSync(chain[0]!.key)), publicKey: null!, alg: 'ES256' as const, kid: '' };
    const token = await mint(signer, { access: all('t/x') }, { header: { kid: undefined, x5c: chain.map((c) => pemToDerBase64(c.cert)) } });
    return TokenVerifier.create({ issuer: 'test-issuer', service: 'test-registry', rootcertbundle: bundle }).verify(token);
  };

  test('a chain through a CA intermediate to a current CA root is accepted', async () => {
    const inter = certificate(dir, 'inter', { issuer: root, ca: true });
    const leaf = certificate(dir, 'leaf', { issuer: inter });
    assert.deepEqual((await verify(root.cert, [leaf, inter])).access, all('t/x'));
  });

  test('an intermediate without the CA flag is refused', async () => {
    const notCa = certificate(dir, 'not-ca', { issuer: root });
    const leaf = certificate(dir, 'leaf-of-not-ca', { issuer: notCa });
    await assert.rejects(verify(root.cert, [leaf, notCa]), /not a CA/);
  });

  test('a bundle certificate without the CA flag issues nothing', async () => {
    const plain = certificate(dir, 'plain-root');
    const leaf = certificate(dir, 'leaf-of-plain', { issuer: plain });
    await assert.rejects(verify(plain.cert, [leaf]), /trusted root/);
  });

  test('a bundle root outside its validity period issues nothing', async () => {
    for (const [name, notBefore, notAfter] of [['expired-root', '20200101000000Z', '20200201000000Z'], ['future-root', '20990101000000Z', '20990201000000Z']] as const) {
      const old = certificate(dir, name, { ca: true, notBefore, notAfter });
      const leaf = certificate(dir, `leaf-of-${name}`, { issuer: old });
      await assert.rejects(verify(old.cert, [leaf]), /trusted root/, name);
    }
  });
});

describe('auth.token is not throttled', () => {
  test('invalid tokens and malformed headers do not lock a client out of valid tokens', async () => {
    const dir = tempDir('berth-token-');
    const key = newKey('ES256');
    writeJwks(join(dir, 'jwks.json'), [key]);
    const berth = await startInProcess({
      auth: { token: { realm: REALM, service: 'test-registry', issuer: 'test-issuer', jwks: join(dir, 'jwks.json') }, throttle: { maxfailures: 2 } },
    });
    try {
      const forged = await mint(newKey('ES256'), { access: all('t/r') }, { header: { kid: key.kid } });
      for (const h of [`Bearer ${forged}`, 'Bearer a.b', 'Bearer x.y.z']) {
        for (let i = 0; i < 5; i++) await expect401(await new AuthClient(berth.url, h).fetch('/v2/'), 'Bearer');
      }
      assert.equal((await new AuthClient(berth.url, `Bearer ${await mint(key, { access: all('t/r') })}`).fetch('/v2/')).status, 200);
    } finally {
      await berth.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
