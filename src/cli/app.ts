// Wires a validated configuration into a registry server: driver → registry services →
// HTTP server. Shared by `berth serve` and the tests, so both run the same assembly.
import type { Logger } from 'pino';
import type { Config } from '../config/config.js';
import { createRegistryServer, type RegistryServer } from '../api/server.js';
import { Registry } from '../registry/registry.js';
import { createDriver } from '../storage/factory.js';

export function createApp(config: Config, log: Logger): RegistryServer & { registry: Registry } {
  const registry = new Registry(createDriver(config.storage), {
    deleteEnabled: config.storage.deleteEnabled,
    readOnly: config.storage.readOnly,
    redirectDisabled: config.storage.redirectDisabled,
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
    },
    log,
  );
  return { ...server, registry };
}
