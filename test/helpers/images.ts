// Builds small, real container images offline as OCI image layouts on disk (the `oci:DIR:TAG`
// transport of skopeo/podman/buildah): gzip'd tar layers made with tar(1), an image config,
// a manifest per platform and, for several platforms, an image index.
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { spawnSync } from 'node:child_process';

export interface BlobRef {
  mediaType: string;
  digest: string;
  size: number;
}

export interface BuiltImage {
  /** The OCI layout directory. */
  dir: string;
  tag: string;
  /** `oci:<dir>:<tag>` for skopeo and friends. */
  ref: string;
  /** Digest of what the tag points at (the index for several platforms). */
  digest: string;
  /** One manifest per platform. */
  manifests: { platform: { os: string; architecture: string }; digest: string; config: BlobRef; layers: BlobRef[] }[];
  /** Every blob's bytes by digest (layers, configs, manifests, index). */
  blobs: Map<string, Buffer>;
}

function sha256(b: Buffer): string {
  return 'sha256:' + createHash('sha256').update(b).digest('hex');
}

/** A gzip'd tar of the given files (path → content), built with tar(1) for a real archive. */
export function makeLayer(files: Record<string, string | Buffer>): Buffer {
  const dir = mkdtempSync(join(tmpdir(), 'berth-layer-'));
  for (const [name, content] of Object.entries(files)) {
    const p = join(dir, name);
    mkdirSync(join(p, '..'), { recursive: true });
    writeFileSync(p, content);
  }
  const tar = spawnSync('tar', ['--sort=name', '--mtime=@0', '--owner=0', '--group=0', '--numeric-owner', '-C', dir, '-cf', '-', '.'], {
    maxBuffer: 1 << 30,
  });
  rmSync(dir, { recursive: true, force: true });
  if (tar.status !== 0) throw new Error(`tar failed: ${tar.stderr}`);
  return gzipSync(tar.stdout);
}

/**
 * Writes an OCI layout with one image per platform (default linux/amd64). Each image gets
 * `layers` layers; `layerSize` adds that many pseudo-random bytes to each layer, so pushes
 * carry real volume. Content differs per `seed`, so images from different seeds share nothing.
 */
export function buildImage(
  opts: { tag?: string; platforms?: string[]; layers?: number; layerSize?: number; seed?: string; dir?: string } = {},
): BuiltImage {
  const tag = opts.tag ?? 'latest';
  const seed = opts.seed ?? Math.random().toString(36).slice(2);
  // Lower-case only: podman refuses `oci:` paths with capitals.
  const dir = opts.dir ?? join(tmpdir(), `berth-image-${createHash('sha256').update(Math.random().toString()).digest('hex').slice(0, 12)}`);
  mkdirSync(dir, { recursive: true });
  const blobs = new Map<string, Buffer>();
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  const put = (b: Buffer, mediaType: string): BlobRef => {
    const digest = sha256(b);
    blobs.set(digest, b);
    writeFileSync(join(dir, 'blobs', 'sha256', digest.slice(7)), b);
    return { mediaType, digest, size: b.length };
  };

  const manifests: BuiltImage['manifests'] = [];
  const descriptors: object[] = [];
  for (const plat of opts.platforms ?? ['linux/amd64']) {
    const [os, architecture] = plat.split('/') as [string, string];
    const layers: BlobRef[] = [];
    const diffIds: string[] = [];
    for (let i = 0; i < (opts.layers ?? 2); i++) {
      const files: Record<string, string | Buffer> = { [`layer${i}/hello.txt`]: `seed ${seed} platform ${plat} layer ${i}\n` };
      if (opts.layerSize) {
        const rnd = Buffer.alloc(opts.layerSize);
        let h = createHash('sha256').update(`${seed}/${plat}/${i}`).digest();
        for (let off = 0; off < rnd.length; off += h.length) {
          h.copy(rnd, off);
          h = createHash('sha256').update(h).digest();
        }
        files[`layer${i}/data.bin`] = rnd;
      }
      const gz = makeLayer(files);
      diffIds.push(sha256(gunzipSync(gz)));
      layers.push(put(gz, 'application/vnd.oci.image.layer.v1.tar+gzip'));
    }
    const config = put(
      Buffer.from(
        JSON.stringify({
          created: '2026-01-01T00:00:00Z',
          architecture,
          os,
          config: { Cmd: ['/layer0/hello.txt'], Labels: { seed } },
          rootfs: { type: 'layers', diff_ids: diffIds },
          history: layers.map(() => ({ created: '2026-01-01T00:00:00Z', created_by: 'berth test' })),
        }),
      ),
      'application/vnd.oci.image.config.v1+json',
    );
    const manifest = put(
      Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config, layers })),
      'application/vnd.oci.image.manifest.v1+json',
    );
    manifests.push({ platform: { os, architecture }, digest: manifest.digest, config, layers });
    descriptors.push({ ...manifest, platform: { os, architecture } });
  }

  let top: BlobRef;
  if (manifests.length === 1) {
    top = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: manifests[0]!.digest, size: blobs.get(manifests[0]!.digest)!.length };
  } else {
    top = put(
      Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: descriptors })),
      'application/vnd.oci.image.index.v1+json',
    );
  }
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(
    join(dir, 'index.json'),
    JSON.stringify({ schemaVersion: 2, manifests: [{ ...top, annotations: { 'org.opencontainers.image.ref.name': tag } }] }),
  );
  return { dir, tag, ref: `oci:${dir}:${tag}`, digest: top.digest, manifests, blobs };
}
