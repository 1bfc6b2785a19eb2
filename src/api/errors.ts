// The one error writer: every failure of a request becomes the spec's JSON error body
// `{"errors":[{"code","message","detail"}]}` with the status of its code. Unknown failures
// are 500 UNKNOWN, logged with the request id; their details never reach the client. A full
// disk (ENOSPC, EDQUOT) is 507 STORAGE_FULL, and logged too: an operator must act on it.
import { ERROR_CODES, RegistryError } from '../errors/codes.js';
import { InvalidPathError } from '../storage/driver.js';
import type { Ctx } from './context.js';

export function toRegistryError(err: unknown): RegistryError | null {
  if (err instanceof RegistryError) return err;
  if (err instanceof InvalidPathError) return new RegistryError('NAME_INVALID', { path: err.path });
  const errno = (err as NodeJS.ErrnoException | null)?.code;
  if (errno === 'ENOSPC' || errno === 'EDQUOT') return new RegistryError('STORAGE_FULL', { errno });
  return null;
}

export function writeError(ctx: Ctx, err: unknown): void {
  const { req, res } = ctx;
  let e = toRegistryError(err);
  if (!e) {
    ctx.log.error({ err, requestId: ctx.requestId }, 'request failed');
    e = new RegistryError('UNKNOWN', { requestId: ctx.requestId });
  } else if (e.code === 'STORAGE_FULL') {
    ctx.log.error({ err, requestId: ctx.requestId }, 'storage full: a write was refused');
  }
  if (res.headersSent) {
    // Too late for a status: cut the response so the client sees it is incomplete.
    res.destroy();
    return;
  }
  const body = Buffer.from(JSON.stringify({ errors: [{ code: e.code, message: e.message, detail: e.detail ?? null }] }));
  const headers: Record<string, string> = {
    ...e.headers,
    'Content-Type': 'application/json',
    'Content-Length': String(body.length),
  };
  // A request body we did not read would otherwise be drained before the next request.
  if (!req.complete) headers.Connection = 'close';
  ctx.writeHead(ERROR_CODES[e.code].status, headers);
  res.end(body);
}
