// Configuration: a YAML file in the shape of CNCF Distribution's config.yml, then
// REGISTRY_* environment overrides (REGISTRY_HTTP_ADDR → http.addr), validated once.
// Unknown keys are warned about; a bad value fails with one line naming the key.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import YAML from 'yaml';
import { z } from 'zod';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Go-style durations as Distribution writes them: "300ms", "10s", "168h", "1h30m". */
export function parseDuration(value: string | number, key: string): number {
  if (typeof value === 'number') return value / 1e6; // Go yaml treats bare numbers as nanoseconds
  if (value === '0') return 0; // as Go's time.ParseDuration
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g;
  const unit: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  let consumed = 0;
  for (const m of value.matchAll(re)) {
    total += Number(m[1]) * unit[m[2]!]!;
    consumed += m[0].length;
  }
  if (consumed === 0 || consumed !== value.length) throw new ConfigError(`config: ${key}: invalid duration ${JSON.stringify(value)}`);
  return total;
}

// Values from the environment arrive as strings; accept them where a boolean or number is due.
const bool = (def: boolean) =>
  z.preprocess((v) => (v === 'true' ? true : v === 'false' ? false : v), z.boolean()).default(def);
const duration = (def: string) =>
  z.union([z.string(), z.number()]).default(def);

const storageCommon = {
  // Distribution's `blobdescriptor: inmemory` is what Berth does; `ttl` is Berth's own.
  cache: z.object({ ttl: duration('5s'), blobdescriptor: z.string().optional() }).default({}),
  delete: z.object({ enabled: bool(false) }).default({}),
  redirect: z.object({ disable: bool(false) }).default({}),
  maintenance: z
    .object({
      uploadpurging: z
        .object({
          enabled: bool(true),
          age: duration('168h'),
          interval: duration('24h'),
          dryrun: bool(false),
        })
        .default({}),
      readonly: z.object({ enabled: bool(false) }).default({}),
    })
    .default({}),
};

const filesystemSchema = z.object({
  rootdirectory: z.string().min(1).default('/var/lib/registry'),
});

// Distribution's azure keys, plus `serviceurl` (a Berth extension: Azurite, private endpoints).
const azureSchema = z.object({
  accountname: z.string().min(1),
  accountkey: z.string().min(1),
  container: z
    .string()
    .regex(/^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$/, 'an Azure container name: 3-63 of a-z, 0-9 and single inner hyphens'),
  rootdirectory: z.string().default(''),
  realm: z.string().min(1).default('core.windows.net'),
  serviceurl: z.string().url().optional(),
});

const MiB = 1024 * 1024;
/** A byte count: a number, or a string of digits (from the environment). */
const bytes = (def: number, min: number, max: number) =>
  z.preprocess((v) => (typeof v === 'string' && /^\d+$/.test(v.trim()) ? Number(v) : v), z.number().int().min(min).max(max)).default(def);

// Distribution's s3 keys (plus `keyid` and `sessiontoken`, which Distribution also has).
const s3Schema = z
  .object({
    region: z.string().min(1),
    regionendpoint: z.string().min(1).optional(),
    bucket: z.string().min(1).regex(/^[^/]+$/, 'a bucket name, without /'),
    rootdirectory: z.string().default(''),
    accesskey: z.string().min(1).optional(),
    secretkey: z.string().min(1).optional(),
    sessiontoken: z.string().min(1).optional(),
    forcepathstyle: bool(false),
    secure: bool(true),
    chunksize: bytes(10 * MiB, 5 * MiB, 5 * 1024 * MiB),
    multipartcopychunksize: bytes(32 * MiB, 5 * MiB, 5 * 1024 * MiB),
    multipartcopythresholdsize: bytes(32 * MiB, 0, 5 * 1024 * MiB),
    encrypt: bool(false),
    keyid: z.string().min(1).optional(),
    storageclass: z
      .enum(['STANDARD', 'REDUCED_REDUNDANCY', 'STANDARD_IA', 'ONEZONE_IA', 'INTELLIGENT_TIERING', 'GLACIER_IR', 'OUTPOSTS', 'NONE'])
      .default('STANDARD'),
  })
  .refine((o) => (o.accesskey === undefined) === (o.secretkey === undefined), {
    message: 'accesskey and secretkey go together (leave both out for the default credential chain)',
    path: ['secretkey'],
  });

