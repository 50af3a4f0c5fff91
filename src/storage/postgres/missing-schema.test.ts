import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { PG_URL, skipReason } from '../../../test/helpers/databases.ts';
import { openStorage, StorageRefusal } from '../database.ts';

test('a URL whose search_path names no schema that exists is refused naming the search_path, and nothing is created', async (t) => {
  const skip = await skipReason('postgres');
  if (skip) return t.skip(skip);
  const schema = `kh_missing_${randomBytes(6).toString('hex')}`;
  const url = new URL(PG_URL);
  url.password = 'not-to-be-echoed';
  url.searchParams.set('options', `-c search_path=${schema}`);
  // Trust auth ignores the password: the connection opens, and only the missing schema is wrong.
  const err = await openStorage({ url: url.href }).then(() => null, (e: unknown) => e);
  assert.ok(err instanceof StorageRefusal, `refused as a set-up problem, not a crash: ${String(err)}`);
  assert.match(err.message, new RegExp(`search_path "${schema}"`));
  assert.match(err.message, /create the schema/);
  assert.doesNotMatch(err.message, /not-to-be-echoed/);
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  try {
    assert.equal((await c.query('select 1 from pg_namespace where nspname = $1', [schema])).rowCount, 0);
  } finally {
    await c.end();
  }
});
