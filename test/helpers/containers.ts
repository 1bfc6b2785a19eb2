// Shared pieces of the end-to-end tests with the real container clients (skopeo, podman,
// buildah): private podman/buildah storage, plain-fetch reads of what Berth serves, a tiny
// tar reader to look inside layers, and access-log parsing of a `berth serve` process.
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { run, type RunResult } from './exec.js';
import { buildImage, type BuiltImage } from './images.js';

export function sha256(data: Buffer | string): string {
  return 'sha256:' + createHash('sha256').update(data).digest('hex');
}

/**
 * A fresh temp directory whose path is all lower case. podman derives a local image name
 * from the path of an `oci:DIR:TAG` reference, and rejects the pull when that path has
 * capitals (mkdtemp's random suffix has them).
 */
export function lowercaseTempDir(prefix = 'berth-e2e-'): string {
  const dir = join(tmpdir(), prefix + randomBytes(8).toString('hex'));
  mkdirSync(dir, { recursive: true });
  return dir;
}

/**
 * buildImage with everything it writes kept under `scratch` (which the caller removes): the
 * layout goes to `scratch/layout`, and TMPDIR points into `scratch` while it runs, because
 * makeLayer leaves its `berth-layer-*` work directories (with the layer data) behind in the
 * OS temp directory. buildImage is synchronous, so the TMPDIR switch cannot leak elsewhere.
 */