// Distribution's gcs keys (`credentials` inline, as Distribution allows, or as a JSON string
// from REGISTRY_STORAGE_GCS_CREDENTIALS), plus `endpoint` (a Berth extension: private
// endpoints, emulators).
const gcsSchema = z
  .object({
    bucket: z.string().min(1).regex(/^[^/]+$/, 'a bucket name, without /'),
    keyfile: z.string().min(1).optional(),
    credentials: z
      .preprocess(
        (v) => {
          if (typeof v !== 'string') return v;
          try {
            return JSON.parse(v) as unknown;
          } catch {
            return v;
          }
        },
        z.object({ private_key: z.string().min(1), client_email: z.string().min(1) }).passthrough(),
      )
      .optional(),
    rootdirectory: z.string().default(''),
    chunksize: bytes(5 * MiB, 256 * 1024, 5 * 1024 * MiB).refine((n) => n % (256 * 1024) === 0, 'must be a multiple of 256 KiB (262144)'),
    endpoint: z.string().url().optional(),
  })
  .refine((o) => o.keyfile === undefined || o.credentials === undefined, {
    message: 'give keyfile or credentials, not both',
    path: ['credentials'],
  });

// Authentication (issue 5): Distribution's `htpasswd` and `token` keys, plus Berth's own
// `tokenserver`. Exactly one mode may be configured.
const authSchema = z
  .object({
    htpasswd: z.object({ realm: z.string().min(1), path: z.string().min(1) }).strict().optional(),
    token: z
      .object({
        realm: z.string().url(),
        service: z.string().min(1),
        issuer: z.string().min(1),
        rootcertbundle: z.string().min(1).optional(),
        jwks: z.string().min(1).optional(),
        autoredirect: bool(false),
        autoredirectpath: z.string().startsWith('/').default('/auth/token'),
      })
      .strict()
      .optional(),
    tokenserver: z
      .object({
        realm: z.string().url().optional(),
        service: z.string().min(1).default('berth'),
        issuer: z.string().min(1).default('berth'),
        key: z.string().min(1),
        htpasswd: z.string().min(1),
        policy: z.string().min(1),
        expiration: duration('5m'),
        refreshexpiration: duration('720h'),
      })
      .strict()
      .optional(),
    // Berth: failed authentications per client address before 429 TOOMANYREQUESTS.
    throttle: z
      .object({
        maxfailures: z.preprocess((v) => (typeof v === 'string' ? Number(v) : v), z.number().int().min(1)).default(10),
        window: duration('1m'),
        lockout: duration('1m'),
      })
      .strict()
      .default({}),
  })
  .strict();

const tlsSchema = z
  .object({
    certificate: z.string().min(1),
    key: z.string().min(1),
    clientcas: z.union([z.array(z.string().min(1)), z.string().min(1)]).optional(),
    minimumtls: z.enum(['tls1.2', 'tls1.3']).default('tls1.2'),
  })
  .strict();

const schema = z.object({
  version: z.union([z.string(), z.number()]).optional(),
  log: z
    .object({
      level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'panic']).default('info'),
      formatter: z.enum(['json', 'text', 'logstash']).default('json'),
      fields: z.record(z.unknown()).default({}),
      accesslog: z.object({ disabled: bool(false) }).default({}),
    })
    .default({}),
  storage: z
    .object({
      filesystem: z.union([filesystemSchema, z.null()]).optional(),
      inmemory: z.union([z.object({}).passthrough(), z.null()]).optional(),
      azure: azureSchema.optional(),
      s3: s3Schema.optional(),
      gcs: gcsSchema.optional(),
      ...storageCommon,
    })
    .default({}),
  http: z
    .object({
      addr: z.string().default('127.0.0.1:5000'),
      net: z.enum(['tcp', 'unix']).default('tcp'),
      host: z.string().url().optional(),
      secret: z.string().optional(),
      relativeurls: bool(false),
      draintimeout: duration('10s'),
      headers: z.record(z.union([z.array(z.string()), z.string()])).default({ 'X-Content-Type-Options': ['nosniff'] }),
      tls: tlsSchema.optional(),
    })
    .default({}),
  auth: z.union([authSchema, z.null()]).optional(),
});

type Raw = z.infer<typeof schema>;

export type AzureConfig = z.infer<typeof azureSchema>;
export type S3Config = z.infer<typeof s3Schema>;
export type GcsConfig = z.infer<typeof gcsSchema>;

