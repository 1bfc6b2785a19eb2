// Shared pieces of the auth tests: credentials files, a client that sends an Authorization
// header, token minting with arbitrary keys and claims, and a test CA made with openssl.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { SignJWT } from 'jose';
import { Client } from '../helpers/client.js';
import { jwkThumbprint } from '../../src/auth/token.js';

/** An htpasswd file with bcrypt entries (cost 4: fast tests), written with the $2y$ prefix htpasswd -B uses. */
export function writeHtpasswd(file: string, users: Record<string, string>, prefix: '$2y$' | '$2a$' | '$2b$' = '$2y$'): void {
  const lines = Object.entries(users).map(([u, p]) => `${u}:${prefix}${bcrypt.hashSync(p, 4).slice(4)}`);
  writeFileSync(file, lines.join('\n') + '\n');
}

export function basic(user: string, password: string): string {
  return 'Basic ' + Buffer.from(`${user}:${password}`).toString('base64');
}

/** The Client of the API tests, sending `auth` as the Authorization header of every request. */
export class AuthClient extends Client {
  constructor(url: string, readonly auth: string | undefined) {
    super(url);
  }

  override fetch(path: string, init: Parameters<Client['fetch']>[1] = {}): Promise<Response> {
    const headers = { ...((init.headers as Record<string, string>) ?? {}) };
    if (this.auth !== undefined) headers.Authorization = this.auth;
    return super.fetch(path, { ...init, headers });
  }
}

/** Parses a WWW-Authenticate challenge: scheme and auth-params. */
export function parseChallenge(header: string | null): { scheme: string; params: Record<string, string> } {
  assert.ok(header, 'no WWW-Authenticate header');
  const m = /^(\w+)\s+(.*)$/.exec(header)!;
  const params: Record<string, string> = {};
  for (const p of m[2]!.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) params[p[1]!] = p[2]!.replace(/\\(.)/g, '$1');
  return { scheme: m[1]!, params };
}

/** Asserts a 401 with the spec's JSON error body and a challenge of `scheme`. */
export async function expect401(res: Response, scheme: 'Basic' | 'Bearer'): Promise<Record<string, string>> {
  const text = await res.text();
  assert.equal(res.status, 401, `expected 401, got ${res.status}: ${text}`);
  assert.equal(res.headers.get('docker-distribution-api-version'), 'registry/2.0');
  if (text !== '') {
    const body = JSON.parse(text) as { errors: { code: string }[] };
    assert.equal(body.errors[0]!.code, 'UNAUTHORIZED', text);
  }
  const c = parseChallenge(res.headers.get('www-authenticate'));
  assert.equal(c.scheme, scheme);
  return c.params;
}

export interface TestKey {
  privateKey: KeyObject;
  publicKey: KeyObject;
  alg: 'RS256' | 'ES256' | 'EdDSA';
  kid: string;
}

export function newKey(alg: TestKey['alg'] = 'ES256'): TestKey {
  const pair =
    alg === 'RS256'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : alg === 'ES256'
        ? generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
        : generateKeyPairSync('ed25519');
  return { ...pair, alg, kid: jwkThumbprint(pair.publicKey) };
}

/** A JWKS file of public keys. */
export function writeJwks(file: string, keys: TestKey[]): void {
  writeFileSync(file, JSON.stringify({ keys: keys.map((k) => ({ ...k.publicKey.export({ format: 'jwk' }), kid: k.kid, alg: k.alg })) }));
}

export interface Claims {
  iss?: string;
  aud?: string | string[];
  sub?: string;
  exp?: number;
  nbf?: number;
  iat?: number;
  access?: { type: string; name: string; actions: string[] }[];
}

export const now = (): number => Math.floor(Date.now() / 1000);

/** Signs a token; claims default to a valid one for `issuer`/`service`. */
export function mint(
  key: TestKey,
  claims: Claims,
  opts: { issuer?: string; service?: string; header?: Record<string, unknown> } = {},
): Promise<string> {
  const payload = { iss: opts.issuer ?? 'test-issuer', aud: opts.service ?? 'test-registry', sub: 'alice', iat: now(), nbf: now(), exp: now() + 300, ...claims };
  return new SignJWT(payload as Record<string, unknown>).setProtectedHeader({ alg: key.alg, kid: key.kid, ...opts.header }).sign(key.privateKey);
}

export function b64url(v: unknown): string {
  return Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
}

export function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

export interface TestCa {
  dir: string;
  caCert: string;
  caKey: string;
  /** Issues a certificate signed by this CA; returns the cert and key paths. */
  issue(name: string, opts?: { san?: string; client?: boolean }): { cert: string; key: string };
}

