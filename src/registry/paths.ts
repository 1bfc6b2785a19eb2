// Every storage path the registry uses, in one place. The layout is CNCF Distribution's
// (registry/storage/paths.go), so a storage root is shared with `registry:2` both ways:
//
//   /docker/registry/v2/blobs/<alg>/<hex[0:2]>/<hex>/data
//   /docker/registry/v2/repositories/<name>/_layers/<alg>/<hex>/link
//   /docker/registry/v2/repositories/<name>/_manifests/revisions/<alg>/<hex>/link
//   /docker/registry/v2/repositories/<name>/_manifests/tags/<tag>/current/link
//   /docker/registry/v2/repositories/<name>/_manifests/tags/<tag>/index/<alg>/<hex>/link
//   /docker/registry/v2/repositories/<name>/_uploads/<uuid>/{data,startedat}
//       (Berth adds `cancelled` there: the start time of a cancelled session, see uploads.ts)
//
// Berth's own additions live under `_berth/`, which Distribution ignores (it skips every
// directory starting with '_' that it does not know):
//
//   /docker/registry/v2/repositories/<name>/_berth/referrers/<alg>/<subject hex>/<alg>:<hex>
//       a referrer's descriptor (JSON), so the referrers API reads one directory.
import type { Digest } from '../oci/digest.js';

export const ROOT = '/docker/registry/v2';
export const REPOSITORIES = `${ROOT}/repositories`;
export const BLOBS = `${ROOT}/blobs`;

export const paths = {
  blobData: (d: Digest) => `${BLOBS}/${d.algorithm}/${d.hex.slice(0, 2)}/${d.hex}/data`,
  blobDir: (d: Digest) => `${BLOBS}/${d.algorithm}/${d.hex.slice(0, 2)}/${d.hex}`,

  repo: (name: string) => `${REPOSITORIES}/${name}`,
  layerLink: (name: string, d: Digest) => `${REPOSITORIES}/${name}/_layers/${d.algorithm}/${d.hex}/link`,
  layers: (name: string) => `${REPOSITORIES}/${name}/_layers`,

  manifests: (name: string) => `${REPOSITORIES}/${name}/_manifests`,
  revisionLink: (name: string, d: Digest) => `${REPOSITORIES}/${name}/_manifests/revisions/${d.algorithm}/${d.hex}/link`,
  revisionDir: (name: string, d: Digest) => `${REPOSITORIES}/${name}/_manifests/revisions/${d.algorithm}/${d.hex}`,
  revisions: (name: string) => `${REPOSITORIES}/${name}/_manifests/revisions`,
  tags: (name: string) => `${REPOSITORIES}/${name}/_manifests/tags`,
  tagDir: (name: string, tag: string) => `${REPOSITORIES}/${name}/_manifests/tags/${tag}`,
  tagCurrentLink: (name: string, tag: string) => `${REPOSITORIES}/${name}/_manifests/tags/${tag}/current/link`,
  tagIndexLink: (name: string, tag: string, d: Digest) =>
    `${REPOSITORIES}/${name}/_manifests/tags/${tag}/index/${d.algorithm}/${d.hex}/link`,

  uploads: (name: string) => `${REPOSITORIES}/${name}/_uploads`,
  uploadDir: (name: string, uuid: string) => `${REPOSITORIES}/${name}/_uploads/${uuid}`,
  uploadData: (name: string, uuid: string) => `${REPOSITORIES}/${name}/_uploads/${uuid}/data`,
  uploadStartedAt: (name: string, uuid: string) => `${REPOSITORIES}/${name}/_uploads/${uuid}/startedat`,
  uploadCancelled: (name: string, uuid: string) => `${REPOSITORIES}/${name}/_uploads/${uuid}/cancelled`,

  referrersDir: (name: string, subject: Digest) => `${REPOSITORIES}/${name}/_berth/referrers/${subject.algorithm}/${subject.hex}`,
  referrerEntry: (name: string, subject: Digest, referrer: Digest) =>
    `${REPOSITORIES}/${name}/_berth/referrers/${subject.algorithm}/${subject.hex}/${referrer.value}`,
};
