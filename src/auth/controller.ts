// The access-controller interface every authentication mode implements, and the pieces they
// share: challenges, the failure throttle, and reading the client's address.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { RegistryError } from '../errors/codes.js';
import type { Access } from './access.js';

/** Who a request was authenticated as, and what else it may do. */
export interface Authorized {
  /** The user name; null for an anonymous grant (token server policy). */
  subject: string | null;
  /** Whether an access beyond the required ones is granted (a mount's `from`). */
  can(access: Access): boolean;
}

/** What a controller's own endpoints (the token server's /token) are handed. */
export interface AuthEndpointRequest {
  req: IncomingMessage;
  res: ServerResponse;
  path: string;
  query: URLSearchParams;
}

export interface AccessController {
  readonly kind: 'htpasswd' | 'token' | 'tokenserver';
  /**
   * Authenticates `req` and checks that every `required` access is granted. Throws a
   * RegistryError: UNAUTHORIZED (401) with a WWW-Authenticate challenge naming `challenge`
   * (the scopes a client should ask for), or TOOMANYREQUESTS (429) with Retry-After.
   */
  authorize(req: IncomingMessage, required: Access[], challenge: Access[]): Promise<Authorized>;
  /** Answers a request on the controller's own endpoints; false when the path is not one. */
  serve?(r: AuthEndpointRequest): Promise<boolean>;
  /** Re-reads users and policy (SIGHUP). Keeps the old state when the new one is invalid. */
  reload?(): Promise<void>;
  close?(): void;
}

/** A 401 with the given challenge, as the one error writer will answer it. */
export function unauthorized(challenge: string, detail: unknown = null, message?: string): RegistryError {
  return new RegistryError('UNAUTHORIZED', detail, { message, headers: { 'WWW-Authenticate': challenge } });
}

/** A quoted auth-param value (RFC 7235): quotes and backslashes escaped, no line breaks. */
export function quote(v: string): string {
  return `"${v.replace(/[\r\n]/g, '').replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

/** The TCP peer's address: what failures are counted against (never a forwarded header). */
export function clientAddress(req: IncomingMessage): string {
  return req.socket.remoteAddress ?? 'unknown';
}

export interface ThrottleOptions {
  /** Failures allowed per window before the client is locked out. */
  maxFailures: number;
  windowMs: number;
  /** How long a locked-out client gets 429. */
  lockoutMs: number;
}

export const DEFAULT_THROTTLE: ThrottleOptions = { maxFailures: 10, windowMs: 60_000, lockoutMs: 60_000 };

/**
 * Counts failed authentications per client address; after `maxFailures` in a window the
 * client gets 429 TOOMANYREQUESTS with Retry-After until the lockout ends. Successes do not
 * reset the count (one valid account must not buy unlimited guesses at others).
 */
export class Throttle {
  private readonly entries = new Map<string, { count: number; windowStart: number; lockedUntil: number }>();

  constructor(private readonly opts: ThrottleOptions = DEFAULT_THROTTLE, private readonly now: () => number = Date.now) {}

  /** Throws 429 when `client` is locked out. */
  check(client: string): void {
    const e = this.entries.get(client);
    const now = this.now();
    if (e && e.lockedUntil > now) {
      const retry = Math.max(1, Math.ceil((e.lockedUntil - now) / 1000));
      throw new RegistryError('TOOMANYREQUESTS', { retryAfterSeconds: retry }, {
        message: 'too many failed authentication attempts; try again later',
        headers: { 'Retry-After': String(retry) },
      });
    }
  }

  fail(client: string): void {
    const now = this.now();
    let e = this.entries.get(client);
    if (!e || now - e.windowStart > this.opts.windowMs) {
      if (this.entries.size >= 10_000) this.prune(now);
      e = { count: 0, windowStart: now, lockedUntil: 0 };
      this.entries.set(client, e);
    }
    e.count++;
    if (e.count >= this.opts.maxFailures) e.lockedUntil = now + this.opts.lockoutMs;
  }

  private prune(now: number): void {
    for (const [k, e] of this.entries) if (e.lockedUntil <= now && now - e.windowStart > this.opts.windowMs) this.entries.delete(k);
    // Still full (a flood of distinct addresses): drop the oldest windows.
    if (this.entries.size >= 10_000) {
      const sorted = [...this.entries].sort((a, b) => a[1].windowStart - b[1].windowStart);
      for (const [k] of sorted.slice(0, sorted.length / 2)) this.entries.delete(k);
    }
  }
}

/** `Authorization: Basic …` as user and password; null when absent, 'malformed' when not decodable. */
export function parseBasic(header: string | undefined): { user: string; password: string } | null | 'malformed' {
  if (header === undefined) return null;
  const m = /^Basic[ ]+([A-Za-z0-9+/]+={0,2})[ ]*$/i.exec(header);
  if (!m || m[1]!.length % 4 !== 0) return 'malformed';
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  if (i <= 0) return 'malformed';
  return { user: decoded.slice(0, i), password: decoded.slice(i + 1) };
}

/** `Authorization: Bearer …` token; null when absent or another scheme, 'malformed' when unusable. */
export function parseBearer(header: string | undefined): string | null | 'malformed' {
  if (header === undefined) return null;
  const m = /^(\S+)[ ]+(\S+)[ ]*$/.exec(header);
  if (!m) return 'malformed';
  if (m[1]!.toLowerCase() !== 'bearer') return null;
  if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(m[2]!) || m[2]!.length > 16384) return 'malformed';
  return m[2]!;
}
