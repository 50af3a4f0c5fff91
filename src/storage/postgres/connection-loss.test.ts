import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import pg from 'pg';
import { createTestDatabase, PG_URL, skipReason, type TestDatabase } from '../../../test/helpers/databases.ts';
import { backendPid } from '../../../test/helpers/pg-lock-waits.ts';
import type { Storage } from '../database.ts';

/**
 * PostgreSQL ends sessions by itself (idle_in_transaction_session_timeout, a restart, a failover) and
 * administrators end them (pg_terminate_backend). A connection lost while the server holds it out of
 * the pool must fail the work on it, never the process: node-postgres emits the loss as an 'error'
 * event on the client, which nothing listened to once the pool had handed the client out.
 */

const terminate = async (pid: number) => {
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  try {
    await admin.query('select pg_terminate_backend($1)', [pid]);
  } finally {
    await admin.end();
  }
};
// Long enough for the backend's farewell (FATAL 57P01, then the closed socket) to reach the client.
const settle = () => new Promise((resolve) => setTimeout(resolve, 300));

describe('PostgreSQL: a connection lost while checked out of the pool', async () => {
  const skip = await skipReason('postgres');
  let database: TestDatabase;
  let storage: Storage;
  before(async () => {
    if (skip) return;
    database = await createTestDatabase('postgres');
    storage = await database.open();
  });
  after(async () => {
    await storage?.close();
    await database?.cleanup();
  });

  test('ended inside an idle transaction, it fails that transaction only; the process and the pool carry on', { skip }, async () => {
    const outcome = await storage.db.transaction().execute(async (trx) => {
      await terminate(await backendPid(trx));
      await settle();
      await sql`select 1`.execute(trx);
    }).then(() => null, (err: unknown) => err);
    assert.ok(outcome instanceof Error, 'the transaction on the lost connection failed');
    const { rows } = await sql<{ x: number }>`select 1 as x`.execute(storage.db);
    assert.deepEqual(rows, [{ x: 1 }]);
  });

  test('ended while pinned and idle (a leader holding a session lock), it fails the next statement on it only', { skip }, async () => {
    const outcome = await storage.db.connection().execute(async (conn) => {
      await terminate(await backendPid(conn));
      await settle();
      await sql`select 1`.execute(conn);
    }).then(() => null, (err: unknown) => err);
    assert.ok(outcome instanceof Error, 'the statement on the lost connection failed');
    const pids = await Promise.all([0, 1, 2].map(() => storage.db.connection().execute((conn) => backendPid(conn))));
    assert.equal(pids.length, 3, 'the pool hands out working connections again');
  });
});
