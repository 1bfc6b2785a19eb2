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
    })
    .default({}),
});

type Raw = z.infer<typeof schema>;

export type AzureConfig = z.infer<typeof azureSchema>;

export type StorageConfig =
  | { driver: 'filesystem'; filesystem: { rootdirectory: string } }
  | { driver: 'inmemory' }
  | { driver: 'azure'; azure: AzureConfig };

export interface Config {
  log: Raw['log'];
  storage: StorageConfig & {
    deleteEnabled: boolean;
    readOnly: boolean;
    redirectDisabled: boolean;
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
  };
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
    delete: { enabled: 1 },
    redirect: { disable: 1 },
    maintenance: { uploadpurging: { enabled: 1, age: 1, interval: 1, dryrun: 1 }, readonly: { enabled: 1 } },
  },
  http: { addr: 1, net: 1, host: 1, secret: 1, relativeurls: 1, draintimeout: 1, headers: '*' },
};

// Distribution sections that would change security if silently ignored: refuse to start.
const REFUSED: Record<string, string> = {
  auth: 'authentication is not implemented yet; refusing to start an open registry',
  'http.tls': 'TLS is not implemented yet; refusing to serve plain HTTP where TLS was asked for',
  'storage.s3': 'the s3 storage driver is not implemented yet',
  'storage.gcs': 'the gcs storage driver is not implemented yet',
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

  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ConfigError(`config: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  const c = parsed.data;

  const drivers = (['filesystem', 'inmemory', 'azure'] as const).filter((d) => Object.hasOwn(c.storage, d));
  if (drivers.length > 1) throw new ConfigError(`config: storage: more than one driver configured (${drivers.join(', ')})`);
  const driver = drivers[0] ?? 'filesystem';
  const storage: StorageConfig =
    driver === 'inmemory'
      ? { driver }
      : driver === 'azure'
        ? { driver, azure: c.storage.azure! }
        : { driver: 'filesystem', filesystem: { rootdirectory: resolve(c.storage.filesystem?.rootdirectory ?? './data') } };

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
    },
    warnings,
  };
}
