// auth.tokenserver: Berth's own token service (Docker token spec), so a team needs no second
// service. `GET /token` takes Basic credentials (or none: the anonymous grants); `POST /token`
// takes the OAuth2 `password` and `refresh_token` grants (docker login stores the refresh
// token instead of the password). Users come from an htpasswd file, grants from the access
// policy; both are re-read when they change and on SIGHUP. The registry side verifies the
// tokens like auth.token does, with the server's own public key.
import { createPublicKey, generateKeyPairSync, randomUUID, createPrivateKey, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync, unwatchFile, watchFile, writeFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { jwtVerify, SignJWT } from 'jose';
import type { Logger } from 'pino';
import { ConfigError } from '../config/config.js';
import { RegistryError } from '../errors/codes.js';
import { isValidName } from '../oci/names.js';
import { parseScopes, type Access, type GrantEntry } from './access.js';
import {
  clientAddress,
  parseBasic,
  quote,
  Throttle,
  unauthorized,
  type AccessController,
  type AuthEndpointRequest,
  type Authorized,
} from './controller.js';
import { Users } from './htpasswd.js';
import { Policy } from './policy.js';
import { BearerController, jwkThumbprint, LEEWAY_SECONDS, TokenVerifier } from './token.js';

export interface TokenServerOptions {
  realm?: string;
  service: string;
  issuer: string;
  key: string;
  htpasswd: string;
  policy: string;
  expirationMs: number;
  refreshExpirationMs: number;
  /** http.host: the base of the derived realm; else the request's Host. */
  baseUrl?: string;
}

interface SigningKey {
  privateKey: KeyObject;
  publicKey: KeyObject;
  alg: 'RS256' | 'ES256' | 'EdDSA';
  kid: string;
}

function algFor(key: KeyObject, file: string): SigningKey['alg'] {
  const t = key.asymmetricKeyType;
  if (t === 'rsa') return 'RS256';
  if (t === 'ed25519') return 'EdDSA';
  if (t === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ES256';
  throw new ConfigError(`config: auth.tokenserver.key: ${file} must be an RSA, EC P-256 or Ed25519 private key`);
}

/** Loads the signing key, generating an EC P-256 key (and `<key>.pub`, `<key>.jwks.json`) when absent. */
export function loadSigningKey(file: string): SigningKey {
  let privateKey: KeyObject;
  if (!existsSync(file)) {
    const pair = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    privateKey = pair.privateKey;
    try {
      writeFileSync(file, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' });
    } catch (err) {
      throw new ConfigError(`config: auth.tokenserver.key: cannot write a new key to ${file}: ${(err as Error).message}`);
    }
  } else {
    try {
      privateKey = createPrivateKey(readFileSync(file));
    } catch (err) {
      throw new ConfigError(`config: auth.tokenserver.key: cannot read a private key from ${file}: ${(err as Error).message}`);
    }
  }
  const alg = algFor(privateKey, file);
  const publicKey = createPublicKey(privateKey);
  const jwk = publicKey.export({ format: 'jwk' });
  const kid = jwkThumbprint(publicKey);
  // For other verifiers (a Distribution or Berth with auth.token): PEM and JWKS beside the key.
  try {
    writeFileSync(`${file}.pub`, publicKey.export({ type: 'spki', format: 'pem' }));
    writeFileSync(`${file}.jwks.json`, JSON.stringify({ keys: [{ ...jwk, kid, alg, use: 'sig' }] }, null, 2) + '\n');
  } catch {
    // A read-only key directory: the public key can still be derived from the private one.
  }
  return { privateKey, publicKey, alg, kid };
}

const MAX_FORM = 64 * 1024;

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') {
    throw new RegistryError('BAD_REQUEST', null, { message: 'POST /token takes an application/x-www-form-urlencoded body' });
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_FORM) throw new RegistryError('BAD_REQUEST', null, { message: 'token request body too large' });
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

export class TokenServerController implements AccessController {
  readonly kind = 'tokenserver';
  private users: Users;
  private policy: Policy;
  private bearer!: BearerController;
  private key!: SigningKey;
  private readonly watched: string[] = [];

  private constructor(
    private readonly opts: TokenServerOptions,
    private readonly log: Logger | undefined,
    private readonly throttle: Throttle,
  ) {
    this.users = new Users(opts.htpasswd, log);
    this.policy = Policy.read(opts.policy);
  }

  static create(opts: TokenServerOptions, log?: Logger, watch = true, throttle = new Throttle()): TokenServerController {
    const c = new TokenServerController(opts, log, throttle);
    c.key = loadSigningKey(opts.key);
    const verifier = TokenVerifier.create({ issuer: opts.issuer, service: opts.service, keys: [c.key.publicKey] });
    c.bearer = new BearerController('tokenserver', verifier, { realm: (req) => c.realm(req), service: opts.service });
    if (watch) {
      for (const file of [opts.policy, opts.htpasswd]) {
        watchFile(file, { interval: 1000, persistent: false }, (cur, prev) => {
          if (cur.mtimeMs !== prev.mtimeMs || cur.size !== prev.size || cur.ino !== prev.ino) void c.reload();
        });
        c.watched.push(file);
      }
    }
    return c;
  }

  private realm(req: IncomingMessage): string {
    if (this.opts.realm) return this.opts.realm;
    if (this.opts.baseUrl) return this.opts.baseUrl.replace(/\/+$/, '') + '/token';
    // Not X-Forwarded-*: any client may send those, and the realm is where clients send
    // passwords. Behind a proxy, set realm or http.host.
    const proto = (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http';
    return `${proto}://${req.headers.host ?? 'localhost'}/token`;
  }

  authorize(req: IncomingMessage, required: Access[], challenge: Access[]): Promise<Authorized> {
    return this.bearer.authorize(req, required, challenge);
  }

  async reload(): Promise<void> {
    try {
      const policy = Policy.read(this.opts.policy);
      this.users.reload();
      this.policy = policy;
      this.log?.info({ policy: this.opts.policy, htpasswd: this.opts.htpasswd }, 'auth: reloaded users and access policy');
    } catch (err) {
      this.log?.error({ error: (err as Error).message }, 'auth: reload failed; keeping the previous users and policy');
    }
  }

  close(): void {
    for (const f of this.watched) unwatchFile(f);
  }

  private basicChallenge(req: IncomingMessage): string {
    return `Basic realm=${quote(this.realm(req))}, charset="UTF-8"`;
  }

  /** Checks a password, throttled per client; returns the user or throws 401/429. */
  private async login(req: IncomingMessage, user: string, password: string): Promise<string> {
    if (!(await this.throttle.attempt(clientAddress(req), () => this.users.verify(user, password)))) {
      throw unauthorized(this.basicChallenge(req), null, 'invalid username or password');
    }
    return user;
  }

  /** The requested scopes narrowed to what the policy grants `user`. */
  private grant(user: string | null, scopes: string[]): GrantEntry[] {
    const out: GrantEntry[] = [];
    for (const s of parseScopes(scopes)) {
      if (s.type === 'repository' && !isValidName(s.name)) continue;
      if (s.type !== 'repository' && !(s.type === 'registry' && s.name === 'catalog')) continue;
      const actions = this.policy.allowed(user, s.type, s.name, s.actions);
      if (actions.length) out.push({ type: s.type, name: s.name, actions });
    }
    return out;
  }

  private async accessToken(user: string | null, access: GrantEntry[]): Promise<{ token: string; expiresIn: number; issuedAt: string }> {
    const now = Math.floor(Date.now() / 1000);
    const expiresIn = Math.max(60, Math.round(this.opts.expirationMs / 1000));
    const token = await new SignJWT({ access })
      .setProtectedHeader({ alg: this.key.alg, kid: this.key.kid, typ: 'JWT' })
      .setIssuer(this.opts.issuer)
      .setAudience(this.opts.service)
      .setSubject(user ?? '')
      .setIssuedAt(now)
      .setNotBefore(now)
      .setExpirationTime(now + expiresIn)
      .setJti(randomUUID())
      .sign(this.key.privateKey);
    return { token, expiresIn, issuedAt: new Date(now * 1000).toISOString() };
  }

  /**
   * A refresh token: signed like access tokens but for another audience, so the registry
   * refuses it. `pwh` fingerprints the user's password hash: a new password ends it.
   */
  private refreshToken(user: string): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ pwh: this.users.fingerprint(user) })
      .setProtectedHeader({ alg: this.key.alg, kid: this.key.kid, typ: 'JWT' })
      .setIssuer(this.opts.issuer)
      .setAudience(`${this.opts.service}#refresh`)
      .setSubject(user)
      .setIssuedAt(now)
      .setExpirationTime(now + Math.round(this.opts.refreshExpirationMs / 1000))
      .setJti(randomUUID())
      .sign(this.key.privateKey);
  }

  /**
   * The user of a valid refresh token. Not throttled: a signed token cannot be guessed, and
   * counting bad ones would only let anyone lock others out.
   */
  private async userOfRefresh(req: IncomingMessage, token: string): Promise<string> {
    try {
      const { payload } = await jwtVerify(token, this.key.publicKey, {
        algorithms: [this.key.alg],
        issuer: this.opts.issuer,
        audience: `${this.opts.service}#refresh`,
        clockTolerance: LEEWAY_SECONDS,
        requiredClaims: ['exp', 'sub', 'pwh'],
      });
      const user = payload.sub!;
      // A user removed from the htpasswd file, or given a new password, loses their refresh tokens.
      const current = this.users.fingerprint(user);
      if (current !== undefined && payload.pwh === current) return user;
    } catch {
      // fall through
    }
    throw unauthorized(this.basicChallenge(req), null, 'invalid or expired refresh token');
  }

  private checkService(service: string | null): void {
    if (service !== null && service !== this.opts.service) {
      throw new RegistryError('BAD_REQUEST', { service }, { message: `this token server issues tokens for service ${JSON.stringify(this.opts.service)}` });
    }
  }

  async serve(r: AuthEndpointRequest): Promise<boolean> {
    if (r.path !== '/token') return false;
    const method = r.req.method ?? 'GET';
    let user: string | null = null;
    let scopes: string[];
    let refresh: string | undefined;
    if (method === 'GET') {
      this.checkService(r.query.get('service'));
      const creds = parseBasic(r.req.headers.authorization);
      // Not counted: a malformed header checks no password, so it guesses nothing.
      if (creds === 'malformed') throw unauthorized(this.basicChallenge(r.req), null, 'malformed Authorization header');
      if (r.req.headers.authorization !== undefined && creds === null) throw unauthorized(this.basicChallenge(r.req), null, 'use Basic credentials');
      if (creds) user = await this.login(r.req, creds.user, creds.password);
      scopes = r.query.getAll('scope');
      if (user !== null && r.query.get('offline_token') === 'true') refresh = await this.refreshToken(user);
    } else if (method === 'POST') {
      const form = await readForm(r.req);
      this.checkService(form.get('service'));
      const grant = form.get('grant_type');
      if (grant === 'password') {
        user = await this.login(r.req, form.get('username') ?? '', form.get('password') ?? '');
        if (form.get('access_type') === 'offline') refresh = await this.refreshToken(user);
      } else if (grant === 'refresh_token') {
        user = await this.userOfRefresh(r.req, form.get('refresh_token') ?? '');
        refresh = form.get('refresh_token')!;
      } else {
        throw new RegistryError('BAD_REQUEST', { grant_type: grant }, { message: 'grant_type must be password or refresh_token' });
      }
      scopes = (form.get('scope') ?? '').split(' ').filter(Boolean);
    } else {
      throw new RegistryError('UNSUPPORTED', { method }, { message: `method ${method} is not allowed here`, headers: { Allow: 'GET, POST' } });
    }
    const access = this.grant(user, scopes);
    const t = await this.accessToken(user, access);
    const body = Buffer.from(
      JSON.stringify({
        token: t.token,
        access_token: t.token,
        expires_in: t.expiresIn,
        issued_at: t.issuedAt,
        ...(refresh ? { refresh_token: refresh } : {}),
        ...(method === 'POST' ? { scope: access.map((a) => `${a.type}:${a.name}:${a.actions.join(',')}`).join(' ') } : {}),
      }),
    );
    r.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': String(body.length), 'Cache-Control': 'no-store' });
    r.res.end(body);
    this.log?.debug({ user, granted: access }, 'auth: token issued');
    return true;
  }
}
