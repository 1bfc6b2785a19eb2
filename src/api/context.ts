// The per-request context handed to handlers, and small response helpers.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { TlsOptions } from 'node:tls';
import type { AuthHook } from '../auth/index.js';
import { RegistryError } from '../errors/codes.js';
import type { Registry, Repository } from '../registry/registry.js';
import { paginate } from '../storage/driver.js';

export interface ApiOptions {
  /** Absolute base URL for Location headers (http.host); else derived from the request. */
  host?: string;
  relativeUrls: boolean;
  deleteEnabled: boolean;
  readOnly: boolean;
  redirectDisabled: boolean;
  /** Extra headers on every response (http.headers). */
  headers: Record<string, string[]>;
  accessLog: boolean;
  /** Authentication and authorization (auth.*); absent: an open registry. */
  auth?: AuthHook;
  /** http.tls: serve HTTPS with these node:tls options. */
  tls?: TlsOptions;
}

export interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  /** Raw (still percent-encoded) path, without the query. */
  path: string;
  query: URLSearchParams;
  params: Record<string, string>;
  registry: Registry;
  options: ApiOptions;
  log: Logger;
  requestId: string;
  /** Writes the status and headers, with the headers the server adds to every answer. */
  writeHead(status: number, headers: Record<string, string>): void;
}

/**
 * The request body as chunks. Stopping early (a size error) must not destroy the request, so
 * the error answer can still be written; the connection is closed after it instead.
 */
export function body(ctx: Ctx): AsyncIterable<Buffer> {
  return ctx.req.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>;
}

export function repoOf(ctx: Ctx): Repository {
  return ctx.registry.repository(ctx.params.name!);
}

/** A URL for a Location header: relative, or absolute from http.host or the request. */
export function urlFor(ctx: Ctx, path: string): string {
  if (ctx.options.relativeUrls) return path;
  if (ctx.options.host) return ctx.options.host.replace(/\/+$/, '') + path;
  const h = ctx.req.headers;
  const proto = first(h['x-forwarded-proto']) ?? ((ctx.req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http');
  const host = first(h['x-forwarded-host']) ?? h.host ?? 'localhost';
  return `${proto.split(',')[0]!.trim()}://${host.split(',')[0]!.trim()}${path}`;
}

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

export function sendJson(ctx: Ctx, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const data = Buffer.from(JSON.stringify(body));
  ctx.writeHead(status, { ...headers, 'Content-Type': 'application/json', 'Content-Length': String(data.length) });
  ctx.res.end(data);
}

export function sendEmpty(ctx: Ctx, status: number, headers: Record<string, string> = {}): void {
  ctx.writeHead(status, { ...headers, 'Content-Length': '0' });
  ctx.res.end();
}

/** Refuses writes in read-only mode (405 UNSUPPORTED). */
export function assertWritable(ctx: Ctx): void {
  if (ctx.options.readOnly) {
    throw new RegistryError('UNSUPPORTED', { reason: 'registry is in read-only mode' }, { message: 'the registry is in read-only mode' });
  }
}

export function assertDeletable(ctx: Ctx): void {
  assertWritable(ctx);
  if (!ctx.options.deleteEnabled) {
    throw new RegistryError('UNSUPPORTED', { reason: 'deletes are disabled (storage.delete.enabled)' }, { message: 'deletes are disabled on this registry' });
  }
}

/** Parses `n` and `last` of a paginated list. n absent → undefined (all, or the default). */
export function pagination(ctx: Ctx): { n?: number; last?: string } {
  const rawN = ctx.query.get('n');
  let n: number | undefined;
  if (rawN !== null) {
    if (!/^\d{1,9}$/.test(rawN)) {
      throw new RegistryError('PAGINATION_NUMBER_INVALID', { n: rawN }, { message: `n must be a non-negative integer, got ${JSON.stringify(rawN)}` });
    }
    n = Number(rawN);
  }
  const last = ctx.query.get('last') ?? undefined;
  return { n, last: last === '' ? undefined : last };
}

/** Entries after `last`, at most n, and the Link header for the next page when there is one. */
export function page(
  ctx: Ctx,
  sorted: string[],
  opts: { n?: number; last?: string },
): { entries: string[]; link?: string } {
  if (opts.n === 0) return { entries: [] };
  const { entries, next } = paginate(sorted, { limit: opts.n, after: opts.last });
  if (next === undefined) return { entries };
  const q = new URLSearchParams({ n: String(opts.n), last: next });
  return { entries, link: `<${ctx.path}?${q.toString()}>; rel="next"` };
}
