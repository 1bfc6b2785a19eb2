// auth.token: Bearer JWTs issued by a token service (Docker token spec), verified with jose:
// RS256/ES256/EdDSA only, signature against the configured keys (`kid`, or an `x5c` chain to
// the root certificate bundle), `iss`, `aud` = service, `exp`/`nbf` with a small leeway, and
// the `access` claim.
import { createHash, createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { jwtVerify, type JWK, type JWTHeaderParameters } from 'jose';
import { ConfigError } from '../config/config.js';
import { grants, scopeString, type Access, type GrantEntry } from './access.js';
import { parseBearer, quote, unauthorized, type AccessController, type Authorized } from './controller.js';

export const TOKEN_ALGORITHMS = ['RS256', 'ES256', 'EdDSA'] as const;
/**
 * Clock skew tolerated on exp and nbf, in seconds. iat is not checked (jose checks it only
 * with maxTokenAge), as Distribution does not check it either.
 */
export const LEEWAY_SECONDS = 60;

/** libtrust's key id (what Distribution's token servers put in `kid`): base32 of SHA-256(SPKI DER)[:30], in groups of 4. */
export function libtrustKid(key: KeyObject): string {
  const der = key.export({ type: 'spki', format: 'der' });
  const sum = createHash('sha256').update(der).digest().subarray(0, 30);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of sum) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return out.match(/.{1,4}/g)!.join(':');
}

/** RFC 7638 JWK thumbprint (SHA-256, base64url) of a public key, computed synchronously. */
export function jwkThumbprint(key: KeyObject): string {
  const jwk = key.export({ format: 'jwk' }) as Record<string, string>;
  const members: Record<string, string[]> = { EC: ['crv', 'kty', 'x', 'y'], RSA: ['e', 'kty', 'n'], OKP: ['crv', 'kty', 'x'] };
  const names = members[jwk.kty!];
  if (!names) throw new Error(`unsupported key type ${jwk.kty}`);
  const canonical = `{${names.map((n) => `${JSON.stringify(n)}:${JSON.stringify(jwk[n])}`).join(',')}}`;
  return createHash('sha256').update(canonical).digest('base64url');
}

export interface VerifiedToken {
  subject: string | null;
  access: GrantEntry[];
}

export class TokenError extends Error {}

/** PEM certificates of a bundle file. */
export function readCertBundle(file: string): X509Certificate[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`config: cannot read certificate bundle ${file}: ${(err as Error).message}`);
  }
  const pems = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (pems.length === 0) throw new ConfigError(`config: ${file} holds no PEM certificate`);
  return pems.map((p, i) => {
    try {
      return new X509Certificate(p);
    } catch (err) {
      throw new ConfigError(`config: ${file}: certificate ${i + 1} is invalid: ${(err as Error).message}`);
    }
  });
}

/** Whether a certificate is within its validity period (with the token leeway). */
function isCurrent(c: X509Certificate): boolean {
  const now = Date.now();
  return Date.parse(c.validFrom) <= now + LEEWAY_SECONDS * 1000 && Date.parse(c.validTo) >= now - LEEWAY_SECONDS * 1000;
}

export class TokenVerifier {
  private readonly byKid = new Map<string, KeyObject>();

  private constructor(
    readonly issuer: string,
    readonly service: string,
    private readonly roots: X509Certificate[],
  ) {}

  /** Keys from a PEM bundle (for kid lookup and x5c roots) and/or a JWKS; ConfigError when unusable. */
  static create(opts: { issuer: string; service: string; rootcertbundle?: string; jwks?: string; keys?: KeyObject[] }): TokenVerifier {
    const roots = opts.rootcertbundle ? readCertBundle(opts.rootcertbundle) : [];
    const v = new TokenVerifier(opts.issuer, opts.service, roots);
    for (const cert of roots) v.addKey(cert.publicKey);
    for (const key of opts.keys ?? []) v.addKey(key);
    if (opts.jwks) {
      let set: { keys?: JWK[] };
      try {
        set = JSON.parse(readFileSync(opts.jwks, 'utf8')) as { keys?: JWK[] };
      } catch (err) {
        throw new ConfigError(`config: cannot read JWKS ${opts.jwks}: ${(err as Error).message}`);
      }
      if (!Array.isArray(set.keys) || set.keys.length === 0) throw new ConfigError(`config: ${opts.jwks}: no keys in the JWKS`);
      for (const jwk of set.keys) {
        if (jwk.d !== undefined || jwk.kty === 'oct') throw new ConfigError(`config: ${opts.jwks}: only public keys belong in the JWKS`);
        let key: KeyObject;
        try {
          key = createPublicKey({ key: jwk as import('node:crypto').JsonWebKey, format: 'jwk' });
        } catch (err) {
          throw new ConfigError(`config: ${opts.jwks}: key ${jwk.kid ?? '?'} is invalid: ${(err as Error).message}`);
        }
        v.addKey(key, jwk.kid);
      }
    }
    return v;
  }

