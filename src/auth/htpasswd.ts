// auth.htpasswd: users from an Apache htpasswd file with bcrypt entries, HTTP Basic
// credentials, `WWW-Authenticate: Basic realm="…"`. Every authenticated user may do
// everything (as in Distribution); per-repository grants are the token server's job.
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import bcrypt from 'bcryptjs';
import { ConfigError } from '../config/config.js';
import type { Access } from './access.js';
import { clientAddress, parseBasic, quote, Throttle, unauthorized, type AccessController, type Authorized } from './controller.js';

const BCRYPT = /^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$/;

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
      throw new ConfigError(`config: htpasswd file ${where}: the entry for ${JSON.stringify(user)} is not a bcrypt hash ($2y$/$2a$/$2b$; create it with htpasswd -B)`);
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
 * user exists or not: an unknown user is compared against a dummy hash of the same cost.
 */
export class Users {
  private users: Map<string, string>;
  private dummy: string;

  constructor(readonly file: string) {
    this.users = readHtpasswd(file);
    this.dummy = Users.dummyFor(this.users);
  }

  private static dummyFor(users: Map<string, string>): string {
    const first = users.values().next().value as string | undefined;
    const cost = first ? Number(first.slice(4, 6)) : 10;
    return bcrypt.hashSync('berth-dummy-password', Math.min(Math.max(cost, 4), 31));
  }

  /** Re-reads the file; throws (keeping the old users) when it is now invalid. */
  reload(): void {
    const users = readHtpasswd(this.file);
    this.dummy = Users.dummyFor(users);
    this.users = users;
  }

  has(user: string): boolean {
    return this.users.has(user);
  }

  async verify(user: string, password: string): Promise<boolean> {
    const hash = this.users.get(user);
    const ok = await bcrypt.compare(password, hash ?? this.dummy);
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
  ) {
    this.users = new Users(file);
  }

  private challenge(): string {
    return `Basic realm=${quote(this.realm)}, charset="UTF-8"`;
  }

  async authorize(req: IncomingMessage, _required: Access[]): Promise<Authorized> {
    const client = clientAddress(req);
    const creds = parseBasic(req.headers.authorization);
    if (creds === null) throw unauthorized(this.challenge());
    this.throttle.check(client);
    if (creds === 'malformed') {
      this.throttle.fail(client);
      throw unauthorized(this.challenge(), null, 'malformed Authorization header');
    }
    if (!(await this.users.verify(creds.user, creds.password))) {
      this.throttle.fail(client);
      throw unauthorized(this.challenge(), null, 'invalid username or password');
    }
    return { subject: creds.user, can: () => true };
  }

  async reload(): Promise<void> {
    this.users.reload();
  }
}