export interface AuthThrottleConfig {
  maxFailures: number;
  windowMs: number;
  lockoutMs: number;
}

export type AuthConfig = { throttle: AuthThrottleConfig } & (
  | { mode: 'htpasswd'; htpasswd: { realm: string; path: string } }
  | {
      mode: 'token';
      token: { realm: string; service: string; issuer: string; rootcertbundle?: string; jwks?: string; autoredirect: boolean; autoredirectpath: string };
    }
  | {
      mode: 'tokenserver';
      tokenserver: {
        realm?: string;
        service: string;
        issuer: string;
        key: string;
        htpasswd: string;
        policy: string;
        expirationMs: number;
        refreshExpirationMs: number;
      };
    }
);

export interface TlsConfig {
  certificate: string;
  key: string;
  clientcas: string[];
  minimumtls: 'tls1.2' | 'tls1.3';
}

export type StorageConfig =
  | { driver: 'filesystem'; filesystem: { rootdirectory: string } }
  | { driver: 'inmemory' }
  | { driver: 'azure'; azure: AzureConfig }
  | { driver: 's3'; s3: S3Config }
  | { driver: 'gcs'; gcs: GcsConfig };

export interface Config {
  log: Raw['log'];
  storage: StorageConfig & {
    deleteEnabled: boolean;
    readOnly: boolean;
    redirectDisabled: boolean;
    /** How long facts read from storage are trusted in memory (0: not cached). */
    cacheTtlMs: number;
    uploadPurging: { enabled: boolean; ageMs: number; intervalMs: number; dryRun: boolean };
  };
  http: {
    addr: string;
    net: 'tcp' | 'unix';
    host?: string;
    secret?: string;
    relativeUrls: boolean;
    drainTimeoutMs: number;
    headers: Record<string, string[]>;
    tls?: TlsConfig;
  };
  /** Authentication; absent: an open registry (as before). */
  auth?: AuthConfig;
  /** Keys that were present but are not understood (warned about at start). */
  warnings: string[];
}

// Every key Berth understands, for the unknown-key warnings. `*` accepts any child.
const KNOWN: Record<string, unknown> = {
  version: 1,
  log: { level: 1, formatter: 1, fields: '*', accesslog: { disabled: 1 } },
  storage: {
    filesystem: { rootdirectory: 1 },
    inmemory: '*',
    azure: { accountname: 1, accountkey: 1, container: 1, rootdirectory: 1, realm: 1, serviceurl: 1 },
    s3: {
      region: 1, regionendpoint: 1, bucket: 1, rootdirectory: 1, accesskey: 1, secretkey: 1, sessiontoken: 1, forcepathstyle: 1,
      secure: 1, chunksize: 1, multipartcopychunksize: 1, multipartcopythresholdsize: 1, encrypt: 1, keyid: 1, storageclass: 1,
    },
    gcs: { bucket: 1, keyfile: 1, credentials: '*', rootdirectory: 1, chunksize: 1, endpoint: 1 },
    cache: { ttl: 1, blobdescriptor: 1, blobdescriptorsize: 1 },
    delete: { enabled: 1 },
    redirect: { disable: 1 },
    maintenance: { uploadpurging: { enabled: 1, age: 1, interval: 1, dryrun: 1 }, readonly: { enabled: 1 } },
  },
  http: {
    addr: 1, net: 1, host: 1, secret: 1, relativeurls: 1, draintimeout: 1, headers: '*',
    tls: { certificate: 1, key: 1, clientcas: 1, minimumtls: 1 },
  },
  auth: {
    htpasswd: { realm: 1, path: 1 },
    token: { realm: 1, service: 1, issuer: 1, rootcertbundle: 1, jwks: 1, autoredirect: 1, autoredirectpath: 1 },
    tokenserver: { realm: 1, service: 1, issuer: 1, key: 1, htpasswd: 1, policy: 1, expiration: 1, refreshexpiration: 1 },
    throttle: { maxfailures: 1, window: 1, lockout: 1 },
  },
};

// Distribution sections that would change security if silently ignored: refuse to start.
const REFUSED: Record<string, string> = {
  'storage.swift': 'the swift storage driver is not supported',
  'storage.oss': 'the oss storage driver is not supported',
};