  private addKey(key: KeyObject, kid?: string): void {
    if (kid) this.byKid.set(kid, key);
    this.byKid.set(libtrustKid(key), key);
    this.byKid.set(jwkThumbprint(key), key);
  }

  /** The key for a token's header: its x5c chain verified to a root, else its kid. */
  private keyFor(header: JWTHeaderParameters): KeyObject {
    if (header.x5c !== undefined) {
      if (!Array.isArray(header.x5c) || header.x5c.length === 0 || header.x5c.length > 10) throw new TokenError('invalid x5c header');
      const chain = header.x5c.map((b64) => {
        try {
          return new X509Certificate(Buffer.from(String(b64), 'base64'));
        } catch {
          throw new TokenError('invalid certificate in x5c');
        }
      });
      if (!chain.every(isCurrent)) throw new TokenError('x5c certificate outside its validity period');
      for (let i = 0; i + 1 < chain.length; i++) {
        // Only a CA certificate may issue others: a leaf's key must not sign a further "leaf".
        if (!chain[i + 1]!.ca) throw new TokenError('x5c chain has an issuer that is not a CA');
        if (!chain[i]!.checkIssued(chain[i + 1]!) || !chain[i]!.verify(chain[i + 1]!.publicKey)) throw new TokenError('x5c chain is broken');
      }
      const top = chain[chain.length - 1]!;
      // The top is a bundle certificate itself, or issued by one that is a current CA.
      const trusted = this.roots.some(
        (r) => r.fingerprint256 === top.fingerprint256 || (r.ca && isCurrent(r) && top.checkIssued(r) && top.verify(r.publicKey)),
      );
      if (!trusted) throw new TokenError('x5c chain does not lead to a trusted root');
      return chain[0]!.publicKey;
    }
    if (typeof header.kid === 'string') {
      const key = this.byKid.get(header.kid);
      if (!key) throw new TokenError('unknown signing key');
      return key;
    }
    throw new TokenError('token names no key (kid or x5c)');
  }

  async verify(token: string): Promise<VerifiedToken> {
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(token, async (header) => this.keyFor(header), {
        algorithms: [...TOKEN_ALGORITHMS],
        issuer: this.issuer,
        audience: this.service,
        clockTolerance: LEEWAY_SECONDS,
        requiredClaims: ['exp'],
      }));
    } catch (err) {
      throw new TokenError(err instanceof TokenError ? err.message : `invalid token: ${(err as { code?: string }).code ?? 'rejected'}`);
    }
    const access: GrantEntry[] = [];
    if (Array.isArray(payload.access)) {
      for (const e of payload.access as unknown[]) {
        const r = e as Partial<GrantEntry> | null;
        if (r && typeof r.type === 'string' && typeof r.name === 'string' && Array.isArray(r.actions) && r.actions.every((a) => typeof a === 'string')) {
          access.push({ type: r.type, name: r.name, actions: r.actions });
        }
      }
    }
    return { subject: typeof payload.sub === 'string' && payload.sub !== '' ? payload.sub : null, access };
  }
}

export interface BearerOptions {
  realm: string | ((req: IncomingMessage) => string);
  service: string;
}

/**
 * Bearer challenge and check shared by auth.token and auth.tokenserver. Not throttled: a
 * signed token cannot be guessed, and counting bad ones would only let anyone lock others out.
 */
export class BearerController implements AccessController {
  constructor(
    readonly kind: 'token' | 'tokenserver',
    private readonly verifier: TokenVerifier,
    private readonly opts: BearerOptions,
  ) {}

  challenge(req: IncomingMessage, scope: Access[], error?: 'invalid_token' | 'insufficient_scope'): string {
    const realm = typeof this.opts.realm === 'function' ? this.opts.realm(req) : this.opts.realm;
    let c = `Bearer realm=${quote(realm)},service=${quote(this.opts.service)}`;
    if (scope.length) c += `,scope=${quote(scopeString(scope))}`;
    if (error) c += `,error=${quote(error)}`;
    return c;
  }

  async authorize(req: IncomingMessage, required: Access[], challenge: Access[]): Promise<Authorized> {
    const token = parseBearer(req.headers.authorization);
    if (token === null) throw unauthorized(this.challenge(req, challenge));
    if (token === 'malformed') throw unauthorized(this.challenge(req, challenge, 'invalid_token'), null, 'malformed Authorization header');
    let verified: VerifiedToken;
    try {
      verified = await this.verifier.verify(token);
    } catch (err) {
      throw unauthorized(this.challenge(req, challenge, 'invalid_token'), null, `invalid token: ${(err as Error).message}`);
    }
    const missing = required.filter((a) => !grants(verified.access, a));
    if (missing.length) {
      throw unauthorized(this.challenge(req, challenge, 'insufficient_scope'), { missing: scopeString(missing) }, 'insufficient scope: the token does not grant this access');
    }
    return { subject: verified.subject, can: (a) => grants(verified.access, a) };
  }
}
