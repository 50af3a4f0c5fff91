import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { Kysely, sql } from 'kysely';
import { createTestDatabase, PG_URL, skipReason, type TestDatabase } from '../../../test/helpers/databases.ts';
import { backendPid, otherSession, waitUntilBlockedBy } from '../../../test/helpers/pg-lock-waits.ts';
import { openStorage, type Storage } from '../database.ts';
import { failureCode, isDatabaseTimeout, isStatementTimeout } from '../db-errors.ts';
import { migrateTo } from '../migrations/index.ts';
import type { Database } from '../schema.ts';
import { createPostgresDialect, POOL_WAIT_MS } from './postgres-dialect.ts';
import { withoutStatementTimeout } from '../unbounded-read.ts';

/**
 * The server's pool bounds how long a statement may wait for a lock and run (KEYHOLD_DB_LOCK_TIMEOUT,
 * KEYHOLD_DB_STATEMENT_TIMEOUT); the work that must finish however long it takes does not run under them.
 */

const show = async (db: Kysely<Database>) => {
  const lock = (await sql<{ lock_timeout: string }>`show lock_timeout`.execute(db)).rows[0]!.lock_timeout;
  const statement = (await sql<{ statement_timeout: string }>`show statement_timeout`.execute(db)).rows[0]!.statement_timeout;
  return [lock, statement];
};

