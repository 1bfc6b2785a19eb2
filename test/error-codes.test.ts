// The error table and the README agree: every code Berth can answer with is documented with
// its status, so an operator reading a client's error finds it.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { ERROR_CODES } from '../src/errors/codes.js';

test('every error code is documented in README.md with its HTTP status', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8').replace(/\s+/g, ' ');
  for (const [code, { status }] of Object.entries(ERROR_CODES)) {
    assert.ok(readme.includes(`\`${code}\` ${status}`), `README.md does not document \`${code}\` ${status}`);
  }
});
