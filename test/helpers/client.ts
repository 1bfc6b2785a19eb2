// A small OCI Distribution HTTP client for API tests (plain fetch, nothing of Berth's own).
import { createHash, randomBytes } from 'node:crypto';
import assert from 'node:assert/strict';

export function sha256(data: Buffer | string): string {
  return 'sha256:' + createHash('sha256').update(data).digest('hex');
}

export function sha512(data: Buffer | string): string {
  return 'sha512:' + createHash('sha512').update(data).digest('hex');
}

export function random(size: number): Buffer {
  return randomBytes(size);
}

export interface ErrorBody {
  errors: { code: string; message: string; detail?: unknown }[];
}

/** Asserts a response is an error with the given status and OCI error code. */
export async function expectError(res: Response, status: number, code: string): Promise<ErrorBody> {
  const text = await res.text();
  assert.equal(res.status, status, `expected ${status} ${code}, got ${res.status}: ${text}`);
  // A HEAD answer carries the headers of the error but no body.
  if (text === '' && Number(res.headers.get('content-length')) > 0) return { errors: [] };
  assert.match(res.headers.get('content-type') ?? '', /application\/json/);
  const body = JSON.parse(text) as ErrorBody;
  assert.ok(Array.isArray(body.errors) && body.errors.length > 0, `no errors array: ${text}`);
  assert.equal(body.errors[0]!.code, code, `wrong code in ${text}`);
  assert.equal(typeof body.errors[0]!.message, 'string');
  return body;
}

export class Client {
  constructor(readonly url: string) {}

  /** fetch against the registry; `body` may be a Buffer, a string or a stream. */
  fetch(path: string, init: Omit<RequestInit, 'body'> & { body?: unknown; duplex?: 'half' } = {}): Promise<Response> {
    return fetch(this.url + path, { redirect: 'manual', ...init } as RequestInit);
  }

  /** Resolves a Location header (absolute or relative) to a path+query on this registry. */
  location(res: Response): string {
    const loc = res.headers.get('location');
    assert.ok(loc, 'no Location header');
    const u = new URL(loc, this.url);
    return u.pathname + u.search;
  }

  /** Monolithic upload (POST ?digest=); returns the digest. */
  async pushBlob(repo: string, data: Buffer | string): Promise<string> {
    const digest = sha256(data);
    const res = await this.fetch(`/v2/${repo}/blobs/uploads/?digest=${digest}`, {
      method: 'POST',
      body: data,
      headers: { 'Content-Type': 'application/octet-stream' },
    });
    assert.equal(res.status, 201, await res.text());
    assert.equal(res.headers.get('docker-content-digest'), digest);
    return digest;
  }

  /** Starts an upload session; returns its Location path. */
  async startUpload(repo: string): Promise<string> {
    const res = await this.fetch(`/v2/${repo}/blobs/uploads/`, { method: 'POST' });
    assert.equal(res.status, 202, await res.text());
    assert.ok(res.headers.get('docker-upload-uuid'));
    return this.location(res);
  }

  /** Appends `?`/`&` + param to a Location path that may already have a query. */
  static withParam(location: string, param: string): string {
    return location + (location.includes('?') ? '&' : '?') + param;
  }

  async putManifest(repo: string, ref: string, manifest: object | Buffer, mediaType?: string): Promise<{ res: Response; digest: string; body: Buffer }> {
    const body = Buffer.isBuffer(manifest) ? manifest : Buffer.from(JSON.stringify(manifest));
    const type = mediaType ?? ((manifest as { mediaType?: string }).mediaType || 'application/vnd.oci.image.manifest.v1+json');
    const res = await this.fetch(`/v2/${repo}/manifests/${ref}`, { method: 'PUT', body, headers: { 'Content-Type': type } });
    return { res, digest: sha256(body), body };
  }

  /** Pushes config + layers and an OCI image manifest; returns the manifest and digests. */
  async pushImage(
    repo: string,
    tag: string,
    opts: { layers?: Buffer[]; extra?: Record<string, unknown>; config?: Buffer; configType?: string } = {},
  ): Promise<{ digest: string; manifest: Record<string, unknown>; body: Buffer; layers: string[]; config: string }> {
    const config = opts.config ?? Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, n: Math.random() }));
    const configDigest = await this.pushBlob(repo, config);
    const layers = opts.layers ?? [random(1024)];
    const layerDigests: string[] = [];
    for (const l of layers) layerDigests.push(await this.pushBlob(repo, l));
    const manifest = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: opts.configType ?? 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
      layers: layers.map((l, i) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layerDigests[i], size: l.length })),
      ...opts.extra,
    };
    const { res, digest, body } = await this.putManifest(repo, tag, manifest);
    assert.equal(res.status, 201, await res.text());
    return { digest, manifest, body, layers: layerDigests, config: configDigest };
  }
}

export interface RawResponse {
  status: number;
  headers: import('node:http').IncomingHttpHeaders;
  body: Buffer;
}

/**
 * A request through node:http with the path sent exactly as given (fetch normalises `..`,
 * `%2e` and the like, which tests of name validation must not have happen).
 */
export async function rawRequest(
  baseUrl: string,
  method: string,
  path: string,
  opts: { headers?: Record<string, string>; body?: Buffer | string } = {},
): Promise<RawResponse> {
  const { request } = await import('node:http');
  const u = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, method, path, headers: opts.headers ?? {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** Asserts a raw response is an error with the given status and OCI error code. */
export function expectRawError(res: RawResponse, status: number, code: string): ErrorBody {
  const text = res.body.toString('utf8');
  assert.equal(res.status, status, `expected ${status} ${code}, got ${res.status}: ${text}`);
  assert.equal(res.headers['docker-distribution-api-version'], 'registry/2.0');
  if (text === '') return { errors: [] }; // HEAD
  assert.match(String(res.headers['content-type'] ?? ''), /application\/json/);
  const body = JSON.parse(text) as ErrorBody;
  assert.ok(Array.isArray(body.errors) && body.errors.length > 0, `no errors array: ${text}`);
  assert.equal(body.errors[0]!.code, code, `wrong code in ${text}`);
  return body;
}

/** The target of a `Link: <url>; rel="next"` header, or null when there is none. */
export function nextLink(res: Response): string | null {
  const link = res.headers.get('link');
  if (link === null) return null;
  const m = /^<([^>]+)>;\s*rel="next"$/.exec(link.trim());
  assert.ok(m, `malformed Link header: ${link}`);
  return m[1]!;
}