describe('PostgreSQL: the pool bounds lock waits and statements', async () => {
  const skip = await skipReason('postgres');
  let database: TestDatabase;
  before(async () => {
    if (!skip) database = await createTestDatabase('postgres');
  });
  after(() => database?.cleanup());

  test('every connection of the pool carries the configured bounds; by default 5 s for a lock and 30 s for a statement', { skip }, async () => {
    const cases: Array<[{ lockTimeoutMs?: number; statementTimeoutMs?: number } | undefined, string[]]> = [
      [undefined, ['5s', '30s']],
      [{ lockTimeoutMs: 1234, statementTimeoutMs: 4321 }, ['1234ms', '4321ms']],
      // 0: Keyhold sets none, PostgreSQL's own setting applies (none on the test server).
      [{ lockTimeoutMs: 0, statementTimeoutMs: 0 }, ['0', '0']],
    ];
    for (const [bounds, expected] of cases) {
      const storage = await database.open(bounds);
      try {
        // Two connections at once: the bounds are the pool's, not one session's.
        const both = await Promise.all([0, 1].map(() => storage.db.connection().execute(async (conn) => {
          const values = await show(conn);
          await sql`select pg_sleep(0.05)`.execute(conn);
          return { pid: await backendPid(conn), values };
        })));
        assert.notEqual(both[0]!.pid, both[1]!.pid, 'two connections');
        for (const { values } of both) assert.deepEqual(values, expected, JSON.stringify(bounds));
      } finally {
        await storage.close();
      }
    }
  });

  test('migrations at start run on a connection of their own, not cut by the pool\'s bounds however long they wait', { skip }, async () => {
    const fresh = await createTestDatabase('postgres');
    const other = await otherSession(fresh.schema!);
    let storage: Storage | null = null;
    try {
      const setup = new Kysely<Database>({ dialect: createPostgresDialect({ connectionString: PG_URL, schema: fresh.schema! }).dialect });
      await migrateTo(setup as unknown as Kysely<unknown>, 'postgres', '021-factor-epochs');
      await setup.destroy();
      // A reader in the middle of a long transaction: 022's ALTER TABLE secrets must wait for it.
      await other.client.query('begin');
      await other.client.query('lock table secrets in access share mode');
      const opening = openStorage({ url: PG_URL, schema: fresh.schema!, poolSize: 2, lockTimeoutMs: 200, statementTimeoutMs: 1000 })
        .then((s) => (storage = s), (err: unknown) => err);
      const watcher = new Kysely<Database>({ dialect: createPostgresDialect({ connectionString: PG_URL, max: 1 }).dialect });
      try {
        const migrating = await waitUntilBlockedBy(watcher, [other.pid]);
        // The same wait on a connection bounded by the statement bound alone, started after the
        // migration's: once it is cancelled, the migration has waited longer than either bound.
        const bounded = new Kysely<Database>({ dialect: createPostgresDialect({ connectionString: PG_URL, schema: fresh.schema!, lockTimeoutMs: 0, statementTimeoutMs: 1000 }).dialect });
        const control = await bounded.transaction().execute((trx) => sql`lock table secrets in access exclusive mode`.execute(trx)).then(() => null, (err: unknown) => err);
        await bounded.destroy();
        assert.equal(isStatementTimeout(control), true, `a bounded connection gives up: ${String(control)}`);
        const still = await waitUntilBlockedBy(watcher, [other.pid], 0).catch(() => null);
        assert.equal(still, migrating, 'the migration still waits (under the bounds it would have given up)');
      } finally {
        await watcher.destroy();
      }
      await other.client.query('commit');
      const opened = await opening;
      assert.ok(storage, `start-up failed: ${String(opened)}`);
      assert.equal((storage as Storage).migrationsApplied[0], '022-secret-name-collation', 'the waiting migration, then any after it, applied');
      assert.deepEqual(await show((storage as Storage).db), ['200ms', '1s'], 'the pool the server then runs on is bounded');
    } finally {
      await other.client.query('rollback').catch(() => {});
      await other.client.end();
      await (storage as Storage | null)?.close();
      await fresh.cleanup();
    }
  });

  test('a read run without the statement bound finishes past it; the same read on the pool is cancelled', { skip }, async () => {
    const storage = await database.open({ lockTimeoutMs: 100, statementTimeoutMs: 1000 });
    try {
      const cut = await sql`select pg_sleep(1.5)`.execute(storage.db).then(() => null, (err: unknown) => err);
      assert.equal(isStatementTimeout(cut), true, `the pool's bound applies: ${String(cut)}`);
      const read = await withoutStatementTimeout(storage.db, async (db) => {
        await sql`select pg_sleep(1.5)`.execute(db);
        return show(db);
      });
      assert.deepEqual(read, ['100ms', '0'], 'the lock bound still applies inside');
      assert.deepEqual(await show(storage.db), ['100ms', '1s'], 'the connection goes back to the pool bounded (SET LOCAL)');
    } finally {
      await storage.close();
    }
  });

  test('a request finding every pool connection taken waits a bounded time, then answers DATABASE_TIMEOUT', { skip }, async () => {
    assert.ok(POOL_WAIT_MS > 0 && POOL_WAIT_MS <= 30_000, 'the server\'s pool bounds the wait');
    const pool = createPostgresDialect({ connectionString: PG_URL, schema: database.schema!, max: 1, poolWaitMs: 300 });
    const db = new Kysely<Database>({ dialect: pool.dialect });
    try {
      let release!: () => void;
      const held = new Promise<void>((resolve) => (release = resolve));
      // The only connection, held by a transaction that waits on something else (a hung request).
      const holder = db.transaction().execute(async (trx) => {
        await sql`select 1`.execute(trx);
        await held;
      });
      await new Promise((resolve) => setTimeout(resolve, 50));
      const started = Date.now();
      const err = await sql`select 1`.execute(db).then(() => null, (e: unknown) => e);
      assert.ok(Date.now() - started < 5000, 'the waiter gave up');
      assert.equal(isDatabaseTimeout(err), true, String(err));
      assert.equal(failureCode(err), 'DATABASE_TIMEOUT');
      release();
      await holder;
      assert.deepEqual((await sql<{ x: number }>`select 1 as x`.execute(db)).rows, [{ x: 1 }], 'the pool serves again once the connection is back');
    } finally {
      await db.destroy();
    }
  });

  test('a database that accepts the connection and never answers is a DATABASE_TIMEOUT after the pool\'s wait, not a hang', async () => {
    const sockets: Socket[] = [];
    const silent = createServer((socket) => void sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as AddressInfo;
    const db = new Kysely<Database>({ dialect: createPostgresDialect({ connectionString: `postgres://nobody@127.0.0.1:${port}/none`, poolWaitMs: 300 }).dialect });
    try {
      const err = await sql`select 1`.execute(db).then(() => null, (e: unknown) => e);
      assert.equal(isDatabaseTimeout(err), true, String(err));
    } finally {
      await db.destroy();
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });
});
