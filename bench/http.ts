// A small keep-alive HTTP/1.1 client on node:http for the benchmark's pushes, pulls and
// listings: bodies are streamed from generators with backpressure, responses are discarded,
// buffered or hashed as they arrive. Nothing of Berth's own code is used.
import { createHash } from 'node:crypto';
import http from 'node:http';

export interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** The body, when `consume` was 'buffer'. */
  body?: Buffer;
  /** `sha256:<hex>` of the body, when `consume` was 'sha256'. */
  digest?: string;
  bytes: number;
}

export interface RequestOptions {
  headers?: Record<string, string>;
  /** A whole body, or chunks sent one by one with backpressure. */
  body?: Buffer | Iterable<Buffer>;
  /**
   * With an iterable body: 'length' sends Content-Length (the caller must set it),
   * 'chunked' sends Transfer-Encoding: chunked (what docker does for a streamed PATCH).
   */
  framing?: 'length' | 'chunked';
  consume?: 'discard' | 'buffer' | 'sha256';
  /** Fails the request after this long without progress (default 300 s). */
  timeoutMs?: number;
}

export class HttpError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly body: string,
  ) {
    super(message);
  }
}

export class Client {
  readonly url: URL;
  private readonly agent: http.Agent;

  constructor(base: string, maxSockets = 256) {
    this.url = new URL(base);
    if (this.url.protocol !== 'http:') throw new Error(`only http:// targets are supported: ${base}`);
    this.agent = new http.Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets, scheduling: 'lifo' });
  }

  get host(): string {
    return this.url.hostname;
  }

  get port(): number {
    return Number(this.url.port || 80);
  }

  close(): void {
    this.agent.destroy();
  }

  /** A Location header as a path+query on this target. */
  resolve(location: string | undefined): string {
    if (!location) throw new Error('response has no Location header');
    const u = new URL(location, this.url);
    return u.pathname + u.search;
  }

  request(method: string, path: string, opts: RequestOptions = {}): Promise<Response> {
    return new Promise<Response>((resolve, reject) => {
      const headers: Record<string, string> = { ...opts.headers };
      const body = opts.body;
      if (Buffer.isBuffer(body)) headers['Content-Length'] = String(body.length);
      else if (body === undefined && (method === 'PUT' || method === 'POST' || method === 'PATCH')) headers['Content-Length'] = '0';
      else if (body !== undefined && opts.framing !== 'chunked' && headers['Content-Length'] === undefined) {
        reject(new Error('an iterable body needs Content-Length or chunked framing'));
        return;
      }
      let settled = false;
      const fail = (err: Error) => {
        if (settled) return;
        settled = true;
        req.destroy();
        reject(err);
      };
      const req = http.request({
        host: this.url.hostname,
        port: this.port,
        method,
        path,
        headers,
        agent: this.agent,
      });
      req.setTimeout(opts.timeoutMs ?? 300_000, () => fail(new Error(`${method} ${path}: timed out`)));
      req.on('error', fail);
      req.once('response', (res) => {
        const consume = opts.consume ?? 'discard';
        const chunks: Buffer[] = [];
        const hash = consume === 'sha256' ? createHash('sha256') : null;
        let bytes = 0;
        res.on('data', (c: Buffer) => {
          bytes += c.length;
          if (hash) hash.update(c);
          else if (consume === 'buffer' || res.statusCode! >= 400) chunks.push(c);
        });
        res.on('error', fail);
        res.once('end', () => {
          if (settled) return;
          settled = true;
          // The server answered before taking the whole body (an error): drop the connection.
          if (!req.writableFinished) req.destroy();
          const out: Response = { status: res.statusCode!, headers: res.headers, bytes };
          if (hash) out.digest = 'sha256:' + hash.digest('hex');
          if (chunks.length > 0 || consume === 'buffer') out.body = Buffer.concat(chunks);
          resolve(out);
        });
      });
      if (body === undefined) req.end();
      else if (Buffer.isBuffer(body)) req.end(body);
      else {
        const it = body[Symbol.iterator]();
        const pump = (): void => {
          if (settled) return;
          for (;;) {
            const n = it.next();
            if (n.done) {
              req.end();
              return;
            }
            if (!req.write(n.value)) {
              req.once('drain', pump);
              return;
            }
          }
        };
        pump();
      }
    });
  }

  /** Like request, but fails unless the status is one of `expect`. */
  async expect(expect: number | number[], method: string, path: string, opts: RequestOptions = {}): Promise<Response> {
    const res = await this.request(method, path, opts);
    const ok = Array.isArray(expect) ? expect.includes(res.status) : res.status === expect;
    if (!ok) {
      const text = res.body ? res.body.toString('utf8').slice(0, 500) : '';
      throw new HttpError(`${method} ${path}: expected ${expect}, got ${res.status} ${text}`, res.status, text);
    }
    return res;
  }
}

/** Runs `count` tasks with at most `concurrency` at a time; the first failure stops the rest. */
export async function pool(count: number, concurrency: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: unknown = null;
  const worker = async () => {
    while (failed === null) {
      const i = next++;
      if (i >= count) return;
      try {
        await task(i);
      } catch (err) {
        failed ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  if (failed !== null) throw failed;
}
