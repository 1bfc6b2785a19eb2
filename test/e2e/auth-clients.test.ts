// Real clients against Berth with authentication: skopeo and podman (login, push, pull) with
// htpasswd (Basic) and with the built-in token server (Bearer, policy-limited), docker login
// with the token server's OAuth2 refresh-token flow, and skopeo over TLS with a test CA.
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startProcess, tempDir, type BerthProcess } from '../helpers/berth.js';
import { buildImageIn, lowercaseTempDir, PrivateStore } from '../helpers/containers.js';
import { dockerdUnavailable, startDockerd } from '../helpers/dockerd.js';
import { have, run } from '../helpers/exec.js';
import { makeCa, writeHtpasswd } from '../auth/util.js';

const NO_SKOPEO = have('skopeo') ? false : 'skopeo is not installed';
const NO_PODMAN = have('podman') ? false : 'podman is not installed';
const NO_DOCKER = dockerdUnavailable();

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

function scratch(): string {
  const d = lowercaseTempDir();
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

function skopeo(args: string[], allowFail = false) {
  return run('skopeo', ['--insecure-policy', ...args], { timeoutMs: 120_000, allowFail });
}

function setup(): string {
  const dir = tempDir('berth-e2e-auth-');
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  writeHtpasswd(join(dir, 'htpasswd'), { alice: 'alice-pw', bob: 'bob-pw' });
  writeFileSync(
    join(dir, 'policy.yml'),
    'access:\n  - subjects: [user:alice]\n    repositories: ["team-a/**"]\n    actions: ["*"]\n  - subjects: [user:bob]\n    repositories: ["team-a/**"]\n    actions: [pull]\n',
  );
  return dir;
}

async function serve(config: string): Promise<BerthProcess> {
  const b = await startProcess({ config });
  cleanups.push(() => b.stop());
  return b;
}

describe('skopeo and podman with auth.htpasswd', () => {
  let berth: BerthProcess;
  before(async () => {
    if (NO_SKOPEO) return;
    const dir = setup();
    berth = await serve(`auth:\n  htpasswd:\n    realm: berth\n    path: ${join(dir, 'htpasswd')}\n`);
  });

  test('skopeo login, copy in and out; wrong password and no login fail clearly', { skip: NO_SKOPEO, timeout: 180_000 }, async () => {
    const s = scratch();
    const img = buildImageIn(s, { tag: 'v1', layers: 1, seed: 'auth-htpasswd' });
    const authfile = join(s, 'auth.json');
    const bad = await skopeo(['login', '--tls-verify=false', '--authfile', authfile, '-u', 'alice', '-p', 'wrong', berth.host], true);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /401|unauthorized|invalid username/i);
    const noLogin = await skopeo(['copy', '--dest-tls-verify=false', '--authfile', join(s, 'none.json'), img.ref, `docker://${berth.host}/x/y:v1`], true);
    assert.notEqual(noLogin.code, 0);
    assert.match(noLogin.stderr, /authentication required|unauthorized/i);

    await skopeo(['login', '--tls-verify=false', '--authfile', authfile, '-u', 'alice', '-p', 'alice-pw', berth.host]);
    await skopeo(['copy', '--dest-tls-verify=false', '--authfile', authfile, img.ref, `docker://${berth.host}/x/y:v1`]);
    const raw = await skopeo(['inspect', '--raw', '--tls-verify=false', '--authfile', authfile, `docker://${berth.host}/x/y:v1`]);
    assert.ok(Buffer.from(raw.stdout).equals(img.blobs.get(img.digest)!));
  });

  test('podman login and pull', { skip: NO_SKOPEO || NO_PODMAN, timeout: 180_000 }, async () => {
    const store = new PrivateStore('podman');
    cleanups.push(() => store.cleanup());
    const authfile = join(store.dir, 'auth.json');
    await store.run(['login', '--tls-verify=false', '--authfile', authfile, '-u', 'alice', '-p', 'alice-pw', berth.host]);
    await store.run(['pull', '--tls-verify=false', '--authfile', authfile, `${berth.host}/x/y:v1`]);
    const bad = await store.run(['login', '--tls-verify=false', '--authfile', join(store.dir, 'bad.json'), '-u', 'alice', '-p', 'nope', berth.host], { allowFail: true });
    assert.notEqual(bad.code, 0);
  });
});

