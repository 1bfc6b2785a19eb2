// The HTTP server: one route table (repository names contain slashes, so routes match on
// the path's suffix), the access log, and graceful shutdown.
import { randomBytes } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { RegistryError } from '../errors/codes.js';
import type { Registry } from '../registry/registry.js';
import type { ApiOptions, Ctx } from './context.js';
import { writeError } from './errors.js';
import { deleteBlob, getBlob } from './handlers/blobs.js';
import { catalog, listReferrers, listTags, versionCheck } from './handlers/listings.js';
import { deleteManifest, getManifest, putManifest } from './handlers/manifests.js';
import { cancelUpload, completeUpload, patchUpload, startUpload, uploadStatus } from './handlers/uploads.js';

type Handler = (ctx: Ctx) => Promise<void>;

interface Route {
  /** A literal the path must contain; cheaper than running each pattern in turn. */
  marker: string;
  pattern: RegExp;
  /** Names of the pattern's capture groups, in order. */
  params: string[];
  methods: Record<string, Handler>;
}

const NAME = '(.+)';
const SEG = '([^/]+)';

// Order matters: the upload routes come before the blob route they would otherwise match.
const ROUTES: Route[] = [
  { marker: '/v2', pattern: /^\/v2\/?$/, params: [], methods: { GET: versionCheck, HEAD: versionCheck } },
  { marker: '/_catalog', pattern: /^\/v2\/_catalog$/, params: [], methods: { GET: catalog, HEAD: catalog } },
  { marker: '/tags/list', pattern: new RegExp(`^/v2/${NAME}/tags/list$`), params: ['name'], methods: { GET: listTags, HEAD: listTags } },
  {
    marker: '/manifests/',
    pattern: new RegExp(`^/v2/${NAME}/manifests/${SEG}$`),
    params: ['name', 'ref'],
    methods: { GET: getManifest, HEAD: getManifest, PUT: putManifest, DELETE: deleteManifest },
  },
  { marker: '/blobs/uploads', pattern: new RegExp(`^/v2/${NAME}/blobs/uploads/?$`), params: ['name'], methods: { POST: startUpload } },
  {
    marker: '/blobs/uploads/',
    pattern: new RegExp(`^/v2/${NAME}/blobs/uploads/${SEG}$`),
    params: ['name', 'uuid'],
    methods: { GET: uploadStatus, HEAD: uploadStatus, PATCH: patchUpload, PUT: completeUpload, DELETE: cancelUpload },
  },
  { marker: '/blobs/', pattern: new RegExp(`^/v2/${NAME}/blobs/${SEG}$`), params: ['name', 'digest'], methods: { GET: getBlob, HEAD: getBlob, DELETE: deleteBlob } },
  { marker: '/referrers/', pattern: new RegExp(`^/v2/${NAME}/referrers/${SEG}$`), params: ['name', 'digest'], methods: { GET: listReferrers, HEAD: listReferrers } },
];

export function matchRoute(method: string, path: string): { handler: Handler; params: Record<string, string> } {
  for (const route of ROUTES) {
    if (!path.includes(route.marker)) continue;
    const m = route.pattern.exec(path);
    if (!m) continue;
    const params: Record<string, string> = {};
    for (let i = 0; i < route.params.length; i++) params[route.params[i]!] = m[i + 1]!;
    const handler = route.methods[method];
    if (!handler) {
      throw new RegistryError('UNSUPPORTED', { method, allowed: Object.keys(route.methods) }, {
        message: `method ${method} is not allowed here`,
        headers: { Allow: Object.keys(route.methods).join(', ') },
      });
    }
    return { handler, params };
  }
  throw new RegistryError('NOT_FOUND', { path });
}

const BASE_HEADERS = { 'Docker-Distribution-API-Version': 'registry/2.0' };

// Request ids: a random per-process prefix and a counter (cheaper than random bytes per request).
const ID_PREFIX = randomBytes(4).toString('hex');
let requestCounter = 0;

type HeadersFor = (requestId: string, own: Record<string, string>) => string[];

/**
 * One request's context. A class, not an object literal, so that every request's context
 * shares one shape (a getter in a literal gives each object its own hidden class: measured
 * at +40% CPU per request).
 */
class RequestContext implements Ctx {
  readonly path: string;
  params: Record<string, string> = {};
  /** The answer's Content-Length, for the access log. */
  responseLength: string | undefined;
  private readonly rawQuery: string;
  private parsedQuery: URLSearchParams | undefined;

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    rawUrl: string,
    readonly registry: Registry,
    readonly options: ApiOptions,
    readonly log: Logger,
    readonly requestId: string,
    private readonly headersFor: HeadersFor,
  ) {
    const q = rawUrl.indexOf('?');
    this.path = q < 0 ? rawUrl : rawUrl.slice(0, q);
    this.rawQuery = q < 0 ? '' : rawUrl.slice(q + 1);
  }

  /** Parsed on first use: the hot requests (blob HEAD, manifest GET) have no query. */
  get query(): URLSearchParams {
    return (this.parsedQuery ??= new URLSearchParams(this.rawQuery));
  }

  writeHead(status: number, headers: Record<string, string>): void {
    this.responseLength = headers['Content-Length'];
    this.res.writeHead(status, this.headersFor(this.requestId, headers));
  }
}

