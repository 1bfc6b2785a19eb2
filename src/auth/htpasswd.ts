// auth.htpasswd: users from an Apache htpasswd file with bcrypt entries, HTTP Basic
// credentials, `WWW-Authenticate: Basic realm="…"`. Every authenticated user may do
// everything (as in Distribution); per-repository grants are the token server's job.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import bcrypt from 'bcryptjs';
import type { Logger } from 'pino';
import { ConfigError } from '../config/config.js';
import type { Access } from './access.js';
import { clientAddress, parseBasic, quote, Throttle, unauthorized, type AccessController, type Authorized } from './controller.js';

// bcrypt accepts costs 04-31 only; another cost would make every check of the entry throw.
const BCRYPT = /^\$2[aby]\$(0[4-9]|[12]\d|3[01])\$[./A-Za-z0-9]{53}$/;

/** Parses htpasswd text: `user:$2y$…` lines, comments and blank lines skipped. Throws ConfigError. */
export function parseHtpasswd(text: string, file: string): Map<string, string> {
  const users = new Map<string, string>();
  text.split(/\r?\n/).forEach((line, i) => {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    const colon = trimmed.indexOf(':');
    const where = `${file}:${i + 1}`;
    if (colon <= 0) throw new ConfigError(`config: htpasswd file ${where}: expected user:hash`);
    const user = trimmed.slice(0, colon);
    const hash = trimmed.slice(colon + 1);
    if (!BCRYPT.test(hash)) {
      throw new ConfigError(`config: htpasswd file ${where}: the entry for ${JSON.stringify(user)} is not a bcrypt hash ($2y$/$2a$/$2b$ with a cost of 04-31; create it with htpasswd -B)`);
    }
    if (users.has(user)) throw new ConfigError(`config: htpasswd file ${where}: user ${JSON.stringify(user)} appears twice`);
    users.set(user, hash);
  });
  return users;
}

/** Reads and parses an htpasswd file; a missing, unreadable or malformed file is a ConfigError. */
export function readHtpasswd(file: string): Map<string, string> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`config: cannot read htpasswd file ${file}: ${(err as Error).message}`);
  }
  return parseHtpasswd(text, file);
}

/**
 * The users of an htpasswd file and a password check that takes the same time whether the
 * user exists or not: an unknown user is compared against a dummy hash of the highest cost
 * in the file (never faster than any real user's check).
 */
export class Users {
  private users: Map<string, string>;
  private dummy: string;

  constructor(readonly file: string, private readonly log?: Logger) {
    this.users = readHtpasswd(file);
    this.dummy = this.dummyFor(this.users);
  }

  private dummyFor(users: Map<string, string>): string {
    const costs = new Set([...users.values()].map((hash) => Number(hash.slice(4, 6))));
    if (costs.size > 1) {
      this.log?.warn({ htpasswd: this.file, costs: [...costs].sort((a, b) => a - b) }, 'auth: htpasswd entries use different bcrypt costs: users with a lower cost are refused faster than unknown users; use one cost');
    }
    return bcrypt.hashSync('berth-dummy-password', costs.size ? Math.max(...costs) : 10);
  }

  /** Re-reads the file; throws (keeping the old users) when it is now invalid. */
  reload(): void {
    const users = readHtpasswd(this.file);
    this.dummy = this.dummyFor(users);
    this.users = users;
  }

  has(user: string): boolean {
    return this.users.has(user);
  }

  /** A short fingerprint of the user's current hash (refresh tokens carry it), or undefined. */
  fingerprint(user: string): string | undefined {
    const hash = this.users.get(user);
    return hash === undefined ? undefined : createHash('sha256').update(hash).digest('hex').slice(0, 16);
  }

  /** Credentials verified in the last minute, by a digest of user, password and hash. */
  private readonly verified = new Map<string, number>();

  private credentialKey(user: string, password: string): string | undefined {
    const hash = this.users.get(user);
    return hash === undefined ? undefined : createHash('sha256').update(`${user}\0${password}\0${hash}`).digest('hex');
  }

  /**
   * Whether these credentials passed a full check within the last minute. Clients send
   * Basic credentials on every request; bcrypt on each would cost tens of milliseconds of
   * CPU per request. A changed htpasswd entry changes the key, so it is checked afresh.
   */
  verifiedRecently(user: string, password: string): boolean {
    const key = this.credentialKey(user, password);
    const until = key === undefined ? undefined : this.verified.get(key);
    return until !== undefined && until > Date.now();
  }

  async verify(user: string, password: string): Promise<boolean> {
    const ok = await this.check(user, password);
    if (ok) {
      if (this.verified.size >= 1000) this.verified.clear();
      this.verified.set(this.credentialKey(user, password)!, Date.now() + 60_000);
    }
    return ok;
  }

  private async check(user: string, password: string): Promise<boolean> {
    const hash = this.users.get(user);
    let ok: boolean;
    try {
      ok = await bcrypt.compare(password, hash ?? this.dummy);
    } catch {
      // A hash bcrypt cannot use: a failed check (counted by the throttle), not a 500.
      ok = false;
    }
    return ok && hash !== undefined;
  }
}

export class HtpasswdController implements AccessController {
  readonly kind = 'htpasswd';
  private readonly users: Users;

  constructor(
    private readonly realm: string,
    file: string,
    private readonly throttle = new Throttle(),
    log?: Logger,
  ) {
    this.users = new Users(file, log);
  }

  private challenge(): string {
    return `Basic realm=${quote(this.realm)}, charset="UTF-8"`;
  }

  async authorize(req: IncomingMessage, _required: Access[]): Promise<Authorized> {
    const client = clientAddress(req);
    const creds = parseBasic(req.headers.authorization);
    if (creds === null) throw unauthorized(this.challenge());
    // Not counted: a malformed header checks no password, so it guesses nothing.
    if (creds === 'malformed') throw unauthorized(this.challenge(), null, 'malformed Authorization header');
    const ok =
      this.users.verifiedRecently(creds.user, creds.password) ||
      (await this.throttle.attempt(client, () => this.users.verify(creds.user, creds.password)));
    if (!ok) {
      throw unauthorized(this.challenge(), null, 'invalid username or password');
    }
    return { subject: creds.user, can: () => true };
  }

  async reload(): Promise<void> {
    this.users.reload();
  }
}