describe('skopeo and podman with auth.tokenserver', () => {
  let berth: BerthProcess;
  before(async () => {
    if (NO_SKOPEO) return;
    const dir = setup();
    berth = await serve(`auth:\n  tokenserver:\n    key: ${join(dir, 'signing.pem')}\n    htpasswd: ${join(dir, 'htpasswd')}\n    policy: ${join(dir, 'policy.yml')}\n`);
  });

  test('alice pushes to team-a; bob pulls but may not push; nobody pushes elsewhere', { skip: NO_SKOPEO, timeout: 180_000 }, async () => {
    const s = scratch();
    const img = buildImageIn(s, { tag: 'v1', layers: 2, seed: 'auth-token' });
    const alice = join(s, 'alice.json');
    const bob = join(s, 'bob.json');
    await skopeo(['login', '--tls-verify=false', '--authfile', alice, '-u', 'alice', '-p', 'alice-pw', berth.host]);
    await skopeo(['login', '--tls-verify=false', '--authfile', bob, '-u', 'bob', '-p', 'bob-pw', berth.host]);
    await skopeo(['copy', '--dest-tls-verify=false', '--authfile', alice, img.ref, `docker://${berth.host}/team-a/app:v1`]);
    const out = join(s, 'out');
    await skopeo(['copy', '--src-tls-verify=false', '--authfile', bob, `docker://${berth.host}/team-a/app:v1`, `oci:${out}:v1`]);
    const denied = await skopeo(['copy', '--dest-tls-verify=false', '--authfile', bob, img.ref, `docker://${berth.host}/team-a/app:v2`], true);
    assert.notEqual(denied.code, 0, 'bob pushed with a pull-only grant');
    assert.match(denied.stderr, /denied|unauthorized|authentication required|insufficient/i);
    const elsewhere = await skopeo(['copy', '--dest-tls-verify=false', '--authfile', alice, img.ref, `docker://${berth.host}/team-b/app:v1`], true);
    assert.notEqual(elsewhere.code, 0, 'alice pushed outside team-a');
  });

  test('podman login and pull through the token server', { skip: NO_SKOPEO || NO_PODMAN, timeout: 180_000 }, async () => {
    const store = new PrivateStore('podman');
    cleanups.push(() => store.cleanup());
    const authfile = join(store.dir, 'auth.json');
    await store.run(['login', '--tls-verify=false', '--authfile', authfile, '-u', 'bob', '-p', 'bob-pw', berth.host]);
    await store.run(['pull', '--tls-verify=false', '--authfile', authfile, `${berth.host}/team-a/app:v1`]);
  });

  test('docker login stores a refresh token (OAuth2), then pushes and pulls', { skip: NO_SKOPEO || NO_DOCKER, timeout: 300_000 }, async () => {
    const d = await startDockerd();
    cleanups.push(() => d.stop());
    await d.docker(['login', '-u', 'alice', '--password-stdin', berth.host], { input: 'alice-pw\n' });
    const cfg = JSON.parse(readFileSync(join(d.dir, 'client', 'config.json'), 'utf8')) as { auths: Record<string, { auth?: string; identitytoken?: string }> };
    const entry = cfg.auths[berth.host]!;
    assert.ok(entry.identitytoken, `docker stored no identity (refresh) token: ${JSON.stringify(Object.keys(entry))}`);
    await d.docker(['pull', `${berth.host}/team-a/app:v1`]);
    await d.docker(['tag', `${berth.host}/team-a/app:v1`, `${berth.host}/team-a/copy:v1`]);
    await d.docker(['push', `${berth.host}/team-a/copy:v1`]);
    const bad = await d.docker(['login', '-u', 'alice', '--password-stdin', berth.host], { input: 'wrong\n', allowFail: true });
    assert.notEqual(bad.code, 0);
  });
});

describe('skopeo over TLS with a test CA', () => {
  test('login and copy with the CA in --cert-dir; without it the client refuses', { skip: NO_SKOPEO, timeout: 180_000 }, async () => {
    const dir = setup();
    const ca = makeCa(dir);
    const server = ca.issue('server');
    const berth = await serve(`http:\n  tls:\n    certificate: ${server.cert}\n    key: ${server.key}\nauth:\n  htpasswd:\n    realm: berth\n    path: ${join(dir, 'htpasswd')}\n`);
    const s = scratch();
    const certs = join(s, 'certs');
    (await import('node:fs')).mkdirSync(certs);
    writeFileSync(join(certs, 'ca.crt'), readFileSync(ca.caCert));
    const img = buildImageIn(s, { tag: 'v1', layers: 1, seed: 'auth-tls' });
    const authfile = join(s, 'auth.json');
    const untrusted = await skopeo(['login', '--authfile', authfile, '-u', 'alice', '-p', 'alice-pw', berth.host], true);
    assert.notEqual(untrusted.code, 0);
    assert.match(untrusted.stderr, /certificate|x509|tls/i);
    await skopeo(['login', '--cert-dir', certs, '--authfile', authfile, '-u', 'alice', '-p', 'alice-pw', berth.host]);
    await skopeo(['copy', '--dest-cert-dir', certs, '--authfile', authfile, img.ref, `docker://${berth.host}/tls/app:v1`]);
    const raw = await skopeo(['inspect', '--raw', '--cert-dir', certs, '--authfile', authfile, `docker://${berth.host}/tls/app:v1`]);
    assert.ok(Buffer.from(raw.stdout).equals(img.blobs.get(img.digest)!));
  });
});
