import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { sql } from 'kysely';
import { openStorage } from '../database.ts';

test('a transaction SQLite ended by itself fails with the error that ended it, not with a failed rollback', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'keyhold-tx-'));
  const storage = await openStorage({ url: `sqlite:${join(dir, 'keyhold.db')}` });
  try {
    const cause = new Error('the write that failed (SQLite rolled its transaction back)');
    await assert.rejects(storage.db.transaction().execute(async (trx) => {
      await trx.insertInto('system_meta').values({ key: 'tx-test', value: 'x' }).execute();
      // What SQLite does on SQLITE_FULL or an I/O error: the transaction is over when the error arrives.
      await sql`rollback`.execute(trx);
      throw cause;
    }), (err: unknown) => err === cause);
    assert.equal(await storage.db.selectFrom('system_meta').select('key').where('key', '=', 'tx-test').executeTakeFirst(), undefined);
    // The connection is usable afterwards.
    await storage.db.transaction().execute((trx) => trx.insertInto('system_meta').values({ key: 'tx-after', value: 'y' }).execute());
    assert.ok(await storage.db.selectFrom('system_meta').select('key').where('key', '=', 'tx-after').executeTakeFirst());
  } finally {
    await storage.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('closing the storage closes the database even when a close task fails, and reports the failure', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'keyhold-close-'));
  const storage = await openStorage({ url: `sqlite:${join(dir, 'keyhold.db')}` });
  let later = false;
  storage.onClose(async () => { throw new Error('a sink failed to flush'); });
  storage.onClose(async () => { later = true; });
  try {
    await assert.rejects(storage.close(), /a sink failed to flush/);
    assert.equal(later, true, 'the tasks after the failing one ran');
    await assert.rejects(storage.db.selectFrom('system_meta').selectAll().execute(), 'the connection is closed');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('an integer past what a JS number holds reads as a rounded number, as on PostgreSQL, and a write returning one still fails', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'keyhold-bigint-'));
  const storage = await openStorage({ url: `sqlite:${join(dir, 'keyhold.db')}` });
  try {
    await sql`create table big (n integer primary key, small integer)`.execute(storage.db);
    await sql`insert into big values (9223372036854775807, 1)`.execute(storage.db);
    await sql`insert into big values (5, 2)`.execute(storage.db);
    const read = async (small: number) => (await sql<{ n: unknown }>`select n from big where small = ${small}`.execute(storage.db)).rows.map((r) => r.n);
    assert.deepEqual(await read(1), [9223372036854775807]);
    // The same (cached) statement reads numbers again afterwards: the bigint mode was for that read only.
    assert.deepEqual(await read(2), [5]);
    // Not retried: a statement that writes would write twice.
    await assert.rejects(sql`insert into big values (9223372036854775806, 3) returning n`.execute(storage.db), /too large/);
  } finally {
    await storage.close();
    await rm(dir, { recursive: true, force: true });
  }
});