export function buildImageIn(scratch: string, opts: Parameters<typeof buildImage>[0] = {}): BuiltImage {
  const saved = process.env.TMPDIR;
  process.env.TMPDIR = scratch;
  try {
    return buildImage({ ...opts, dir: join(scratch, 'layout') });
  } finally {
    if (saved === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = saved;
  }
}

/**
 * podman or buildah with its own storage under a temp directory, so tests never touch (or
 * see) the machine's images, and two stores in one test really are independent.
 */
export class PrivateStore {
  readonly dir: string;
  private readonly globals: string[];

  constructor(readonly tool: 'podman' | 'buildah') {
    this.dir = lowercaseTempDir(`berth-${tool}-`);
    this.globals = ['--root', join(this.dir, 'root'), '--runroot', join(this.dir, 'runroot'), '--storage-driver', 'vfs'];
    if (tool === 'podman') {
      // No containers run, but podman still sets up its runtime: keep its state files, its
      // events log and its cgroup manager choice off the host's systemd/journald.
      this.globals.push('--tmpdir', join(this.dir, 'tmp'), '--cgroup-manager', 'cgroupfs', '--events-backend', 'file');
    }
  }

  run(args: string[], opts: { allowFail?: boolean; timeoutMs?: number } = {}): Promise<RunResult> {
    return run(this.tool, [...this.globals, ...args], { timeoutMs: 120_000, ...opts });
  }

  /** The last non-empty stdout line (image ids, container names). */
  async runLine(args: string[]): Promise<string> {
    const lines = (await this.run(args)).stdout.trim().split('\n');
    return lines[lines.length - 1]!.trim();
  }

  async cleanup(): Promise<void> {
    // vfs "mounts" are plain directories, but unmount anyway so nothing holds the tree.
    if (this.tool === 'buildah') await this.run(['umount', '--all'], { allowFail: true, timeoutMs: 30_000 });
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export const INDEX_TYPES = ['application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json'];
export const MANIFEST_TYPES = ['application/vnd.oci.image.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v2+json'];
const ACCEPT = [...INDEX_TYPES, ...MANIFEST_TYPES].join(', ');

export interface Fetched {
  status: number;
  headers: Headers;
  body: Buffer;
}

async function get(url: string, method = 'GET', accept?: string): Promise<Fetched> {
  const res = await fetch(url, { method, headers: accept ? { Accept: accept } : {}, redirect: 'manual' });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}

/** GET (or HEAD) /v2/<repo>/manifests/<ref>, accepting every image manifest and index type. */
export function fetchManifest(base: string, repo: string, ref: string, method = 'GET'): Promise<Fetched> {
  return get(`${base}/v2/${repo}/manifests/${ref}`, method, ACCEPT);
}

/** GET (or HEAD) /v2/<repo>/blobs/<digest>. */
export function fetchBlob(base: string, repo: string, digest: string, method = 'GET'): Promise<Fetched> {
  return get(`${base}/v2/${repo}/blobs/${digest}`, method);
}

/** The error code of an OCI error body, asserting its shape on the way. */
export function errorCode(f: Fetched): string {
  const ct = f.headers.get('content-type') ?? '';
  if (!ct.includes('json')) throw new Error(`error body is ${ct}, not JSON: ${f.body.toString()}`);
  const body = JSON.parse(f.body.toString()) as { errors?: { code?: string }[] };
  if (!Array.isArray(body.errors) || body.errors.length === 0) throw new Error(`no errors array in ${f.body.toString()}`);
  return String(body.errors[0]!.code);
}

export interface ImageManifest {
  mediaType?: string;
  config: { mediaType: string; digest: string; size: number };
  layers: { mediaType: string; digest: string; size: number }[];
}

export interface ImageIndex {
  mediaType?: string;
  manifests: { mediaType: string; digest: string; size: number; platform?: { os: string; architecture: string } }[];
}

export interface ImageConfig {
  architecture: string;
  os: string;
  rootfs: { diff_ids: string[] };
}

/**
 * Files of a tar archive (gzip'd or not) by path, "./" stripped. Handles ustar names with a
 * prefix, GNU long names and PAX `path` records: enough for what tar(1) and the container
 * tools write.
 */
export function untar(archive: Buffer): Map<string, Buffer> {
  const tar = archive[0] === 0x1f && archive[1] === 0x8b ? gunzipSync(archive) : archive;
  const files = new Map<string, Buffer>();
  const str = (b: Buffer) => b.toString('utf8').replace(/\0.*$/s, '');
  let off = 0;
  let longName: string | undefined;
  while (off + 512 <= tar.length) {
    const h = tar.subarray(off, off + 512);
    if (h.every((b) => b === 0)) break;
    const size = parseInt(str(h.subarray(124, 136)).trim() || '0', 8);
    const type = String.fromCharCode(h[156]!);
    const data = tar.subarray(off + 512, off + 512 + size);
    off += 512 + Math.ceil(size / 512) * 512;
    if (type === 'L') {
      longName = str(data);
      continue;
    }
    if (type === 'x') {
      const m = /\d+ path=([^\n]*)\n/.exec(data.toString('utf8'));
      if (m) longName = m[1];
      continue;
    }
    if (type === 'g') continue;
    const prefix = str(h.subarray(345, 500));
    let name = longName ?? (prefix ? `${prefix}/${str(h.subarray(0, 100))}` : str(h.subarray(0, 100)));
    longName = undefined;
    name = name.replace(/^\.\//, '').replace(/^\//, '');
    if (type === '0' || type === '\0') files.set(name, Buffer.from(data));
  }
  return files;
}

export interface AccessLogEntry {
  method: string;
  path: string;
  status: number;
}

/** The access-log records in a `berth serve` process's output. */
export function accessLog(output: string): AccessLogEntry[] {
  const out: AccessLogEntry[] = [];
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const r = JSON.parse(line) as { msg?: string; method?: string; path?: string; status?: number };
      if (r.msg === 'request' && r.method && r.path) out.push({ method: r.method, path: r.path, status: Number(r.status) });
    } catch {
      // not a log record
    }
  }
  return out;
}

/**
 * Waits until the access log holds a record matching `pred` (Berth logs asynchronously, so
 * the last request of a client command may be logged a moment after the command exits).
 */
export async function waitForLog(output: () => string, pred: (e: AccessLogEntry) => boolean, timeoutMs = 5000): Promise<AccessLogEntry[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const entries = accessLog(output());
    if (entries.some(pred)) return entries;
    if (Date.now() > deadline) throw new Error(`no matching access-log record within ${timeoutMs} ms; log:\n${output().slice(-4000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