export interface RegistryServer {
  server: http.Server;
  /** Stops accepting, lets in-flight requests finish (up to the drain timeout), then closes. */
  shutdown(drainTimeoutMs: number): Promise<void>;
}

export function createRegistryServer(registry: Registry, options: ApiOptions, log: Logger): RegistryServer {
  let inflight = 0;
  let idle: (() => void) | null = null;
  // Headers on every answer, written with the handler's own in one writeHead call with no
  // setHeader before it: Node's cheapest path (~3.5 µs less per response than setHeader +
  // writeHead, measured). A configured header (http.headers) the handler also sets, such as
  // Cache-Control, is left to the handler, as setHeader + writeHead did.
  const fixedHeaders = Object.entries(BASE_HEADERS).flat();
  const configured = Object.entries(options.headers).flatMap(([k, vs]) => vs.map((v) => [k, k.toLowerCase(), v] as const));
  const headersFor: HeadersFor = (requestId, own) => {
    const raw = ['X-Request-Id', requestId, ...fixedHeaders];
    if (configured.length > 0) {
      const ownNames = Object.keys(own).map((k) => k.toLowerCase());
      for (const [k, lower, v] of configured) if (!ownNames.includes(lower)) raw.push(k, v);
    }
    for (const k in own) raw.push(k, own[k]!);
    return raw;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const started = options.accessLog ? process.hrtime.bigint() : 0n;
    const incomingId = req.headers['x-request-id'];
    const requestId = typeof incomingId === 'string' && /^[\w.-]{1,128}$/.test(incomingId) ? incomingId : `${ID_PREFIX}${(++requestCounter).toString(16).padStart(8, '0')}`;
    const rawUrl = req.url ?? '/';
    const ctx = new RequestContext(req, res, rawUrl, registry, options, log, requestId, headersFor);

    inflight++;
    res.once('close', () => {
      inflight--;
      if (options.accessLog) {
        log.info(
          {
            requestId,
            method: req.method,
            path: ctx.path,
            status: res.statusCode,
            bytes: Number(ctx.responseLength ?? 0),
            durationMs: Number(process.hrtime.bigint() - started) / 1e6,
            remote: req.socket.remoteAddress,
            userAgent: req.headers['user-agent'],
            ...(res.writableFinished ? {} : { aborted: true }),
          },
          'request',
        );
      }
      if (inflight === 0 && idle) idle();
    });

    const socket = req.socket;
    try {
      // The access controller's own endpoints (the token server's /token) come before routing.
      if (options.auth && (await options.auth.intercept(ctx))) return;
      const { handler, params } = matchRoute(req.method ?? 'GET', ctx.path);
      ctx.params = params;
      if (options.auth) await options.auth.authorize(ctx);
      await handler(ctx);
    } catch (err) {
      if (socket.destroyed || res.destroyed) {
        // The client went away (an interrupted upload, a pull that hung up): nobody to answer.
        log.debug({ err, requestId }, 'client disconnected');
        res.destroy();
        return;
      }
      writeError(ctx, err);
    }
  };

  const serverOptions = { requestTimeout: 0, headersTimeout: 60_000, keepAliveTimeout: 65_000 };
  const listener = (req: IncomingMessage, res: ServerResponse) => {
    void handle(req, res);
  };
  const server: http.Server = options.tls
    ? (https.createServer({ ...serverOptions, ...options.tls }, listener) as unknown as http.Server)
    : http.createServer(serverOptions, listener);

  // A malformed request (bad framing, or a TLS ClientHello on this plain-HTTP port) gets a
  // quick 400 and the connection is closed, so TLS-first clients fall back to HTTP at once.
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (!socket.writable || (err.code === 'ECONNRESET')) {
      socket.destroy();
      return;
    }
    const e = new RegistryError(
      err.code === 'HPE_INVALID_CONTENT_LENGTH' || err.code === 'HPE_UNEXPECTED_CONTENT_LENGTH' ? 'SIZE_INVALID' : 'BAD_REQUEST',
      { reason: err.code ?? 'unknown' },
      { message: err.code === 'HPE_HEADER_OVERFLOW' ? 'request headers too large' : 'malformed HTTP request' },
    );
    const body = JSON.stringify({ errors: [{ code: e.code, message: e.message, detail: e.detail }] });
    const headers: [string, string][] = [
      ...Object.entries(BASE_HEADERS),
      ...Object.entries(options.headers).flatMap(([k, vs]) => vs.map((v): [string, string] => [k, v])),
      ['Content-Type', 'application/json'],
      ['Content-Length', String(Buffer.byteLength(body))],
      ['Connection', 'close'],
    ];
    socket.end(`HTTP/1.1 ${e.status} Bad Request\r\n${headers.map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n${body}`);
  });

  const shutdown = async (drainTimeoutMs: number): Promise<void> => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    if (inflight > 0) {
      await Promise.race([
        new Promise<void>((resolve) => (idle = resolve)),
        new Promise<void>((resolve) => setTimeout(resolve, drainTimeoutMs).unref()),
      ]);
    }
    server.closeAllConnections();
    await closed;
  };

  return { server, shutdown };
}
