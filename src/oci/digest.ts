// Digests: parsing, validation and streaming hashes. sha256 and sha512 are supported.
import { createHash, type Hash } from 'node:crypto';
import { RegistryError } from '../errors/codes.js';

export type Algorithm = 'sha256' | 'sha512';

const HEX_LENGTH: Record<Algorithm, number> = { sha256: 64, sha512: 128 };
const DIGEST_RE = /^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$/;

export interface Digest {
  algorithm: Algorithm;
  hex: string;
  /** `alg:hex` */
  value: string;
}

/** Parses a digest string; null when it is not a well-formed sha256/sha512 digest. */
export function tryParseDigest(value: string | null | undefined): Digest | null {
  if (typeof value !== 'string') return null;
  const m = DIGEST_RE.exec(value);
  if (!m) return null;
  const algorithm = m[1] as Algorithm;
  const hex = m[2]!;
  const want = HEX_LENGTH[algorithm];
  if (!Object.hasOwn(HEX_LENGTH, algorithm) || hex.length !== want || !/^[a-f0-9]+$/.test(hex)) return null;
  return { algorithm, hex, value };
}

/** Parses a digest or throws DIGEST_INVALID. */
export function parseDigest(value: string | null | undefined, what = 'digest'): Digest {
  const d = tryParseDigest(value);
  if (!d) throw new RegistryError('DIGEST_INVALID', { [what]: value ?? null }, { message: `invalid ${what}: ${JSON.stringify(value ?? null)}` });
  return d;
}

export function digestOf(data: Buffer | string, algorithm: Algorithm = 'sha256'): Digest {
  const hex = createHash(algorithm).update(data).digest('hex');
  return { algorithm, hex, value: `${algorithm}:${hex}` };
}

export function newHash(algorithm: Algorithm): Hash {
  return createHash(algorithm);
}
