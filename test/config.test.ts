// Configuration loading: Distribution's config.yml shape, REGISTRY_* overrides, validation.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ConfigError, applyEnv, buildConfig, loadConfig, parseDuration } from '../src/config/config.js';
import { tempDir } from './helpers/berth.js';

test('defaults: filesystem under ./data, loopback :5000, deletes off', () => {
  const c = buildConfig({});
  assert.equal(c.storage.driver, 'filesystem');
  assert.equal(c.storage.driver === 'filesystem' && c.storage.filesystem.rootdirectory, join(process.cwd(), 'data'));
  assert.equal(c.http.addr, '127.0.0.1:5000');
  assert.equal(c.storage.deleteEnabled, false);
  assert.equal(c.storage.readOnly, false);
  assert.equal(c.http.relativeUrls, false);
  assert.deepEqual(c.http.headers, { 'X-Content-Type-Options': ['nosniff'] });
  assert.equal(c.storage.uploadPurging.ageMs, 168 * 3600_000);
});

test('Go-style durations', () => {
  assert.equal(parseDuration('10s', 'k'), 10_000);
  assert.equal(parseDuration('1h30m', 'k'), 5_400_000);
  assert.equal(parseDuration('300ms', 'k'), 300);
  assert.throws(() => parseDuration('10 minutes', 'some.key'), /some\.key: invalid duration/);
  assert.throws(() => buildConfig({ http: { draintimeout: 'soon' } }), /http\.draintimeout/);
});

test('REGISTRY_* variables override file keys, creating sections as needed', () => {
  const raw: Record<string, unknown> = { http: { addr: ':5000' }, storage: { filesystem: { rootdirectory: '/a' } } };
  applyEnv(raw, {
    REGISTRY_HTTP_ADDR: '0.0.0.0:6000',
    REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: '/b',
    REGISTRY_STORAGE_DELETE_ENABLED: 'true',
    REGISTRY_LOG_ACCESSLOG_DISABLED: 'true',
    OTHER: 'x',
  });
  const c = buildConfig(raw);
  assert.equal(c.http.addr, '0.0.0.0:6000');
  assert.equal(c.storage.driver === 'filesystem' && c.storage.filesystem.rootdirectory, '/b');
  assert.equal(c.storage.deleteEnabled, true);
  assert.equal(c.log.accesslog.disabled, true);
});

test('REGISTRY_STORAGE selects the driver and keeps driver-independent keys', () => {
  const raw: Record<string, unknown> = { storage: { filesystem: { rootdirectory: '/a' }, delete: { enabled: true } } };
  applyEnv(raw, { REGISTRY_STORAGE: 'inmemory' });
  const c = buildConfig(raw);
  assert.equal(c.storage.driver, 'inmemory');
  assert.equal(c.storage.deleteEnabled, true);
});

test('unknown keys are warnings; unsupported drivers and incomplete security sections are errors', () => {
  const c = buildConfig({ version: 0.1, notifications: { endpoints: [] }, http: { addr: ':1', debug: { addr: ':2' } } });
  assert.deepEqual(c.warnings.sort(), ['http.debug', 'notifications']);
  assert.throws(() => buildConfig({ auth: { token: {} } }), (e: Error) => e instanceof ConfigError && /^config: auth\.token/.test(e.message));
  assert.throws(() => buildConfig({ auth: {} }), /config: auth: configure one of/);
  assert.throws(() => buildConfig({ http: { tls: { certificate: 'x' } } }), /config: http\.tls/);
  assert.throws(() => buildConfig({ storage: { swift: { container: 'c' } } }), /config: storage\.swift: the swift storage driver is not supported/);
  // complete sections parse
  assert.equal(buildConfig({ auth: { htpasswd: { realm: 'r', path: '/etc/htpasswd' } } }).warnings.length, 0);
  assert.equal(buildConfig({ http: { tls: { certificate: '/c.pem', key: '/k.pem' } } }).warnings.length, 0);
});

test('storage.cache: ttl (default 5s, 0 turns caching off, REGISTRY_STORAGE_CACHE_TTL); blobdescriptor inmemory accepted, redis warned', () => {
  assert.equal(buildConfig({}).storage.cacheTtlMs, 5_000);
  assert.equal(buildConfig({ storage: { cache: { ttl: '2s' } } }).storage.cacheTtlMs, 2_000);
  const raw: Record<string, unknown> = {};
  applyEnv(raw, { REGISTRY_STORAGE_CACHE_TTL: '0' });
  assert.equal(buildConfig(raw).storage.cacheTtlMs, 0);
  assert.throws(() => buildConfig({ storage: { cache: { ttl: 'a while' } } }), /config: storage\.cache\.ttl: invalid duration/);
  // Distribution's stock config.yml has `cache: { blobdescriptor: inmemory }`: no warning
  assert.deepEqual(buildConfig({ storage: { cache: { blobdescriptor: 'inmemory' } } }).warnings, []);
  assert.match(buildConfig({ storage: { cache: { blobdescriptor: 'redis' } } }).warnings.join('\n'), /blobdescriptor: redis is not supported/);
});

test('invalid values name their key', () => {
  assert.throws(() => buildConfig({ log: { level: 'loud' } }), /^ConfigError: config: log\.level: |config: log\.level: /);
  assert.throws(() => buildConfig({ storage: { delete: { enabled: 'yes please' } } }), /config: storage\.delete\.enabled: /);
  assert.throws(() => buildConfig({ http: { host: 'not a url' } }), /config: http\.host: /);
});

test('loadConfig reads YAML files and reports unreadable or invalid ones', () => {
  const dir = tempDir();
  const file = join(dir, 'config.yml');
  writeFileSync(file, 'version: 0.1\nstorage:\n  inmemory:\n  maintenance:\n    readonly:\n      enabled: true\n');
  const c = loadConfig(file, {});
  assert.equal(c.storage.driver, 'inmemory');
  assert.equal(c.storage.readOnly, true);
  writeFileSync(file, '- a list\n');
  assert.throws(() => loadConfig(file, {}), /must hold a YAML mapping/);
  assert.throws(() => loadConfig(join(dir, 'missing.yml'), {}), /cannot read/);
});
