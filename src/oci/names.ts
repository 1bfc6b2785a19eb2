// Repository name, tag and reference grammars of the OCI Distribution spec.
import { RegistryError } from '../errors/codes.js';
import { tryParseDigest, type Digest } from './digest.js';

const COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
const NAME_RE = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`);
const TAG_RE = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
export const MAX_NAME_LENGTH = 255;

export function isValidName(name: string): boolean {
  return name.length <= MAX_NAME_LENGTH && NAME_RE.test(name);
}

export function checkName(name: string): string {
  if (!isValidName(name)) {
    throw new RegistryError('NAME_INVALID', { name }, {
      message: name.length > MAX_NAME_LENGTH ? `repository name longer than ${MAX_NAME_LENGTH} characters` : `invalid repository name: ${JSON.stringify(name)}`,
    });
  }
  return name;
}

export function isValidTag(tag: string): boolean {
  return TAG_RE.test(tag);
}

export type Reference = { kind: 'tag'; tag: string } | { kind: 'digest'; digest: Digest };

/** A manifest reference: a digest when it contains ':', else a tag. */
export function parseReference(ref: string): Reference {
  if (ref.includes(':')) {
    const digest = tryParseDigest(ref);
    if (!digest) throw new RegistryError('DIGEST_INVALID', { reference: ref }, { message: `invalid digest reference: ${JSON.stringify(ref)}` });
    return { kind: 'digest', digest };
  }
  if (!isValidTag(ref)) throw new RegistryError('TAG_INVALID', { tag: ref }, { message: `invalid tag: ${JSON.stringify(ref)}` });
  return { kind: 'tag', tag: ref };
}
