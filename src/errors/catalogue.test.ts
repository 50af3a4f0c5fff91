import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { errorCatalogue, errorCodes } from './index.ts';

const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');

test('every error code is documented in docs/errors.md with its HTTP status', () => {
  for (const code of errorCodes) {
    const row = doc.split('\n').find((line) => line.startsWith(`| \`${code}\` |`));
    assert.ok(row, `docs/errors.md lacks a row for ${code}`);
    assert.match(row, new RegExp(`\\| ${errorCatalogue[code].status} \\|`), `${code} is documented with the wrong status`);
  }
});

test('docs/errors.md documents no code that does not exist', () => {
  const documented = [...doc.matchAll(/^\| `([A-Z_]+)` \|/gm)].map((m) => m[1]);
  for (const code of documented) assert.ok(errorCodes.includes(code as never), `${code} is documented but not in the catalogue`);
});

test('every code used in src/ is in the catalogue', async () => {
  const { readdir } = await import('node:fs/promises');
  const files = (await readdir(new URL('../', import.meta.url), { recursive: true })).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'));
  for (const file of files) {
    const text = readFileSync(new URL(`../${file}`, import.meta.url), 'utf8');
    for (const m of text.matchAll(/fail\('([A-Z_]+)'/g)) assert.ok(errorCodes.includes(m[1] as never), `${file} uses ${m[1]}`);
  }
});
