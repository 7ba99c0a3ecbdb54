// The API reference is generated from the types: the committed docs/api.md must be what
// `npm run docs` writes now, and every export must carry a doc comment.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { apiReference } from '../scripts/api-docs.mjs';

test('docs/api.md is current and every export is documented', () => {
  const { text, undocumented } = apiReference();
  assert.deepEqual(undocumented, []);
  const committed = readFileSync(new URL('../docs/api.md', import.meta.url), 'utf8');
  assert.ok(committed === text, 'docs/api.md is stale: run `npm run build && npm run docs`');
});
