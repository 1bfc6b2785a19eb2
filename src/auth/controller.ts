// The access-controller interface every authentication mode implements, and the pieces they
// share: challenges, the failure throttle, and reading the client's address.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIPv6 } from 'node:net';
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
  /** Writes the status and headers, with the headers the server adds to every answer. */
  writeHead(status: number, headers: Record<string, string>): void;
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

/**
 * The key failures are counted against: the TCP peer's address (never a forwarded header).
 * An IPv6 client is keyed by its /64, as one host usually has a whole /64 to pick from.
 */
export function clientAddress(req: IncomingMessage): string {
  return addressKey(req.socket.remoteAddress ?? 'unknown');
}

export function addressKey(addr: string): string {
  if (!isIPv6(addr)) return addr;
  // An IPv4 client of a dual-stack socket: its own address, not the shared ::ffff:0:0/96.
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(addr);
  if (mapped) return mapped[1]!;
  const a = addr.split('%')[0]!; // no zone id
  const groups = (s: string) => (s === '' ? [] : s.split(':'));
  let all = groups(a);
  if (a.includes('::')) {
    const [head, tail] = a.split('::').map(groups) as [string[], string[]];
    // A trailing dotted IPv4 part stands for two groups.
    const size = head.length + tail.reduce((n, g) => n + (g.includes('.') ? 2 : 1), 0);
    all = [...head, ...Array<string>(8 - size).fill('0'), ...tail];
  }
  return `${all.slice(0, 4).map((g) => parseInt(g, 16).toString(16)).join(':')}::/64`;
}

export interface ThrottleOptions {
  /** Failures allowed per window before the client is locked out. */
  maxFailures: number;
  windowMs: number;
  /** How long a locked-out client gets 429. */
  lockoutMs: number;
}

export const DEFAULT_THROTTLE: ThrottleOptions = { maxFailures: 10, windowMs: 60_000, lockoutMs: 60_000 };

function tooManyRequests(retryAfterMs: number): RegistryError {
  const retry = Math.max(1, Math.ceil(retryAfterMs / 1000));
  return new RegistryError('TOOMANYREQUESTS', { retryAfterSeconds: retry }, {
    message: 'too many failed authentication attempts; try again later',
    headers: { 'Retry-After': String(retry) },
  });
}

/**
 * Counts failed password checks per client; after `maxFailures` in a window the client gets
 * 429 TOOMANYREQUESTS with Retry-After until the lockout ends. Successes do not reset the
 * count (one valid account must not buy unlimited guesses at others). Only password checks
 * go through here: malformed headers and tokens cost an attacker nothing to send, so
 * counting them would only let anyone lock others out.
 */
export class Throttle {
  private readonly entries = new Map<string, { count: number; windowStart: number; lockedUntil: number }>();
  /** Password checks still running per client. */
  private readonly pending = new Map<string, number>();

  constructor(private readonly opts: ThrottleOptions = DEFAULT_THROTTLE, private readonly now: () => number = Date.now) {}

  /** Callbacks of attempts waiting for one of the client's running checks to finish. */
  private readonly waiting = new Map<string, (() => void)[]>();

  /**
   * Runs one password check for `client`; a false result (or a throw) counts as a failure.
   * Throws 429 while the client is locked out. A burst of parallel attempts waits while its
   * failures plus the checks still running reach maxFailures (failures are only counted when
   * a check finishes, so without this a burst would get any number of guesses); waiting
   * rather than refusing keeps a legitimate client's parallel requests working.
   */
  async attempt(client: string, check: () => Promise<boolean>): Promise<boolean> {
    for (;;) {
      const now = this.now();
      const e = this.entries.get(client);
      if (e && e.lockedUntil > now) throw tooManyRequests(e.lockedUntil - now);
      const failures = e && now - e.windowStart <= this.opts.windowMs ? e.count : 0;
      const pending = this.pending.get(client) ?? 0;
      if (failures + pending < this.opts.maxFailures) break;
      if (pending === 0) throw tooManyRequests(1000);
      await new Promise<void>((resolve) => {
        const list = this.waiting.get(client) ?? [];
        list.push(resolve);
        this.waiting.set(client, list);
      });
    }
    this.pending.set(client, (this.pending.get(client) ?? 0) + 1);
    let ok = false;
    try {
      ok = await check();
      return ok;
    } finally {
      const left = this.pending.get(client)! - 1;
      if (left > 0) this.pending.set(client, left);
      else this.pending.delete(client);
      if (!ok) this.fail(client);
      // Every waiter looks again: one may now run, or all are locked out.
      const waiters = this.waiting.get(client);
      this.waiting.delete(client);
      for (const wake of waiters ?? []) wake();
    }
  }

  private fail(client: string): void {
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
