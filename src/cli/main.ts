#!/usr/bin/env node
// The `berth` command: serve a registry, purge stale uploads.
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { Command } from 'commander';
import { ConfigError, loadConfig, type Config } from '../config/config.js';
import { createLogger } from '../log.js';
import { createApp } from './app.js';
import { Registry } from '../registry/registry.js';
import { createDriver } from '../storage/factory.js';

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };

/** Splits `http.addr` ("host:port", ":port", "[v6]:port") into listen arguments. */
export function parseAddr(addr: string): { host?: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(addr);
  if (!m) throw new ConfigError(`config: http.addr: expected host:port, got ${JSON.stringify(addr)}`);
  const host = m[1] ?? m[2];
  return { host: host ? host : undefined, port: Number(m[3]) };
}

function load(file: string | undefined): Config {
  try {
    return loadConfig(file);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`berth: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
}

async function serve(file: string | undefined): Promise<void> {
  const config = load(file);
  const log = createLogger(config.log);
  for (const key of config.warnings) log.warn({ key }, `config: ${key} is not understood by Berth and is ignored`);

  let app: Awaited<ReturnType<typeof createApp>>;
  try {
    app = await createApp(config, log);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`berth: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  const { server, shutdown, registry, auth } = app;
  if (auth) log.info({ auth: auth.kind }, 'authentication enabled');
  if (auth?.reload) process.on('SIGHUP', () => void auth.reload!().catch((err) => log.error({ error: (err as Error).message }, 'auth: reload failed')));

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    if (config.http.net === 'unix') server.listen(config.http.addr, resolve);
    else {
      let addr: { host?: string; port: number };
      try {
        addr = parseAddr(config.http.addr);
      } catch (err) {
        process.stderr.write(`berth: ${(err as Error).message}\n`);
        process.exit(1);
      }
      server.listen(addr.port, addr.host, resolve);
    }
  }).catch((err: NodeJS.ErrnoException) => {
    process.stderr.write(`berth: cannot listen on ${config.http.addr}: ${err.message}\n`);
    process.exit(1);
  });
  const address = server.address();
  const where = typeof address === 'string' ? address : `${(address as AddressInfo).address}:${(address as AddressInfo).port}`;
  log.info(
    { addr: where, tls: Boolean(config.http.tls), port: typeof address === 'object' ? address?.port : undefined, storage: config.storage.driver, version: pkg.version },
    'listening',
  );

  let purgeTimer: NodeJS.Timeout | undefined;
  const purge = config.storage.uploadPurging;
  if (purge.enabled && !config.storage.readOnly) {
    const run = () =>
      registry
        .purgeUploads(purge.ageMs, purge.dryRun)
        .then((removed) => {
          if (removed.length) log.info({ count: removed.length, dryRun: purge.dryRun, removed: removed.slice(0, 100) }, 'purged stale uploads');
        })
        .catch((err) => log.error({ err }, 'upload purging failed'));
    purgeTimer = setInterval(run, purge.intervalMs);
    purgeTimer.unref();
  }

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal, drainTimeoutMs: config.http.drainTimeoutMs }, 'shutting down');
    clearInterval(purgeTimer);
    shutdown(config.http.drainTimeoutMs).then(
      () => {
        log.info('stopped');
        log.flush();
        process.exit(0);
      },
      (err) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

async function purgeUploads(file: string | undefined, opts: { age?: string; dryRun?: boolean }): Promise<void> {
  const config = load(file);
  const registry = new Registry(await createDriver(config.storage), { deleteEnabled: false, readOnly: false, redirectDisabled: true });
  const { parseDuration } = await import('../config/config.js');
  const age = opts.age ? parseDuration(opts.age, '--age') : config.storage.uploadPurging.ageMs;
  const removed = await registry.purgeUploads(age, opts.dryRun ?? false);
  for (const r of removed) process.stdout.write(`${opts.dryRun ? 'would remove' : 'removed'} ${r.repo} ${r.uuid}\n`);
  process.stdout.write(`${removed.length} upload(s) ${opts.dryRun ? 'to purge' : 'purged'}\n`);
}

const program = new Command();
program.name('berth').description('Berth: an OCI Distribution container registry').version(pkg.version, '-v, --version');
program
  .command('serve')
  .description('serve the registry API (config: a Distribution-style config.yml; REGISTRY_* env vars override it)')
  .argument('[config]', 'path to the YAML configuration file')
  .action(serve);
program
  .command('purge-uploads')
  .description('remove upload sessions older than the purge age (storage.maintenance.uploadpurging.age)')
  .argument('[config]', 'path to the YAML configuration file')
  .option('--age <duration>', 'override the age, e.g. 24h')
  .option('--dry-run', 'list what would be removed')
  .action(purgeUploads);

program.parseAsync().catch((err) => {
  process.stderr.write(`berth: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
