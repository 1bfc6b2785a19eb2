// Wires a validated configuration into a registry server: driver → registry services →
// HTTP server. Shared by `berth serve` and the tests, so both run the same assembly.
import { readFileSync } from 'node:fs';
import type { SecureVersion, TlsOptions } from 'node:tls';
import type { Logger } from 'pino';
import { AuthHook, createAccessController, type AccessController } from '../auth/index.js';
import { ConfigError, type Config, type TlsConfig } from '../config/config.js';
import { createRegistryServer, type RegistryServer } from '../api/server.js';
import { Registry } from '../registry/registry.js';
import { createDriver } from '../storage/factory.js';

function readTls(file: string, key: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new ConfigError(`config: http.tls.${key}: cannot read ${file}: ${(err as Error).message}`);
  }
}

/** http.tls as node:tls options: certificate and key, client CAs (mutual TLS), minimum version. */
export function tlsOptions(tls: TlsConfig): TlsOptions {
  const opts: TlsOptions = {
    cert: readTls(tls.certificate, 'certificate'),
    key: readTls(tls.key, 'key'),
    minVersion: (tls.minimumtls === 'tls1.3' ? 'TLSv1.3' : 'TLSv1.2') as SecureVersion,
  };
  if (tls.clientcas.length) {
    opts.ca = tls.clientcas.map((f) => readTls(f, 'clientcas'));
    opts.requestCert = true;
    opts.rejectUnauthorized = true;
  }
  return opts;
}

/**
 * Assembles the server. Throws ConfigError when a file the configuration names (htpasswd,
 * policy, keys, certificates) is missing or malformed.
 */
export async function createApp(config: Config, log: Logger): Promise<RegistryServer & { registry: Registry; auth?: AccessController }> {
  const auth = config.auth ? createAccessController(config.auth, log, { baseUrl: config.http.host }) : undefined;
  const tls = config.http.tls ? tlsOptions(config.http.tls) : undefined;
  const registry = new Registry(await createDriver(config.storage), {
    deleteEnabled: config.storage.deleteEnabled,
    readOnly: config.storage.readOnly,
    redirectDisabled: config.storage.redirectDisabled,
    cacheTtlMs: config.storage.cacheTtlMs,
    uploadMaxAgeMs: config.storage.uploadPurging.enabled ? config.storage.uploadPurging.ageMs : null,
  });
  const server = createRegistryServer(
    registry,
    {
      host: config.http.host,
      relativeUrls: config.http.relativeUrls,
      deleteEnabled: config.storage.deleteEnabled,
      readOnly: config.storage.readOnly,
      redirectDisabled: config.storage.redirectDisabled,
      headers: config.http.headers,
      accessLog: !config.log.accesslog.disabled,
      ...(auth ? { auth: new AuthHook(auth) } : {}),
      ...(tls ? { tls } : {}),
    },
    log,
  );
  const shutdown = async (drainTimeoutMs: number): Promise<void> => {
    auth?.close?.();
    await server.shutdown(drainTimeoutMs);
  };
  return { ...server, shutdown, registry, ...(auth ? { auth } : {}) };
}