function unknownKeys(raw: unknown, known: unknown, prefix: string, out: string[]): void {
  if (known === '*' || known === 1 || raw === null || typeof raw !== 'object' || Array.isArray(raw)) return;
  for (const key of Object.keys(raw as object)) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (REFUSED[path]) continue;
    const k = (known as Record<string, unknown>)[key];
    if (k === undefined) out.push(path);
    else unknownKeys((raw as Record<string, unknown>)[key], k, path, out);
  }
}

/**
 * For a value that may take several shapes (a section or null), zod reports only "Invalid
 * input" at the section; the branch whose complaint lies deepest names the real key.
 */
function deepestIssue(issue: z.ZodIssue): z.ZodIssue {
  if (issue.code !== 'invalid_union') return issue;
  const inner = issue.unionErrors.flatMap((e) => e.issues).map(deepestIssue);
  return inner.reduce((best, i) => (i.path.length > best.path.length ? i : best), issue);
}

/** Applies REGISTRY_A_B_C=value as raw.a.b.c = value (keys lower-cased, as Distribution does). */
export function applyEnv(raw: Record<string, unknown>, env: NodeJS.ProcessEnv): void {
  // REGISTRY_STORAGE goes last, so the driver it selects wins whatever the variables' order
  // (a REGISTRY_STORAGE_FILESYSTEM_* after it would otherwise add a second driver).
  const entries = Object.entries(env).sort(([a], [b]) => Number(a === 'REGISTRY_STORAGE') - Number(b === 'REGISTRY_STORAGE'));
  for (const [name, value] of entries) {
    if (!name.startsWith('REGISTRY_') || value === undefined) continue;
    const segs = name.slice('REGISTRY_'.length).toLowerCase().split('_').filter(Boolean);
    if (segs.length === 0) continue;
    if (segs.length === 1 && segs[0] === 'storage') {
      // REGISTRY_STORAGE=<driver> selects the driver, keeping the driver-independent keys.
      const storage = (raw.storage ?? {}) as Record<string, unknown>;
      for (const d of ['filesystem', 'inmemory', 's3', 'azure', 'gcs']) if (d !== value) delete storage[d];
      storage[value] ??= {};
      raw.storage = storage;
      continue;
    }
    let node = raw;
    for (const seg of segs.slice(0, -1)) {
      const next = node[seg];
      if (next === null || typeof next !== 'object' || Array.isArray(next)) node[seg] = {};
      node = node[seg] as Record<string, unknown>;
    }
    node[segs[segs.length - 1]!] = value;
  }
}

export function loadConfig(file: string | undefined, env: NodeJS.ProcessEnv = process.env): Config {
  let raw: Record<string, unknown> = {};
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError(`config: cannot read ${file}: ${(err as Error).message}`);
    }
    try {
      raw = (YAML.parse(text) as Record<string, unknown>) ?? {};
    } catch (err) {
      throw new ConfigError(`config: ${file} is not valid YAML: ${(err as Error).message.split('\n')[0]}`);
    }
    if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(`config: ${file} must hold a YAML mapping`);
  }
  applyEnv(raw, env);
  return buildConfig(raw);
}