/** A CA made by the test with openssl (EC P-256 keys). */
export function makeCa(dir: string, name = 'ca'): TestCa {
  const caKey = join(dir, `${name}.key`);
  const caCert = join(dir, `${name}.crt`);
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', caKey], dir);
  openssl(['req', '-x509', '-new', '-key', caKey, '-sha256', '-days', '2', '-subj', `/CN=Berth test ${name}`, '-out', caCert], dir);
  return {
    dir,
    caCert,
    caKey,
    issue(cn, opts = {}) {
      const key = join(dir, `${cn}.key`);
      const csr = join(dir, `${cn}.csr`);
      const cert = join(dir, `${cn}.crt`);
      const ext = join(dir, `${cn}.ext`);
      writeFileSync(
        ext,
        opts.client
          ? 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n'
          : `basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=${opts.san ?? 'IP:127.0.0.1,DNS:localhost'}\n`,
      );
      openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key], dir);
      openssl(['req', '-new', '-key', key, '-subj', `/CN=${cn}`, '-out', csr], dir);
      openssl(['x509', '-req', '-in', csr, '-CA', caCert, '-CAkey', caKey, '-CAcreateserial', '-days', '1', '-sha256', '-extfile', ext, '-out', cert], dir);
      return { cert, key };
    },
  };
}

export function pemToDerBase64(pemFile: string): string {
  const pem = readFileSync(pemFile, 'utf8');
  return pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
}

/**
 * A certificate made with `openssl ca`, which can set any validity period: self-signed, or
 * issued by `issuer`; a CA certificate (basicConstraints CA:TRUE) only when `ca` is set.
 * Dates are openssl's YYYYMMDDHHMMSSZ; the default is valid from yesterday for two days.
 */
export function certificate(
  dir: string,
  name: string,
  opts: { issuer?: { cert: string; key: string }; ca?: boolean; notBefore?: string; notAfter?: string } = {},
): { cert: string; key: string } {
  const at = (days: number) => new Date(Date.now() + days * 86_400_000).toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z';
  const file = (ext: string) => join(dir, `${name}.${ext}`);
  writeFileSync(file('index'), '');
  writeFileSync(file('serial'), '01\n');
  writeFileSync(
    file('cnf'),
    `[ca]\ndefault_ca = d\n[d]\ndatabase = ${file('index')}\nnew_certs_dir = ${dir}\nserial = ${file('serial')}\n` +
      `default_md = sha256\npolicy = p\nunique_subject = no\n[p]\ncommonName = supplied\n[ext]\n` +
      (opts.ca ? 'basicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,digitalSignature\n' : 'basicConstraints = CA:FALSE\n'),
  );
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', file('key')], dir);
  openssl(['req', '-new', '-key', file('key'), '-subj', `/CN=${name}`, '-out', file('csr')], dir);
  const signer = opts.issuer ? ['-cert', opts.issuer.cert, '-keyfile', opts.issuer.key] : ['-selfsign', '-keyfile', file('key')];
  openssl(
    ['ca', '-batch', '-notext', '-config', file('cnf'), ...signer, '-in', file('csr'), '-extensions', 'ext', '-startdate', opts.notBefore ?? at(-1), '-enddate', opts.notAfter ?? at(1), '-out', file('crt')],
    dir,
  );
  return { cert: file('crt'), key: file('key') };
}

/**
 * Sends `count` GET requests at once, each on its own connection. Each connection first
 * answers a HEAD /v2/ (so the server has accepted them all: it accepts one connection per
 * event-loop turn), then all requests are written in one go and the server reads them
 * together. Returns each response's status and Retry-After.
 */
export async function burst(url: string, path: string, authFor: (i: number) => string, count: number): Promise<{ status: number; retryAfter: string | undefined }[]> {
  const { hostname, port } = new URL(url);
  const request = (method: string, p: string, extra: string) => `${method} ${p} HTTP/1.1\r\nHost: ${hostname}:${port}\r\n${extra}\r\n`;
  const conns = Array.from({ length: count }, () => {
    const socket = connect(Number(port), hostname);
    const c = { socket, text: '', warm: undefined as unknown as Promise<void>, done: undefined as unknown as Promise<string> };
    socket.setEncoding('latin1');
    c.warm = new Promise<void>((resolve, reject) => {
      socket.on('data', (d: string) => {
        c.text += d;
        if (c.text.includes('\r\n\r\n')) resolve();
      });
      socket.on('error', reject);
    });
    c.done = new Promise<string>((resolve) => socket.on('end', () => resolve(c.text)));
    socket.write(request('HEAD', '/v2/', ''));
    return c;
  });
  await Promise.all(conns.map((c) => c.warm));
  conns.forEach((c, i) => c.socket.write(request('GET', path, `Authorization: ${authFor(i)}\r\nConnection: close\r\n`)));
  return (await Promise.all(conns.map((c) => c.done))).map((text) => {
    // The second response on the connection is the one to the burst.
    const last = text.slice(text.lastIndexOf('HTTP/1.1 '));
    return { status: Number(last.slice(9, 12)), retryAfter: /\r\nretry-after: *(\S+)/i.exec(last)?.[1] };
  });
}
