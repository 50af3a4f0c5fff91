import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { PG_URL, skipReason } from '../../../test/helpers/databases.ts';
import { openStorage } from '../database.ts';

/**
 * Kysely's migration bookkeeping scans the catalog of every schema in the database with functions
 * that look schemas up by name; a schema dropped by someone else during that scan (another Keyhold
 * deployment in the same database, a parallel test) used to fail our start-up with "schema ... does
 * not exist". Here other schemas come and go as fast as they can while ours migrates, many times.
 */
test('migrations succeed while other schemas of the same database are created and dropped', async (t) => {
  const skip = await skipReason('postgres');
  if (skip) return t.skip(skip);
  const churn = new pg.Client({ connectionString: PG_URL });
  await churn.connect();
  let stop = false;
  const churning = (async () => {
    while (!stop) {
      const other = `kh_churn_${randomBytes(5).toString('hex')}`;
      await churn.query(`create schema ${other}`);
      // Tables with serial and plain columns: Kysely's scan looks each of them up as it goes.
      for (const t of ['a', 'b', 'c']) await churn.query(`create table ${other}.${t} (id serial primary key, v text, w integer)`);
      await churn.query(`drop schema ${other} cascade`);
    }
  })();
  const ours: string[] = [];
  try {
    for (let i = 0; i < 12; i++) {
      const schema = `kh_test_${randomBytes(6).toString('hex')}`;
      ours.push(schema);
      await churn.query(`create schema ${schema}`).catch(async () => {
        const c = new pg.Client({ connectionString: PG_URL });
        await c.connect();
        await c.query(`create schema ${schema}`);
        await c.end();
      });
      const storage = await openStorage({ url: PG_URL, schema, poolSize: 2 });
      await storage.close();
    }
  } finally {
    stop = true;
    await churning.catch(() => {});
    for (const schema of ours) await churn.query(`drop schema if exists ${schema} cascade`);
    await churn.end();
  }
  assert.equal(ours.length, 12);
});