export function buildConfig(raw: Record<string, unknown>): Config {
  for (const [path, why] of Object.entries(REFUSED)) {
    const [a, b] = path.split('.');
    const section = (raw as Record<string, Record<string, unknown> | undefined>)[a!];
    const present = b === undefined ? section !== undefined && section !== null : section?.[b] !== undefined;
    if (present) throw new ConfigError(`config: ${path}: ${why}`);
  }
  const warnings: string[] = [];
  unknownKeys(raw, KNOWN, '', warnings);
  const blobdescriptor = (raw as { storage?: { cache?: { blobdescriptor?: unknown } } }).storage?.cache?.blobdescriptor;
  if (blobdescriptor !== undefined && blobdescriptor !== 'inmemory') {
    warnings.push(`storage.cache.blobdescriptor: ${String(blobdescriptor)} is not supported; Berth caches in memory (storage.cache.ttl)`);
  }

  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = deepestIssue(parsed.error.issues[0]!);
    throw new ConfigError(`config: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  const c = parsed.data;

  const drivers = (['filesystem', 'inmemory', 'azure', 's3', 'gcs'] as const).filter((d) => Object.hasOwn(c.storage, d));
  if (drivers.length > 1) throw new ConfigError(`config: storage: more than one driver configured (${drivers.join(', ')})`);
  const driver = drivers[0] ?? 'filesystem';
  const storage: StorageConfig =
    driver === 'inmemory'
      ? { driver }
      : driver === 'azure'
        ? { driver, azure: c.storage.azure! }
        : driver === 's3'
          ? { driver, s3: c.storage.s3! }
          : driver === 'gcs'
            ? { driver, gcs: { ...c.storage.gcs!, keyfile: c.storage.gcs!.keyfile && resolve(c.storage.gcs!.keyfile) } }
            : { driver: 'filesystem', filesystem: { rootdirectory: resolve(c.storage.filesystem?.rootdirectory ?? './data') } };

  const auth = buildAuth(c.auth);
  const tls: TlsConfig | undefined = c.http.tls && {
    certificate: resolve(c.http.tls.certificate),
    key: resolve(c.http.tls.key),
    clientcas: (c.http.tls.clientcas === undefined ? [] : Array.isArray(c.http.tls.clientcas) ? c.http.tls.clientcas : [c.http.tls.clientcas]).map((f) => resolve(f)),
    minimumtls: c.http.tls.minimumtls,
  };

  const purge = c.storage.maintenance.uploadpurging;
  const headers: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(c.http.headers)) headers[k] = Array.isArray(v) ? v : [v];

  return {
    log: c.log,
    storage: {
      ...storage,
      deleteEnabled: c.storage.delete.enabled,
      readOnly: c.storage.maintenance.readonly.enabled,
      redirectDisabled: c.storage.redirect.disable,
      cacheTtlMs: parseDuration(c.storage.cache.ttl, 'storage.cache.ttl'),
      uploadPurging: {
        enabled: purge.enabled,
        ageMs: parseDuration(purge.age, 'storage.maintenance.uploadpurging.age'),
        intervalMs: parseDuration(purge.interval, 'storage.maintenance.uploadpurging.interval'),
        dryRun: purge.dryrun,
      },
    },
    http: {
      addr: c.http.addr,
      net: c.http.net,
      host: c.http.host,
      secret: c.http.secret,
      relativeUrls: c.http.relativeurls,
      drainTimeoutMs: parseDuration(c.http.draintimeout, 'http.draintimeout'),
      headers,
      ...(tls ? { tls } : {}),
    },
    ...(auth ? { auth } : {}),
    warnings,
  };
}

function buildAuth(a: Raw['auth']): AuthConfig | undefined {
  if (a === undefined || a === null) return undefined;
  const modes = (['htpasswd', 'token', 'tokenserver'] as const).filter((m) => a[m] !== undefined);
  if (modes.length === 0) throw new ConfigError('config: auth: configure one of htpasswd, token or tokenserver (or remove the auth section)');
  if (modes.length > 1) throw new ConfigError(`config: auth: only one mode may be configured (found ${modes.join(', ')})`);
  const throttle: AuthThrottleConfig = {
    maxFailures: a.throttle.maxfailures,
    windowMs: parseDuration(a.throttle.window, 'auth.throttle.window'),
    lockoutMs: parseDuration(a.throttle.lockout, 'auth.throttle.lockout'),
  };
  if (a.htpasswd) return { throttle, mode: 'htpasswd', htpasswd: { realm: a.htpasswd.realm, path: resolve(a.htpasswd.path) } };
  if (a.token) {
    const t = a.token;
    if (!t.rootcertbundle && !t.jwks) throw new ConfigError('config: auth.token: rootcertbundle or jwks is required (the keys tokens are verified with)');
    return {
      throttle,
      mode: 'token',
      token: {
        ...t,
        rootcertbundle: t.rootcertbundle && resolve(t.rootcertbundle),
        jwks: t.jwks && resolve(t.jwks),
      },
    };
  }
  const s = a.tokenserver!;
  return {
    throttle,
    mode: 'tokenserver',
    tokenserver: {
      realm: s.realm,
      service: s.service,
      issuer: s.issuer,
      key: resolve(s.key),
      htpasswd: resolve(s.htpasswd),
      policy: resolve(s.policy),
      expirationMs: parseDuration(s.expiration, 'auth.tokenserver.expiration'),
      refreshExpirationMs: parseDuration(s.refreshexpiration, 'auth.tokenserver.refreshexpiration'),
    },
  };
}
